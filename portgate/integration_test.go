package portgate_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate/audit"
	"github.com/opsdrill/opsdrill/portgate/auth"
	"github.com/opsdrill/opsdrill/portgate/internal/netnstest"
	"github.com/opsdrill/opsdrill/portgate/lease"
)

// The gate's service port (in the allow-list), a port with a service that
// is not in the allow-list, and the API port.
const (
	svcPort    = 7022
	otherPort  = 7023
	apiPort    = 8443
	closedWait = 700 * time.Millisecond
	secretB32  = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
)

var backends = []struct{ name, tool string }{{"nftables", "nft"}, {"iptables", "iptables"}}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// portgateBinary builds cmd/portgate once per test run.
func portgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "portgate")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", binPath, "../cmd/portgate")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// gate is a portgate daemon running in the gate namespace of a test
// network, reached from the clients' namespaces over TLS.
type gate struct {
	t      *testing.T
	net    *netnstest.Gate
	dir    string
	config string
	cmd    *exec.Cmd
	done   chan error
	key    auth.Key
	roots  *x509.CertPool
	extra  []string
}

// hostFirewall is the gate's own default-deny firewall, as in the lab: the
// API is reachable, everything else is dropped unless portgate lets it in
// (nftables: by the packet mark; iptables: by its ACCEPT in INPUT).
var hostFirewall = map[string][]string{
	"nftables": {
		"nft add table inet labfw",
		"nft add chain inet labfw input { type filter hook input priority 0 ; policy drop ; }",
		"nft add rule inet labfw input ct state established,related accept",
		fmt.Sprintf("nft add rule inet labfw input tcp dport %d accept", apiPort),
		"nft add rule inet labfw input meta mark & 0x7067 == 0x7067 accept",
	},
	"iptables": {
		"iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		fmt.Sprintf("iptables -A INPUT -p tcp --dport %d -j ACCEPT", apiPort),
		"iptables -P INPUT DROP",
	},
}

func newGate(t *testing.T, backend, extraConfig string, flags ...string) *gate {
	t.Helper()
	n := netnstest.NewGate(t)
	n.Serve(t, svcPort)
	n.Serve(t, otherPort)
	for _, cmd := range hostFirewall[backend] {
		n.Gate.MustRun(t, strings.Fields(cmd)...)
	}
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t, n.GateIP1, n.GateIP2)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600))
	cfg := fmt.Sprintf(`listen: ":%d"
tls: {cert: %s/tls.crt, key: %s/tls.key}
state_file: %s/state/state.json
audit_log: %s/audit.jsonl
ports: [%d]
lease: {default: 1m, min: 1s, max: 10m}
lockout: {max_failures: 10}
firewall: {backend: %s}
users:
  - {name: alice, secret: %s}
  - {name: bob, secret: %s}
  - {name: carol, secret: %s}
%s`, apiPort, dir, dir, dir, dir, svcPort, backend, secretB32, secretB32, secretB32, extraConfig)
	cfgPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	k, err := auth.NewKey([]byte("12345678901234567890"), 6, 30*time.Second, "SHA1")
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(certPEM))
	g := &gate{t: t, net: n, dir: dir, config: cfgPath, key: k, roots: roots, extra: flags}
	g.start()
	t.Cleanup(g.stopQuietly)
	return g
}

// selfSigned returns a certificate for the gate's addresses and its key.
func selfSigned(t *testing.T, ips ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(priv)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func (g *gate) start() {
	g.t.Helper()
	args := append([]string{portgateBinary(g.t), "--config", g.config, "--log-file", filepath.Join(g.dir, "portgate.log")}, g.extra...)
	g.cmd = g.net.Gate.Command(context.Background(), args...)
	require.NoError(g.t, g.cmd.Start())
	g.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(g.cmd, g.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := g.client(g.net.C1).Get(g.url(g.net.GateIP1) + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-g.done:
			g.t.Fatalf("portgate exited: %v\n%s", err, g.log())
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("portgate not ready: %v\n%s", err, g.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops portgate with sig and waits for it.
func (g *gate) kill(sig syscall.Signal) error {
	g.t.Helper()
	// `ip netns exec` execs portgate, so the process is portgate itself.
	require.NoError(g.t, g.cmd.Process.Signal(sig))
	select {
	case err := <-g.done:
		g.cmd = nil
		return err
	case <-time.After(20 * time.Second):
		g.t.Fatal("portgate did not stop")
		return nil
	}
}

func (g *gate) stopQuietly() {
	if g.cmd != nil && g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
		<-g.done
		g.cmd = nil
	}
}

func (g *gate) log() string {
	b, _ := os.ReadFile(filepath.Join(g.dir, "portgate.log"))
	return string(b)
}

func (g *gate) url(ip string) string { return "https://" + net.JoinHostPort(ip, fmt.Sprint(apiPort)) }

// client is an HTTPS client whose connections start in ns.
func (g *gate) client(ns *netnstest.NS) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: g.roots, MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return ns.Dial(ctx, network, addr, 5*time.Second)
			},
			DisableKeepAlives: true,
		},
	}
}

// code is what an app shows now for the test key.
func (g *gate) code(offset int) string {
	return g.key.Code(uint64(int64(g.key.Counter(time.Now())) + int64(offset)))
}

type openResult struct {
	Status int
	Body   map[string]any
}

// open asks for a lease from ns, through the gate address gateIP.
func (g *gate) open(ns *netnstest.NS, gateIP string, body map[string]any) openResult {
	g.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := g.client(ns).Post(g.url(gateIP)+"/v1/leases", "application/json", strings.NewReader(string(b)))
	require.NoError(g.t, err)
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	require.NoError(g.t, json.Unmarshal(raw, &m), string(raw))
	return openResult{resp.StatusCode, m}
}

func (g *gate) events() []audit.Event {
	g.t.Helper()
	f, err := os.Open(filepath.Join(g.dir, "audit.jsonl"))
	require.NoError(g.t, err)
	defer f.Close()
	var out []audit.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e audit.Event
		require.NoError(g.t, json.Unmarshal(sc.Bytes(), &e))
		out = append(out, e)
	}
	return out
}

func (g *gate) reasons(event string) []string {
	var out []string
	for _, e := range g.events() {
		if e.Event == event {
			out = append(out, e.Reason)
		}
	}
	return out
}

func (g *gate) state() lease.State {
	g.t.Helper()
	st, err := lease.File{Path: filepath.Join(g.dir, "state", "state.json")}.Load()
	require.NoError(g.t, err)
	return st
}

func (g *gate) svcOpen(ns *netnstest.NS, gateIP string, wait time.Duration) bool {
	return ns.Probe(net.JoinHostPort(gateIP, fmt.Sprint(svcPort)), wait)
}

// waitClosed probes from ns until the service port is closed and returns
// when the first failing probe started.
func (g *gate) waitClosed(ns *netnstest.NS, gateIP string, limit time.Duration) time.Time {
	g.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		start := time.Now()
		if !g.svcOpen(ns, gateIP, 300*time.Millisecond) {
			return start
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("the port stayed open for %s", limit)
	return time.Time{}
}

// TestDrill runs the whole drill against the real daemon with each
// firewall backend: closed before; a wrong code, a disallowed port and a
// replayed code open nothing; a good code opens the port for its source
// only; the lease ends on time; every decision is in the audit log and no
// code is.
func TestDrill(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			netnstest.RequireTool(t, b.tool)
			g := newGate(t, b.name, "")
			n := g.net

			assert.False(t, g.svcOpen(n.C1, n.GateIP1, closedWait), "closed before, from client 1")
			assert.False(t, g.svcOpen(n.C2, n.GateIP2, closedWait), "closed before, from client 2")

			r := g.open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": g.code(40), "port": svcPort})
			assert.Equal(t, http.StatusUnauthorized, r.Status, "wrong code: %v", r.Body)
			assert.False(t, g.svcOpen(n.C1, n.GateIP1, closedWait), "a wrong code opens nothing")

			other := net.JoinHostPort(n.GateIP1, fmt.Sprint(otherPort))
			assert.False(t, n.C1.Probe(other, closedWait), "the other service is behind the default-deny firewall")
			r = g.open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": g.code(0), "port": otherPort})
			assert.Equal(t, http.StatusForbidden, r.Status, "disallowed port: %v", r.Body)
			assert.False(t, n.C1.Probe(other, closedWait), "a disallowed port opens nothing")

			code := g.code(0)
			opened := time.Now()
			r = g.open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": code, "port": svcPort, "duration": "4s"})
			require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			assert.Equal(t, n.C1IP, r.Body["ip"])
			expires := time.UnixMilli(int64(r.Body["expires_unix_ms"].(float64)))
			reachable := time.Since(opened)
			assert.True(t, g.svcOpen(n.C1, n.GateIP1, 5*time.Second), "open from the authenticated address")
			t.Logf("open-to-answer %s", reachable.Round(time.Millisecond))
			assert.False(t, g.svcOpen(n.C2, n.GateIP2, closedWait), "still closed from the other client")

			r = g.open(n.C2, n.GateIP2, map[string]any{"user": "alice", "code": code, "port": svcPort})
			assert.Equal(t, http.StatusUnauthorized, r.Status, "replayed code: %v", r.Body)
			assert.False(t, g.svcOpen(n.C2, n.GateIP2, closedWait), "a replayed code opens nothing")

			closedAt := g.waitClosed(n.C1, n.GateIP1, 10*time.Second)
			t.Logf("closed %s after the lease end", closedAt.Sub(expires).Round(time.Millisecond))
			assert.Less(t, closedAt.Sub(expires), 1500*time.Millisecond, "closed on time")
			assert.Greater(t, closedAt.Sub(expires), -500*time.Millisecond, "not early")

			// The reaper also tidies the state file and logs the expiry.
			require.Eventually(t, func() bool { return len(g.state().Leases) == 0 }, 10*time.Second, 100*time.Millisecond)
			assert.Equal(t, []string{"bad_code", "port_not_allowed", "replay"}, g.reasons(audit.Deny))
			assert.Len(t, g.reasons(audit.Open), 1)
			assert.Len(t, g.reasons(audit.Expire), 1)
			audit, _ := os.ReadFile(filepath.Join(g.dir, "audit.jsonl"))
			assert.NotContains(t, string(audit), code)
			assert.NotContains(t, string(audit), secretB32)
		})
	}
}

// TestCrash kills portgate with SIGKILL while a lease is live: the port
// stays open only until the lease end, whether portgate comes back before
// it (and its reaper ends the lease) or after it (and reconciliation
// cleans up).
func TestCrash(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			netnstest.RequireTool(t, b.tool)
			g := newGate(t, b.name, "")
			n := g.net

			// Restart before the end.
			r := g.open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": g.code(0), "port": svcPort, "duration": "5s"})
			require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			expires := time.UnixMilli(int64(r.Body["expires_unix_ms"].(float64)))
			err := g.kill(syscall.SIGKILL)
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "killed: %v", err)
			assert.True(t, g.svcOpen(n.C1, n.GateIP1, 5*time.Second), "the lease outlives the crash")
			g.start()
			assert.True(t, g.svcOpen(n.C1, n.GateIP1, 5*time.Second), "and the restart")
			assert.False(t, g.svcOpen(n.C2, n.GateIP2, closedWait))
			closedAt := g.waitClosed(n.C1, n.GateIP1, 15*time.Second)
			t.Logf("closed %s after the lease end", closedAt.Sub(expires).Round(time.Millisecond))
			assert.Less(t, closedAt.Sub(expires), 1500*time.Millisecond, "the lease still ends on time")
			require.Eventually(t, func() bool { return len(g.state().Leases) == 0 }, 10*time.Second, 100*time.Millisecond)

			// Down past the end: the kernel ends it; the restart cleans up.
			r = g.open(n.C1, n.GateIP1, map[string]any{"user": "bob", "code": g.code(0), "port": svcPort, "duration": "2s"})
			require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			expires = time.UnixMilli(int64(r.Body["expires_unix_ms"].(float64)))
			_ = g.kill(syscall.SIGKILL)
			closedAt = g.waitClosed(n.C1, n.GateIP1, 10*time.Second)
			assert.Less(t, closedAt.Sub(expires), 1500*time.Millisecond, "ends on time with portgate down")
			time.Sleep(time.Until(expires.Add(500 * time.Millisecond)))
			g.start()
			assert.Empty(t, g.state().Leases)
			var downEnded int
			for _, e := range g.events() {
				if e.Event == audit.Expire && e.Reason == "ended while portgate was down" {
					downEnded++
				}
			}
			assert.Equal(t, 1, downEnded)
			assert.False(t, g.svcOpen(n.C1, n.GateIP1, closedWait))
		})
	}
}

// TestShutdown checks on_shutdown: SIGTERM keeps live leases (they end on
// time by themselves) or closes them.
func TestShutdown(t *testing.T) {
	for _, policy := range []string{"keep", "close"} {
		t.Run(policy, func(t *testing.T) {
			netnstest.RequireTool(t, "nft")
			g := newGate(t, "nftables", "on_shutdown: "+policy+"\n")
			n := g.net
			r := g.open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": g.code(0), "port": svcPort, "duration": "5m"})
			require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			require.NoError(t, g.kill(syscall.SIGTERM), "a clean exit")
			if policy == "keep" {
				assert.True(t, g.svcOpen(n.C1, n.GateIP1, 5*time.Second))
				assert.Len(t, g.state().Leases, 1)
			} else {
				assert.False(t, g.svcOpen(n.C1, n.GateIP1, closedWait))
				assert.Empty(t, g.state().Leases)
			}
			ev := g.events()
			assert.Equal(t, audit.Stop, ev[len(ev)-1].Event)
		})
	}
}

// TestSeedFormBehindFlag runs the seed's form, which portgate only serves
// behind --allow-fixed-password; its leases end too.
func TestSeedFormBehindFlag(t *testing.T) {
	netnstest.RequireTool(t, "nft")
	// The seed's example password.
	sum := sha256.Sum256([]byte("randompassword123"))
	extra := fmt.Sprintf("fixed_password: {sha256: %x, port: %d}\n", sum, svcPort)
	n := netnstest.NewGate(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("ports: [7022]\n"+extra), 0o600))
	out, err := n.Gate.Command(context.Background(), portgateBinary(t), "--config", cfgPath, "--insecure-plain-http", "--check").CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%s", out)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Contains(t, string(out), "--allow-fixed-password")

	g := newGate(t, "nftables", extra, "--allow-fixed-password")
	post := func(form string) (int, string) {
		resp, err := g.client(g.net.C1).Post(g.url(g.net.GateIP1)+"/openport", "application/x-www-form-urlencoded", strings.NewReader(form))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := post("pw=wrong")
	assert.Equal(t, http.StatusUnauthorized, status, body)
	assert.False(t, g.svcOpen(g.net.C1, g.net.GateIP1, closedWait))
	status, body = post("pw=randompassword123")
	assert.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "open: tcp/7022 for "+g.net.C1IP)
	assert.True(t, g.svcOpen(g.net.C1, g.net.GateIP1, 5*time.Second))
	assert.False(t, g.svcOpen(g.net.C2, g.net.GateIP2, closedWait))
	assert.Contains(t, g.log(), "FIXED-PASSWORD MODE", "the daemon warns")
}

// TestRefusesPlainHTTPWithoutFlag: without a certificate, portgate only
// serves plain HTTP when told to, in so many words.
func TestRefusesPlainHTTPWithoutFlag(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("ports: [22]\nusers:\n  - {name: alice, secret: "+secretB32+"}\n"), 0o600))
	cmd := exec.Command(portgateBinary(t), "--config", cfgPath, "--check")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%s", out)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Contains(t, string(out), "plain HTTP only with --insecure-plain-http")
	out, err = exec.Command(portgateBinary(t), "--config", cfgPath, "--check", "--insecure-plain-http").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "configuration ok")
}
