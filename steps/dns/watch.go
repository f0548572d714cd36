// Package dns provides dns.watch, the runbook's
//
//	while true; do host ENDPOINT | grep alias; sleep 1; done
//
// as a background step: it polls a name's CNAME and A records through a
// chosen resolver (github.com/miekg/dns, so the resolver is asked directly
// and nothing is cached) and records every change of the answer with its
// instant. switch_ms is the time from the failover's trigger (the
// failover.trigger moment db.failover notes on the scenario's timeline) to
// the first answer naming the new target.
package dns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/opsdrill/opsdrill/steps"
)

// failoverTrigger is the moment db.failover notes when it triggers; the
// two families share the name, not code.
const failoverTrigger = "failover.trigger"

func init() {
	steps.Register(steps.Spec{
		Name:    "dns.watch",
		Summary: "Poll a name's CNAME/A records and record every change (the runbook's `host ENDPOINT | grep alias` loop)",
		Doc: "Asks `resolver` (default: the first nameserver of /etc/resolv.conf) for `name` every `interval` and records the answer's CNAME " +
			"chain and addresses. Every change after the failover's trigger (moment failover.trigger on the scenario's timeline) is an output " +
			"entry with its instant; the first one is marked on the timeline (moment dns.switch) and timed from the trigger (switch_ms). " +
			"Changes before any trigger are not the failover's: they are listed as early_changes and count for nothing. The watch ends `settle` after the " +
			"`stop_after`th change after the trigger, or after `duration`. Run it with `background: true` before db.failover and join it with `wait`. " +
			"With `expect_change` (default) the step fails when the name never changed.",
		New: func() steps.Step {
			return &Watch{Interval: 250 * time.Millisecond, Duration: 5 * time.Minute, StopAfter: 1, Settle: 2 * time.Second,
				ExpectChange: true, QueryTimeout: time.Second, Type: "A"}
		},
		Outputs: []steps.Output{
			{Name: "changed", Type: "bool", Doc: "the answer changed at least once after the failover trigger"},
			{Name: "changes", Type: "list", Doc: "every change after the failover trigger: at (RFC 3339), from, to, from_cname, to_cname, addresses, since_trigger_ms"},
			{Name: "early_changes", Type: "list", Doc: "changes seen before any failover trigger (not the failover's; they count for nothing)"},
			{Name: "initial", Type: "string", Doc: "the first answer, e.g. db-a.lab-1a.compute.lab. [10.213.5.10]"},
			{Name: "final", Type: "string", Doc: "the last answer"},
			{Name: "initial_cname", Type: "string", Doc: "the alias the name pointed to first (what `host` prints as \"is an alias for\")"},
			{Name: "final_cname", Type: "string", Doc: "the alias it pointed to last"},
			{Name: "switch_ms", Type: "float", Doc: "from the failover trigger to the first answer naming the new target; -1 without a failover trigger or change"},
			{Name: "switch_gap_ms", Type: "float", Doc: "between the last answer with the old target and the first with the new: the measurement's resolution"},
			{Name: "switched_at", Type: "string", Doc: "RFC 3339 instant of the first change"},
			{Name: "polls", Type: "int", Doc: "queries sent"},
			{Name: "errors", Type: "int", Doc: "queries without an answer (timeout, SERVFAIL, refused)"},
			{Name: "ttl", Type: "int", Doc: "TTL of the first answer's first record, seconds"},
		},
		Figures: watchFigures,
		Examples: []steps.Example{
			{Title: "Watch the endpoint's alias during a failover", YAML: "- id: dns\n  uses: dns.watch\n  background: true\n  with:\n    name: ${{ vars.endpoint }}\n    resolver: ${{ vars.resolver }}\n    interval: 250ms\n    duration: 10m\n  expect:\n    - outputs.switch_ms < 60000"},
		},
	})
}

// Watch is dns.watch.
type Watch struct {
	Name         string        `yaml:"name" doc:"name to watch, e.g. the RDS endpoint" required:"true"`
	Resolver     string        `yaml:"resolver" doc:"DNS server ip:port to ask (default: the first nameserver of /etc/resolv.conf)"`
	Type         string        `yaml:"type" doc:"record type asked: A (the CNAME chain comes with it) or CNAME"`
	Interval     time.Duration `yaml:"interval" doc:"time between queries (the runbook's loop: 1s)"`
	Duration     time.Duration `yaml:"duration" doc:"watch at most this long"`
	StopAfter    int           `yaml:"stop_after" doc:"stop settle after this many changes (0: watch the whole duration)"`
	Settle       time.Duration `yaml:"settle" doc:"keep watching this long after the last awaited change, to catch flapping"`
	ExpectChange bool          `yaml:"expect_change" doc:"fail when the answer never changed"`
	QueryTimeout time.Duration `yaml:"query_timeout" doc:"wait this long for each answer"`
	// A change before the failover was triggered is not the failover's.
	CountBeforeTrigger bool `yaml:"count_before_trigger" doc:"count changes seen before any failover trigger too (a watch without a failover); by default they are reported as early_changes and count for nothing"`
}

// Validate checks the parameters.
func (w *Watch) Validate() error {
	name := strings.TrimSuffix(w.Name, ".")
	if _, ok := mdns.IsDomainName(name); !ok || name == "" || net.ParseIP(name) != nil {
		return fmt.Errorf("name: %q is not a DNS name", w.Name)
	}
	if w.Resolver != "" {
		if _, _, err := net.SplitHostPort(w.Resolver); err != nil {
			return fmt.Errorf("resolver: expected ip:port, got %q", w.Resolver)
		}
	}
	switch {
	case w.Type != "A" && w.Type != "CNAME":
		return fmt.Errorf("type: must be A or CNAME, got %q", w.Type)
	case w.Interval < 10*time.Millisecond:
		return fmt.Errorf("interval: at least 10ms, got %s", w.Interval)
	case w.Duration <= 0:
		return fmt.Errorf("duration: must be positive, got %s", w.Duration)
	case w.StopAfter < 0:
		return fmt.Errorf("stop_after: must not be negative, got %d", w.StopAfter)
	case w.Settle < 0:
		return fmt.Errorf("settle: must not be negative, got %s", w.Settle)
	case w.QueryTimeout <= 0:
		return fmt.Errorf("query_timeout: must be positive, got %s", w.QueryTimeout)
	}
	return nil
}

// answer is what one query returned.
type answer struct {
	cnames []string
	addrs  []string
	ttl    uint32
	rcode  string // NXDOMAIN; empty when NOERROR
}

// target is the answer's identity: the chain's final alias and the
// addresses.
func (a answer) target() string {
	if a.rcode != "" {
		return a.rcode
	}
	var parts []string
	if len(a.cnames) > 0 {
		parts = append(parts, a.cnames[len(a.cnames)-1])
	}
	if len(a.addrs) > 0 {
		parts = append(parts, "["+strings.Join(a.addrs, " ")+"]")
	}
	if len(parts) == 0 {
		return "(no records)"
	}
	return strings.Join(parts, " ")
}

func (a answer) cname() string {
	if len(a.cnames) == 0 {
		return ""
	}
	return a.cnames[len(a.cnames)-1]
}

// hostLine renders an answer as `host` prints it.
func (a answer) hostLine(name string) string {
	if a.rcode != "" {
		return fmt.Sprintf("Host %s not found: %s", name, a.rcode)
	}
	var lines []string
	prev := mdns.Fqdn(name)
	for _, c := range a.cnames {
		lines = append(lines, fmt.Sprintf("%s is an alias for %s", prev, c))
		prev = c
	}
	for _, ip := range a.addrs {
		lines = append(lines, fmt.Sprintf("%s has address %s", prev, ip))
	}
	return strings.Join(lines, "; ")
}

// Run watches.
func (w *Watch) Run(ctx context.Context, env *steps.Env) error {
	server := w.Resolver
	if server == "" {
		cfg, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cfg.Servers) == 0 {
			return fmt.Errorf("resolver: none given and none in /etc/resolv.conf: %v", err)
		}
		server = net.JoinHostPort(cfg.Servers[0], cfg.Port)
	}
	abs, rel, err := env.ArtifactPath("dns.log")
	if err != nil {
		return err
	}
	logf, err := os.Create(abs)
	if err != nil {
		return err
	}
	defer logf.Close()
	out := bufio.NewWriter(logf)
	defer out.Flush()

	qtype := mdns.TypeA
	if w.Type == "CNAME" {
		qtype = mdns.TypeCNAME
	}
	client := &mdns.Client{Timeout: w.QueryTimeout}
	env.Logf("watching %s (%s) through %s every %s", w.Name, w.Type, server, w.Interval)

	var (
		first, last  *answer
		lastAt       time.Time // last answer with the current target
		polls, fails int
		changes      []any
		early        []any
		switchMS     = -1.0
		gapMS        = -1.0
		switchedAt   string
		stopAt       time.Time
		failing      bool
	)
	deadline := time.Now().Add(w.Duration)
	tick := time.NewTicker(w.Interval)
	defer tick.Stop()
	for {
		polls++
		a, at, err := w.query(ctx, client, server, qtype)
		stamp := at.UTC().Format(time.RFC3339Nano)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				break
			}
			fails++
			fmt.Fprintf(out, "%s  error: %v\n", stamp, err)
			if !failing {
				env.Logf("no answer from %s: %v", server, err)
			}
			failing = true
		case first == nil:
			first, last, lastAt = &a, &a, at
			env.SetOutput("ttl", int(a.ttl))
			fmt.Fprintf(out, "%s  %s\n", stamp, a.hostLine(w.Name))
			env.Logf("%s", a.hostLine(w.Name))
		default:
			failing = false
			if a.target() == last.target() {
				lastAt = at
				fmt.Fprintf(out, "%s  %s\n", stamp, a.hostLine(w.Name))
				break
			}
			change := map[string]any{"at": stamp, "from": last.target(), "to": a.target(),
				"from_cname": last.cname(), "to_cname": a.cname(), "addresses": steps.List(a.addrs), "since_trigger_ms": -1.0}
			trig, triggered := env.Timeline().Latest(failoverTrigger, at)
			if !triggered && !w.CountBeforeTrigger {
				fmt.Fprintf(out, "%s  %s  <- changed before the failover trigger (not counted)\n", stamp, a.hostLine(w.Name))
				early = append(early, change)
				env.Logf("%s  (before the failover trigger: not counted)", a.hostLine(w.Name))
				last, lastAt = &a, at
				break
			}
			fmt.Fprintf(out, "%s  %s  <- changed\n", stamp, a.hostLine(w.Name))
			if triggered {
				ms := float64(at.Sub(trig.At).Microseconds()) / 1000
				change["since_trigger_ms"] = ms
				if len(changes) == 0 {
					switchMS = ms
				}
			}
			if len(changes) == 0 {
				switchedAt = stamp
				gapMS = float64(at.Sub(lastAt).Microseconds()) / 1000
				env.Note("dns.switch", "DNS now "+shortTarget(a), at)
			}
			changes = append(changes, change)
			env.Logf("%s  (change %d)", a.hostLine(w.Name), len(changes))
			last, lastAt = &a, at
			if w.StopAfter > 0 && len(changes) >= w.StopAfter && stopAt.IsZero() {
				stopAt = at.Add(w.Settle)
			}
		}
		env.Progress(fmt.Sprintf("%d polls, %d changes, %d errors", polls, len(changes), fails))
		now := time.Now()
		if ctx.Err() != nil || now.After(deadline) || (!stopAt.IsZero() && !now.Before(stopAt)) {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}

	env.SetOutput("polls", polls)
	env.SetOutput("errors", fails)
	env.SetOutput("changed", len(changes) > 0)
	env.SetOutput("changes", changes)
	env.SetOutput("early_changes", early)
	env.SetOutput("switch_ms", switchMS)
	env.SetOutput("switch_gap_ms", gapMS)
	env.SetOutput("switched_at", switchedAt)
	if first != nil {
		env.SetOutput("initial", first.target())
		env.SetOutput("initial_cname", first.cname())
		env.SetOutput("final", last.target())
		env.SetOutput("final_cname", last.cname())
	}
	env.AddEvidence(steps.Evidence{Kind: "file", Title: "DNS answers over time (`host " + w.Name + "`)", Path: rel, MediaType: "text/plain"})
	for _, t := range []struct {
		title string
		list  []any
	}{{"Changes of " + w.Name, changes}, {"Changes of " + w.Name + " before the failover trigger (not counted)", early}} {
		if len(t.list) == 0 {
			continue
		}
		rows := make([][]string, 0, len(t.list))
		for _, c := range t.list {
			m := c.(map[string]any)
			rows = append(rows, []string{m["at"].(string), m["from"].(string), m["to"].(string), fmt.Sprintf("%.0f", m["since_trigger_ms"])})
		}
		env.AddEvidence(steps.TableEvidence(t.title, []string{"at", "from", "to", "ms since failover trigger"}, rows))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case first == nil:
		return fmt.Errorf("resolver: %s never answered for %s (%d queries)", server, w.Name, polls)
	case w.ExpectChange && len(changes) == 0 && len(early) > 0:
		return steps.Failf("%s changed only before the failover was triggered (%d early changes), never after it in %s: still %s", w.Name, len(early), w.Duration, last.target())
	case w.ExpectChange && len(changes) == 0:
		return steps.Failf("%s did not change in %s: still %s", w.Name, w.Duration, last.target())
	}
	if switchMS < 0 && len(changes) > 0 {
		env.Logf("no failover trigger on the timeline before the change: switch_ms is -1")
	}
	return nil
}

// query asks the resolver once, over TCP when the answer was truncated.
func (w *Watch) query(ctx context.Context, c *mdns.Client, server string, qtype uint16) (answer, time.Time, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(w.Name), qtype)
	m.RecursionDesired = true
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		tcp := *c
		tcp.Net = "tcp"
		r, _, err = tcp.ExchangeContext(ctx, m, server)
	}
	at := time.Now()
	if err != nil {
		return answer{}, at, err
	}
	switch r.Rcode {
	case mdns.RcodeSuccess:
	case mdns.RcodeNameError:
		return answer{rcode: "NXDOMAIN"}, at, nil
	default:
		return answer{}, at, fmt.Errorf("%s answered %s", server, mdns.RcodeToString[r.Rcode])
	}
	var a answer
	for i, rr := range r.Answer {
		if i == 0 {
			a.ttl = rr.Header().Ttl
		}
		switch rr := rr.(type) {
		case *mdns.CNAME:
			a.cnames = append(a.cnames, rr.Target)
		case *mdns.A:
			a.addrs = append(a.addrs, rr.A.String())
		}
	}
	slices.Sort(a.addrs)
	return a, at, nil
}

func shortTarget(a answer) string {
	if c := a.cname(); c != "" {
		return strings.TrimSuffix(c, ".")
	}
	return a.target()
}
