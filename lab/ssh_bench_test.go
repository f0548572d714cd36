package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// benchCommand is what every way runs: a real program (an exec on the
// host, not a shell builtin) with a line of output.
var benchCommand = []string{"hostname"}

// BenchmarkHostCommand: the cost of one command on a lab host, over
// opsdrill's reused SSH connection (through the host's command runner,
// and in a session of its own as a command with stdin gets), against a
// fresh ssh process per command, the system ssh multiplexed by
// ControlMaster, and docker exec (lab:); and two floors: a bare session
// and one line echoed through a long-lived session.
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
			out, err := exec.Command("ssh", append(append(args, "client1"), benchCommand...)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ssh: %w: %s", err, out)
			}
			return nil
		}
	}
	openHost := func(b *testing.B) *host.SSH {
		p := &host.Pool{SSHConfig: cfg}
		b.Cleanup(func() { _ = p.Close() })
		h, err := p.Open(ctx, "ssh://client1")
		if err != nil {
			b.Fatal(err)
		}
		return h.(*host.SSH)
	}
	run := func(h host.Host, c host.Command) func() error {
		return func() error {
			res, err := h.Run(ctx, c)
			if err == nil && (res.ExitCode != 0 || res.Stdout != "client1\n") {
				err = fmt.Errorf("exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
			}
			return err
		}
	}
	b.Run("runner", func(b *testing.B) {
		h := openHost(b)
		if err := run(h, host.Command{Args: benchCommand})(); err != nil {
			b.Fatal(err) // the runner starts here, outside the timing
		}
		for range b.N {
			percentiles(b, "reused connection, command runner (opsdrill)", timeEach(b, run(h, host.Command{Args: benchCommand})))
		}
	})
	b.Run("session", func(b *testing.B) {
		h := openHost(b)
		for range b.N {
			percentiles(b, "reused connection, a session per command (opsdrill, stdin)", timeEach(b, run(h, host.Command{Args: benchCommand, Stdin: []byte("\n")})))
		}
	})
	// The floor of a session per command: a bare session running the
	// command, without the wrapper that reports its process group.
	b.Run("bare-session", func(b *testing.B) {
		c, err := openHost(b).Client(ctx)
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
				return s.Run(strings.Join(benchCommand, " "))
			}))
		}
	})
	// The floor of a runner: a line there and back through a session
	// running cat (no process start on the host at all).
	b.Run("echo-round-trip", func(b *testing.B) {
		c, err := openHost(b).Client(ctx)
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		in, err := s.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := s.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Start("exec cat"); err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(out)
		for range b.N {
			percentiles(b, "a line echoed by a long-lived session (cat)", timeEach(b, func() error {
				if _, err := io.WriteString(in, "x\n"); err != nil {
					return err
				}
				_, err := r.ReadString('\n')
				return err
			}))
		}
	})
	// What the runner cannot save: the fork and exec of the command on
	// the host, timed there (a loop in sh, the mean of benchCommands).
	b.Run("host-fork-exec", func(b *testing.B) {
		loop := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do ( exec %s ) >/dev/null </dev/null & wait $!; i=$((i+1)); done`, benchCommands, strings.Join(benchCommand, " "))
		for range b.N {
			r, err := client1.Exec(ctx, "sh", "-c", `s=$(date +%s%N); `+loop+`; echo $(( $(date +%s%N) - s ))`)
			if err != nil {
				b.Fatal(err)
			}
			ns, err := strconv.ParseInt(strings.TrimSpace(r.Stdout), 10, 64)
			if err != nil {
				b.Fatalf("%q: %v", r.Stdout, err)
			}
			mean := float64(ns) / benchCommands / 1e6
			b.ReportMetric(mean, "mean_ms")
			b.ReportMetric(0, "ns/op")
			b.Logf("fork and exec on the host, no SSH: %d commands, mean %.2f ms", benchCommands, mean)
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
				_, err := client1.Exec(ctx, benchCommand...)
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
