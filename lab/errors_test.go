package lab_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
)

// busyPort is held open by busy for the whole test binary: the
// "test-busy-port" environment publishes it.
var (
	busy     net.Listener
	busyPort int
)

func init() {
	var err error
	if busy, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		panic(err)
	}
	busyPort = busy.Addr().(*net.TCPAddr).Port

	// Environments that fail in the ways a real one can.
	lab.RegisterEnv(lab.Env{
		Name: "test-never-ready",
		Hosts: []lab.HostSpec{
			{Name: "fine"},
			{Name: "stuck", Ready: &lab.Probe{Cmd: []string{"test", "-e", "/never"}, Timeout: 2 * time.Second}},
		},
	})
	lab.RegisterEnv(lab.Env{
		Name: "test-start-fails",
		Hosts: []lab.HostSpec{
			{Name: "fine2"},
			{Name: "broken", Start: []lab.Command{{Args: []string{"sh", "-c", "echo daemon exploded >&2; exit 4"}}}},
		},
	})
	lab.RegisterEnv(lab.Env{
		Name:  "test-busy-port",
		Hosts: []lab.HostSpec{{Name: "publisher", Ports: []lab.Port{{Container: 80, Host: busyPort}}}},
	})
	lab.RegisterEnv(lab.Env{Name: "test-clash", Hosts: []lab.HostSpec{{Name: "server"}}})
	lab.RegisterEnv(lab.Env{
		Name:  "test-setup-fails",
		Hosts: []lab.HostSpec{{Name: "setup-host"}},
		Setup: func(context.Context, *lab.Lab) error { return errors.New("replication refused") },
	})
	lab.RegisterEnv(lab.Env{
		Name: "test-features",
		Hosts: []lab.HostSpec{{
			Name:     "feat",
			NetAdmin: true,
			Tun:      true,
			Sysctls:  map[string]string{"net.ipv4.ip_forward": "1"},
			Env:      map[string]string{"DRILL_ROLE": "gateway"},
			Files:    []lab.File{{Path: "/etc/drill/motd", Content: []byte("hello from the lab\n"), Mode: 0o600}},
			Start: []lab.Command{
				{Args: []string{"sh", "-c", "echo started >/tmp/started"}},
				{Args: []string{"sh", "-c", "sleep 0.5; touch /tmp/ready"}, Detach: true},
			},
			Ready: &lab.Probe{Cmd: []string{"test", "-e", "/tmp/ready"}, Timeout: 10 * time.Second},
			Ports: []lab.Port{{Container: 7000, Host: freePort()}},
		}},
		Vars: func(l *lab.Lab) (map[string]any, map[string]string) {
			return map[string]any{"feature_port": 7000}, map[string]string{"feature_password": l.Password("feature")}
		},
	})
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestUpFailures(t *testing.T) {
	labtest.Require(t)
	tests := []struct {
		name    string
		opts    lab.Options
		want    error
		mention []string
	}{
		{"unknown environment", lab.Options{Envs: []string{"nope"}}, lab.ErrUnknownEnv, []string{`"nope"`, "hosts"}},
		{"host name clash", lab.Options{Envs: []string{"hosts", "test-clash"}}, lab.ErrConflict, []string{"server", "hosts", "test-clash"}},
		{"image override missing", lab.Options{Envs: []string{"hosts"}, Image: "opsdrill-lab:does-not-exist"}, lab.ErrImageMissing, []string{"opsdrill-lab:does-not-exist", "--image", "drop the override"}},
		{"host never ready", lab.Options{Envs: []string{"test-never-ready"}}, lab.ErrNotReady, []string{"stuck", "not ready after 2s", "test -e /never"}},
		{"start command fails", lab.Options{Envs: []string{"test-start-fails"}}, lab.ErrNotReady, []string{"broken", "daemon exploded", "exited 4"}},
		{"port in use", lab.Options{Envs: []string{"test-busy-port"}}, lab.ErrPortInUse, []string{"publisher", fmt.Sprintf("127.0.0.1:%d", busyPort), "lab down"}},
		{"setup fails", lab.Options{Envs: []string{"test-setup-fails"}}, nil, []string{"set up environment test-setup-fails", "replication refused"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.ID = fmt.Sprintf("t-fail-%d-%d", os.Getpid(), i)
			require.Empty(t, resourcesOf(t, tt.opts.ID))
			l, err := lab.Up(testCtx(t, 2*time.Minute), tt.opts)
			if l != nil {
				t.Cleanup(func() { _ = l.Down(context.Background()) })
			}
			require.Error(t, err)
			assert.Nil(t, l)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			for _, m := range tt.mention {
				assert.Contains(t, err.Error(), m)
			}
			assert.Empty(t, resourcesOf(t, tt.opts.ID), "a failed start leaks nothing")
		})
	}
}

// TestUpRefusesATakenID checks that a failed Up, which cleans up by lab id,
// never removes another lab that has the same id.
func TestUpRefusesATakenID(t *testing.T) {
	labtest.Require(t)
	ctx := testCtx(t, 2*time.Minute)
	id := fmt.Sprintf("t-taken-%d", os.Getpid())
	first, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}, ID: id})
	require.NoError(t, err)
	t.Cleanup(func() { _ = first.Down(context.Background()) })

	_, err = lab.Up(ctx, lab.Options{Envs: []string{"hosts"}, ID: id})
	require.ErrorIs(t, err, lab.ErrAlreadyRunning)
	assert.Contains(t, err.Error(), "lab id "+id+" is in use")
	assert.Len(t, resourcesOf(t, id), 4, "the first lab is untouched")
}

func TestUpCancelledLeaksNothing(t *testing.T) {
	labtest.Require(t)
	for _, after := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		t.Run(after.String(), func(t *testing.T) {
			id := fmt.Sprintf("t-cancel-%d-%d", os.Getpid(), after.Milliseconds())
			ctx, cancel := context.WithTimeout(context.Background(), after)
			defer cancel()
			l, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}, ID: id})
			if err == nil { // the machine was fast enough
				require.NoError(t, l.Down(context.Background()))
			}
			assert.Empty(t, resourcesOf(t, id))
		})
	}
}

func TestHostFeatures(t *testing.T) {
	l := labtest.Up(t, "test-features")
	ctx := testCtx(t, time.Minute)
	h, err := l.Host("feat")
	require.NoError(t, err)

	tests := []struct {
		name string
		cmd  string
		want string
	}{
		{"file copied in with its mode", "stat -c %a /etc/drill/motd && cat /etc/drill/motd", "600\nhello from the lab\n"},
		{"start command ran", "cat /tmp/started", "started\n"},
		{"environment", "echo $DRILL_ROLE", "gateway\n"},
		{"sysctl", "cat /proc/sys/net/ipv4/ip_forward", "1\n"},
		{"tun device", "test -c /dev/net/tun && echo yes", "yes\n"},
		{"NET_ADMIN: add a route and a firewall rule", "ip route add 192.0.2.0/24 dev eth0 && iptables -A INPUT -p tcp --dport 9 -j DROP && echo ok", "ok\n"},
		{"init is lab-init", "cat /proc/1/cmdline | tr '\\0' ' '", "/bin/bash /usr/local/sbin/lab-init "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := h.Exec(ctx, "sh", "-c", tt.cmd)
			require.NoError(t, err)
			require.NoError(t, res.Err())
			assert.Equal(t, tt.want, res.Stdout)
		})
	}

	t.Run("published port reaches the container", func(t *testing.T) {
		_, err := h.ExecCommand(ctx, lab.Command{Args: []string{"sh", "-c", "echo published | nc -l -p 7000 -q 1 >/dev/null 2>&1"}, Detach: true})
		require.NoError(t, err)
		addr, ok := h.HostAddr(7000)
		require.True(t, ok)
		var got []byte
		require.Eventually(t, func() bool {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return false
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 64)
			n, _ := conn.Read(buf)
			got = buf[:n]
			return n > 0
		}, 10*time.Second, 100*time.Millisecond)
		assert.Equal(t, "published\n", string(got))
	})

	t.Run("vars and secrets", func(t *testing.T) {
		v := l.Vars()
		assert.EqualValues(t, 7000, v["feature_port"])
		addr, _ := h.HostAddr(7000)
		assert.Equal(t, addr, v["hosts"].(map[string]any)["feat"].(map[string]any)["ports"].(map[string]any)["7000"])
		secrets := v[lab.SecretsKey].(map[string]any)
		assert.Equal(t, l.Password("feature"), secrets["feature_password"])
		assert.Len(t, l.Password("feature"), 24)
		assert.NotEqual(t, l.Password("feature"), l.Password("other"))
	})

	t.Run("readiness is awaited again after a restart", func(t *testing.T) {
		require.NoError(t, h.Kill(ctx))
		require.NoError(t, h.Start(ctx))
		res, err := h.Exec(ctx, "test", "-e", "/tmp/ready")
		require.NoError(t, err)
		assert.NoError(t, res.Err())
	})
}

// TestNoDockerEngine checks the message when DOCKER_HOST points nowhere.
func TestNoDockerEngine(t *testing.T) {
	tests := []struct{ name, host string }{
		{"missing socket", "unix:///nonexistent/docker.sock"},
		{"closed port", "tcp://127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", tt.host)
			start := time.Now()
			_, err := lab.Up(testCtx(t, time.Minute), lab.Options{Envs: []string{"hosts"}})
			require.ErrorIs(t, err, lab.ErrNoDocker)
			assert.Contains(t, err.Error(), tt.host)
			assert.Contains(t, err.Error(), "DOCKER_HOST")
			assert.Less(t, time.Since(start), 15*time.Second)
		})
	}
}

// TestNoDockerAnywhere hides every Docker socket from a child process (a
// private mount namespace with an empty /run) so that testcontainers' own
// discovery finds no engine either.
func TestNoDockerAnywhere(t *testing.T) {
	if os.Getenv("LAB_TEST_NO_DOCKER_CHILD") == "1" {
		_, err := lab.Up(context.Background(), lab.Options{Envs: []string{"hosts"}})
		fmt.Printf("errors.Is(ErrNoDocker)=%v\n%v\n", errors.Is(err, lab.ErrNoDocker), err)
		return
	}
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1) to hide the Docker socket")
	}
	script := `mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/run 2>/dev/null; exec "$0" -test.run='^TestNoDockerAnywhere$' -test.v`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, os.Args[0])
	cmd.Env = append(os.Environ(), "LAB_TEST_NO_DOCKER_CHILD=1", "DOCKER_HOST=", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "unshare failed") {
		t.Skipf("cannot create a mount namespace here: %s", out)
	}
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "errors.Is(ErrNoDocker)=true")
	assert.Contains(t, string(out), "start the Docker engine")
}
