package dns

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

const endpoint = "testrds.cdjw6bxi4s1f.ap-south-1.rds.amazonaws.com."

// zone is a DNS server on the loopback interface that answers for the
// endpoint like RDS: a CNAME to the primary's instance name and its
// address. The test moves the CNAME, or makes the server fail.
type zone struct {
	mu      sync.Mutex
	target  string
	addr    string
	rcode   int
	queries atomic.Int64
	// moveAfter, when > 0, moves the CNAME to moveTo at that query.
	moveAfter int64
	moveTo    string
	moveAddr  string
	// Queries failFrom to failTo-1 are refused (a resolver restarting).
	failFrom, failTo int64
}

func (z *zone) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	n := z.queries.Add(1)
	z.mu.Lock()
	if z.moveAfter > 0 && n == z.moveAfter {
		z.target, z.addr = z.moveTo, z.moveAddr
	}
	target, addr, rcode := z.target, z.addr, z.rcode
	z.mu.Unlock()
	if n >= z.failFrom && n < z.failTo {
		rcode = mdns.RcodeRefused
	}
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Rcode = rcode
	if rcode == mdns.RcodeSuccess && r.Question[0].Name == endpoint {
		m.Answer = append(m.Answer,
			&mdns.CNAME{Hdr: mdns.RR_Header{Name: endpoint, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 5}, Target: target})
		if r.Question[0].Qtype == mdns.TypeA {
			m.Answer = append(m.Answer,
				&mdns.A{Hdr: mdns.RR_Header{Name: target, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 5}, A: net.ParseIP(addr)})
		}
	} else if rcode == mdns.RcodeSuccess {
		m.Rcode = mdns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func startZone(t *testing.T, z *zone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &mdns.Server{PacketConn: pc, Handler: z}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func newWatch(server string) *Watch {
	spec, _ := steps.Lookup("dns.watch")
	watch := spec.New().(*Watch)
	watch.Name, watch.Resolver = endpoint, server
	watch.Interval, watch.Duration, watch.Settle = 10*time.Millisecond, 30*time.Second, 50*time.Millisecond
	return watch
}

func runWatch(t *testing.T, w *Watch, env *steps.Env) error {
	t.Helper()
	require.NoError(t, w.Validate())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return w.Run(ctx, env)
}

// TestWatchSeesTheSwitch: the runbook's alias moves from the instance in
// ap-south-1b to the one in ap-south-1a; the watch records the change,
// times it from the failover trigger mark and marks the timeline.
func TestWatchSeesTheSwitch(t *testing.T) {
	z := &zone{target: "ec2-13-126-202-244.ap-south-1.compute.amazonaws.com.", addr: "203.0.113.44",
		moveAfter: 8, moveTo: "ec2-13-126-190-48.ap-south-1.compute.amazonaws.com.", moveAddr: "203.0.113.48"}
	server := startZone(t, z)
	dir := t.TempDir()
	tl := &steps.Timeline{}
	env := steps.NewEnv("drill", "dns", dir, steps.Hooks{Timeline: tl})
	// The failover step's trigger, noted before the watch sees anything.
	trig := steps.NewEnv("drill", "failover", dir, steps.Hooks{Timeline: tl})
	trigAt := time.Now()
	trig.Note(failoverTrigger, "failover triggered", trigAt)

	require.NoError(t, runWatch(t, newWatch(server), env))
	out := env.Outputs()
	assert.Equal(t, true, out["changed"])
	assert.Equal(t, "ec2-13-126-202-244.ap-south-1.compute.amazonaws.com.", out["initial_cname"])
	assert.Equal(t, "ec2-13-126-190-48.ap-south-1.compute.amazonaws.com.", out["final_cname"])
	assert.Equal(t, "ec2-13-126-190-48.ap-south-1.compute.amazonaws.com. [203.0.113.48]", out["final"])
	assert.Equal(t, 5, out["ttl"])
	changes := out["changes"].([]any)
	require.Len(t, changes, 1)
	c := changes[0].(map[string]any)
	assert.Equal(t, "ec2-13-126-202-244.ap-south-1.compute.amazonaws.com. [203.0.113.44]", c["from"])
	assert.Equal(t, []any{"203.0.113.48"}, c["addresses"])
	// switch_ms is exactly the change's instant minus the trigger's: the
	// zone moved at the 8th query, 10 ms apart, so after 70 ms at least.
	sw := out["switch_ms"].(float64)
	changedAt, err := time.Parse(time.RFC3339Nano, c["at"].(string))
	require.NoError(t, err)
	assert.InDelta(t, float64(changedAt.Sub(trigAt).Microseconds())/1000, sw, 0.002)
	assert.Greater(t, sw, 70.0)
	assert.Equal(t, sw, c["since_trigger_ms"])
	// The gap between the last old answer and the first new one is one
	// polling interval (10 ms), not more than a few.
	gap := out["switch_gap_ms"].(float64)
	assert.Greater(t, gap, 5.0)
	assert.Less(t, gap, 500.0)
	assert.Equal(t, 0, out["errors"])

	// The DNS switch is a moment on the scenario's timeline, for
	// db.verify's chart.
	sw2, ok := tl.Latest("dns.switch", time.Now())
	require.True(t, ok)
	assert.Equal(t, "DNS now ec2-13-126-190-48.ap-south-1.compute.amazonaws.com", sw2.Label)
	assert.Equal(t, "dns", sw2.Step)
	// The runbook's loop output, as evidence.
	log, err := os.ReadFile(dir + "/artifacts/drill/dns-dns.log")
	require.NoError(t, err)
	assert.Contains(t, string(log), endpoint+" is an alias for ec2-13-126-202-244.ap-south-1.compute.amazonaws.com.")
	assert.Contains(t, string(log), "<- changed")
}

func TestWatchFaults(t *testing.T) {
	cases := []struct {
		name    string
		zone    *zone
		mutate  func(w *Watch)
		failure bool
		errWant string
		check   func(t *testing.T, out map[string]any)
	}{
		{
			name: "the alias never moves: the drill fails", zone: &zone{target: "a.example.", addr: "192.0.2.1"},
			mutate: func(w *Watch) { w.Duration = 300 * time.Millisecond }, failure: true, errWant: "did not change in 300ms: still a.example. [192.0.2.1]",
		},
		{
			name: "no change is fine when not expected", zone: &zone{target: "a.example.", addr: "192.0.2.1"},
			mutate: func(w *Watch) { w.Duration, w.ExpectChange = 200*time.Millisecond, false },
			check: func(t *testing.T, out map[string]any) {
				assert.Equal(t, false, out["changed"])
				assert.Equal(t, -1.0, out["switch_ms"])
			},
		},
		{
			name: "a change before any failover trigger is not the failover's", zone: &zone{target: "a.example.", addr: "192.0.2.1", moveAfter: 3, moveTo: "b.example.", moveAddr: "192.0.2.2"},
			mutate: func(w *Watch) { w.Duration = 300 * time.Millisecond }, failure: true, errWant: "changed only before the failover was triggered (1 early changes)",
			check: func(t *testing.T, out map[string]any) {
				assert.Equal(t, false, out["changed"])
				assert.Equal(t, -1.0, out["switch_ms"])
				assert.Empty(t, out["changes"])
				require.Len(t, out["early_changes"], 1)
				assert.Equal(t, "b.example. [192.0.2.2]", out["early_changes"].([]any)[0].(map[string]any)["to"])
			},
		},
		{
			name: "count_before_trigger counts a change without a trigger, with no switch_ms", zone: &zone{target: "a.example.", addr: "192.0.2.1", moveAfter: 3, moveTo: "b.example.", moveAddr: "192.0.2.2"},
			mutate: func(w *Watch) { w.CountBeforeTrigger = true },
			check: func(t *testing.T, out map[string]any) {
				assert.Equal(t, true, out["changed"])
				assert.Equal(t, -1.0, out["switch_ms"])
			},
		},
		{
			name: "a resolver that answers SERVFAIL never answered", zone: &zone{rcode: mdns.RcodeServerFailure},
			mutate: func(w *Watch) { w.Duration = 200 * time.Millisecond }, errWant: "never answered",
		},
		{
			name: "an unknown name is NXDOMAIN, an answer that does not change", zone: &zone{target: "a.example.", addr: "192.0.2.1"},
			mutate: func(w *Watch) { w.Name, w.Duration = "other.example.org", 200*time.Millisecond }, failure: true, errWant: "did not change in 200ms: still NXDOMAIN",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWatch(startZone(t, tc.zone))
			if tc.mutate != nil {
				tc.mutate(w)
			}
			env := steps.NewEnv("drill", "dns", t.TempDir(), steps.Hooks{})
			err := runWatch(t, w, env)
			if tc.errWant == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.errWant)
				assert.Equal(t, tc.failure, steps.IsFailure(err))
			}
			if tc.check != nil {
				tc.check(t, env.Outputs())
			}
		})
	}
}

// TestWatchCountsErrors: answers lost in the middle (the resolver
// restarting) are errors, not changes.
func TestWatchCountsErrors(t *testing.T) {
	z := &zone{target: "a.example.", addr: "192.0.2.1", failFrom: 5, failTo: 10, moveAfter: 15, moveTo: "b.example.", moveAddr: "192.0.2.2"}
	w := newWatch(startZone(t, z))
	w.Settle, w.CountBeforeTrigger = 0, true
	env := steps.NewEnv("drill", "dns", t.TempDir(), steps.Hooks{})
	require.NoError(t, runWatch(t, w, env))
	out := env.Outputs()
	assert.Equal(t, 5, out["errors"])
	assert.Len(t, out["changes"], 1, "the refused answers are not changes")
	assert.Equal(t, 15, out["polls"])
}

func TestWatchValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(w *Watch)
		want   string
	}{
		{"no name", func(w *Watch) { w.Name = "" }, "name: \"\" is not a DNS name"},
		{"an address", func(w *Watch) { w.Name = "192.0.2.1" }, "is not a DNS name"},
		{"bad resolver", func(w *Watch) { w.Resolver = "192.0.2.53" }, "resolver: expected ip:port"},
		{"bad type", func(w *Watch) { w.Type = "MX" }, "type: must be A or CNAME"},
		{"tiny interval", func(w *Watch) { w.Interval = time.Millisecond }, "interval: at least 10ms"},
		{"no duration", func(w *Watch) { w.Duration = 0 }, "duration: must be positive"},
		{"negative stop_after", func(w *Watch) { w.StopAfter = -1 }, "stop_after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWatch("127.0.0.1:53")
			tc.mutate(w)
			err := w.Validate()
			require.Error(t, err)
			assert.True(t, strings.Contains(err.Error(), tc.want), "%v", err)
		})
	}
	require.NoError(t, newWatch("127.0.0.1:53").Validate())
}

// TestWatchCountsOnlyChangesAfterTheTrigger: a change before the failover
// (the alias flapping while the drill warms up) is reported apart and
// does not end the watch; the change after the trigger is the switch.
func TestWatchCountsOnlyChangesAfterTheTrigger(t *testing.T) {
	z := &zone{target: "a.example.", addr: "192.0.2.1", moveAfter: 3, moveTo: "b.example.", moveAddr: "192.0.2.2"}
	server := startZone(t, z)
	tl := &steps.Timeline{}
	env := steps.NewEnv("drill", "dns", t.TempDir(), steps.Hooks{Timeline: tl})
	trig := steps.NewEnv("drill", "failover", t.TempDir(), steps.Hooks{Timeline: tl})
	w := newWatch(server)
	done := make(chan error, 1)
	go func() { done <- runWatch(t, w, env) }()
	// After the early change, trigger, then move the alias again.
	require.Eventually(t, func() bool { return z.queries.Load() > 6 }, 10*time.Second, 5*time.Millisecond)
	trigAt := time.Now()
	trig.Note(failoverTrigger, "failover triggered", trigAt)
	z.mu.Lock()
	z.moveAfter, z.moveTo, z.moveAddr = z.queries.Load()+3, "c.example.", "192.0.2.3"
	z.mu.Unlock()
	require.NoError(t, <-done)
	out := env.Outputs()
	require.Len(t, out["early_changes"], 1)
	assert.Equal(t, "b.example. [192.0.2.2]", out["early_changes"].([]any)[0].(map[string]any)["to"])
	require.Len(t, out["changes"], 1, "stop_after 1 counted only the change after the trigger")
	assert.Equal(t, "c.example. [192.0.2.3]", out["changes"].([]any)[0].(map[string]any)["to"])
	assert.Greater(t, out["switch_ms"].(float64), 0.0)
	m, ok := tl.Latest("dns.switch", time.Now())
	require.True(t, ok)
	assert.False(t, m.At.Before(trigAt), "the switch noted is the one after the trigger")
}
