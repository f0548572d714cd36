package db

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// floodStart is the header's start_unix_us.
var floodStart = time.UnixMicro(1714557600000000)

// acksUntil is a one-writer history acknowledging a write every 100 ms
// from 0 to end seconds, then failing until failEnd seconds.
func acksUntil(end, failEnd float64) string {
	var b strings.Builder
	v := int64(1)
	n := int64(end*10 + 0.5)
	for i := int64(0); i <= n; i++ {
		us := i * 100000
		b.WriteString(string(appendOp(nil, us, 0, opInvoke, v, 0, "")))
		b.WriteString(string(appendOp(nil, us+50, 0, opOK, v, v, "")))
		v++
	}
	for i := n + 1; i <= int64(failEnd*10+0.5); i++ {
		us := i * 100000
		b.WriteString(string(appendOp(nil, us, 0, opInvoke, v, 0, "")))
		b.WriteString(string(appendOp(nil, us+50, 0, opFail, v, 0, "connect: connection refused")))
		v++
	}
	return b.String()
}

func envWith(t *testing.T, moments ...steps.Moment) *steps.Env {
	tl := &steps.Timeline{}
	for _, m := range moments {
		tl.Note(m)
	}
	return steps.NewEnv("drill", "verify", t.TempDir(), steps.Hooks{Timeline: tl})
}

func at(s float64) time.Time { return floodStart.Add(time.Duration(s * float64(time.Second))) }

// TestFaultMustMeetTheLoad: the verdict needs a failover inside the
// flood's history, with acknowledged writes on both sides.
func TestFaultMustMeetTheLoad(t *testing.T) {
	trigger := func(s float64) steps.Moment {
		return steps.Moment{Kind: MomentTrigger, Label: "failover triggered", At: at(s)}
	}
	cases := []struct {
		name    string
		body    string
		pinned  bool
		moments []steps.Moment
		inLoad  bool
		found   bool
		why     string
	}{
		{"the failover in the middle of the flood", acksUntil(10, 10), false, []steps.Moment{trigger(5)}, true, true, ""},
		{"the flood ended before the trigger (the issue's 3 s flood, 9 s warm-up)", acksUntil(3, 3), false, []steps.Moment{trigger(9.10005)}, false, true,
			"the failover happened outside the load (flood ended 6.1 s before the trigger)"},
		{"the flood started after the trigger", acksUntil(10, 10), false, []steps.Moment{trigger(-2.5)}, false, true,
			"the failover happened outside the load (flood started 2.5 s after the trigger)"},
		{"no acknowledged write after the failover, through the endpoint", acksUntil(5, 10), false, []steps.Moment{trigger(6)}, false, true,
			"the failover happened outside the load (no write was acknowledged after the trigger)"},
		{"a pinned flood keeps writing at the old primary after it", acksUntil(5, 10), true, []steps.Moment{trigger(6)}, true, true, ""},
		{"a lab kill inside the load counts", acksUntil(10, 10), false, []steps.Moment{trigger(-1), {Kind: MomentFault, Label: "db-a killed", At: at(4)}}, true, true, ""},
		{"no failover on the timeline", acksUntil(10, 10), false, nil, false, false, "no failover on the scenario's timeline"},
		{"moments of other kinds are no failover", acksUntil(10, 10), false, []steps.Moment{{Kind: MomentDNSSwitch, At: at(4)}}, false, false, "no failover"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := header
			if tc.pinned {
				hdr = strings.Replace(header, `"start_unix_us"`, `"pinned":true,"start_unix_us"`, 1)
			}
			h, err := loadHistory(strings.NewReader(hdr + tc.body))
			require.NoError(t, err)
			require.Equal(t, tc.pinned, h.header.Pinned)
			assert.Equal(t, tc.pinned, h.downtime(0).pinned, "the downtime knows the flood was pinned")
			f := (&Verify{}).locateFault(envWith(t, tc.moments...), h)
			assert.Equal(t, tc.inLoad, f.inLoad)
			if tc.why != "" && tc.found {
				assert.Contains(t, tc.why, f.reason, "the reason is the parenthetical of the message")
			}
			assert.Equal(t, tc.found, f.found)
			if tc.why == "" {
				assert.Empty(t, f.why)
			} else {
				assert.Contains(t, f.why, tc.why)
			}
		})
	}
}

// TestWritesResumedAfterTheFailover: resumed means acknowledged writes
// after the failover, not a closed gap somewhere in the history.
func TestWritesResumedAfterTheFailover(t *testing.T) {
	h := historyOf(t, acksUntil(5, 10))
	f := (&Verify{}).locateFault(envWith(t, steps.Moment{Kind: MomentTrigger, At: at(6)}), h)
	d := h.downtime(f.sinceUS())
	assert.False(t, d.resumed)
	assert.InDelta(t, 5000, d.ms(), 1, "from the last acknowledgement at 5 s to the last error at 10 s")

	h = historyOf(t, acksUntil(10, 10))
	f = (&Verify{}).locateFault(envWith(t, steps.Moment{Kind: MomentTrigger, At: at(5.02)}), h)
	assert.True(t, h.downtime(f.sinceUS()).resumed)
}

func TestHeadline(t *testing.T) {
	found := fault{found: true, inLoad: true}
	db1 := serverCheck{addrs: []string{"10.0.0.2:3306"}, id: Identity{Hostname: "db-a", ServerID: 1}, reachable: true}
	db2 := serverCheck{addrs: []string{"10.0.0.3:3306"}, id: Identity{Hostname: "db-b", ServerID: 2}, reachable: true}
	down := serverCheck{addrs: []string{"10.0.0.2:3306"}, err: "connection refused"}
	cases := []struct {
		name     string
		t        totals
		d        downtime
		dns      float64
		f        fault
		servers  []serverCheck
		writable []serverCheck
		want     string
	}{
		{"the issue's example", totals{acked: 6652}, downtime{startUS: 0, endUS: 2760000, resumed: true}, 3600, found, []serverCheck{db1, db2}, []serverCheck{db2},
			"0 of 6,652 acknowledged writes lost; writes stopped 2.76 s; DNS moved 3.6 s after the trigger; no split brain"},
		{"loss, no resume, split brain", totals{acked: 1234567, lost: 3}, downtime{endUS: 9000000}, -1, found, []serverCheck{db1, db2}, []serverCheck{db1, db2},
			"3 of 1,234,567 acknowledged writes lost; writes stopped 9.00 s and never resumed; DNS move not measured; SPLIT BRAIN: db-a (server_id 1) at 10.0.0.2:3306 and db-b (server_id 2) at 10.0.0.3:3306 take writes"},
		{"a pinned flood cannot resume", totals{acked: 500}, downtime{endUS: 4000000, pinned: true}, 2100, found, []serverCheck{db1, db2}, []serverCheck{db2},
			"0 of 500 acknowledged writes lost; writes stopped 4.00 s and never resumed on the address the flood was pinned to (expected: the old primary takes no writes after a failover); DNS moved 2.1 s"},
		{"a pinned flood that resumed says nothing more", totals{acked: 500}, downtime{endUS: 4000000, resumed: true, pinned: true}, 2100, found, []serverCheck{db1, db2}, []serverCheck{db2},
			"writes stopped 4.00 s; DNS moved"},
		{"the killed writer is unreachable", totals{acked: 10}, downtime{endUS: 1000, resumed: true}, 10, found, []serverCheck{down, db2}, []serverCheck{db2},
			"no split brain (unreachable, not checked: 10.0.0.2:3306)"},
		{"outside the load", totals{acked: 10}, downtime{resumed: false}, -1, fault{found: true, why: "the failover happened outside the load (flood ended 6.1 s before the trigger)"}, nil, nil,
			"the failover happened outside the load (flood ended 6.1 s before the trigger); 0 of 10 acknowledged writes lost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Contains(t, headlineText(tc.t, tc.d, tc.dns, tc.f, tc.servers, tc.writable), tc.want)
		})
	}
}
