package lab_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/tcp"
)

// benchCommands is how many commands each way of reaching a host runs.
const benchCommands = 200

// percentiles reports p50 and p99 of ds in milliseconds.
func percentiles(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	p := func(q float64) float64 {
		return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.50), "p50_ms")
	b.ReportMetric(p(0.99), "p99_ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("%s: %d commands, p50 %.2f ms, p99 %.2f ms", name, len(ds), p(0.50), p(0.99))
}

func timeEach(b *testing.B, run func() error) []time.Duration {
	ds := make([]time.Duration, 0, benchCommands)
	for range benchCommands {
		t := time.Now()
		if err := run(); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t))
	}
	return ds
}

// BenchmarkHostCommand: the cost of one command (`true`) on a lab host,
// over opsdrill's reused SSH connection, a fresh ssh process per command,
// the system ssh multiplexed by ControlMaster, and docker exec (lab:).
//
//	make bench-ssh
func BenchmarkHostCommand(b *testing.B) {
	l := labtest.Up(b, "hosts")
	ctx := context.Background()
	cfg := l.SSHConfig()
	client1, err := l.Host("client1")
	if err != nil {
		b.Fatal(err)
	}
	sshCmd := func(extra ...string) func() error {
		return func() error {
			args := append([]string{"-F", cfg, "-o", "BatchMode=yes"}, extra...)
			out, err := exec.Command("ssh", append(args, "client1", "true")...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ssh: %w: %s", err, out)
			}
			return nil
		}
	}
	b.Run("reused-connection", func(b *testing.B) {
		p := &host.Pool{SSHConfig: cfg}
		defer p.Close()
		h, err := p.Open(ctx, "ssh://client1")
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			percentiles(b, "reused connection (opsdrill)", timeEach(b, func() error {
				_, err := h.Run(ctx, host.Command{Args: []string{"true"}})
				return err
			}))
		}
	})
	// The floor: a bare session running `true`, without the wrapper that
	// gives the command its process group and kill on cancellation.
	b.Run("bare-session", func(b *testing.B) {
		p := &host.Pool{SSHConfig: cfg}
		defer p.Close()
		h, err := p.Open(ctx, "ssh://client1")
		if err != nil {
			b.Fatal(err)
		}
		c, err := h.(*host.SSH).Client(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			percentiles(b, "bare session (no wrapper)", timeEach(b, func() error {
				s, err := c.NewSession()
				if err != nil {
					return err
				}
				defer s.Close()
				return s.Run("true")
			}))
		}
	})
	b.Run("fresh-ssh-process", func(b *testing.B) {
		for range b.N {
			percentiles(b, "fresh ssh process", timeEach(b, sshCmd("-o", "ControlMaster=no", "-o", "ControlPath=none")))
		}
	})
	b.Run("ssh-controlmaster", func(b *testing.B) {
		sock := filepath.Join(b.TempDir(), "cm")
		opts := []string{"-o", "ControlMaster=auto", "-o", "ControlPath=" + sock, "-o", "ControlPersist=60"}
		defer func() { _ = exec.Command("ssh", "-F", cfg, "-o", "ControlPath="+sock, "-O", "exit", "client1").Run() }()
		if err := sshCmd(opts...)(); err != nil {
			b.Fatal(err)
		}
		for range b.N {
			percentiles(b, "system ssh, ControlMaster", timeEach(b, sshCmd(opts...)))
		}
	})
	b.Run("docker-exec", func(b *testing.B) {
		for range b.N {
			percentiles(b, "docker exec (lab:)", timeEach(b, func() error {
				_, err := client1.Exec(ctx, "true")
				return err
			}))
		}
	})
}

// BenchmarkFanOut20: tcp.probe from 20 hosts at once, each over its own
// SSH connection, against the time of the slowest host and the sum.
func BenchmarkFanOut20(b *testing.B) {
	const n = 20
	env := lab.Env{Name: "bench-fanout", Doc: "20 plain hosts (benchmark only)"}
	for i := range n {
		env.Hosts = append(env.Hosts, lab.HostSpec{Name: fmt.Sprintf("fan%02d", i)})
	}
	if _, ok := lab.LookupEnv(env.Name); !ok {
		lab.RegisterEnv(env)
	}
	l := labtest.Up(b, env.Name)
	ctx := context.Background()
	target := l.Hosts()[0].Addr(22)
	probeAll := func(p *host.Pool) (wall time.Duration, each []time.Duration) {
		each = make([]time.Duration, n)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			wg.Go(func() {
				t := time.Now()
				pr := &tcp.Probe{Address: target, Expect: "open", Timeout: 10 * time.Second, Host: fmt.Sprintf("ssh://fan%02d", i)}
				if err := pr.Run(host.WithPool(ctx, p), steps.NewEnv("s", "x", b.TempDir(), steps.Hooks{})); err != nil {
					b.Error(err)
				}
				each[i] = time.Since(t)
			})
		}
		wg.Wait()
		return time.Since(start), each
	}
	report := func(b *testing.B, what string, wall time.Duration, each []time.Duration) {
		var sum time.Duration
		for _, d := range each {
			sum += d
		}
		slowest := slices.Max(each)
		b.ReportMetric(float64(wall.Milliseconds()), "wall_ms")
		b.ReportMetric(float64(slowest.Milliseconds()), "slowest_ms")
		b.ReportMetric(float64(sum.Milliseconds()), "sum_ms")
		b.ReportMetric(0, "ns/op")
		b.Logf("%s: %d hosts, wall %s, slowest host %s, sum %s", what, n, wall.Round(time.Millisecond), slowest.Round(time.Millisecond), sum.Round(time.Millisecond))
	}
	for range b.N {
		p := &host.Pool{SSHConfig: l.SSHConfig()}
		wall, each := probeAll(p)
		b.Run("cold", func(b *testing.B) { report(b, "cold (connect + probe)", wall, each) })
		wall, each = probeAll(p)
		b.Run("warm", func(b *testing.B) { report(b, "warm (connections reused)", wall, each) })
		_ = p.Close()
	}
}
