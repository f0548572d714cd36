package lab_test

import (
	"context"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
)

// BenchmarkImageCheck measures what `make lab-images` and every Up pay when
// the image is already built: connect to the engine, inspect the image.
func BenchmarkImageCheck(b *testing.B) {
	labtest.Require(b)
	ctx := context.Background()
	for b.Loop() {
		if err := lab.CheckImage(ctx, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostsUpDown brings the hosts environment up and down, reporting
// each half: up-ms (network, three containers started and ready) and down-ms
// (everything removed).
func BenchmarkHostsUpDown(b *testing.B) {
	labtest.Require(b)
	ctx := context.Background()
	var up, down time.Duration
	for b.Loop() {
		t0 := time.Now()
		l, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := l.Down(ctx); err != nil {
			b.Fatal(err)
		}
		up += t1.Sub(t0)
		down += time.Since(t1)
	}
	b.ReportMetric(float64(up.Milliseconds())/float64(b.N), "up-ms")
	b.ReportMetric(float64(down.Milliseconds())/float64(b.N), "down-ms")
}
