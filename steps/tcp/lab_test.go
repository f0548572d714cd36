package tcp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

// TestProbeFromLabHost probes the server from a client inside the lab: open
// with a listener, refused without one, timeout behind a real iptables DROP
// rule on the server.
func TestProbeFromLabHost(t *testing.T) {
	l := labtest.Up(t, "hosts")
	ctx := context.Background()
	server, err := l.Host("server")
	require.NoError(t, err)
	_, err = server.ExecCommand(ctx, lab.Command{Args: []string{"socat", "TCP-LISTEN:7000,fork,reuseaddr", "EXEC:/bin/cat"}, Detach: true})
	require.NoError(t, err)
	addr := server.IP.String()

	probeFrom := func(port string, expect string) (map[string]any, error) {
		p := &Probe{Address: addr + ":" + port, Expect: expect, Timeout: 2 * time.Second, Host: "lab:client1"}
		require.NoError(t, p.Validate())
		env := steps.NewEnv("s", "p", "", steps.Hooks{})
		err := p.Run(ctx, env)
		return env.Outputs(), err
	}
	require.Eventually(t, func() bool { _, err := probeFrom("7000", "open"); return err == nil }, 10*time.Second, 200*time.Millisecond)

	out, err := probeFrom("7001", "open")
	require.Error(t, err)
	assert.True(t, steps.IsFailure(err))
	assert.Equal(t, "refused", out["state"])

	res, err := server.Exec(ctx, "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "7000", "-j", "DROP")
	require.NoError(t, err)
	require.NoError(t, res.Err())
	out, err = probeFrom("7000", "closed")
	require.NoError(t, err, "a dropped port counts as closed")
	assert.Equal(t, "timeout", out["state"])
	assert.Equal(t, false, out["open"])
}
