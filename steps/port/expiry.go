package port

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// Expiry is port.expiry: watch a leased port around the lease end and
// check that it closes on time, neither early nor late.
type Expiry struct {
	Address   string        `yaml:"address" required:"true" doc:"host:port the lease opened"`
	Expires   string        `yaml:"expires" required:"true" doc:"the lease end, RFC 3339 (port.open's expires output)"`
	Host      string        `yaml:"host" doc:"where to probe from: local, ssh://[user@]name or lab:NAME, the address the lease is for"`
	Source    string        `yaml:"source" doc:"local IP address to probe from (local only)"`
	Tolerance time.Duration `yaml:"tolerance" doc:"how far from the lease end the port may close"`
	Interval  time.Duration `yaml:"interval" doc:"pause between probes"`
	Hold      time.Duration `yaml:"hold" doc:"how long the port must stay closed after the first closed probe: one that opens again meanwhile is a fault"`
	Timeout   time.Duration `yaml:"timeout" doc:"connect timeout of one probe (a dropped port takes this long to answer)"`
}

// Validate checks the parameters; it runs at load time.
func (e *Expiry) Validate() error {
	if _, port, err := net.SplitHostPort(e.Address); err != nil || port == "" {
		return fmt.Errorf("address: expected host:port, got %q", e.Address)
	}
	if _, err := time.Parse(time.RFC3339Nano, e.Expires); err != nil {
		return fmt.Errorf("expires: expected an RFC 3339 instant, got %q", e.Expires)
	}
	if err := hostexec.Validate(e.Host); err != nil {
		return err
	}
	if e.Source != "" {
		if _, err := netip.ParseAddr(e.Source); err != nil {
			return fmt.Errorf("source: %q is not an IP address", e.Source)
		}
		if !hostexec.IsLocal(e.Host) {
			return fmt.Errorf("source: only when probing from this machine (host: local)")
		}
	}
	if e.Hold < 0 {
		return fmt.Errorf("hold: must not be negative, got %s", e.Hold)
	}
	for name, d := range map[string]time.Duration{"tolerance": e.Tolerance, "interval": e.Interval, "timeout": e.Timeout} {
		if d <= 0 {
			return fmt.Errorf("%s: must be positive, got %s", name, d)
		}
	}
	if e.Timeout < time.Second && !hostexec.IsLocal(e.Host) {
		return fmt.Errorf("timeout: at least 1s from a lab host (nc -w counts whole seconds), got %s", e.Timeout)
	}
	return nil
}

type sample struct {
	at   time.Time // when the probe started
	open bool
}

// Run probes until the port closes.
func (e *Expiry) Run(ctx context.Context, env *steps.Env) error {
	end, err := time.Parse(time.RFC3339Nano, e.Expires)
	if err != nil {
		return fmt.Errorf("expires: %w", err)
	}
	var samples []sample
	var lastOpen, firstClosed time.Time
	giveUp := end.Add(e.Tolerance).Add(2 * e.Timeout)
	for {
		start := time.Now()
		open, err := e.probe(ctx)
		if err != nil {
			return err
		}
		samples = append(samples, sample{start, open})
		if open {
			lastOpen = start
		} else {
			firstClosed = start
			break
		}
		if time.Now().After(giveUp) {
			break
		}
		wait := e.Interval
		// Do not sleep across the end: probe right after it.
		if until := time.Until(end); until > 0 && until < wait {
			wait = until + 10*time.Millisecond
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	// A port that closed must stay closed: something that re-adds the
	// rule (a config manager, a second opener) makes it flap, and a probe
	// that happened to fall in a gap would pass it.
	var reopened time.Time
	if !firstClosed.IsZero() {
		holdEnd := firstClosed.Add(e.Hold)
		for time.Now().Before(holdEnd) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(min(e.Interval, time.Until(holdEnd))):
			}
			start := time.Now()
			open, err := e.probe(ctx)
			if err != nil {
				return err
			}
			samples = append(samples, sample{start, open})
			if open {
				reopened = start
				break
			}
		}
	}
	e.evidence(env, end, samples)
	env.SetOutput("probes", len(samples))
	env.SetOutput("reopened", !reopened.IsZero())
	if !reopened.IsZero() {
		env.SetOutput("closed", false)
		env.SetOutput("reopened_after_ms", int(reopened.Sub(end).Milliseconds()))
		return steps.Failf("%s is still open: it closed %s after the lease end, then was open again %s later (something re-opens it)",
			e.Address, firstClosed.Sub(end).Round(time.Millisecond), reopened.Sub(firstClosed).Round(time.Millisecond))
	}
	if !lastOpen.IsZero() {
		env.SetOutput("last_open_ms", int(lastOpen.Sub(end).Milliseconds()))
	}
	if firstClosed.IsZero() {
		env.SetOutput("closed", false)
		return steps.Failf("%s is still open %s after the lease end (%s)", e.Address, time.Since(end).Round(time.Millisecond), e.Expires)
	}
	after := firstClosed.Sub(end)
	env.SetOutput("closed", true)
	env.SetOutput("closed_after_ms", int(after.Milliseconds()))
	switch {
	case lastOpen.IsZero() && after < -e.Tolerance:
		return steps.Failf("%s was already closed %s before the lease end: the lease was cut short (or never opened)", e.Address, (-after).Round(time.Millisecond))
	case !lastOpen.IsZero() && after < -e.Tolerance:
		return steps.Failf("%s closed %s before the lease end: the lease was cut short", e.Address, (-after).Round(time.Millisecond))
	case after > e.Tolerance:
		return steps.Failf("%s closed %s after the lease end, more than the %s tolerance", e.Address, after.Round(time.Millisecond), e.Tolerance)
	}
	env.Logf("%s closed %s after the lease end", e.Address, after.Round(time.Millisecond))
	return nil
}

// probe connects once.
func (e *Expiry) probe(ctx context.Context) (bool, error) {
	if hostexec.IsLocal(e.Host) {
		d := net.Dialer{Timeout: e.Timeout}
		if e.Source != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(e.Source)}
		}
		c, err := d.DialContext(ctx, "tcp", e.Address)
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, nil
		}
		c.Close()
		return true, nil
	}
	host, port, _ := net.SplitHostPort(e.Address)
	secs := max(int(e.Timeout.Round(time.Second)/time.Second), 1)
	res, err := hostexec.Run(ctx, e.Host, []string{"nc", "-z", "-w", strconv.Itoa(secs), host, port}, nil)
	if err != nil {
		return false, fmt.Errorf("probe %s from %s: %w", e.Address, e.Host, err)
	}
	return res.ExitCode == 0, nil
}

func (e *Expiry) evidence(env *steps.Env, end time.Time, samples []sample) {
	pts := make([]float64, 0, 2*len(samples))
	for _, s := range samples {
		y := 0.0
		if s.open {
			y = 1
		}
		pts = append(pts, float64(s.at.Sub(end).Milliseconds()), y)
	}
	env.AddEvidence(steps.Evidence{
		Kind:   "series",
		Title:  "Port " + e.Address + " around the lease end (1 open, 0 closed)",
		Series: []steps.Series{{Name: "open", XUnit: "ms from the lease end", Points: pts}},
		Marks:  []steps.Mark{{X: 0, Label: "lease end"}, {X: float64(e.Tolerance.Milliseconds()), Label: "tolerance"}},
	})
}
