package lab_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps/host"
)

// Every lab host runs sshd; the lab's ssh_config reaches them with the
// system client and with opsdrill, the inner host only through the bastion.
func TestLabOverSSH(t *testing.T) {
	l := labtest.Up(t, "hosts", lab.BastionEnv)
	ctx := testCtx(t, 3*time.Minute)
	cfg := l.SSHConfig()
	for _, f := range []string{lab.SSHConfigFile, lab.SSHKeyFile, lab.SSHKnownHosts, lab.SSHVarsFile} {
		require.FileExists(t, filepath.Join(l.SSHDir(), f))
	}
	st, err := os.Stat(filepath.Join(l.SSHDir(), lab.SSHKeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the private key is the user's only")

	// The system OpenSSH client, host keys pinned (StrictHostKeyChecking yes).
	for _, name := range []string{"client1", lab.BastionInner} {
		out, err := exec.CommandContext(ctx, "ssh", "-F", cfg, "-o", "BatchMode=yes", name, "hostname").CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Equal(t, name+"\n", string(out))
	}
	// No root login, and the inner host is refused without the bastion.
	out, err := exec.CommandContext(ctx, "ssh", "-F", cfg, "-o", "BatchMode=yes", "-l", "root", "client1", "true").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "Permission denied")
	out, err = exec.CommandContext(ctx, "ssh", "-F", cfg, "-o", "BatchMode=yes", "-o", "ProxyJump=none", "-o", "ConnectTimeout=3", lab.BastionInner, "true").CombinedOutput()
	require.Error(t, err, "the inner host answers the bastion only")
	assert.Contains(t, string(out), "timed out")

	// opsdrill's transport, through the same file.
	p := &host.Pool{SSHConfig: cfg}
	t.Cleanup(func() { _ = p.Close() })
	for _, tc := range []struct{ ref, want string }{
		{"ssh://client1", "ops client1"},
		{"ssh://client1?sudo=true", "root client1"},
		{"ssh://" + lab.BastionInner + "?sudo=true", "root inner"},
	} {
		h, err := p.Open(ctx, tc.ref)
		require.NoError(t, err, tc.ref)
		res, err := h.Run(ctx, host.Command{Args: []string{"sh", "-c", `echo "$(id -un) $(hostname)"`}})
		require.NoError(t, err)
		assert.Equal(t, tc.want+"\n", res.Stdout, tc.ref)
	}

	// via: the private name resolves on the bastion only, and its service
	// answers through it.
	addr := net.JoinHostPort(lab.BastionInnerName, strconv.Itoa(lab.BastionHTTPPort))
	c, err := host.DialVia(host.WithPool(ctx, p), "ssh://"+lab.BastionHost, "tcp", addr)
	require.NoError(t, err)
	_, err = io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	require.NoError(t, err)
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Contains(t, string(b), "inner ok")
	inner, err := l.Host(lab.BastionInner)
	require.NoError(t, err)
	assert.Equal(t, inner.Addr(lab.BastionHTTPPort), c.RemoteAddr().String())
	_, err = net.LookupHost(lab.BastionInnerName)
	assert.Error(t, err, "the private name is unknown here")
	d := net.Dialer{Timeout: 2 * time.Second}
	_, err = d.DialContext(ctx, "tcp", inner.Addr(lab.BastionHTTPPort))
	assert.Error(t, err, "the inner host's service is fenced off from here")

	// The inner host is on a network of its own: the bastion alone has an
	// address there, and a host of the lab network cannot reach it.
	require.NotEmpty(t, l.PrivateNetwork)
	assert.True(t, l.PrivateSubnet.Contains(inner.IP), "inner %s on the private subnet %s", inner.IP, l.PrivateSubnet)
	assert.False(t, l.Subnet.Contains(inner.IP), "inner %s is not on the lab network %s", inner.IP, l.Subnet)
	bastion, err := l.Host(lab.BastionHost)
	require.NoError(t, err)
	assert.True(t, l.PrivateSubnet.Contains(bastion.PrivateIP), "the bastion joins the private network")
	client1, err := l.Host("client1")
	require.NoError(t, err)
	for _, tc := range []struct {
		h    *lab.Host
		want bool
	}{{bastion, true}, {client1, false}} {
		res, err := tc.h.Exec(ctx, "ip", "-4", "-o", "addr", "show")
		require.NoError(t, err)
		require.NoError(t, res.Err())
		on := false
		for _, f := range strings.Fields(res.Stdout) {
			if p, err := netip.ParsePrefix(f); err == nil && l.PrivateSubnet.Contains(p.Addr()) {
				on = true
			}
		}
		assert.Equal(t, tc.want, on, "%s has an address on the private network: %s", tc.h.Name, res.Stdout)
	}
	res, err := client1.Exec(ctx, "curl", "-sS", "--max-time", "3", "http://"+inner.Addr(lab.BastionHTTPPort)+"/")
	require.NoError(t, err)
	assert.NotEqual(t, 0, res.ExitCode, "a lab host other than the bastion reaches the inner host: %s", res.Stdout)
	res, err = bastion.Exec(ctx, "curl", "-sS", "--max-time", "3", "http://"+inner.Addr(lab.BastionHTTPPort)+"/")
	require.NoError(t, err)
	require.NoError(t, res.Err())
	assert.Equal(t, "inner ok\n", res.Stdout)

	// vars-ssh.yaml names the same hosts over SSH.
	raw, err := os.ReadFile(filepath.Join(l.SSHDir(), lab.SSHVarsFile))
	require.NoError(t, err)
	var vars map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &vars))
	assert.Equal(t, "ssh://inner?sudo=true", vars["bastion"].(map[string]any)["inner"])
	assert.NotContains(t, string(raw), "lab:")
}

// A lab host's sshd killed mid-command: the command errors naming the host,
// and the next one reconnects once sshd is back. A command that outlives
// its deadline is gone from the host.
func TestLabSSHFaults(t *testing.T) {
	l := labtest.Up(t, "hosts")
	ctx := testCtx(t, 2*time.Minute)
	p := &host.Pool{SSHConfig: l.SSHConfig()}
	t.Cleanup(func() { _ = p.Close() })
	h, err := p.Open(ctx, "ssh://client1")
	require.NoError(t, err)
	client1, err := l.Host("client1")
	require.NoError(t, err)

	// A deadline and a cancel, as the login user and under sudo (the
	// command runner runs as root then), through the runner and in a
	// session of its own (stdin).
	hs, err := p.Open(ctx, "ssh://client1?sudo=true")
	require.NoError(t, err)
	for i, tc := range []struct {
		h      host.Host
		stdin  []byte
		cancel bool
	}{
		{h: h}, {h: h, cancel: true}, {h: h, stdin: []byte("x"), cancel: true},
		{h: hs}, {h: hs, cancel: true}, {h: hs, stdin: []byte("x"), cancel: true},
	} {
		marker := strconv.Itoa(3041 + i)
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		if tc.cancel {
			short, cancel = context.WithCancel(ctx)
			time.AfterFunc(1500*time.Millisecond, cancel)
		}
		_, err = tc.h.Run(short, host.Command{Args: []string{"sh", "-c", "sleep " + marker + " & sleep " + marker}, Stdin: tc.stdin})
		cancel()
		require.ErrorIs(t, err, short.Err(), "%s %d", tc.h, i)
		require.Eventually(t, func() bool {
			r, err := client1.Exec(ctx, "sh", "-c", "pgrep -f '^sleep "+marker+"' || true")
			return err == nil && strings.TrimSpace(r.Stdout) == ""
		}, 10*time.Second, 200*time.Millisecond, "no leftover process on the host (%s %d)", tc.h, i)
		res, err := tc.h.Run(ctx, host.Command{Args: []string{"id", "-un"}})
		require.NoError(t, err)
		assert.Contains(t, []string{"ops\n", "root\n"}, res.Stdout, "the host runs the next command")
	}

	errc := make(chan error, 1)
	go func() {
		_, err := h.Run(ctx, host.Command{Args: []string{"sleep", "20"}})
		errc <- err
	}()
	time.Sleep(time.Second)
	_, err = client1.Exec(ctx, "pkill", "-KILL", "sshd")
	require.NoError(t, err)
	select {
	case err := <-errc:
		require.ErrorIs(t, err, host.ErrConnLost)
		assert.Contains(t, err.Error(), "ssh://client1")
	case <-time.After(15 * time.Second):
		t.Fatal("the command did not end with its connection")
	}
	// sshd is down: a clear connection error, then back up, reconnected.
	_, err = h.Run(ctx, host.Command{Args: []string{"true"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused")
	_, err = client1.Exec(ctx, "/usr/sbin/sshd")
	require.NoError(t, err)
	// sshd listens a moment after its start command returns.
	require.Eventually(t, func() bool {
		res, err := h.Run(ctx, host.Command{Args: []string{"hostname"}})
		return err == nil && res.Stdout == "client1\n"
	}, 10*time.Second, 200*time.Millisecond, "the host is reached again")
}
