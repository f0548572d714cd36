package dns

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

// TestWatchLabEndpoint watches the lab's endpoint on its dnsmasq while the
// pair's CNAME moves to the standby (dnsmasq restarts to reread it), as
// the runbook watched the RDS endpoint.
func TestWatchLabEndpoint(t *testing.T) {
	l := labtest.Up(t, lab.PairEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := lab.OpenMariaDBPair(ctx, l.ID)
	require.NoError(t, err)

	w := newWatch(l.Vars()["rds_resolver"].(string))
	w.Name, w.Interval, w.Settle = lab.PairEndpoint, 50*time.Millisecond, 500*time.Millisecond
	require.NoError(t, w.Validate())
	dir := t.TempDir()
	tl := &steps.Timeline{}
	env := steps.NewEnv("drill", "dns", dir, steps.Hooks{Log: func(s string) { t.Log(s) }, Timeline: tl})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, env) }()

	// Let the watch see the first answer, then fail over the name.
	require.Eventually(t, func() bool { return env.Outputs()["ttl"] != nil }, time.Minute, 20*time.Millisecond)
	trig := steps.NewEnv("drill", "failover", dir, steps.Hooks{Timeline: tl})
	trigAt := time.Now()
	trig.Note(failoverTrigger, "failover triggered", trigAt)
	nodes := p.Nodes()
	require.NoError(t, p.PointEndpoint(ctx, nodes[1]))

	require.NoError(t, <-done)
	sinceTrigger := float64(time.Since(trigAt).Microseconds()) / 1000
	out := env.Outputs()
	assert.Equal(t, "db-a.lab-1a.compute.lab.", out["initial_cname"])
	assert.Equal(t, "db-b.lab-1b.compute.lab.", out["final_cname"])
	assert.Equal(t, 5, out["ttl"], "the endpoint's TTL, as RDS's")
	// Measured from the trigger to an answer seen before the watch ended.
	assert.Greater(t, out["switch_ms"].(float64), 0.0)
	assert.Less(t, out["switch_ms"].(float64), sinceTrigger)
	t.Logf("DNS switch %.1f ms after the trigger (resolution %.1f ms, %v polls, %v errors while dnsmasq restarted)",
		out["switch_ms"], out["switch_gap_ms"], out["polls"], out["errors"])
}
