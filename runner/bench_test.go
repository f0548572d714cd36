package runner

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/reports"
)

func noopScenario(b *testing.B, n int) *Scenario {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("name: noop\nvars: { x: 1 }\nsteps:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "  - id: s%d\n    uses: assert\n    expect: vars.x == 1\n", i)
	}
	sc, err := Load("noop.yaml", []byte(sb.String()), LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return sc
}

// BenchmarkRunnerNoopSteps measures the runner's own cost per step: a
// 10,000-step scenario of no-op steps (each evaluating one expectation),
// with the journal, report model, plain console and final reports.
func BenchmarkRunnerNoopSteps(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("steps=%d", n), func(b *testing.B) {
			sc := noopScenario(b, n)
			dir := b.TempDir()
			var retained uint64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var before runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				con := reports.NewConsole(io.Discard, reports.ConsoleOptions{})
				res, err := Run(context.Background(), []*Scenario{sc}, Options{ReportDir: dir, Sinks: []reports.Sink{con}})
				if err != nil || res.Run.Status != reports.StatusPassed {
					b.Fatalf("run: %v %v", err, res)
				}
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				if after.HeapAlloc > before.HeapAlloc {
					retained = after.HeapAlloc - before.HeapAlloc
				}
				runtime.KeepAlive(res)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/step")
			b.ReportMetric(float64(retained)/float64(n), "retained-B/step")
		})
	}
}

// BenchmarkParallelScenarios runs 200 scenarios of 10 sleep-bound steps at
// -j 1 and -j 2.
func BenchmarkParallelScenarios(b *testing.B) {
	var scs []*Scenario
	for i := 0; i < 200; i++ {
		var sb strings.Builder
		fmt.Fprintf(&sb, "name: sc%d\nsteps:\n", i)
		for j := 0; j < 10; j++ {
			sb.WriteString("  - uses: sleep\n    with: { duration: 1ms }\n")
		}
		sc, err := Load(fmt.Sprintf("sc%d.yaml", i), []byte(sb.String()), LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		scs = append(scs, sc)
	}
	for _, j := range []int{1, 2} {
		b.Run(fmt.Sprintf("j=%d", j), func(b *testing.B) {
			dir := b.TempDir()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				res, err := Run(context.Background(), scs, Options{ReportDir: dir, Parallel: j})
				if err != nil || res.Run.Status != reports.StatusPassed {
					b.Fatalf("run: %v", err)
				}
				b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/run")
			}
		})
	}
}
