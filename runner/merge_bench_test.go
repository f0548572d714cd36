package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkMergeReports merges 4 shard folders of 1,000 scenarios of 10
// steps in all, in process (BenchmarkShardedRun in cmd/opsdrill times the
// CLI, with real shard processes).
func BenchmarkMergeReports(b *testing.B) {
	var all []*Scenario
	for i := range 1000 {
		var src strings.Builder
		fmt.Fprintf(&src, "name: d%04d\nsteps:\n", i)
		for j := range 10 {
			fmt.Fprintf(&src, "  - id: s%d\n    uses: assert\n    expect: %d > -1\n", j, j)
		}
		sc, err := Load(fmt.Sprintf("d%04d.yaml", i), []byte(src.String()), LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, sc)
	}
	work := b.TempDir()
	var dirs []string
	for k := 1; k <= 4; k++ {
		part, info := SelectShard(all, k, 4)
		dir := filepath.Join(work, fmt.Sprint(k))
		if _, err := Run(context.Background(), part, Options{ReportDir: dir, Shard: info}); err != nil {
			b.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	b.ResetTimer()
	for range b.N {
		res, err := MergeReports(filepath.Join(work, "merged"), dirs, MergeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Run.Scenarios) != 1000 {
			b.Fatalf("%d scenarios", len(res.Run.Scenarios))
		}
	}
}
