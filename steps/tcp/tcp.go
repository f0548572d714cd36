// Package tcp provides tcp.probe: is a TCP port open or closed, seen from a
// given source address. Firewall drills use it before and after a change:
// closed before, open from the allowed source, still closed from others.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

func init() {
	steps.Register(steps.Spec{
		Name:    "tcp.probe",
		Summary: "Check that a TCP port is open or closed",
		Doc: "Connects to `address` (host:port) within `timeout`, optionally from a local `source` address. " +
			"`expect: open` (default) fails when the connection is not accepted; `expect: closed` fails when it is; " +
			"`expect: any` only reports. The `state` output tells a refused connection (RST: nothing listens or a REJECT rule) " +
			"from a timeout (a DROP rule or a lost route).",
		New: func() steps.Step { return &Probe{Expect: "open", Timeout: 3 * time.Second} },
		Outputs: []steps.Output{
			{Name: "open", Type: "bool", Doc: "the connection was accepted"},
			{Name: "state", Type: "string", Doc: "open, refused, timeout or unreachable"},
			{Name: "latency_ms", Type: "float", Doc: "time to connect or to fail"},
			{Name: "error", Type: "string", Doc: "why the connection failed"},
		},
		Figures: probeFigures,
		Examples: []steps.Example{
			{Title: "SSH is closed by default", YAML: "- uses: tcp.probe\n  with: { address: \"gate:22\", expect: closed, timeout: 2s }"},
			{Title: "Open from the authenticated source", YAML: "- uses: tcp.probe\n  with: { address: \"10.0.0.5:22\", source: 10.0.0.7 }"},
			{Title: "The private endpoint, through the bastion", YAML: "- uses: tcp.probe\n  with: { address: \"testrds.internal:3306\", via: \"ssh://bastion\" }"},
			{Title: "Still closed from another lab host", YAML: "- uses: tcp.probe\n  with: { address: \"${{ vars.gate }}:22\", host: lab:client2, expect: closed }"},
		},
	})
}

// Probe checks a TCP port.
type Probe struct {
	Address string        `yaml:"address" doc:"host:port to connect to" required:"true"`
	Expect  string        `yaml:"expect" doc:"open (default), closed or any"`
	Timeout time.Duration `yaml:"timeout" doc:"connect timeout (default 3s)"`
	Source  string        `yaml:"source" doc:"local IP address to connect from"`
	Host    string        `yaml:"host" doc:"where to probe from: local (default), ssh://[user@]name or lab:NAME (netcat there)"`
	Via     string        `yaml:"via" doc:"dial through this SSH host (ssh://bastion, direct-tcpip); the address's name is resolved there"`
}

// Validate checks the parameters.
func (p *Probe) Validate() error {
	if _, port, err := net.SplitHostPort(p.Address); err != nil || port == "" {
		return fmt.Errorf("address: expected host:port, got %q", p.Address)
	}
	switch p.Expect {
	case "open", "closed", "any":
	default:
		return fmt.Errorf("expect: must be open, closed or any, got %q", p.Expect)
	}
	if p.Timeout <= 0 {
		return fmt.Errorf("timeout: must be positive")
	}
	if p.Source != "" && net.ParseIP(p.Source) == nil {
		return fmt.Errorf("source: %q is not an IP address", p.Source)
	}
	if p.Via != "" && (!hostexec.IsLocal(p.Host) || p.Source != "") {
		return errors.New("via: dials through an SSH host from here; it does not combine with host or source")
	}
	if err := host.ValidateVia(p.Via); err != nil {
		return err
	}
	return hostexec.Validate(p.Host)
}

// Run probes the port.
func (p *Probe) Run(ctx context.Context, env *steps.Env) error {
	if !hostexec.IsLocal(p.Host) {
		return p.verdict(env, p.remote(ctx, env))
	}
	if p.Via != "" {
		return p.via(ctx, env)
	}
	d := net.Dialer{Timeout: p.Timeout}
	if p.Source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(p.Source)}
	}
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", p.Address)
	env.SetOutput("latency_ms", float64(time.Since(start).Microseconds())/1000)
	state := "open"
	if err == nil {
		conn.Close()
		env.SetOutput("error", "")
	} else {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		state = classify(err)
		env.SetOutput("error", err.Error())
		if state == "" {
			return fmt.Errorf("probe %s: %w", p.Address, err)
		}
	}
	return p.verdict(env, state)
}

// via connects through the SSH host: the host's sshd resolves the name
// and connects, and its refusal says why.
func (p *Probe) via(ctx context.Context, env *steps.Env) error {
	h, err := host.Open(ctx, p.Via)
	if err != nil {
		return fmt.Errorf("probe %s via %s: %w", p.Address, p.Via, err)
	}
	dctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	start := time.Now()
	conn, err := h.Dial(dctx, "tcp", p.Address)
	env.SetOutput("latency_ms", float64(time.Since(start).Microseconds())/1000)
	if err == nil {
		conn.Close()
		env.SetOutput("error", "")
		return p.verdict(env, "open")
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	env.SetOutput("error", err.Error())
	msg := strings.ToLower(err.Error())
	var oc *ssh.OpenChannelError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return p.verdict(env, "timeout")
	case !errors.As(err, &oc):
		return fmt.Errorf("probe %s via %s: %w", p.Address, p.Via, err)
	case strings.Contains(msg, "refused"):
		return p.verdict(env, "refused")
	case strings.Contains(msg, "unreachable"), strings.Contains(msg, "no route"):
		return p.verdict(env, "unreachable")
	case strings.Contains(msg, "timed out"):
		return p.verdict(env, "timeout")
	}
	// Refused by sshd itself (forwarding off, a name it cannot resolve):
	// the port was never tried.
	return fmt.Errorf("probe %s via %s: %w", p.Address, p.Via, err)
}

// remote probes from a lab host with netcat (netcat-openbsd), reading its
// verbose message to tell a refusal from a timeout.
func (p *Probe) remote(ctx context.Context, env *steps.Env) string {
	host, port, _ := net.SplitHostPort(p.Address)
	secs := int(p.Timeout.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	argv := []string{"nc", "-z", "-v", "-w", fmt.Sprint(secs)}
	if p.Source != "" {
		argv = append(argv, "-s", p.Source)
	}
	argv = append(argv, host, port)
	start := time.Now()
	res, err := hostexec.Run(ctx, p.Host, argv, nil)
	env.SetOutput("latency_ms", float64(time.Since(start).Microseconds())/1000)
	if err != nil {
		env.SetOutput("error", err.Error())
		return "error"
	}
	msg := strings.TrimSpace(res.Stderr + res.Stdout)
	switch {
	case res.ExitCode == 0:
		env.SetOutput("error", "")
		return "open"
	case strings.Contains(msg, "refused"):
		env.SetOutput("error", msg)
		return "refused"
	case strings.Contains(msg, "unreachable"):
		env.SetOutput("error", msg)
		return "unreachable"
	default:
		env.SetOutput("error", msg)
		return "timeout"
	}
}

func (p *Probe) verdict(env *steps.Env, state string) error {
	if state == "error" {
		out := env.Outputs()
		return fmt.Errorf("probe %s from %s: %v", p.Address, p.Host, out["error"])
	}
	env.SetOutput("open", state == "open")
	env.SetOutput("state", state)
	switch {
	case p.Expect == "open" && state != "open":
		return steps.Failf("%s is not open (%s)", p.Address, state)
	case p.Expect == "closed" && state == "open":
		return steps.Failf("%s is open, expected closed", p.Address)
	}
	return nil
}

// classify maps a dial error to a port state, or "" when the probe itself
// could not run (bad source address, unresolvable name).
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	}
	return ""
}
