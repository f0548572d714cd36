package host

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

func openSSH(t *testing.T, cfg, ref string) (*Pool, Host) {
	t.Helper()
	p := &Pool{SSHConfig: cfg}
	t.Cleanup(func() { _ = p.Close() })
	h, err := p.Open(context.Background(), ref)
	require.NoError(t, err)
	return p, h
}

func TestSSHRun(t *testing.T) {
	s := sshtest.Start(t)
	cfg := s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})
	p, h := openSSH(t, cfg, "ssh://box")
	ctx := context.Background()

	res, err := h.Run(ctx, Command{Args: []string{"sh", "-c", `cat; printf '%s|%s' "$GREETING" "$2" >&2; exit 4`, "sh", "it's", "a b"},
		Stdin: []byte("in"), Env: []string{"GREETING=hi 'there'"}})
	require.NoError(t, err)
	assert.Equal(t, Result{Stdout: "in", Stderr: "hi 'there'|a b", ExitCode: 4}, res)

	dst := filepath.Join(t.TempDir(), "sub", "f")
	require.NoError(t, h.WriteFile(ctx, dst, []byte("data\n"), 0o640))
	b, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.Equal(t, "data\n", string(b))
	st, err := os.Stat(dst)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	require.NoError(t, LookPath(ctx, h, "sh"))
	require.Error(t, LookPath(ctx, h, "no-such-program-here"))

	// Many concurrent commands, more than sshd's MaxSessions, share one
	// connection.
	var wg sync.WaitGroup
	for i := range 25 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h2, err := p.Open(ctx, "ssh://box")
			if !assert.NoError(t, err) {
				return
			}
			r, err := h2.Run(ctx, Command{Args: []string{"echo", strings.Repeat("x", i)}})
			assert.NoError(t, err)
			assert.Equal(t, strings.Repeat("x", i)+"\n", r.Stdout)
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, s.Accepted(t), "one login for every command")
}

func TestSSHSecretsNotOnCommandLine(t *testing.T) {
	s := sshtest.Start(t)
	cfg := s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})
	_, h := openSSH(t, cfg, "ssh://box")
	ctx := context.Background()
	const secret = "s3cr3t-token-4711"
	// With stdin: a session of its own; without: the host's runner.
	for _, stdin := range [][]byte{[]byte(secret), nil} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			res, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "sleep 2; echo $TOKEN"}, Env: []string{"TOKEN=" + secret}, Stdin: stdin})
			assert.NoError(t, err)
			assert.Equal(t, secret+"\n", res.Stdout)
		}()
		time.Sleep(700 * time.Millisecond)
		ps, err := exec.Command("ps", "-eo", "args").Output()
		require.NoError(t, err)
		assert.Contains(t, string(ps), "sleep 2; echo $TOKEN", "the command is running")
		assert.NotContains(t, string(ps), secret, "no secret in any command line")
		<-done
	}
}

func TestSSHTimeoutKillsRemoteProcess(t *testing.T) {
	s := sshtest.Start(t)
	cfg := s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})
	_, h := openSSH(t, cfg, "ssh://box")
	for _, tc := range []struct {
		name   string
		marker string
		cancel bool
	}{
		{name: "deadline", marker: "3011"},
		{name: "cancel", marker: "3012", cancel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if tc.cancel {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(time.Second, cancel)
			}
			defer cancel()
			start := time.Now()
			// A grandchild too: the whole group must go.
			_, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "sleep " + tc.marker + " & sleep " + tc.marker}})
			require.Error(t, err)
			assert.ErrorIs(t, err, ctx.Err())
			assert.Less(t, time.Since(start), 6*time.Second)
			assert.Eventually(t, func() bool {
				out, _ := exec.Command("pgrep", "-f", "^sleep "+tc.marker).Output()
				return strings.TrimSpace(string(out)) == ""
			}, 5*time.Second, 50*time.Millisecond, "no sleep left on the host")
		})
	}
}

func TestSSHFaults(t *testing.T) {
	s := sshtest.Start(t)
	good := s.KnownHosts(t, s.HostKey)
	other := sshtest.WriteKey(t, filepath.Join(t.TempDir(), "other"))
	wrong := s.KnownHosts(t, other)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	strangerKey := filepath.Join(t.TempDir(), "stranger")
	sshtest.WriteKey(t, strangerKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadPort := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	for _, tc := range []struct {
		name, known, extra, ref string
		want                    []string
		is                      error
	}{
		{name: "wrong host key", known: wrong, want: []string{"ssh://box", "host key", "does not match"}, is: ErrHostKey},
		{name: "unknown host", known: empty, want: []string{"ssh://box", "host key", "StrictHostKeyChecking accept-new"}, is: ErrHostKey},
		{name: "strict yes", known: empty, extra: "StrictHostKeyChecking yes", want: []string{"host key"}, is: ErrHostKey},
		{name: "refused auth", known: good, extra: "IdentityFile " + strangerKey, ref: "ssh://nobody-here@box", want: []string{"ssh://nobody-here@box", "authentication refused"}, is: ErrAuth},
		{name: "unreachable bastion", known: good, extra: "ProxyJump deadbastion", want: []string{"ProxyJump", "ssh://deadbastion", "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blocks := map[string]string{"box": tc.extra}
			cfg := s.Config(t, tc.known, blocks)
			// deadbastion: a port where nothing listens.
			b, err := os.ReadFile(cfg)
			require.NoError(t, err)
			b = append(b, []byte("Host deadbastion\n  HostName 127.0.0.1\n  Port "+itoa(deadPort)+"\n")...)
			require.NoError(t, os.WriteFile(cfg, b, 0o600))
			ref := tc.ref
			if ref == "" {
				ref = "ssh://box"
			}
			p := &Pool{SSHConfig: cfg}
			defer p.Close()
			_, err = p.Open(context.Background(), ref)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestSSHAcceptNew(t *testing.T) {
	s := sshtest.Start(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	cfg := s.Config(t, known, map[string]string{"box": "StrictHostKeyChecking accept-new"})
	_, h := openSSH(t, cfg, "ssh://box")
	res, err := h.Run(context.Background(), Command{Args: []string{"true"}})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	b, err := os.ReadFile(known)
	require.NoError(t, err)
	assert.Contains(t, string(b), "ssh-ed25519", "the new key was pinned")

	// Pinned now: the system ssh agrees with the line written.
	out, err := exec.Command("ssh", "-F", cfg, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "box", "echo", "ok").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "ok\n", string(out))
}

func TestSSHProxyJumpAndDial(t *testing.T) {
	s := sshtest.Start(t)
	known := s.KnownHosts(t, s.HostKey)
	cfg := s.Config(t, known, map[string]string{
		"bastion": "",
		"hop2":    "",
		"inner":   "ProxyJump bastion",
		"deep":    "ProxyJump bastion,hop2",
	})
	ctx := context.Background()
	for _, ref := range []string{"ssh://inner", "ssh://deep"} {
		t.Run(ref, func(t *testing.T) {
			before := s.Accepted(t)
			p, h := openSSH(t, cfg, ref)
			res, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "echo $SSH_CONNECTION"}})
			require.NoError(t, err)
			// Reached through the bastion: the connection comes from the
			// server's own forwarding, on loopback.
			assert.Contains(t, res.Stdout, "127.0.0.1")
			hops := 2
			if ref == "ssh://deep" {
				hops = 3
			}
			assert.Equal(t, hops, s.Accepted(t)-before, "one login per hop")
			_, err = p.Open(ctx, "ssh://bastion")
			require.NoError(t, err)
			assert.Equal(t, hops, s.Accepted(t)-before, "the bastion connection is shared")
		})
	}

	// Dial: the far side resolves the name.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello")
			c.Close()
		}
	}()
	_, h := openSSH(t, cfg, "ssh://inner")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c, err := h.Dial(ctx, "tcp", net.JoinHostPort("localhost", port))
	require.NoError(t, err)
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	// Deadlines work on a tunnelled connection as on a socket (database
	// drivers set one on every read).
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	sc, err := h.Dial(ctx, "tcp", silent.Addr().String())
	require.NoError(t, err)
	require.NoError(t, sc.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = sc.Read(make([]byte, 1))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "a read past its deadline times out")
	require.NoError(t, sc.Close())
	_, err = h.Dial(ctx, "tcp", "127.0.0.1:"+itoa(freePort(t)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refused")
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestSSHConnectionDropped(t *testing.T) {
	s := sshtest.Start(t)
	cfg := s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})
	_, h := openSSH(t, cfg, "ssh://box")
	ctx := context.Background()
	// The session's sshd is killed mid-command (its listener stays).
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		step, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := h.Run(step, Command{Args: []string{"sh", "-c", "sleep 3021"}})
		errc <- err
	}()
	time.Sleep(500 * time.Millisecond)
	out, _ := exec.Command("pgrep", "-f", "^sshd: root").Output()
	require.NotEmpty(t, strings.TrimSpace(string(out)), "the connection's sshd runs")
	for _, pid := range strings.Fields(string(out)) {
		_ = exec.Command("kill", "-KILL", pid).Run()
	}
	select {
	case err := <-errc:
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrConnLost)
		assert.Contains(t, err.Error(), "ssh://box")
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not end with its connection")
	}
	assert.Less(t, time.Since(start), 3*time.Second, "the error came with the drop, not the deadline")
	// Nobody can signal the command now; its deadline still ends it.
	assert.Eventually(t, func() bool {
		out, _ := exec.Command("pgrep", "-f", "^sleep 3021").Output()
		return strings.TrimSpace(string(out)) == ""
	}, 8*time.Second, 100*time.Millisecond, "no sleep left on the host after the deadline")
	// The next command reconnects.
	res, err := h.Run(ctx, Command{Args: []string{"echo", "back"}})
	require.NoError(t, err)
	assert.Equal(t, "back\n", res.Stdout)
	assert.Equal(t, 2, s.Accepted(t))
}

func TestSSHAgentKeys(t *testing.T) {
	s := sshtest.Start(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	require.NoError(t, agent.Start())
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	require.Eventually(t, func() bool { _, err := os.Stat(sock); return err == nil }, 5*time.Second, 20*time.Millisecond)
	add := exec.Command("ssh-add", s.UserKey)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	out, err := add.CombinedOutput()
	require.NoError(t, err, string(out))
	// The key is only in the agent: the file named is another one.
	other := filepath.Join(t.TempDir(), "other")
	sshtest.WriteKey(t, other)
	known := s.KnownHosts(t, s.HostKey)
	t.Setenv("SSH_AUTH_SOCK", sock)
	for _, tc := range []struct {
		name, extra string
		ok          bool
	}{
		{name: "agent key offered", extra: "IdentitiesOnly no\nIdentityFile " + other, ok: true},
		{name: "IdentitiesOnly keeps the agent's other keys back", extra: "IdentitiesOnly yes\nIdentityFile " + other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s.Config(t, known, map[string]string{"box": tc.extra})
			// The later IdentitiesOnly/IdentityFile lines lose to the
			// generated ones (first value wins): rewrite them.
			b, err := os.ReadFile(cfg)
			require.NoError(t, err)
			txt := strings.Replace(string(b), "  IdentityFile "+s.UserKey+"\n  IdentitiesOnly yes\n", "", 1)
			require.NoError(t, os.WriteFile(cfg, []byte(txt), 0o600))
			p := &Pool{SSHConfig: cfg}
			defer p.Close()
			_, err = p.Open(context.Background(), "ssh://box")
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrAuth)
		})
	}
}
