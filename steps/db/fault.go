package db

import (
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
)

// fault is where the scenario's failover lies against a flood's history:
// a verdict about a failover is only as good as a history that contains it
// (Jepsen: the checker sees only what the history holds).
type fault struct {
	found    bool          // a failover moment is on the timeline
	inLoad   bool          // one falls inside the flood, acknowledged writes on both sides
	moment   *steps.Moment // that moment, or the one nearest the flood
	trigger  *steps.Moment // the trigger of the failover it belongs to
	complete *steps.Moment // db.failover's completion, with the writers before and after
	triggerX int64         // the trigger in µs since the flood started
	why      string        // why the fault did not meet the load
	reason   string        // the same, the parenthetical only
}

// sinceUS is the instant after which the write downtime is looked for.
func (f fault) sinceUS() int64 {
	if !f.found {
		return math.MinInt64
	}
	return f.triggerX
}

func (f fault) label() string {
	if f.moment == nil {
		return ""
	}
	return f.moment.Label
}

var failoverKinds = []string{MomentTrigger, MomentFault, MomentComplete}

// locateFault finds the failover moments of the timeline and checks that
// one falls inside the history: acknowledged writes before it and after
// it. A pinned flood writes to the old primary only, so it cannot be
// acknowledged after the failover by design; for it, writes still being
// attempted after the moment show the fault met the load.
func (v *Verify) locateFault(env *steps.Env, h *history) fault {
	var ms []steps.Moment
	for _, m := range env.Timeline().Moments() {
		if slices.Contains(failoverKinds, m.Kind) {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		why := "no failover on the scenario's timeline: the history holds no fault, so it proves nothing about one (set require_failover: false to judge a flood alone)"
		return fault{why: why, reason: "no failover on the scenario's timeline"}
	}
	x := func(m steps.Moment) int64 { return m.At.UnixMicro() - h.header.StartUnixUS }
	f := fault{found: true}
	for i := range ms {
		before, after, active := h.acksAround(x(ms[i]))
		if before && (after || (h.header.Pinned && active)) {
			f.inLoad, f.moment = true, &ms[i]
			break
		}
	}
	if f.moment == nil {
		// Explain with the trigger nearest the flood's history.
		best := math.Inf(1)
		for i := range ms {
			d := 0.0
			switch xi := x(ms[i]); {
			case xi > h.lastT:
				d = float64(xi - h.lastT)
			case xi < h.firstT:
				d = float64(h.firstT - xi)
			}
			if ms[i].Kind == MomentTrigger {
				d -= 0.5 // prefer the trigger among equals
			}
			if d < best {
				best, f.moment = d, &ms[i]
			}
		}
	}
	// The failover the moment belongs to: its trigger (the latest at or
	// before it) and completion (the first at or after the trigger).
	for i := range ms {
		if ms[i].Kind == MomentTrigger && !ms[i].At.After(f.moment.At) {
			f.trigger = &ms[i]
		}
	}
	if f.trigger == nil {
		f.trigger = f.moment
	}
	for i := range ms {
		if ms[i].Kind == MomentComplete && !ms[i].At.Before(f.trigger.At) {
			f.complete = &ms[i]
			break
		}
	}
	f.triggerX = x(*f.trigger)
	if !f.inLoad {
		f.reason = outsideWhy(h, x(*f.moment), momentName(*f.moment))
		f.why = "the failover happened outside the load (" + f.reason + ")"
	}
	return f
}

func momentName(m steps.Moment) string {
	switch m.Kind {
	case MomentTrigger:
		return "the trigger"
	case MomentComplete:
		return "the new writer served"
	}
	return strings.TrimSuffix(m.Label, ".")
}

// outsideWhy says where the moment lies against the flood's history.
func outsideWhy(h *history, x int64, name string) string {
	before, after, _ := h.acksAround(x)
	switch {
	case len(h.acks) == 0:
		return "the flood had no acknowledged write at all"
	case x > h.lastT:
		return fmt.Sprintf("flood ended %.1f s before %s", float64(x-h.lastT)/1e6, name)
	case x < h.firstT:
		return fmt.Sprintf("flood started %.1f s after %s", float64(h.firstT-x)/1e6, name)
	case !before:
		return "no write was acknowledged before " + name
	case !after:
		return "no write was acknowledged after " + name
	}
	return "it is not inside the history"
}

// serverCheck is one database server known from the op log or the
// failover, as db.verify found it afterwards.
type serverCheck struct {
	addrs     []string
	id        Identity
	reachable bool
	err       string
	role      string // "new writer", "old writer", or ""
}

func (s serverCheck) name() string {
	if s.reachable {
		return s.id.String()
	}
	return strings.Join(s.addrs, ", ")
}

func (s serverCheck) state() string {
	switch {
	case !s.reachable:
		return "unreachable: " + s.err
	case s.id.ReadOnly:
		return "read-only (" + strings.Join(s.id.ReadOnlyBy, ", ") + ")"
	}
	return "writable"
}

// checkServers asks every server the flood connected to, and the writers
// before and after the failover, whether it takes writes.
func (v *Verify) checkServers(ctx context.Context, env *steps.Env, h *history, f fault, verifiedAddr string, verified Identity) []serverCheck {
	var before, after map[string]any
	if f.complete != nil {
		before, _ = f.complete.Data["writer_before"].(map[string]any)
		after, _ = f.complete.Data["writer_after"].(map[string]any)
	}
	var addrs []string
	add := func(a string) {
		if _, _, err := net.SplitHostPort(a); err == nil && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	for _, a := range h.servers {
		add(a)
	}
	for _, w := range []map[string]any{before, after} {
		if a, ok := w["address"].(string); ok {
			add(a)
		}
	}
	add(verifiedAddr)
	roleOf := func(id Identity) string {
		for _, c := range []struct {
			w    map[string]any
			role string
		}{{after, "new writer"}, {before, "old writer"}} {
			if sid, ok := toInt64(c.w["server_id"]); ok && sid == id.ServerID && c.w["hostname"] == id.Hostname {
				return c.role
			}
		}
		return ""
	}
	var out []serverCheck
	for _, a := range addrs {
		c := v.Conn.at(a)
		var id Identity
		var err error
		if a == verifiedAddr {
			id = verified
		} else {
			id, err = probeIdentity(ctx, c)
		}
		if err != nil {
			role := ""
			if w, ok := before["address"].(string); ok && w == a {
				role = "old writer"
			}
			out = append(out, serverCheck{addrs: []string{a}, err: shortErr(c.explain(err)), role: role})
			env.Logf("server %s: not reachable to check for writes: %v", a, shortErr(c.explain(err)))
			continue
		}
		merged := false
		for i := range out {
			if out[i].reachable && out[i].id.ServerID == id.ServerID && out[i].id.Hostname == id.Hostname {
				out[i].addrs = append(out[i].addrs, a)
				merged = true
			}
		}
		if !merged {
			out = append(out, serverCheck{addrs: []string{a}, id: id, reachable: true, role: roleOf(id)})
		}
	}
	return out
}

// probeIdentity connects to one server and asks who it is.
func probeIdentity(ctx context.Context, c Conn) (Identity, error) {
	db, err := c.open()
	if err != nil {
		return Identity{}, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout+c.ReadTimeout)
	defer cancel()
	return identity(ctx, db)
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// splitBrain returns the servers that take writes.
func splitBrain(servers []serverCheck) []serverCheck {
	var w []serverCheck
	for _, s := range servers {
		if s.reachable && !s.id.ReadOnly {
			w = append(w, s)
		}
	}
	return w
}

func joinServers(ss []serverCheck) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.name() + " at " + strings.Join(s.addrs, ", ")
	}
	return strings.Join(names, " and ")
}

func serversEvidence(servers []serverCheck) steps.Evidence {
	rows := make([][]string, 0, len(servers))
	for _, s := range servers {
		host, sid := "?", "?"
		if s.reachable {
			host, sid = s.id.Hostname, strconv.FormatInt(s.id.ServerID, 10)
		}
		rows = append(rows, []string{host, sid, strings.Join(s.addrs, ", "), s.role, s.state()})
	}
	return steps.TableEvidence("Servers after the failover (split brain check)", []string{"hostname", "server_id", "addresses", "role", "takes writes?"}, rows)
}

// dnsSwitch is the first DNS change after the failover's trigger, in ms;
// -1 when none was noted.
func dnsSwitch(env *steps.Env, f fault) float64 {
	if f.trigger == nil {
		return -1
	}
	for _, m := range env.Timeline().Moments() {
		if m.Kind == MomentDNSSwitch && !m.At.Before(f.trigger.At) {
			return float64(m.At.Sub(f.trigger.At).Microseconds()) / 1000
		}
	}
	return -1
}

// headlineText is the drill's verdict in words: "0 of 6,652 acknowledged
// writes lost; writes stopped 2.76 s; DNS moved 3.6 s after the trigger;
// no split brain".
func headlineText(t totals, d downtime, dnsMS float64, f fault, servers, writable []serverCheck) string {
	var parts []string
	if f.found && !f.inLoad {
		parts = append(parts, f.why)
	} else if !f.found {
		parts = append(parts, "no failover in the history")
	}
	parts = append(parts, fmt.Sprintf("%s of %s acknowledged writes lost", steps.Thousands(t.lost), steps.Thousands(t.acked)))
	stopped := fmt.Sprintf("writes stopped %.2f s", d.ms()/1000)
	if !d.resumed {
		stopped += " and never resumed" + d.unresumedNote()
	}
	parts = append(parts, stopped)
	switch {
	case dnsMS >= 0:
		parts = append(parts, fmt.Sprintf("DNS moved %.1f s after the trigger", dnsMS/1000))
	case f.found:
		parts = append(parts, "DNS move not measured")
	}
	switch {
	case !f.found:
		parts = append(parts, "split brain not checked")
	case len(writable) > 1:
		parts = append(parts, "SPLIT BRAIN: "+joinServers(writable)+" take writes")
	default:
		sb := "no split brain"
		var gone []string
		for _, s := range servers {
			if !s.reachable {
				gone = append(gone, strings.Join(s.addrs, ", "))
			}
		}
		if len(gone) > 0 {
			sb += " (unreachable, not checked: " + strings.Join(gone, "; ") + ")"
		}
		parts = append(parts, sb)
	}
	return strings.Join(parts, "; ")
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), true
	case uint64:
		return int64(n), true
	}
	return 0, false
}
