package ping

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

// TestPingFromLabHost pings the server from client1 with client1's ping
// binary, with loss injected by real iptables rules on the server.
func TestPingFromLabHost(t *testing.T) {
	l := labtest.Up(t, "hosts")
	ctx := testCtx(t)
	server, err := l.Host("server")
	require.NoError(t, err)
	iptables := func(args ...string) {
		res, err := server.Exec(ctx, append([]string{"iptables"}, args...)...)
		require.NoError(t, err)
		require.NoError(t, res.Err())
	}
	p := newPing(server.IP.String())
	p.Host, p.Interval, p.Count = "lab:"+l.ID+"/client1", 100*time.Millisecond, 4

	r := runPing(t, ctx, p, nil)
	require.NoError(t, r.err)
	assert.Equal(t, 4, r.out["sent"])
	assert.Equal(t, 4, r.out["received"])
	assert.Equal(t, server.IP.String(), r.out["address"])
	require.Len(t, r.ev, 3)
	assert.Equal(t, "log", r.ev[0].Kind, "ping's own output is kept")
	assert.Contains(t, r.ev[0].Text, "4 packets transmitted, 4 received")
	assert.Len(t, r.ev[1].Series[0].Points, 8)

	iptables("-I", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-m", "statistic", "--mode", "nth", "--every", "2", "--packet", "1", "-j", "DROP")
	p.Count, p.Timeout = 6, 500*time.Millisecond
	r = runPing(t, ctx, p, nil)
	require.NoError(t, r.err)
	assert.Equal(t, 6, r.out["sent"])
	assert.Equal(t, 3, r.out["received"])
	assert.Equal(t, 50.0, r.out["loss_pct"])

	iptables("-I", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP")
	p.Count = 2
	r = runPing(t, ctx, p, nil)
	require.Error(t, r.err)
	assert.True(t, steps.IsFailure(r.err))
	assert.Contains(t, r.err.Error(), "no reply to 2 echo request(s) from "+p.Host)
	p.Expect = "unreachable"
	r = runPing(t, ctx, p, nil)
	require.NoError(t, r.err)

	// A missing lab host is not a network verdict.
	p.Host = "lab:" + l.ID + "/no-such-host"
	r = runPing(t, ctx, p, nil)
	require.Error(t, r.err)
	assert.False(t, steps.IsFailure(r.err))
	assert.ErrorIs(t, r.err, lab.ErrNoHost)
}
