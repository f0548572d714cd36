package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeScenarios generates n scenarios of steps assert steps each in a new
// folder; scenario fail (if >= 0) fails.
func writeScenarios(t testing.TB, n, steps, fail int) string {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "name: drill-%04d\ntags: [gen]\nvars: { n: %d }\nsteps:\n", i, i)
		for j := 0; j < steps; j++ {
			want := "true"
			if i == fail && j == steps-1 {
				want = "false"
			}
			fmt.Fprintf(&b, "  - id: s%d\n    uses: assert\n    expect: (vars.n + %d > -1) == %s\n", j, j, want)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("drill-%04d.yaml", i)), []byte(b.String()), 0o644))
	}
	return dir
}

// comparable is report.json without what differs between two runs of the
// same scenarios: times, durations, ids, who and where, how it was split.
func comparable(t testing.TB, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal(b, &v))
	var strip func(any)
	strip = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			for _, k := range []string{"started", "finished", "duration_ms", "run_id", "args", "host", "user", "shard", "merged", "signer"} {
				delete(t, k)
			}
			for _, c := range t {
				strip(c)
			}
		case []any:
			for _, c := range t {
				strip(c)
			}
		}
	}
	strip(v)
	return v
}

func scenarioNames(t testing.TB, dir string) []string {
	run := readReport(t.(*testing.T), dir)
	var out []string
	for _, sc := range run.Scenarios {
		out = append(out, sc.Name)
	}
	return out
}

func TestShardsMergeIntoTheUnshardedRun(t *testing.T) {
	src := writeScenarios(t, 12, 3, 5)
	work := t.TempDir()
	keyPrefix := filepath.Join(work, "drill")
	require.Equal(t, 0, opsdrill(t, "report", "keygen", keyPrefix).code)

	whole := filepath.Join(work, "whole")
	r := opsdrill(t, "run", "--report-dir", whole, src)
	require.Equal(t, 1, r.code, r.stdout+r.stderr)

	const n = 3
	var shardDirs []string
	var union []string
	var wg sync.WaitGroup
	results := make([]result, n)
	for k := 1; k <= n; k++ {
		d := filepath.Join(work, fmt.Sprintf("shard-%d", k))
		shardDirs = append(shardDirs, d)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k-1] = opsdrill(t, "run", "--shard", fmt.Sprintf("%d/%d", k, n), "--report-dir", d, src)
		}()
	}
	wg.Wait()
	for k, d := range shardDirs {
		names := scenarioNames(t, d)
		assert.Contains(t, results[k].stderr, fmt.Sprintf("shard %d/%d: %d of 12 scenarios", k+1, n, len(names)))
		union = append(union, names...)
		run := readReport(t, d)
		require.NotNil(t, run.Shard)
		assert.Equal(t, k+1, run.Shard.Index)
		assert.Equal(t, 12, run.Shard.SetSize)
	}
	sort.Strings(union)
	assert.Equal(t, scenarioNames(t, whole), union, "every scenario runs in exactly one shard")

	merged := filepath.Join(work, "merged")
	r = opsdrill(t, append([]string{"report", "merge", "--report-dir", merged, "--sign-key", keyPrefix + ".key"}, shardDirs...)...)
	assert.Equal(t, 1, r.code, "a failing shard fails the merged run: "+r.stdout+r.stderr)
	assert.Equal(t, comparable(t, whole), comparable(t, merged))
	run := readReport(t, merged)
	assert.Equal(t, "failed", run.Status)
	require.Len(t, run.Merged, n)
	for _, f := range []string{"journal.jsonl", "junit.xml", "report.html", "manifest.json", "manifest.sig"} {
		assert.FileExists(t, filepath.Join(merged, f))
	}
	r = opsdrill(t, "report", "verify", "--pub", keyPrefix+".pub", merged)
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	// The merged journal alone gives the same report.
	before := comparable(t, merged)
	require.Equal(t, 0, opsdrill(t, "report", "render", merged).code)
	assert.Equal(t, before, comparable(t, merged))
	junit, err := os.ReadFile(filepath.Join(merged, "junit.xml"))
	require.NoError(t, err)
	assert.Equal(t, 12, strings.Count(string(junit), "<testsuite "))
}

func TestMergeRefusesWhatIsNotOneRun(t *testing.T) {
	src := writeScenarios(t, 6, 2, -1)
	other := writeScenarios(t, 7, 2, -1)
	work := t.TempDir()
	shard := func(name, spec, from string) string {
		d := filepath.Join(work, name)
		r := opsdrill(t, "run", "--shard", spec, "--report-dir", d, from)
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		return d
	}
	s1, s2 := shard("s1", "1/2", src), shard("s2", "2/2", src)
	o2 := shard("o2", "2/2", other)
	dup := shard("dup", "1/2", src)
	plain := filepath.Join(work, "plain")
	require.Equal(t, 0, opsdrill(t, "run", "--report-dir", plain, src).code)

	// A shard made by another opsdrill version.
	old := filepath.Join(work, "old")
	require.NoError(t, os.CopyFS(old, os.DirFS(s2)))
	j, err := os.ReadFile(filepath.Join(old, "journal.jsonl"))
	require.NoError(t, err)
	j = []byte(strings.Replace(string(j), `"tool_version":"`, `"tool_version":"0.0.1-old`, 1))
	require.NoError(t, os.WriteFile(filepath.Join(old, "journal.jsonl"), j, 0o644))
	require.Equal(t, 0, opsdrill(t, "report", "render", old).code)

	cases := []struct {
		name    string
		dirs    []string
		want    string
		forceOK bool
	}{
		{"other scenario set", []string{s1, o2}, "another scenario set", true},
		{"other tool version", []string{s1, old}, "made by opsdrill 0.0.1-old", true},
		{"shard missing", []string{s1}, "shards missing: 2/2", true},
		{"not a shard", []string{plain}, "not a shard", true},
		{"same shard twice", []string{s1, dup, s2}, "are both shard 1/2", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m")
			r := opsdrill(t, append([]string{"report", "merge", "--report-dir", out}, tc.dirs...)...)
			assert.Equal(t, 2, r.code)
			assert.Contains(t, r.stderr, tc.want)
			assert.NoFileExists(t, filepath.Join(out, "report.json"), "nothing is written when the merge is refused")
			r = opsdrill(t, append([]string{"report", "merge", "--force", "--report-dir", out}, tc.dirs...)...)
			if !tc.forceOK {
				assert.Equal(t, 2, r.code, "--force never merges two folders of one shard")
				return
			}
			assert.Contains(t, r.stderr, "forced: ")
			if tc.name == "shard missing" {
				assert.Equal(t, 1, r.code, "a merge with a shard missing cannot pass")
			} else {
				assert.Equal(t, 0, r.code, r.stdout+r.stderr)
			}
		})
	}

	// A shard folder changed after the run is refused too.
	tampered := filepath.Join(work, "tampered")
	require.NoError(t, os.CopyFS(tampered, os.DirFS(s2)))
	require.NoError(t, os.WriteFile(filepath.Join(tampered, "report.json"), []byte("{}"), 0o644))
	r := opsdrill(t, "report", "merge", "--report-dir", filepath.Join(work, "m2"), s1, tampered)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "changed: report.json")

	r = opsdrill(t, "report", "merge", "--report-dir", s1, s1, s2)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "cannot be one of the shard folders")
}

func TestShardFlagIsChecked(t *testing.T) {
	for _, bad := range []string{"0/2", "3/2", "2", "a/b", "1/0"} {
		r := opsdrill(t, "run", "--shard", bad, "--report-dir", t.TempDir(), "testdata/pass.yaml")
		assert.Equal(t, 2, r.code, bad)
		assert.Contains(t, r.stderr, "expected K/N", bad)
	}
}
