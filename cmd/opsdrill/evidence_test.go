package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A journal that cannot be written stops the run at once: the step after
// the failed write never runs, the error says what failed, and the journal
// keeps every event before the failure, whole. The failure is real: the
// file size limit (RLIMIT_FSIZE) makes write(2) fail with EFBIG.
func TestJournalWriteFailureStopsTheRunAtOnce(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "second-step-ran")
	scenario := filepath.Join(dir, "big.yaml")
	require.NoError(t, os.WriteFile(scenario, []byte(`steps:
  - id: loud
    uses: exec
    with: { command: [head, -c, "300000", /dev/zero] }
  - id: second
    uses: exec
    with: { command: [touch, "`+marker+`"] }
cleanup:
  - id: tidy
    uses: exec
    with: { command: [touch, "`+marker+`.cleanup"] }
`), 0o644))
	report := filepath.Join(dir, "out")
	cmd := exec.Command("prlimit", "--fsize=65536", binary, "run", "--report-dir", report, scenario)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", out)
	assert.Equal(t, 2, ee.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "evidence could not be written, the run was stopped: journal.jsonl: write")
	assert.Contains(t, string(out), "file too large")
	assert.NoFileExists(t, marker, "the run stopped at the failed write")
	assert.FileExists(t, marker+".cleanup", "cleanup still ran")
	f, err := os.Open(filepath.Join(report, "journal.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	var types []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var ev struct{ Type string }
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "every line kept is whole")
		types = append(types, ev.Type)
	}
	assert.Equal(t, []string{"run_start", "scenario_start", "step_start"}, types)
}

func TestReportDirNeverDeletesTheUsersFiles(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "artifacts", "release.tar")
	require.NoError(t, os.MkdirAll(filepath.Dir(release), 0o755))
	require.NoError(t, os.WriteFile(release, []byte("tar"), 0o644))
	r := opsdrill(t, "run", "--report-dir", dir, "testdata/pass.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.FileExists(t, release)
	assert.NotContains(t, r.stderr, "replacing", "a first run replaces nothing")
	r = opsdrill(t, "run", "--report-dir", dir, "testdata/pass.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	assert.FileExists(t, release)
	assert.Contains(t, r.stderr, dir+" holds a previous run's reports; replacing journal.jsonl, junit.xml, manifest.json, report.html, report.json")
}
