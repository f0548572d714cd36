package portgate_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate/audit"
	"github.com/opsdrill/opsdrill/portgate/netnstest"
	pgt "github.com/opsdrill/opsdrill/portgate/portgatetest"
)

const closedWait = 700 * time.Millisecond

var backends = []string{"nftables", "iptables"}

func TestMain(m *testing.M) {
	code := m.Run()
	pgt.Cleanup()
	os.Exit(code)
}

// TestDrill runs the whole drill against the real daemon with each
// firewall backend, behind a default-deny host firewall: closed before; a
// wrong code, a disallowed port and a replayed code open nothing; a good
// code opens the port for its source only; the lease ends on time; every
// decision is in the audit log and no code is.
func TestDrill(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			g := pgt.Start(t, pgt.Options{Backend: backend})
			n := g.Net

			assert.False(t, g.SvcOpen(n.C1, n.GateIP1, closedWait), "closed before, from client 1")
			assert.False(t, g.SvcOpen(n.C2, n.GateIP2, closedWait), "closed before, from client 2")

			r := g.Open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": g.Code(40), "port": pgt.SvcPort})
			assert.Equal(t, http.StatusUnauthorized, r.Status, "wrong code: %v", r.Body)
			assert.False(t, g.SvcOpen(n.C1, n.GateIP1, closedWait), "a wrong code opens nothing")

			other := net.JoinHostPort(n.GateIP1, fmt.Sprint(pgt.OtherPort))
			assert.False(t, n.C1.Probe(other, closedWait), "the other service is behind the default-deny firewall")
			r = g.Open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": g.Code(0), "port": pgt.OtherPort})
			assert.Equal(t, http.StatusForbidden, r.Status, "disallowed port: %v", r.Body)
			assert.False(t, n.C1.Probe(other, closedWait), "a disallowed port opens nothing")

			code := g.Code(0)
			r = g.Open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": code, "port": pgt.SvcPort, "duration": "4s"})
			require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			assert.Equal(t, n.C1IP, r.Body["ip"])
			expires := r.Expires()
			assert.True(t, g.SvcOpen(n.C1, n.GateIP1, 5*time.Second), "open from the authenticated address")
			assert.False(t, g.SvcOpen(n.C2, n.GateIP2, closedWait), "still closed from the other client")

			r = g.Open(n.C2, n.GateIP2, map[string]any{"user": "alice", "code": code, "port": pgt.SvcPort})
			assert.Equal(t, http.StatusUnauthorized, r.Status, "replayed code: %v", r.Body)
			assert.False(t, g.SvcOpen(n.C2, n.GateIP2, closedWait), "a replayed code opens nothing")

			closedAt := g.WaitClosed(n.C1, n.GateIP1, 10*time.Second)
			t.Logf("closed %s after the lease end", closedAt.Sub(expires).Round(time.Millisecond))
			assert.Less(t, closedAt.Sub(expires), 1500*time.Millisecond, "closed on time")
			assert.Greater(t, closedAt.Sub(expires), -500*time.Millisecond, "not early")

			// The reaper also tidies the state file and logs the expiry.
			require.Eventually(t, func() bool { return len(g.State().Leases) == 0 }, 10*time.Second, 100*time.Millisecond)
			assert.Equal(t, []string{"bad_code", "port_not_allowed", "replay"}, g.Reasons(audit.Deny))
			assert.Len(t, g.Reasons(audit.Open), 1)
			assert.Len(t, g.Reasons(audit.Expire), 1)
			assert.NotContains(t, g.AuditRaw(), code)
			assert.NotContains(t, g.AuditRaw(), pgt.SecretB32)
		})
	}
}

// TestCrash kills portgate with SIGKILL while a lease is live: the port
// stays open only until the lease end, whether portgate comes back before
// it (and its reaper ends the lease) or after it (and reconciliation
// cleans up).
func TestCrash(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			g := pgt.Start(t, pgt.Options{Backend: backend})
			n := g.Net

			// Restart before the end.
			r := g.Open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": g.Code(0), "port": pgt.SvcPort, "duration": "5s"})
			require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			expires := r.Expires()
			err := g.Kill(syscall.SIGKILL)
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "killed: %v", err)
			assert.True(t, g.SvcOpen(n.C1, n.GateIP1, 5*time.Second), "the lease outlives the crash")
			g.Start()
			assert.True(t, g.SvcOpen(n.C1, n.GateIP1, 5*time.Second), "and the restart")
			assert.False(t, g.SvcOpen(n.C2, n.GateIP2, closedWait))
			closedAt := g.WaitClosed(n.C1, n.GateIP1, 15*time.Second)
			t.Logf("closed %s after the lease end", closedAt.Sub(expires).Round(time.Millisecond))
			assert.Less(t, closedAt.Sub(expires), 1500*time.Millisecond, "the lease still ends on time")
			require.Eventually(t, func() bool { return len(g.State().Leases) == 0 }, 10*time.Second, 100*time.Millisecond)

			// Down past the end: the kernel ends it; the restart cleans up.
			r = g.Open(n.C1, n.GateIP1, map[string]any{"user": "bob", "code": g.Code(0), "port": pgt.SvcPort, "duration": "2s"})
			require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			expires = r.Expires()
			_ = g.Kill(syscall.SIGKILL)
			closedAt = g.WaitClosed(n.C1, n.GateIP1, 10*time.Second)
			assert.Less(t, closedAt.Sub(expires), 1500*time.Millisecond, "ends on time with portgate down")
			time.Sleep(time.Until(expires.Add(500 * time.Millisecond)))
			g.Start()
			assert.Empty(t, g.State().Leases)
			var downEnded int
			for _, e := range g.Events() {
				if e.Event == audit.Expire && e.Reason == "ended while portgate was down" {
					downEnded++
				}
			}
			assert.Equal(t, 1, downEnded)
			assert.False(t, g.SvcOpen(n.C1, n.GateIP1, closedWait))
		})
	}
}

// TestShutdown checks on_shutdown: SIGTERM keeps live leases (they end on
// time by themselves) or closes them.
func TestShutdown(t *testing.T) {
	for _, policy := range []string{"keep", "close"} {
		t.Run(policy, func(t *testing.T) {
			g := pgt.Start(t, pgt.Options{Extra: "on_shutdown: " + policy + "\n"})
			n := g.Net
			r := g.Open(n.C1, n.GateIP1, map[string]any{"user": "alice", "code": g.Code(0), "port": pgt.SvcPort, "duration": "5m"})
			require.Equal(t, http.StatusCreated, r.Status, "%v", r.Body)
			require.NoError(t, g.Kill(syscall.SIGTERM), "a clean exit")
			if policy == "keep" {
				assert.True(t, g.SvcOpen(n.C1, n.GateIP1, 5*time.Second))
				assert.Len(t, g.State().Leases, 1)
			} else {
				assert.False(t, g.SvcOpen(n.C1, n.GateIP1, closedWait))
				assert.Empty(t, g.State().Leases)
			}
			ev := g.Events()
			assert.Equal(t, audit.Stop, ev[len(ev)-1].Event)
		})
	}
}

// TestSeedFormBehindFlag runs the seed's form, which portgate only serves
// behind --allow-fixed-password; its leases end too.
func TestSeedFormBehindFlag(t *testing.T) {
	netnstest.RequireTool(t, "nft")
	sum := sha256.Sum256([]byte("randompassword123")) // the seed's example
	extra := fmt.Sprintf("fixed_password: {sha256: %x, port: %d}\n", sum, pgt.SvcPort)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf("ports: [%d]\n%s", pgt.SvcPort, extra)), 0o600))
	out, err := exec.Command(pgt.Binary(t), "--config", cfgPath, "--insecure-plain-http", "--check").CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%s", out)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Contains(t, string(out), "--allow-fixed-password")

	g := pgt.Start(t, pgt.Options{Extra: extra, Flags: []string{"--allow-fixed-password"}})
	post := func(form string) (int, string) {
		resp, err := g.Client(g.Net.C1).Post(g.URL(g.Net.GateIP1)+"/openport", "application/x-www-form-urlencoded", strings.NewReader(form))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := post("pw=wrong")
	assert.Equal(t, http.StatusUnauthorized, status, body)
	assert.False(t, g.SvcOpen(g.Net.C1, g.Net.GateIP1, closedWait))
	status, body = post("pw=randompassword123")
	assert.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, fmt.Sprintf("open: tcp/%d for %s", pgt.SvcPort, g.Net.C1IP))
	assert.True(t, g.SvcOpen(g.Net.C1, g.Net.GateIP1, 5*time.Second))
	assert.False(t, g.SvcOpen(g.Net.C2, g.Net.GateIP2, closedWait))
	assert.Contains(t, g.Log(), "FIXED-PASSWORD MODE", "the daemon warns")
	assert.NotContains(t, g.AuditRaw(), "randompassword123")
}

// TestRefusesPlainHTTPWithoutFlag: without a certificate, portgate serves
// plain HTTP only when told to in so many words.
func TestRefusesPlainHTTPWithoutFlag(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("ports: [22]\nusers:\n  - {name: alice, secret: "+pgt.SecretB32+"}\n"), 0o600))
	out, err := exec.CommandContext(context.Background(), pgt.Binary(t), "--config", cfgPath, "--check").CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%s", out)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Contains(t, string(out), "plain HTTP only with --insecure-plain-http")
	out, err = exec.Command(pgt.Binary(t), "--config", cfgPath, "--check", "--insecure-plain-http").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "configuration ok")
}
