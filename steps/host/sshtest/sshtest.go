// Package sshtest runs a real OpenSSH server on a loopback port for tests
// of steps that act over ssh://: a fresh host key, a fresh user key it
// accepts for the current user, and helpers that write the known_hosts and
// ssh_config files a test points opsdrill at.
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Server is a real OpenSSH server on a loopback port, started for one
// test.
type Server struct {
	Dir     string
	Port    int
	HostKey ssh.PublicKey
	UserKey string // private key file the server accepts
	Log     string // sshd's log (-E)
	cmd     *exec.Cmd
}

func needSSHD(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "/usr/bin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("sshd not installed: scripts/install-deps.sh installs openssh-server")
	return ""
}

// WriteKey writes a fresh ed25519 key pair at path and path.pub.
func WriteKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(blk), 0o600))
	spub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(spub), 0o644))
	return spub
}

// Start runs sshd -D on 127.0.0.1 with a fresh host key, accepting one
// fresh user key for any user (tests log in as root: the machine's only
// user), until the test ends.
func Start(t *testing.T) *Server {
	t.Helper()
	return StartWith(t, "")
}

// StartWith is Start with extra sshd_config lines placed before the
// defaults (sshd keeps the first value of a keyword), e.g.
// "GatewayPorts yes\nClientAliveInterval 180".
func StartWith(t *testing.T, extra string) *Server {
	t.Helper()
	bin := needSSHD(t)
	require.NoError(t, os.MkdirAll("/run/sshd", 0o755))
	dir := t.TempDir()
	s := &Server{Dir: dir, Log: filepath.Join(dir, "sshd.log")}
	s.HostKey = WriteKey(t, filepath.Join(dir, "host_key"))
	s.UserKey = filepath.Join(dir, "id_ed25519")
	upub := WriteKey(t, s.UserKey)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(upub), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.Port = ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	cfg := extra + "\n" + fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s/host_key
AuthorizedKeysFile %s/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile none
AllowTcpForwarding yes
MaxStartups 50
LogLevel DEBUG1
`, s.Port, dir, dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600))
	s.start(t, bin)
	return s
}

func (s *Server) start(t *testing.T, bin string) {
	t.Helper()
	s.cmd = exec.Command(bin, "-D", "-f", filepath.Join(s.Dir, "sshd_config"), "-E", s.Log)
	require.NoError(t, s.cmd.Start())
	cmd := s.cmd
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(s.Log)
			t.Logf("sshd log:\n%s", b)
		}
	})
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", s.Addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "sshd listens")
}

// Addr is the server's 127.0.0.1:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// KnownHosts writes a known_hosts file pinning key for the server.
func (s *Server) KnownHosts(t *testing.T, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, key)
	require.NoError(t, os.WriteFile(p, []byte(line+"\n"), 0o600))
	return p
}

// Config writes an ssh_config with one Host block per alias in blocks,
// each pointed at this server, with the extra lines of its value.
func (s *Server) Config(t *testing.T, known string, blocks map[string]string) string {
	t.Helper()
	var b strings.Builder
	for alias, extra := range blocks {
		fmt.Fprintf(&b, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile none\n  ConnectTimeout 5\n", alias, s.Port, s.UserKey, known)
		for _, l := range strings.Split(strings.TrimSpace(extra), "\n") {
			if l != "" {
				fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(l))
			}
		}
	}
	p := filepath.Join(t.TempDir(), "ssh_config")
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o600))
	return p
}

// Accepted counts the logins sshd logged.
func (s *Server) Accepted(t *testing.T) int {
	b, err := os.ReadFile(s.Log)
	require.NoError(t, err)
	return strings.Count(string(b), "Accepted publickey")
}

// Forwarded lists the targets ("host port") of the direct-tcpip channels
// the server opened: what was dialled through it, as it was named.
func (s *Server) Forwarded(t *testing.T) []string {
	b, err := os.ReadFile(s.Log)
	require.NoError(t, err)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(l, "server_request_direct_tcpip: originator "); ok {
			if _, target, ok := strings.Cut(rest, ", target "); ok {
				out = append(out, strings.Replace(strings.TrimSpace(target), " port ", " ", 1))
			}
		}
	}
	return out
}
