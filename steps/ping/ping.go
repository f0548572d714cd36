// Package ping provides net.ping: ICMP echo from this machine, from a
// network namespace of it, or from a lab host, with per-packet evidence.
//
// On this machine the echo requests are sent by
// github.com/prometheus-community/pro-bing, in-process: privileged (a raw
// ICMP socket, CAP_NET_RAW) or unprivileged (an ICMP datagram socket, which
// Linux allows to the groups in net.ipv4.ping_group_range). From a lab host
// (host: lab:NAME) the host's own ping binary runs there through
// steps/hostexec, and its per-packet lines are parsed into the same record.
// Either way every echo request is recorded (sent at, reply or not, rtt,
// error) and the outputs are computed from that record afterwards.
//
// keepalive: true pings at interval for duration, the runbook's cron that
// keeps an IPsec tunnel alive, as a background step while the drill does
// other things: it keeps going through send errors (a route that vanished)
// and reports the loss and the longest outage. count is then ignored.
package ping

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

func init() {
	steps.Register(steps.Spec{
		Name:    "net.ping",
		Summary: "Ping an address (ICMP echo) and report loss, round-trip times and every packet",
		Doc: "Sends `count` echo requests `interval` apart to `address` and waits up to `timeout` for the last reply. " +
			"On this machine (default) pro-bing sends them in-process, `privileged: true` over a raw ICMP socket " +
			"(CAP_NET_RAW), otherwise over an unprivileged ICMP datagram socket (net.ipv4.ping_group_range must " +
			"include the group); `netns` sends them from a named network namespace (ip netns). `host: lab:NAME` runs " +
			"the lab host's ping binary instead and parses its output. `source` picks the source address. " +
			"`expect: reachable` (default) fails when no reply comes back at all, `unreachable` when any does, `any` " +
			"only reports; state the loss and latency SLO with step expectations, e.g. `outputs.loss_pct == 0`. " +
			"`keepalive: true` pings for `duration` instead of `count` and rides out send errors: run it with " +
			"`background: true` during other steps, as the runbook's ping cron keeps a tunnel alive, and read its " +
			"loss and longest outage after a `wait`. Evidence: the round-trip time of every echo request as a series " +
			"(lost ones on a second series, outages marked) and a summary table.",
		New: func() steps.Step {
			return &Ping{Count: 5, Interval: time.Second, Timeout: 2 * time.Second, Size: 56, Expect: "reachable"}
		},
		Outputs: []steps.Output{
			{Name: "address", Type: "string", Doc: "the address pinged"},
			{Name: "sent", Type: "int", Doc: "echo requests sent (or attempted: a send error counts)"},
			{Name: "received", Type: "int", Doc: "echo requests answered (duplicates not counted)"},
			{Name: "lost", Type: "int", Doc: "sent - received"},
			{Name: "loss_pct", Type: "float", Doc: "lost / sent in percent; 100 when nothing could be sent"},
			{Name: "duplicates", Type: "int", Doc: "duplicate replies"},
			{Name: "errors", Type: "int", Doc: "echo requests that could not be sent or got an ICMP error"},
			{Name: "rtt_min_ms", Type: "float", Doc: "minimum round-trip time"},
			{Name: "rtt_avg_ms", Type: "float", Doc: "mean round-trip time"},
			{Name: "rtt_max_ms", Type: "float", Doc: "maximum round-trip time"},
			{Name: "rtt_stddev_ms", Type: "float", Doc: "standard deviation of the round-trip time (ping's mdev)"},
			{Name: "first_reply_ms", Type: "float", Doc: "from the step's start to the first reply; -1 when none came"},
			{Name: "longest_outage_ms", Type: "float", Doc: "longest run of lost echo requests, from the first lost to the next answered"},
			{Name: "outages", Type: "int", Doc: "runs of lost echo requests"},
			{Name: "error", Type: "string", Doc: "the last send error or ICMP error seen"},
		},
		Figures: pingFigures,
		Examples: []steps.Example{
			{Title: "The VGW inside address answers, no loss", YAML: "- uses: net.ping\n  with: { address: 169.254.21.45, count: 5, host: lab:cgw }\n  expect:\n    - outputs.loss_pct == 0\n    - outputs.rtt_avg_ms < 50"},
			{Title: "Nothing answers before the tunnel is up", YAML: "- uses: net.ping\n  with: { address: 172.28.16.136, count: 2, expect: unreachable }"},
			{Title: "Keep the tunnel alive during the drill", YAML: "- id: keepalive\n  uses: net.ping\n  background: true\n  with: { address: 169.254.21.45, keepalive: true, duration: 60s, interval: 1s }\n  expect: [outputs.lost == 0]"},
		},
	})
}

// Ping sends ICMP echo requests.
type Ping struct {
	Address    string        `yaml:"address" doc:"IP address or host name to ping" required:"true"`
	Count      int           `yaml:"count" doc:"echo requests to send (ignored with keepalive)"`
	Interval   time.Duration `yaml:"interval" doc:"time between echo requests (at least 10ms)"`
	Timeout    time.Duration `yaml:"timeout" doc:"how long to wait for the reply to the last echo request"`
	Size       int           `yaml:"size" doc:"ICMP payload bytes (56 as ping sends; at least 24)"`
	Privileged bool          `yaml:"privileged" doc:"raw ICMP socket (needs CAP_NET_RAW) instead of an unprivileged ICMP datagram socket; this machine only"`
	Source     string        `yaml:"source" doc:"source IP address"`
	Host       string        `yaml:"host" doc:"where to ping from: local (default), ssh://[user@]name[?sudo=true] or lab:NAME (its ping binary)"`
	Netns      string        `yaml:"netns" doc:"ping from this named network namespace (ip netns) of this machine"`
	Keepalive  bool          `yaml:"keepalive" doc:"ping every interval for duration, through send errors (run it in the background)"`
	Duration   time.Duration `yaml:"duration" doc:"how long a keepalive pings; required with keepalive"`
	Expect     string        `yaml:"expect" doc:"reachable: fail when nothing answers; unreachable: fail when anything answers; any: only report"`
}

var (
	hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)
	nsName   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// Validate checks the parameters.
func (p *Ping) Validate() error {
	if _, err := netip.ParseAddr(p.Address); err != nil && !hostName.MatchString(p.Address) {
		return fmt.Errorf("address: %q is neither an IP address nor a host name", p.Address)
	}
	switch {
	case p.Keepalive && p.Duration <= 0:
		return errors.New("duration: required with keepalive: true, e.g. 60s")
	case !p.Keepalive && p.Duration != 0:
		return errors.New("duration: only with keepalive: true; without it, give count")
	case !p.Keepalive && (p.Count < 1 || p.Count > 100000):
		return fmt.Errorf("count: must be 1 to 100000, got %d", p.Count)
	case p.Interval < 10*time.Millisecond:
		return fmt.Errorf("interval: must be at least 10ms, got %s", p.Interval)
	case p.Timeout < time.Millisecond:
		return fmt.Errorf("timeout: must be positive, got %s", p.Timeout)
	case p.Size < 24 || p.Size > 65000:
		return fmt.Errorf("size: must be 24 to 65000 bytes, got %d", p.Size)
	case p.Keepalive && p.Duration/p.Interval > 1000000:
		return fmt.Errorf("duration: %s at interval %s is more than 1000000 echo requests", p.Duration, p.Interval)
	}
	if p.Source != "" {
		if _, err := netip.ParseAddr(p.Source); err != nil {
			return fmt.Errorf("source: %q is not an IP address", p.Source)
		}
	}
	switch p.Expect {
	case "reachable", "unreachable", "any":
	default:
		return fmt.Errorf("expect: must be reachable, unreachable or any, got %q", p.Expect)
	}
	if err := hostexec.Validate(p.Host); err != nil {
		return err
	}
	if p.Netns != "" {
		if !hostexec.IsLocal(p.Host) {
			return errors.New("netns: only for pings from this machine; a lab host is its own namespace")
		}
		if !nsName.MatchString(p.Netns) {
			return fmt.Errorf("netns: %q is not a namespace name", p.Netns)
		}
	}
	return nil
}

// probes is how many echo requests a run sends.
func (p *Ping) probes() int {
	if p.Keepalive {
		return max(1, int((p.Duration+p.Interval-1)/p.Interval))
	}
	return p.Count
}

// Run pings and judges the result.
func (p *Ping) Run(ctx context.Context, env *steps.Env) error {
	rec := newRecord()
	rec.onReply = func(received, sent int) { env.Progress(fmt.Sprintf("%d/%d replies", received, sent)) }
	where := "this machine"
	var err error
	var address string
	if hostexec.IsLocal(p.Host) {
		if p.Netns != "" {
			where = "netns " + p.Netns
		}
		address, err = p.local(ctx, rec)
	} else {
		where = p.Host
		var out string
		address, out, err = p.remote(ctx, rec)
		if out != "" {
			env.AddEvidence(steps.Evidence{Kind: "log", Title: "ping output on " + p.Host, Text: out})
		}
	}
	probes, dups, lastErr := rec.snapshot()
	s := summarize(probes, dups, lastErr, p.Interval)
	if address == "" {
		address = p.Address
	}
	publish(env, address, where, probes, s)
	if err != nil {
		return err
	}
	env.Logf("%s from %s: %d sent, %d received, %.4g%% loss, rtt avg %.3f ms, longest outage %.0f ms",
		address, where, s.Sent, s.Received, s.LossPct, ms(s.Avg), ms(s.LongestOutage))
	suffix := ""
	if s.LastErr != "" {
		suffix = " (" + s.LastErr + ")"
	}
	switch {
	case p.Expect == "reachable" && s.Received == 0:
		return steps.Failf("%s: no reply to %d echo request(s) from %s%s", address, s.Sent, where, suffix)
	case p.Expect == "unreachable" && s.Received > 0:
		return steps.Failf("%s answered %d of %d echo request(s) from %s, expected no reply", address, s.Received, s.Sent, where)
	}
	return nil
}

// errText shortens an error from the network stack for the record.
func errText(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "write ") {
		return msg[i+2:]
	}
	return msg
}
