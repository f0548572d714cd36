package reports

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"
)

// BigRun is bigRun for the external browser tests.
func BigRun(n int) *Run { return bigRun(n) }

// bigRun is a run of one scenario with n steps, each with outputs and an
// expectation, the shape of a large nightly run.
func bigRun(n int) *Run {
	sc := &Scenario{Name: "big", File: "big.yaml", Status: StatusPassed, Started: t0, Finished: t0.Add(time.Minute)}
	for i := 0; i < n; i++ {
		sc.Steps = append(sc.Steps, &Step{
			ID: fmt.Sprintf("s%d", i), Uses: "exec", Status: StatusPassed, DurationMS: int64(i % 100), Started: t0,
			Outputs:      map[string]any{"stdout": "ok\n", "exit_code": 0},
			Expectations: []Expectation{{Expr: "outputs.exit_code == 0", OK: true}},
		})
	}
	return &Run{Version: 1, Tool: "opsdrill", Status: StatusPassed, Started: t0, Finished: t0.Add(time.Minute), Scenarios: []*Scenario{sc}}
}

// BenchmarkRender10kSteps renders report.json and junit.xml for 10,000
// steps (target: under 500 ms).
func BenchmarkRender10kSteps(b *testing.B) {
	run := bigRun(10000)
	b.Run("json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := WriteJSON(io.Discard, run); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("html", func(b *testing.B) {
		var size int
		for i := 0; i < b.N; i++ {
			var buf bytes.Buffer
			if err := WriteHTML(&buf, run, HTMLOptions{}); err != nil {
				b.Fatal(err)
			}
			size = buf.Len()
		}
		b.ReportMetric(float64(size)/(1<<20), "MiB")
	})
	b.Run("junit", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := WriteJUnit(io.Discard, run); err != nil {
				b.Fatal(err)
			}
		}
	})
}
