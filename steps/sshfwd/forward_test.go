package sshfwd

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

// fixture is a real OpenSSH server on loopback, a pool reaching it as
// ssh://box, and a small HTTP service standing in for the home service.
type fixture struct {
	srv     *sshtest.Server
	ctx     context.Context
	service *httptest.Server
}

func newFixture(t *testing.T, sshdExtra string) *fixture {
	s := sshtest.StartWith(t, sshdExtra)
	p := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})}
	t.Cleanup(func() { _ = p.Close() })
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "home service") }))
	t.Cleanup(svc.Close)
	return &fixture{srv: s, ctx: host.WithPool(context.Background(), p), service: svc}
}

// undoer collects the step's undo actions.
type undoer struct{ fns []func(context.Context) error }

func (u *undoer) run() {
	for i := len(u.fns) - 1; i >= 0; i-- {
		_ = u.fns[i](context.Background())
	}
	u.fns = nil
}

func (fx *fixture) run(t *testing.T, f *Forward, ctx context.Context) (map[string]any, *undoer, error) {
	t.Helper()
	require.NoError(t, f.Validate())
	u := &undoer{}
	env := steps.NewEnv("fwd", "tunnel", t.TempDir(), steps.Hooks{
		Undo: func(_ string, fn func(context.Context) error) { u.fns = append(u.fns, fn) },
		Log:  func(l string) { t.Log(l) },
	})
	t.Cleanup(u.run)
	err := f.Run(ctx, env)
	return env.Outputs(), u, err
}

func get(addr string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func newForward(mode, bind, target string) *Forward {
	f := &Forward{Host: "ssh://box", Mode: mode, Bind: bind, Target: target, Keepalive: 200 * time.Millisecond, KeepaliveMax: 3}
	return f
}

// TestRemoteForward is the runbook's ssh -R: the server listens, the
// service answers through it while the forward is up and not after the
// undo; GatewayPorts decides what the server really binds.
func TestRemoteForward(t *testing.T) {
	tests := []struct {
		name       string
		sshd       string
		bind       string
		listening  string // address prefix the server binds, IPv4
		listening6 string // and IPv6
	}{
		{"GatewayPorts yes binds every interface", "GatewayPorts yes", "*:0", "0.0.0.0:", "[::]:"},
		{"GatewayPorts clientspecified honours the address asked", "GatewayPorts clientspecified", "127.0.0.1:0", "127.0.0.1:", "127.0.0.1:"},
		{"GatewayPorts no binds loopback even for *", "GatewayPorts no", "*:0", "127.0.0.1:", "[::1]:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.sshd)
			f := newForward(modeRemote, tt.bind, strings.TrimPrefix(fx.service.URL, "http://"))
			out, u, err := fx.run(t, f, fx.ctx)
			require.NoError(t, err)
			port := out["port"].(int)
			require.NotZero(t, port, "the server picked a port and said which")
			require.NotEmpty(t, out["listening"])
			for _, a := range out["listening"].([]any) {
				a := a.(string)
				assert.True(t, strings.HasPrefix(a, tt.listening) || strings.HasPrefix(a, tt.listening6), "listening %v", out["listening"])
			}
			addr := "127.0.0.1:" + strconv.Itoa(port)
			body, err := get(addr)
			require.NoError(t, err)
			assert.Equal(t, "home service", body)
			u.run()
			require.Eventually(t, func() bool { _, err := get(addr); return err != nil }, 5*time.Second, 50*time.Millisecond,
				"the server stops listening once the forward is torn down")
		})
	}
}

// TestLocalForward is ssh -L: this machine listens and the server
// connects to the target.
func TestLocalForward(t *testing.T) {
	fx := newFixture(t, "")
	f := newForward(modeLocal, "", strings.TrimPrefix(fx.service.URL, "http://"))
	out, u, err := fx.run(t, f, fx.ctx)
	require.NoError(t, err)
	bound := out["bound_address"].(string)
	assert.True(t, strings.HasPrefix(bound, "127.0.0.1:"), bound)
	body, err := get(bound)
	require.NoError(t, err)
	assert.Equal(t, "home service", body)
	u.run()
	_, err = net.DialTimeout("tcp", bound, time.Second)
	assert.Error(t, err, "nothing listens after the undo")
}

// TestForwardDuration holds the forward, then tears it down itself and
// reports the whole timeline.
func TestForwardDuration(t *testing.T) {
	fx := newFixture(t, "GatewayPorts clientspecified")
	f := newForward(modeRemote, "127.0.0.1:0", strings.TrimPrefix(fx.service.URL, "http://"))
	f.Duration = 1500 * time.Millisecond
	require.NoError(t, f.Validate())
	up := make(chan string, 1)
	env := steps.NewEnv("fwd", "tunnel", t.TempDir(), steps.Hooks{Log: func(l string) {
		if rest, ok := strings.CutPrefix(l, "forward up: "); ok {
			up <- strings.Fields(rest)[0]
		}
	}})
	done := make(chan struct{})
	var err error
	go func() {
		err = f.Run(fx.ctx, env)
		close(done)
	}()
	// While it holds, the service answers through it.
	bound := <-up
	body, gerr := get(bound)
	require.NoError(t, gerr)
	assert.Equal(t, "home service", body)
	<-done
	require.NoError(t, err)
	out := env.Outputs()
	assert.Equal(t, 1, out["connections"])
	assert.Equal(t, "duration elapsed", out["down_reason"])
	events := []string{}
	for _, e := range out["timeline"].([]any) {
		events = append(events, e.(map[string]any)["event"].(string))
	}
	assert.Equal(t, []string{"up", "down"}, events)
	assert.Equal(t, 0, out["keepalive_misses"])
	_, gerr = get(bound)
	assert.Error(t, gerr, "torn down at the end of the duration")
}

// TestForwardKeepaliveMisses freezes the server's side of the connection:
// keepalives go unanswered, the misses are on the timeline and the tunnel
// is declared down, which fails a held forward.
func TestForwardKeepaliveMisses(t *testing.T) {
	fx := newFixture(t, "")
	f := newForward(modeRemote, "127.0.0.1:0", strings.TrimPrefix(fx.service.URL, "http://"))
	f.Duration = 30 * time.Second
	require.NoError(t, f.Validate())
	up := make(chan struct{}, 1)
	env := steps.NewEnv("fwd", "tunnel", t.TempDir(), steps.Hooks{Log: func(l string) {
		if strings.HasPrefix(l, "forward up: ") {
			up <- struct{}{}
		}
	}})
	done := make(chan struct{})
	var err error
	go func() {
		err = f.Run(fx.ctx, env)
		close(done)
	}()
	<-up
	// The per-connection sshd processes are the server's children.
	require.NotEmpty(t, descendants(fx.srv))
	for _, pid := range descendants(fx.srv) {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	t.Cleanup(func() {
		for _, pid := range descendants(fx.srv) {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the frozen tunnel was not declared down")
	}
	require.Error(t, err)
	out := env.Outputs()
	assert.True(t, steps.IsFailure(err), err)
	assert.Contains(t, err.Error(), "connection lost: 3 keepalives unanswered")
	assert.Equal(t, 3, out["keepalive_misses"])
	var events []string
	for _, e := range out["timeline"].([]any) {
		events = append(events, e.(map[string]any)["event"].(string))
	}
	assert.Equal(t, []string{"up", "keepalive_miss", "keepalive_miss", "keepalive_miss", "down"}, events)
}

// descendants lists the sshd processes below the test server's.
func descendants(s *sshtest.Server) []int {
	out, err := exec.Command("pgrep", "-f", "sshd.*"+s.Dir).Output()
	if err != nil {
		return nil
	}
	var pids []int
	queue := strings.Fields(string(out))
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		res, _ := exec.Command("pgrep", "-P", p).Output()
		for _, c := range strings.Fields(string(res)) {
			if n, err := strconv.Atoi(c); err == nil {
				pids = append(pids, n)
				queue = append(queue, c)
			}
		}
	}
	return pids
}

func TestForwardValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(f *Forward)
		want   string
	}{
		{"not ssh", func(f *Forward) { f.Host = "lab:server" }, "needs an ssh:// host"},
		{"remote without bind", func(f *Forward) { f.Bind = "" }, "bind: missing"},
		{"bad bind", func(f *Forward) { f.Bind = "server.example:9090" }, "must be an IP, localhost or *"},
		{"bad port", func(f *Forward) { f.Bind = "*:99999" }, "expected [address:]port"},
		{"bad target", func(f *Forward) { f.Target = "home" }, "target: expected host:port"},
		{"target_via with local", func(f *Forward) { f.Mode = modeLocal; f.TargetVia = "lab:home" }, "only for mode remote"},
		{"unknown mode", func(f *Forward) { f.Mode = "dynamic" }, "mode: must be remote or local"},
		{"no keepalive", func(f *Forward) { f.KeepaliveMax = 0 }, "keepalive_max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newForward(modeRemote, "*:9090", "192.168.0.75:80")
			tt.mutate(f)
			err := f.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
