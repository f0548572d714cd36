package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/steps"
)

// Values JSON cannot encode as they are (integer map keys, non-finite
// numbers) reach the journal and every report encoded, and no scenario of
// the run loses its evidence.
func TestValuesJSONCannotEncodeKeepTheEvidence(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		src  string
		want map[string]any // report.json vars of the scenario
	}{
		{"integer map keys", Options{}, "vars: {ports: {22: ssh, 443: https}}\nsteps:\n  - uses: test.emit\n",
			map[string]any{"ports": map[string]any{"22": "ssh", "443": "https"}}},
		{"infinite var from --var", Options{Vars: map[string]any{"writers": math.Inf(1)}}, "vars: {writers: 5}\nsteps:\n  - uses: test.emit\n",
			map[string]any{"writers": "+Inf"}},
		{"non-finite vars in the file", Options{}, "vars: {lo: -.inf, nan: .nan, keys: {true: 1, 1.5: 2}}\nsteps:\n  - uses: test.emit\n",
			map[string]any{"lo": "-Inf", "nan": "NaN", "keys": map[string]any{"true": 1.0, "1.5": 2.0}}},
		{"non-finite and integer-keyed outputs", Options{}, "steps:\n  - uses: test.emit\n    with: { values: { 7: .inf } }\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := run(t, context.Background(), tc.opts, tc.src, "steps:\n  - uses: test.emit\n")
			for _, name := range []string{JournalFile, JSONFile, JUnitFile, HTMLFile, reports.ManifestName} {
				assert.FileExists(t, filepath.Join(h.dir, name))
			}
			var rep map[string]any
			require.NoError(t, json.Unmarshal([]byte(h.file(t, JSONFile)), &rep))
			scs := rep["scenarios"].([]any)
			require.Len(t, scs, 2, "the other scenario keeps its evidence too")
			sc := scs[0].(map[string]any)
			assert.Equal(t, "passed", sc["status"])
			if tc.want != nil {
				assert.Equal(t, tc.want, sc["vars"])
			}
			if tc.name == "non-finite and integer-keyed outputs" {
				out := sc["steps"].([]any)[0].(map[string]any)["outputs"].(map[string]any)
				assert.Equal(t, map[string]any{"7": "+Inf"}, out["value"])
			}
			// Every journal line is JSON, and the journal renders again.
			f, err := os.Open(filepath.Join(h.dir, JournalFile))
			require.NoError(t, err)
			defer f.Close()
			lines := 0
			for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
				require.True(t, json.Valid(sc.Bytes()), sc.Text())
			}
			assert.Greater(t, lines, 6)
			_, err = f.Seek(0, 0)
			require.NoError(t, err)
			again, err := reports.ReadJournal(f)
			require.NoError(t, err)
			assert.Equal(t, reports.StatusPassed, again.Status)
		})
	}
}

func TestPlainValue(t *testing.T) {
	type inner struct {
		Name  string  `json:"name"`
		Ratio float64 `json:"ratio"`
		Skip  string  `json:"-"`
	}
	cases := []struct {
		name string
		in   any
		want any
	}{
		{"string", "x", "x"},
		{"any-keyed map", map[any]any{22: "ssh", "a": []any{1, math.NaN()}}, map[string]any{"22": "ssh", "a": []any{1, "NaN"}}},
		{"int-keyed map", map[int]string{1: "a"}, map[string]any{"1": "a"}},
		{"struct with a NaN", inner{Name: "n", Ratio: math.NaN(), Skip: "s"}, map[string]any{"name": "n", "ratio": "NaN"}},
		{"struct", &inner{Name: "n", Ratio: 2}, map[string]any{"name": "n", "ratio": json.Number("2")}},
		{"bytes", []byte("raw"), "raw"},
		{"nil", nil, nil},
		{"func", func() {}, "func"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := reports.PlainValue(tc.in)
			if tc.name == "func" {
				assert.True(t, strings.HasPrefix(got.(string), "0x"), "%v", got)
				return
			}
			assert.Equal(t, tc.want, got)
			_, err := json.Marshal(got)
			assert.NoError(t, err)
		})
	}
}

type artifactStep struct {
	Name string `yaml:"name" required:"true"`
}

func (s *artifactStep) Run(ctx context.Context, env *steps.Env) error {
	abs, rel, err := env.ArtifactPath(s.Name)
	if err != nil {
		return err
	}
	if err := os.WriteFile(abs, []byte("evidence"), 0o644); err != nil {
		return err
	}
	env.AddEvidence(steps.Evidence{Kind: "file", Title: s.Name, Path: rel})
	return nil
}

func init() {
	steps.Register(steps.Spec{Name: "test.artifact", Summary: "write an artifact", New: func() steps.Step { return &artifactStep{} }})
}

// A run replaces only opsdrill's own files in its report folder: its fixed
// report names and what the previous run's manifest (or journal) lists.
func TestReportDirKeepsFilesOpsdrillDidNotWrite(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, dir string) // after the first run
		gone    []string                       // previous run's files that must be gone
	}{
		{"previous manifest", func(t *testing.T, dir string) {}, []string{"artifacts/s0/first-one.txt"}},
		{"killed run: journal only", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, reports.ManifestName)))
		}, []string{"artifacts/s0/first-one.txt"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			load := func(src string) []*Scenario {
				sc, err := Load("s0.yaml", []byte(src), LoadOptions{})
				require.NoError(t, err)
				return []*Scenario{sc}
			}
			_, err := Run(context.Background(), load("steps:\n  - id: first\n    uses: test.artifact\n    with: { name: one.txt }\n"), Options{ReportDir: dir})
			require.NoError(t, err)
			require.FileExists(t, filepath.Join(dir, "artifacts/s0/first-one.txt"))
			tc.prepare(t, dir)
			mine := map[string]string{
				"artifacts/release.tar":      "the user's release",
				"artifacts/s0/notes.txt":     "the user's notes beside an artifact",
				"README.txt":                 "the user's readme",
				"nested/deeper/keep.json":    "{}",
				"artifacts/s0/first-two.txt": "not listed anywhere: not opsdrill's",
			}
			for p, content := range mine {
				require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644))
			}
			var notices []string
			_, err = Run(context.Background(), load("steps:\n  - id: second\n    uses: test.artifact\n    with: { name: two.txt }\n"),
				Options{ReportDir: dir, Notice: func(m string) { notices = append(notices, m) }})
			require.NoError(t, err)
			for p, content := range mine {
				b, err := os.ReadFile(filepath.Join(dir, p))
				require.NoError(t, err, "%s was not opsdrill's to delete", p)
				assert.Equal(t, content, string(b))
			}
			for _, p := range tc.gone {
				assert.NoFileExists(t, filepath.Join(dir, p), "the previous run's artifact is replaced")
			}
			assert.FileExists(t, filepath.Join(dir, "artifacts/s0/second-two.txt"))
			var m reports.Manifest
			require.NoError(t, json.Unmarshal([]byte(readFile(t, filepath.Join(dir, reports.ManifestName))), &m))
			kept := map[string]bool{}
			for _, f := range m.Files {
				kept[f.Path] = f.Kept
			}
			for p := range mine {
				assert.True(t, kept[p], "%s is listed, marked kept", p)
			}
			assert.False(t, kept["artifacts/s0/second-two.txt"], "the run's own artifact is not kept")
			assert.False(t, kept[JSONFile])
			require.Len(t, notices, 1)
			assert.Contains(t, notices[0], "holds a previous run's reports; replacing journal.jsonl, junit.xml")
			assert.Contains(t, notices[0], "1 artifact(s) it listed")
			assert.Contains(t, notices[0], "other files in the folder are kept")
		})
	}
}

func TestReportDirRefusesSpecialFilesBeforeRunning(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Symlink("/etc/hostname", filepath.Join(dir, "link")))
	resetTrail()
	sc, err := Load("s.yaml", []byte("steps:\n  - uses: test.emit\n    with: { label: ran }\n"), LoadOptions{})
	require.NoError(t, err)
	_, err = Run(context.Background(), []*Scenario{sc}, Options{ReportDir: dir})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "link is not a regular file")
	assert.Empty(t, trailCopy(), "nothing ran")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// A run killed before its manifest: rendering its journal marks the user's
// files kept, so the next run still leaves them alone.
func TestRenderAfterAKillKeepsTheUsersFiles(t *testing.T) {
	dir := t.TempDir()
	sc, err := Load("s0.yaml", []byte("steps:\n  - id: first\n    uses: test.artifact\n    with: { name: one.txt }\n"), LoadOptions{})
	require.NoError(t, err)
	_, err = Run(context.Background(), []*Scenario{sc}, Options{ReportDir: dir})
	require.NoError(t, err)
	for _, name := range []string{reports.ManifestName, JSONFile, JUnitFile, HTMLFile} {
		require.NoError(t, os.Remove(filepath.Join(dir, name)), "as a SIGKILL leaves it")
	}
	mine := filepath.Join(dir, "artifacts", "release.tar")
	require.NoError(t, os.WriteFile(mine, []byte("tar"), 0o644))
	f, err := os.Open(filepath.Join(dir, JournalFile))
	require.NoError(t, err)
	rendered, err := reports.ReadJournal(f)
	f.Close()
	require.NoError(t, err)
	require.NoError(t, WriteReports(dir, rendered, nil))
	_, err = Run(context.Background(), []*Scenario{sc}, Options{ReportDir: dir})
	require.NoError(t, err)
	assert.FileExists(t, mine)
}

// journalEvidencePaths reads a journal as reports.ReadJournal does: a torn
// last line is tolerated, a corrupt line before it or an empty journal
// names nothing (the folder's files are then not the journal's to remove).
func TestJournalEvidencePaths(t *testing.T) {
	ev := `{"type":"step_end","result":{"status":"passed","evidence":[{"kind":"file","path":"artifacts/s0/a.txt"},{"kind":"table"}]}}`
	other := `{"type":"step_end","result":{"status":"passed","outputs":{"path":"not/evidence"}}}`
	for _, tc := range []struct {
		name    string
		journal string
		want    []string
		err     string
	}{
		{"evidence paths", `{"type":"run_start"}` + "\n" + ev + "\n" + other + "\n", []string{"artifacts/s0/a.txt"}, ""},
		{"torn last line", ev + "\n" + `{"type":"step_e`, []string{"artifacts/s0/a.txt"}, ""},
		{"corrupt middle line", `{"type":` + "\n" + ev + "\n", nil, "journal line 1"},
		{"empty", "\n", nil, "journal is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := journalEvidencePaths(strings.NewReader(tc.journal))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
