package ping

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate/netnstest"
	"github.com/opsdrill/opsdrill/steps"
)

// Local pings run in network namespaces the tests create, so they depend
// on nothing of this machine's network and send nothing outside.

func newPing(addr string) *Ping {
	return &Ping{Address: addr, Count: 4, Interval: 20 * time.Millisecond, Timeout: time.Second, Size: 56, Expect: "reachable", Privileged: true}
}

type result struct {
	out      map[string]any
	ev       []steps.Evidence
	err      error
	progress int
}

func runPing(t *testing.T, ctx context.Context, p *Ping, onProgress func(string)) result {
	t.Helper()
	require.NoError(t, p.Validate())
	var n atomic.Int64
	env := steps.NewEnv("s", "ping", t.TempDir(), steps.Hooks{Progress: func(s string) {
		n.Add(1)
		if onProgress != nil {
			onProgress(s)
		}
	}})
	err := p.Run(ctx, env)
	return result{out: env.Outputs(), ev: env.Evidence(), err: err, progress: int(n.Load())}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestLocalPing(t *testing.T) {
	ns := netnstest.New(t, "ping")
	ctx := testCtx(t)

	p := newPing("127.0.0.1")
	p.Netns = ns.Name
	r := runPing(t, ctx, p, nil)
	require.NoError(t, r.err)
	assert.Equal(t, 4, r.out["sent"])
	assert.Equal(t, 4, r.out["received"])
	assert.Equal(t, 0.0, r.out["loss_pct"])
	assert.Equal(t, "127.0.0.1", r.out["address"])
	assert.Greater(t, r.out["rtt_avg_ms"], 0.0)
	assert.GreaterOrEqual(t, r.out["rtt_max_ms"], r.out["rtt_min_ms"])
	assert.GreaterOrEqual(t, r.out["first_reply_ms"], 0.0)
	assert.Equal(t, 4, r.progress, "progress after each reply")
	require.Len(t, r.ev, 2)
	assert.Len(t, r.ev[0].Series[0].Points, 8, "one point per echo request")
	assert.Contains(t, r.ev[0].Title, "from netns "+ns.Name)

	// Unprivileged: an ICMP datagram socket, allowed by ping_group_range.
	ns.MustRun(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	p.Privileged = false
	r = runPing(t, ctx, p, nil)
	require.NoError(t, r.err)
	assert.Equal(t, 4, r.out["received"])

	// ... and refused by it, with what to do.
	ns.MustRun(t, "sysctl", "-qw", "net.ipv4.ping_group_range=1 0")
	r = runPing(t, ctx, p, nil)
	require.Error(t, r.err)
	assert.False(t, steps.IsFailure(r.err), "a refused socket is not a network verdict")
	assert.Contains(t, r.err.Error(), "net.ipv4.ping_group_range (1 0); use privileged: true")
}

// TestLocalLoss injects loss with real firewall rules in the namespace.
func TestLocalLoss(t *testing.T) {
	netnstest.RequireTool(t, "iptables")
	ns := netnstest.New(t, "loss")
	ctx := testCtx(t)

	// Every second echo request is dropped: exactly half are lost.
	ns.MustRun(t, "iptables", "-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request",
		"-m", "statistic", "--mode", "nth", "--every", "2", "--packet", "1", "-j", "DROP")
	p := newPing("127.0.0.1")
	p.Netns, p.Count, p.Timeout = ns.Name, 6, 300*time.Millisecond
	r := runPing(t, ctx, p, nil)
	require.NoError(t, r.err, "some replies: reachable")
	assert.Equal(t, 6, r.out["sent"])
	assert.Equal(t, 3, r.out["received"])
	assert.Equal(t, 50.0, r.out["loss_pct"])
	assert.Equal(t, 3, r.out["outages"])
	assert.Len(t, r.ev[0].Series[1].Points, 6, "three lost requests on the lost series")

	// Everything dropped: reachable fails, unreachable passes.
	ns.MustRun(t, "iptables", "-I", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP")
	p.Count = 2
	r = runPing(t, ctx, p, nil)
	require.Error(t, r.err)
	assert.True(t, steps.IsFailure(r.err))
	assert.Contains(t, r.err.Error(), "127.0.0.1: no reply to 2 echo request(s) from netns "+ns.Name)
	assert.Equal(t, 100.0, r.out["loss_pct"])
	assert.Equal(t, -1.0, r.out["first_reply_ms"])
	p.Expect = "unreachable"
	r = runPing(t, ctx, p, nil)
	require.NoError(t, r.err)

	ns.MustRun(t, "iptables", "-F", "INPUT")
	r = runPing(t, ctx, p, nil)
	require.Error(t, r.err)
	assert.Contains(t, r.err.Error(), "127.0.0.1 answered 2 of 2 echo request(s) from netns "+ns.Name+", expected no reply")
}

// pair joins two namespaces by a veth link, 10.231.0.1/30 and .2.
func pair(t *testing.T) (*netnstest.NS, *netnstest.NS) {
	a, b := netnstest.New(t, "a"), netnstest.New(t, "b")
	out, err := a.Run("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b.Name)
	require.NoError(t, err, out)
	a.MustRun(t, "ip", "addr", "add", "10.231.0.1/30", "dev", "va")
	a.MustRun(t, "ip", "link", "set", "va", "up")
	b.MustRun(t, "ip", "addr", "add", "10.231.0.2/30", "dev", "vb")
	b.MustRun(t, "ip", "link", "set", "vb", "up")
	return a, b
}

// TestKeepaliveRidesOutAnOutage removes the route to the peer while a
// keepalive runs: sends fail (network unreachable), the keepalive goes on,
// reports the outage, and sees the replies come back.
func TestKeepaliveRidesOutAnOutage(t *testing.T) {
	a, _ := pair(t)
	ctx := testCtx(t)
	p := newPing("10.231.0.2")
	p.Netns, p.Keepalive, p.Duration, p.Interval, p.Timeout = a.Name, true, 4*time.Second, 50*time.Millisecond, 500*time.Millisecond

	var replies atomic.Int64
	cut, restored := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(restored)
		select {
		case <-cut:
		case <-ctx.Done():
			return
		}
		out, err := a.Run("ip", "addr", "del", "10.231.0.1/30", "dev", "va")
		assert.NoError(t, err, out)
		time.Sleep(400 * time.Millisecond)
		out, err = a.Run("ip", "addr", "add", "10.231.0.1/30", "dev", "va")
		assert.NoError(t, err, out)
	}()
	var once atomic.Bool
	r := runPing(t, ctx, p, func(string) {
		if replies.Add(1) == 5 && once.CompareAndSwap(false, true) {
			close(cut)
		}
	})
	<-restored
	require.NoError(t, r.err)
	sent := r.out["sent"].(int)
	assert.Equal(t, 80, sent, "4s at 50ms")
	assert.Greater(t, r.out["errors"], 0, "sends failed while the route was gone")
	assert.Greater(t, r.out["lost"], 0)
	assert.GreaterOrEqual(t, r.out["outages"], 1)
	assert.Greater(t, r.out["longest_outage_ms"], 0.0)
	assert.Greater(t, r.out["received"], 5, "replies came back after the outage")
	assert.Contains(t, r.out["error"], "unreachable")
	require.NotEmpty(t, r.ev[0].Marks)
	assert.Contains(t, r.ev[0].Marks[0].Label, "unreachable")
}

func TestKeepaliveCancelled(t *testing.T) {
	ns := netnstest.New(t, "cancel")
	ctx, cancel := context.WithCancel(testCtx(t))
	p := newPing("127.0.0.1")
	p.Netns, p.Keepalive, p.Duration = ns.Name, true, time.Hour
	var n atomic.Int64
	r := runPing(t, ctx, p, func(string) {
		if n.Add(1) == 3 {
			cancel()
		}
	})
	require.ErrorIs(t, r.err, context.Canceled)
	assert.GreaterOrEqual(t, r.out["received"], 3, "what was recorded is still reported")
}

func TestMissingNetns(t *testing.T) {
	netnstest.Require(t)
	p := newPing("127.0.0.1")
	p.Netns = "opsdrill-no-such-namespace"
	r := runPing(t, testCtx(t), p, nil)
	require.Error(t, r.err)
	assert.Contains(t, r.err.Error(), "create it with: ip netns add opsdrill-no-such-namespace")
}

func TestValidate(t *testing.T) {
	require.NoError(t, newPing("gw.example.internal").Validate())
	tests := []struct {
		name   string
		modify func(p *Ping)
		want   string
	}{
		{"bad address", func(p *Ping) { p.Address = "not an address" }, `address: "not an address" is neither`},
		{"count", func(p *Ping) { p.Count = 0 }, "count: must be 1 to 100000, got 0"},
		{"interval", func(p *Ping) { p.Interval = time.Millisecond }, "interval: must be at least 10ms"},
		{"timeout", func(p *Ping) { p.Timeout = 0 }, "timeout: must be positive"},
		{"size", func(p *Ping) { p.Size = 8 }, "size: must be 24 to 65000 bytes, got 8"},
		{"keepalive without duration", func(p *Ping) { p.Keepalive = true }, "duration: required with keepalive: true"},
		{"duration without keepalive", func(p *Ping) { p.Duration = time.Minute }, "duration: only with keepalive: true"},
		{"huge keepalive", func(p *Ping) { p.Keepalive, p.Duration = true, 1000*time.Hour }, "more than 1000000 echo requests"},
		{"source", func(p *Ping) { p.Source = "eth0" }, `source: "eth0" is not an IP address`},
		{"expect", func(p *Ping) { p.Expect = "up" }, `expect: must be reachable, unreachable or any, got "up"`},
		{"host", func(p *Ping) { p.Host = "cgw" }, `host: "cgw" is not a host reference`},
		{"netns on a lab host", func(p *Ping) { p.Host, p.Netns = "lab:cgw", "x" }, "netns: only for pings from this machine"},
		{"netns name", func(p *Ping) { p.Netns = "../x" }, `netns: "../x" is not a namespace name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPing("127.0.0.1")
			tt.modify(p)
			err := p.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	p := newPing("127.0.0.1")
	p.Keepalive, p.Duration, p.Interval = true, 2*time.Second+time.Millisecond, time.Second
	assert.Equal(t, 3, p.probes(), "a keepalive covers its whole duration")
}

// TestSource pings from a chosen source address; one this machine does not
// have is an error, not a finding.
func TestSource(t *testing.T) {
	a, _ := pair(t)
	ctx := testCtx(t)
	p := newPing("10.231.0.2")
	p.Netns, p.Source = a.Name, "10.231.0.1"
	r := runPing(t, ctx, p, nil)
	require.NoError(t, r.err)
	assert.Equal(t, 4, r.out["received"])

	p.Source = "10.231.0.3"
	r = runPing(t, ctx, p, nil)
	require.Error(t, r.err)
	assert.False(t, steps.IsFailure(r.err))
	assert.Contains(t, r.err.Error(), "source: 10.231.0.3 is not an address of netns "+a.Name)
}
