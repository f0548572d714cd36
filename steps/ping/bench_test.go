package ping

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

// BenchmarkPingOverhead compares net.ping with the ping binary for the same
// echo requests: count 10 at 10 ms to the loopback address, in-process
// (pro-bing, raw socket) against `ping -c 10 -i 0.01`; and from a lab host,
// the step (docker exec of ping, then parsing and the record) against the
// bare docker exec. Both take at least 90 ms of intervals; the difference
// is the overhead. Run with -benchtime 20x or more.
func BenchmarkPingOverhead(b *testing.B) {
	const count = 10
	interval := 10 * time.Millisecond
	ctx := context.Background()
	step := func(host, addr string) *Ping {
		return &Ping{Address: addr, Count: count, Interval: interval, Timeout: time.Second, Size: 56,
			Expect: "reachable", Privileged: true, Host: host}
	}
	runStep := func(b *testing.B, p *Ping) {
		for b.Loop() {
			env := steps.NewEnv("bench", "ping", b.TempDir(), steps.Hooks{})
			if err := p.Run(ctx, env); err != nil {
				b.Fatal(err)
			}
			if env.Outputs()["received"] != count {
				b.Fatalf("received %v", env.Outputs()["received"])
			}
		}
	}
	argv := []string{"ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", seconds(interval), "-W", "1", "127.0.0.1"}

	b.Run("local/net.ping", func(b *testing.B) {
		if os.Geteuid() != 0 {
			b.Skip("needs root for a raw ICMP socket")
		}
		runStep(b, step("", "127.0.0.1"))
	})
	b.Run("local/ping-binary", func(b *testing.B) {
		if _, err := exec.LookPath("ping"); err != nil || os.Geteuid() != 0 {
			b.Skip("needs root and the ping binary (iputils-ping)")
		}
		for b.Loop() {
			if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})

	l := labtest.Up(b, "hosts")
	server, err := l.Host("server")
	if err != nil {
		b.Fatal(err)
	}
	client, err := l.Host("client1")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("lab/net.ping", func(b *testing.B) {
		runStep(b, step("lab:"+l.ID+"/client1", server.IP.String()))
	})
	b.Run("lab/docker-exec-ping", func(b *testing.B) {
		remote := append(append([]string(nil), argv[:len(argv)-1]...), server.IP.String())
		for b.Loop() {
			res, err := client.Exec(ctx, remote...)
			if err == nil {
				err = res.Err()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
