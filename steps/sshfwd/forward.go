// Package sshfwd provides ssh.forward, the runbook "Port Forwarding in AWS
// LightSail or EC2 machines via SSH" as a step: `ssh -R *:9090:home:80
// root@server` makes a home service reachable on the server's port 9090;
// `ssh -L` the other way round. The forward rides the run's SSH
// connection to the host (package host's ssh transport: ssh_config,
// known_hosts, keys and agent), so it needs no ssh process and no
// password.
//
// The step returns once the forward is up and an undo action tears it
// down when the scenario ends; with `duration` it holds the forward that
// long and tears it down itself (run it with `background: true` and check
// reachability from other hosts meanwhile, then again after a `wait`).
// It records a timeline of the tunnel's life: up (with the address the
// server really bound, which GatewayPorts decides), keepalive misses, and
// down with the reason.
package sshfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
)

func init() {
	steps.Register(steps.Spec{
		Name:    "ssh.forward",
		Summary: "Bring up an SSH port forward (-R remote with bind address, or -L local) through an ssh:// host; undo tears it down",
		Doc: "Opens (or reuses) the run's SSH connection to `host` (ssh://[user@]name[:port], through --ssh-config) and brings up " +
			"a forward. `mode: remote` (default, ssh -R): the server listens on `bind` (`*:9090` is every interface, as in the runbook; " +
			"`127.0.0.1:9090`, or `:0` for a port the server picks) and each connection to it is carried back and connected to `target` " +
			"from this machine, or from `target_via` (a host reference). Whether a non-loopback bind is honoured is the server's " +
			"GatewayPorts: `listening` reports what the server really bound (ss on the server; needs a host that runs commands). " +
			"`mode: local` (ssh -L): this machine listens on `bind` (default 127.0.0.1:0) and the server connects to `target`. " +
			"The step returns once the forward is up; an undo action tears it down when the scenario ends. With `duration` it holds " +
			"the forward that long, then tears it down (use `background: true`). Every `keepalive` the step sends an SSH keepalive; " +
			"`keepalive_max` misses in a row declare the tunnel down (failed when it happens before the end). Outputs: the bound address " +
			"and the tunnel's timeline (up, keepalive misses, down).",
		New: func() steps.Step {
			return &Forward{Mode: modeRemote, Keepalive: 5 * time.Second, KeepaliveMax: 3}
		},
		Outputs: []steps.Output{
			{Name: "bound_address", Type: "string", Doc: "the address the forward listens on (remote: on the server; local: here), with the port the listener got"},
			{Name: "port", Type: "int", Doc: "its port"},
			{Name: "listening", Type: "list", Doc: "remote: the addresses the server's sshd really listens on for that port (GatewayPorts decides)"},
			{Name: "mode", Type: "string", Doc: "remote or local"},
			{Name: "target", Type: "string", Doc: "where forwarded connections go"},
			{Name: "connections", Type: "int", Doc: "connections forwarded (so far, or in all with duration)"},
			{Name: "failed_connections", Type: "int", Doc: "connections whose target could not be reached"},
			{Name: "keepalive_misses", Type: "int", Doc: "keepalives the server did not answer in time"},
			{Name: "up_at", Type: "string", Doc: "RFC 3339 instant the forward was up"},
			{Name: "down_at", Type: "string", Doc: "RFC 3339 instant it was torn down or lost (duration only)"},
			{Name: "down_reason", Type: "string", Doc: "why it went down: duration elapsed, connection lost, cancelled (duration only)"},
			{Name: "timeline", Type: "list", Doc: "at (RFC 3339), t_ms (since up), event (up, keepalive_miss, keepalive_ok, down), detail"},
		},
		Examples: []steps.Example{
			{Title: "The runbook's ssh -R *:9090:192.168.0.75:80, held 30 s in the background", YAML: "- id: tunnel\n  uses: ssh.forward\n  background: true\n  with:\n    host: ssh://ops@lightsail\n    mode: remote\n    bind: \"*:9090\"\n    target: 192.168.0.75:80\n    duration: 30s"},
			{Title: "ssh -L: reach a private database through a bastion", YAML: "- id: db_tunnel\n  uses: ssh.forward\n  with: { host: ssh://bastion, mode: local, bind: \"127.0.0.1:13306\", target: \"db.internal:3306\" }"},
		},
	})
}

const (
	modeRemote = "remote"
	modeLocal  = "local"
)

// maxEvents bounds the timeline a long-lived, flapping tunnel records.
const maxEvents = 200

// Forward is ssh.forward.
type Forward struct {
	Host         string        `yaml:"host" doc:"the SSH server: ssh://[user@]name[:port]" required:"true"`
	Mode         string        `yaml:"mode" doc:"remote (ssh -R, default) or local (ssh -L)"`
	Bind         string        `yaml:"bind" doc:"[address:]port to listen on: remote, on the server (* or empty address: every interface); local, here (default 127.0.0.1:0)"`
	Target       string        `yaml:"target" doc:"host:port forwarded connections go to" required:"true"`
	TargetVia    string        `yaml:"target_via" doc:"remote: host reference the target is connected from (default: this machine)"`
	Duration     time.Duration `yaml:"duration" doc:"hold the forward this long, then tear it down; 0: return once up, the undo tears it down"`
	Keepalive    time.Duration `yaml:"keepalive" doc:"interval of SSH keepalives"`
	KeepaliveMax int           `yaml:"keepalive_max" doc:"keepalives missed in a row that declare the tunnel down"`
}

// Validate checks the parameters.
func (f *Forward) Validate() error {
	r, err := host.Parse(f.Host)
	if err != nil {
		return err
	}
	if r.Scheme != "ssh" {
		return fmt.Errorf("host: %q: a forward needs an ssh:// host", f.Host)
	}
	switch f.Mode {
	case modeRemote:
		if f.Bind == "" {
			return errors.New("bind: missing; the server's [address:]port, e.g. \"*:9090\"")
		}
	case modeLocal:
		if f.TargetVia != "" {
			return errors.New("target_via: only for mode remote; in mode local the server connects to target")
		}
	default:
		return fmt.Errorf("mode: must be remote or local, got %q", f.Mode)
	}
	if f.Bind != "" {
		if _, _, err := splitBind(f.Bind); err != nil {
			return err
		}
	}
	if _, port, err := net.SplitHostPort(f.Target); err != nil || port == "" {
		return fmt.Errorf("target: expected host:port, got %q", f.Target)
	}
	if f.TargetVia != "" {
		if err := host.Validate(f.TargetVia); err != nil {
			return fmt.Errorf("target_via: %w", err)
		}
	}
	if f.Duration < 0 {
		return errors.New("duration: must not be negative")
	}
	if f.Keepalive <= 0 || f.KeepaliveMax < 1 {
		return errors.New("keepalive and keepalive_max: must be positive")
	}
	return nil
}

// splitBind reads [address:]port; "*" and "" mean every interface.
func splitBind(b string) (addr string, port int, err error) {
	a, p, err := net.SplitHostPort(b)
	if err != nil {
		a, p = "", b
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bind: %q: expected [address:]port", b)
	}
	if a == "*" {
		a = ""
	}
	if a != "" && a != "localhost" && net.ParseIP(a) == nil {
		return "", 0, fmt.Errorf("bind: %q: the address must be an IP, localhost or *", b)
	}
	return a, n, nil
}

// Run brings the forward up.
func (f *Forward) Run(ctx context.Context, env *steps.Env) error {
	h, err := host.Open(ctx, f.Host)
	if err != nil {
		return err
	}
	sh, ok := h.(*host.SSH)
	if !ok {
		return fmt.Errorf("host: %s is not reached over SSH", f.Host)
	}
	client, err := sh.Client(ctx)
	if err != nil {
		return err
	}
	t := &tunnel{f: f, env: env, client: client, done: make(chan struct{})}
	if err := t.listen(ctx, sh); err != nil {
		return err
	}
	t.upAt = time.Now()
	t.event("up", "listening on "+t.bound+" -> "+f.Target)
	env.Note("ssh.forward.up", "tunnel up", t.upAt)
	env.SetOutput("bound_address", t.bound)
	env.SetOutput("port", t.port)
	env.SetOutput("mode", f.Mode)
	env.SetOutput("target", f.Target)
	env.SetOutput("up_at", t.upAt.UTC().Format(time.RFC3339Nano))
	if f.Mode == modeRemote {
		t.listening = serverListening(ctx, sh, t.port)
		env.SetOutput("listening", steps.List(t.listening))
		if len(t.listening) > 0 {
			env.Logf("the server listens on %s", strings.Join(t.listening, ", "))
		}
	}
	var dialer func(ctx context.Context) (net.Conn, error)
	switch {
	case f.Mode == modeLocal:
		dialer = func(ctx context.Context) (net.Conn, error) { return sh.Dial(ctx, "tcp", f.Target) }
	case f.TargetVia != "":
		via, err := host.Open(ctx, f.TargetVia)
		if err != nil {
			t.close("could not open target_via")
			return fmt.Errorf("target_via: %w", err)
		}
		dialer = func(ctx context.Context) (net.Conn, error) { return via.Dial(ctx, "tcp", f.Target) }
	default:
		dialer = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", f.Target)
		}
	}
	go t.serve(dialer)
	go t.keepalive()
	env.Undo("ssh.forward "+t.bound, func(context.Context) error {
		t.close("torn down by undo")
		return nil
	})
	env.Logf("forward up: %s -> %s (%s)", t.bound, f.Target, f.Mode)
	if f.Duration == 0 {
		t.outputs()
		return nil
	}
	timer := time.NewTimer(f.Duration)
	defer timer.Stop()
	select {
	case <-timer.C:
		t.close("duration elapsed")
	case <-ctx.Done():
		t.close("cancelled")
		t.outputs()
		return ctx.Err()
	case <-t.done:
	}
	t.outputs()
	if r := t.reason(); r != "duration elapsed" {
		return steps.Failf("the tunnel went down after %s: %s", t.downAt.Sub(t.upAt).Round(time.Millisecond), r)
	}
	return nil
}

// tunnel is one live forward and its record.
type tunnel struct {
	f         *Forward
	env       *steps.Env
	client    *ssh.Client
	ln        net.Listener
	bound     string
	port      int
	listening []string
	upAt      time.Time
	done      chan struct{}

	mu          sync.Mutex
	conns       map[net.Conn]struct{}
	events      []map[string]any
	dropped     int
	connections int
	failed      int
	misses      int
	downAt      time.Time
	downReason  string
}

func (t *tunnel) listen(ctx context.Context, sh *host.SSH) error {
	addr, port, _ := splitBind(t.f.Bind)
	switch t.f.Mode {
	case modeLocal:
		if t.f.Bind == "" {
			addr = "127.0.0.1"
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		t.ln = ln
	default:
		if addr == "" {
			addr = "0.0.0.0"
		}
		if addr == "localhost" {
			addr = "127.0.0.1"
		}
		ln, err := sh.Listen(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("remote forward on %s (is AllowTcpForwarding on, the port free, a port < 1024 needing root?): %w", t.f.Bind, err)
		}
		t.ln = ln
	}
	t.bound = t.ln.Addr().String()
	if a, ok := t.ln.Addr().(*net.TCPAddr); ok {
		t.port = a.Port
	}
	return nil
}

// event appends to the timeline, within maxEvents.
func (t *tunnel) event(kind, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.eventLocked(kind, detail)
}

func (t *tunnel) eventLocked(kind, detail string) {
	if len(t.events) >= maxEvents && kind != "down" {
		t.dropped++
		return
	}
	now := time.Now()
	ms := int64(0)
	if !t.upAt.IsZero() {
		ms = now.Sub(t.upAt).Milliseconds()
	}
	t.events = append(t.events, map[string]any{"at": now.UTC().Format(time.RFC3339Nano), "t_ms": ms, "event": kind, "detail": detail})
}

// serve accepts until the listener closes and pipes each connection to
// the target.
func (t *tunnel) serve(dial func(ctx context.Context) (net.Conn, error)) {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
			default:
				t.close("listener ended: " + err.Error())
			}
			return
		}
		t.mu.Lock()
		t.connections++
		if t.conns == nil {
			t.conns = map[net.Conn]struct{}{}
		}
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		go t.pipe(c, dial)
	}
}

func (t *tunnel) pipe(c net.Conn, dial func(ctx context.Context) (net.Conn, error)) {
	defer func() {
		c.Close()
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	up, err := dial(ctx)
	cancel()
	if err != nil {
		t.mu.Lock()
		t.failed++
		t.mu.Unlock()
		t.event("connection_failed", "target "+t.f.Target+": "+err.Error())
		return
	}
	defer up.Close()
	t.mu.Lock()
	t.conns[up] = struct{}{}
	t.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	copyHalf := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	go copyHalf(up, c)
	go copyHalf(c, up)
	wg.Wait()
	t.mu.Lock()
	delete(t.conns, up)
	t.mu.Unlock()
}

// keepalive asks the server for a reply every interval; keepalive_max
// misses in a row close the tunnel.
func (t *tunnel) keepalive() {
	tick := time.NewTicker(t.f.Keepalive)
	defer tick.Stop()
	missed := 0
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := t.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		var err error
		select {
		case err = <-reply:
		case <-time.After(t.f.Keepalive):
			err = errors.New("no answer within " + t.f.Keepalive.String())
		case <-t.done:
			return
		}
		if err == nil {
			if missed > 0 {
				t.event("keepalive_ok", fmt.Sprintf("the server answers again after %d miss(es)", missed))
			}
			missed = 0
			continue
		}
		missed++
		t.mu.Lock()
		t.misses++
		t.mu.Unlock()
		t.event("keepalive_miss", fmt.Sprintf("%d of %d: %v", missed, t.f.KeepaliveMax, err))
		if missed >= t.f.KeepaliveMax {
			t.close(fmt.Sprintf("connection lost: %d keepalives unanswered", missed))
			return
		}
	}
}

// close tears the forward down once: the listener (for remote, the server
// stops listening: cancel-tcpip-forward) and every forwarded connection.
func (t *tunnel) close(reason string) {
	t.mu.Lock()
	select {
	case <-t.done:
		t.mu.Unlock()
		return
	default:
	}
	t.downAt, t.downReason = time.Now(), reason
	t.eventLocked("down", reason)
	close(t.done)
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	_ = t.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	t.env.Note("ssh.forward.down", "tunnel down", t.downAt)
	t.env.Logf("forward %s down: %s", t.bound, reason)
}

func (t *tunnel) reason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.downReason
}

// outputs records the counters and the timeline as they are now.
func (t *tunnel) outputs() {
	t.mu.Lock()
	defer t.mu.Unlock()
	env := t.env
	env.SetOutput("connections", t.connections)
	env.SetOutput("failed_connections", t.failed)
	env.SetOutput("keepalive_misses", t.misses)
	timeline := make([]any, len(t.events))
	rows := make([][]string, len(t.events))
	for i, e := range t.events {
		timeline[i] = e
		rows[i] = []string{e["at"].(string), fmt.Sprint(e["t_ms"]), e["event"].(string), e["detail"].(string)}
	}
	if t.dropped > 0 {
		rows = append(rows, []string{"", "", "…", fmt.Sprintf("%d more events not recorded", t.dropped)})
	}
	env.SetOutput("timeline", timeline)
	down := ""
	if !t.downAt.IsZero() {
		down = t.downAt.UTC().Format(time.RFC3339Nano)
	}
	env.SetOutput("down_at", down)
	env.SetOutput("down_reason", t.downReason)
	title := fmt.Sprintf("Tunnel %s -> %s (%s)", t.bound, t.f.Target, t.f.Mode)
	env.AddEvidence(steps.TableEvidence(title, []string{"at", "t (ms)", "event", "detail"}, rows))
	if len(t.listening) > 0 {
		env.AddEvidence(steps.TableEvidence("The server listens for the forward", []string{"address"}, toRows(t.listening)))
	}
}

func toRows(s []string) [][]string {
	out := make([][]string, len(s))
	for i, v := range s {
		out[i] = []string{v}
	}
	return out
}

// serverListening asks the server which addresses listen on port (ss from
// iproute2). A server without ss, or a host that runs no commands, gives
// an empty list: the forward itself is not affected.
func serverListening(ctx context.Context, sh *host.SSH, port int) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := sh.Run(ctx, host.Command{Args: []string{"ss", "-Htln", "sport = :" + strconv.Itoa(port)}})
	if err != nil || res.ExitCode != 0 {
		return []string{}
	}
	out := []string{}
	for line := range strings.SplitSeq(strings.TrimSpace(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			out = append(out, f[3])
		}
	}
	return out
}
