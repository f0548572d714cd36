// Package portgatetest runs the real portgate daemon for tests, the way
// net/http/httptest runs a real server: cmd/portgate is built once per test
// binary, started in the gate namespace of a netnstest network behind a
// default-deny host firewall, with a TLS certificate of its own, and reached
// from the client namespaces (or, with Options.Uplink, from the test's own
// namespace over an extra link).
//
//	g := portgatetest.Start(t, portgatetest.Options{Backend: "iptables"})
//	r := g.Open(g.Net.C1, g.Net.GateIP1, map[string]any{"user": "alice", "code": g.Code(0), "port": portgatetest.SvcPort})
//	open := g.SvcOpen(g.Net.C1, g.Net.GateIP1, time.Second)
//
// It needs root and the firewall tools; netnstest decides whether a test
// without them is skipped (outside CI) or fails (in CI).
package portgatetest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/portgate/audit"
	"github.com/opsdrill/opsdrill/portgate/auth"
	"github.com/opsdrill/opsdrill/portgate/lease"
	"github.com/opsdrill/opsdrill/portgate/netnstest"
)

// Ports of the test gate and the users' key.
const (
	SvcPort   = 7022 // the guarded service, in the allow-list
	OtherPort = 7023 // a service not in the allow-list
	APIPort   = 8443
	// SecretB32 is the key of users alice, bob and carol: RFC 6238's
	// SHA1 test key.
	SecretB32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
)

// Tools maps each backend to the program its host firewall needs.
var Tools = map[string]string{"nftables": "nft", "iptables": "iptables"}

// HostFirewall is the gate's own default-deny firewall, as in the lab: the
// API is reachable, everything else is dropped unless portgate lets it in
// (nftables: by the packet mark; iptables: by its ACCEPT in INPUT).
var HostFirewall = map[string][]string{
	"nftables": {
		"nft add table inet labfw",
		"nft add chain inet labfw input { type filter hook input priority 0 ; policy drop ; }",
		"nft add rule inet labfw input ct state established,related accept",
		fmt.Sprintf("nft add rule inet labfw input tcp dport %d accept", APIPort),
		"nft add rule inet labfw input meta mark & 0x7067 == 0x7067 accept",
	},
	"iptables": {
		"iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		fmt.Sprintf("iptables -A INPUT -p tcp --dport %d -j ACCEPT", APIPort),
		"iptables -P INPUT DROP",
	},
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/portgate (statically) once per test binary and returns
// its path. The test must run inside the opsdrill module.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "portgate")
		goCmd, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("building cmd/portgate needs the go command: %w", err)
			return
		}
		cmd := exec.Command(goCmd, "build", "-o", binPath, "github.com/opsdrill/opsdrill/cmd/portgate")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build cmd/portgate: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Cleanup removes the built binary; call it from TestMain after m.Run.
func Cleanup() {
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
}

// Options shape the gate.
type Options struct {
	// Backend is nftables (default) or iptables.
	Backend string
	// Extra is appended to the configuration (YAML).
	Extra string
	// Flags are extra command-line flags.
	Flags []string
	// Uplink links the gate to the test process's own namespace, so code
	// that dials normally (a step's HTTP client, a probe with a source
	// address) reaches it. See Gate.Uplink.
	Uplink bool
}

// Gate is a running portgate in a test network.
type Gate struct {
	T      testing.TB
	Net    *netnstest.Gate
	Dir    string // configuration, state, logs
	Config string // configuration file
	CAFile string // PEM of the (self-signed) API certificate
	Roots  *x509.CertPool
	Key    auth.Key // the users' key
	// Uplink: with Options.Uplink, the test's namespace has addresses
	// UplinkIP and UplinkIP2 on a link to the gate, which is GateUplinkIP
	// there.
	UplinkIP, UplinkIP2, GateUplinkIP string

	flags []string
	cmd   *exec.Cmd
	done  chan error
}

var uplinkSeq struct {
	sync.Mutex
	n int
}

// Start builds the network and starts portgate in it; everything is
// removed when the test ends.
func Start(t testing.TB, o Options) *Gate {
	t.Helper()
	if o.Backend == "" {
		o.Backend = "nftables"
	}
	netnstest.RequireTool(t, Tools[o.Backend])
	n := netnstest.NewGate(t)
	n.Serve(t, SvcPort)
	n.Serve(t, OtherPort)
	for _, cmd := range HostFirewall[o.Backend] {
		n.Gate.MustRun(t, strings.Fields(cmd)...)
	}
	g := &Gate{T: t, Net: n, Dir: t.TempDir(), flags: o.Flags}
	ips := []string{n.GateIP1, n.GateIP2}
	if o.Uplink {
		g.uplink(t)
		ips = append(ips, g.GateUplinkIP)
	}
	certPEM, keyPEM := SelfSigned(t, ips...)
	g.CAFile = filepath.Join(g.Dir, "tls.crt")
	write(t, g.CAFile, certPEM, 0o644)
	write(t, filepath.Join(g.Dir, "tls.key"), keyPEM, 0o600)
	g.Roots = x509.NewCertPool()
	g.Roots.AppendCertsFromPEM(certPEM)
	cfg := fmt.Sprintf(`listen: ":%d"
tls: {cert: %[2]s/tls.crt, key: %[2]s/tls.key}
state_file: %[2]s/state/state.json
audit_log: %[2]s/audit.jsonl
ports: [%[3]d]
lease: {default: 1m, min: 1s, max: 10m}
lockout: {max_failures: 10}
firewall: {backend: %[4]s}
users:
  - {name: alice, secret: %[5]s}
  - {name: bob, secret: %[5]s}
  - {name: carol, secret: %[5]s}
%[6]s`, APIPort, g.Dir, SvcPort, o.Backend, SecretB32, o.Extra)
	g.Config = filepath.Join(g.Dir, "config.yaml")
	write(t, g.Config, []byte(cfg), 0o600)
	k, err := auth.NewKey([]byte("12345678901234567890"), 6, 30*time.Second, "SHA1")
	if err != nil {
		t.Fatal(err)
	}
	g.Key = k
	g.Start()
	t.Cleanup(g.stop)
	return g
}

// uplink links the gate to the test's namespace on a /24 chosen from the
// process id, so concurrent test binaries do not collide.
func (g *Gate) uplink(t testing.TB) {
	uplinkSeq.Lock()
	uplinkSeq.n++
	seq := uplinkSeq.n
	uplinkSeq.Unlock()
	prefix := fmt.Sprintf("10.79.%d", (os.Getpid()*7+seq)%250+1)
	g.UplinkIP, g.UplinkIP2, g.GateUplinkIP = prefix+".1", prefix+".3", prefix+".2"
	dev := fmt.Sprintf("pgu%d", (os.Getpid()*7+seq)%100000)
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("link", "add", dev, "type", "veth", "peer", "name", dev+"g", "netns", g.Net.Gate.Name)
	// Deleting the gate namespace deletes the pair; this is for safety.
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", dev).Run() })
	run("addr", "add", g.UplinkIP+"/24", "dev", dev)
	run("addr", "add", g.UplinkIP2+"/24", "dev", dev)
	run("link", "set", dev, "up")
	g.Net.Gate.MustRun(t, "ip", "addr", "add", g.GateUplinkIP+"/24", "dev", dev+"g")
	g.Net.Gate.MustRun(t, "ip", "link", "set", dev+"g", "up")
}

func write(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

// SelfSigned returns a self-signed certificate for ips and its key (PEM).
func SelfSigned(t testing.TB, ips ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// Start (re)starts portgate and waits until its API answers.
func (g *Gate) Start() {
	t := g.T
	t.Helper()
	args := append([]string{Binary(t), "--config", g.Config, "--log-file", filepath.Join(g.Dir, "portgate.log")}, g.flags...)
	g.cmd = g.Net.Gate.Command(context.Background(), args...)
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(g.cmd, g.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := g.Client(g.Net.C1).Get(g.URL(g.Net.GateIP1) + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-g.done:
			t.Fatalf("portgate exited: %v\n%s", err, g.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("portgate not ready: %v\n%s", err, g.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill sends sig to portgate and returns how it exited.
func (g *Gate) Kill(sig syscall.Signal) error {
	t := g.T
	t.Helper()
	// `ip netns exec` execs portgate: the process is portgate itself.
	if err := g.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-g.done:
		g.cmd = nil
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("portgate did not stop")
		return nil
	}
}

func (g *Gate) stop() {
	if g.cmd != nil && g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
		<-g.done
		g.cmd = nil
	}
}

// Log is portgate's operational log.
func (g *Gate) Log() string {
	b, _ := os.ReadFile(filepath.Join(g.Dir, "portgate.log"))
	return string(b)
}

// URL is the API's base URL at the gate address ip.
func (g *Gate) URL(ip string) string {
	return "https://" + net.JoinHostPort(ip, fmt.Sprint(APIPort))
}

// Client is an HTTPS client trusting the gate, whose connections start in
// ns.
func (g *Gate) Client(ns *netnstest.NS) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: g.Roots, MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return ns.Dial(ctx, network, addr, 5*time.Second)
			},
			DisableKeepAlives: true,
		},
	}
}

// Code is what the users' app shows now, offset steps away.
func (g *Gate) Code(offset int) string {
	return g.Key.Code(uint64(int64(g.Key.Counter(time.Now())) + int64(offset)))
}

// Answer is an API answer.
type Answer struct {
	Status int
	Body   map[string]any
}

// Open asks for a lease from ns through the gate address gateIP.
func (g *Gate) Open(ns *netnstest.NS, gateIP string, body map[string]any) Answer {
	t := g.T
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := g.Client(ns).Post(g.URL(gateIP)+"/v1/leases", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return Answer{resp.StatusCode, m}
}

// Expires reads a lease answer's end.
func (a Answer) Expires() time.Time {
	ms, _ := a.Body["expires_unix_ms"].(float64)
	return time.UnixMilli(int64(ms))
}

// AuditRaw is the audit log as written.
func (g *Gate) AuditRaw() string {
	b, _ := os.ReadFile(filepath.Join(g.Dir, "audit.jsonl"))
	return string(b)
}

// Events reads the audit log.
func (g *Gate) Events() []audit.Event {
	t := g.T
	t.Helper()
	f, err := os.Open(filepath.Join(g.Dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e audit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// Reasons lists the reasons of the audit events of a kind, in order.
func (g *Gate) Reasons(event string) []string {
	var out []string
	for _, e := range g.Events() {
		if e.Event == event {
			out = append(out, e.Reason)
		}
	}
	return out
}

// State reads the state file.
func (g *Gate) State() lease.State {
	t := g.T
	t.Helper()
	st, err := (&lease.File{Path: filepath.Join(g.Dir, "state", "state.json")}).Load()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// SvcOpen probes the service port from ns at gateIP.
func (g *Gate) SvcOpen(ns *netnstest.NS, gateIP string, wait time.Duration) bool {
	return ns.Probe(net.JoinHostPort(gateIP, fmt.Sprint(SvcPort)), wait)
}

// WaitClosed probes from ns until the service port is closed and returns
// when the first failing probe started; it fails the test after limit.
func (g *Gate) WaitClosed(ns *netnstest.NS, gateIP string, limit time.Duration) time.Time {
	t := g.T
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		start := time.Now()
		if !g.SvcOpen(ns, gateIP, 300*time.Millisecond) {
			return start
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the port stayed open for %s", limit)
	return time.Time{}
}

// ProbeFrom probes addr from the test's namespace with source address src.
func ProbeFrom(src, addr string, wait time.Duration) bool {
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
