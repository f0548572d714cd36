// Package netnstest builds small networks of Linux network namespaces for
// portgate's integration tests: a gate and two clients joined by veth
// pairs, each with its own firewall, so real nftables and iptables rules are
// exercised without touching the machine's own network.
//
// Code runs "inside" a namespace by switching the current OS thread with
// setns(2) (NS.Do); sockets and netlink connections opened there stay in
// that namespace after the thread switches back, and processes forked there
// start there. Tests need root; without it they are skipped, except in CI
// (CI set), where they fail.
package netnstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Require skips the test without root or the ip command, outside CI.
func Require(t testing.TB) {
	t.Helper()
	var missing string
	if os.Geteuid() != 0 {
		missing = "root (network namespaces)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		missing = "the ip command (iproute2)"
	}
	if missing == "" {
		return
	}
	if v := strings.ToLower(os.Getenv("CI")); v != "" && v != "false" && v != "0" {
		t.Fatalf("CI must run this test: needs %s", missing)
	}
	t.Skipf("skipping: needs %s", missing)
}

// RequireTool is Require plus a program the test runs.
func RequireTool(t testing.TB, name string) {
	t.Helper()
	Require(t)
	if _, err := exec.LookPath(name); err != nil {
		if v := strings.ToLower(os.Getenv("CI")); v != "" && v != "false" && v != "0" {
			t.Fatalf("CI must run this test: needs %s: %v", name, err)
		}
		t.Skipf("skipping: needs %s: %v", name, err)
	}
}

// NS is a network namespace created for a test.
type NS struct {
	Name string
}

var seq atomic.Int64

// New creates a namespace with its loopback up, removed when the test ends.
func New(t testing.TB, role string) *NS {
	t.Helper()
	Require(t)
	n := &NS{Name: fmt.Sprintf("pg%d-%d-%s", os.Getpid(), seq.Add(1), role)}
	ip(t, "netns", "add", n.Name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	n.MustRun(t, "ip", "link", "set", "lo", "up")
	return n
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Command returns args run inside the namespace.
func (n *NS) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Run runs args inside the namespace and returns its combined output.
func (n *NS) Run(args ...string) (string, error) {
	out, err := n.Command(context.Background(), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// MustRun is Run failing the test on error.
func (n *NS) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Do runs fn with the current OS thread in the namespace.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + n.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", n.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime then ends it with the
		// goroutine instead of reusing a thread in the wrong namespace.
		return fmt.Errorf("setns back from %s: %w", n.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Dial connects from inside the namespace.
func (n *NS) Dial(ctx context.Context, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens inside the namespace.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Link joins a and b with a veth pair, addressing each end with one or
// more prefixes ("10.77.1.1/24", "fd77:1::1/64"; IPv6 addresses skip
// duplicate address detection so they are usable at once).
func Link(t testing.TB, a *NS, aAddrs []string, b *NS, bAddrs []string) {
	t.Helper()
	id := seq.Add(1)
	ea, eb := fmt.Sprintf("pga%d", id), fmt.Sprintf("pgb%d", id)
	ip(t, "link", "add", ea, "netns", a.Name, "type", "veth", "peer", "name", eb, "netns", b.Name)
	for _, e := range []struct {
		ns    *NS
		dev   string
		addrs []string
	}{{a, ea, aAddrs}, {b, eb, bAddrs}} {
		for _, addr := range e.addrs {
			args := []string{"ip", "addr", "add", addr, "dev", e.dev}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			e.ns.MustRun(t, args...)
		}
		e.ns.MustRun(t, "ip", "link", "set", e.dev, "up")
	}
}

// Probe reports whether a TCP connection from n to addr is accepted within
// timeout.
func (n *NS) Probe(addr string, timeout time.Duration) bool {
	c, err := n.Dial(context.Background(), "tcp", addr, timeout)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Gate is the test network: a gate namespace and two clients, each on its
// own link, with IPv4 and IPv6 addresses.
type Gate struct {
	Gate, C1, C2 *NS
	// GateIP1 and GateIP2 are the gate's addresses towards C1 and C2;
	// C1IP and C2IP the clients'. The *6 fields are the IPv6 ones.
	GateIP1, GateIP2, C1IP, C2IP       string
	GateIP6_1, GateIP6_2, C1IP6, C2IP6 string
}

// NewGate builds the three namespaces and their links.
func NewGate(t testing.TB) *Gate {
	t.Helper()
	g := &Gate{
		Gate: New(t, "gate"), C1: New(t, "c1"), C2: New(t, "c2"),
		GateIP1: "10.77.1.1", C1IP: "10.77.1.2", GateIP2: "10.77.2.1", C2IP: "10.77.2.2",
		GateIP6_1: "fd77:1::1", C1IP6: "fd77:1::2", GateIP6_2: "fd77:2::1", C2IP6: "fd77:2::2",
	}
	Link(t, g.Gate, []string{g.GateIP1 + "/24", g.GateIP6_1 + "/64"}, g.C1, []string{g.C1IP + "/24", g.C1IP6 + "/64"})
	Link(t, g.Gate, []string{g.GateIP2 + "/24", g.GateIP6_2 + "/64"}, g.C2, []string{g.C2IP + "/24", g.C2IP6 + "/64"})
	return g
}

// Serve accepts TCP connections on the gate at port and closes each at
// once: the "service" behind the gate. It stops when the test ends.
func (g *Gate) Serve(t testing.TB, port int) {
	t.Helper()
	g.serveTCP(t, port, func(c net.Conn) { c.Close() })
}

// serveTCP hands every TCP connection to port on the gate to handle, until
// the test ends.
func (g *Gate) serveTCP(t testing.TB, port int, handle func(net.Conn)) {
	t.Helper()
	l, err := g.Gate.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatalf("listen on the gate: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
}

// ServeUDP answers every datagram to port on the gate with the same bytes:
// a UDP "service" behind the gate. It stops when the test ends.
func (g *Gate) ServeUDP(t testing.TB, port int) {
	t.Helper()
	var pc net.PacketConn
	if err := g.Gate.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("listen udp on the gate: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// ServeEcho echoes every TCP connection to port on the gate, so a session
// can be watched after its lease ends. It stops when the test ends.
func (g *Gate) ServeEcho(t testing.TB, port int) {
	t.Helper()
	g.serveTCP(t, port, func(c net.Conn) {
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	})
}

// ProbeUDP reports whether a datagram from n to addr is answered within
// timeout.
func (n *NS) ProbeUDP(addr string, timeout time.Duration) bool {
	c, err := n.Dial(context.Background(), "udp", addr, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	got, err := c.Read(buf)
	return err == nil && string(buf[:got]) == "ping"
}
