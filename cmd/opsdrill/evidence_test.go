package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/runner/reaper"
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

// sleepers lists the processes running `sleep <arg>` whose environment
// holds marker: the ones this test started, and no other test's.
func sleepers(t *testing.T, arg, marker string) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || string(cmdline) != "sleep\x00"+arg+"\x00" {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && strings.Contains(string(env), marker) {
			out = append(out, e.Name())
		}
	}
	return out
}

// A killed runner leaves nothing running: not after SIGKILL (no cleanup
// possible), not after SIGINT/SIGTERM, not a direct child, not a shell's
// child, not one that left for a session of its own; with the run's
// cgroup, and with the environment token alone (the fallback where
// cgroups cannot be written).
func TestKilledRunLeavesNoProcessRunning(t *testing.T) {
	for _, tc := range []struct {
		method string
		sig    syscall.Signal
	}{
		{reaper.MethodCgroup, syscall.SIGKILL}, {reaper.MethodCgroup, syscall.SIGTERM}, {reaper.MethodCgroup, syscall.SIGINT},
		{reaper.MethodEnv, syscall.SIGKILL}, {reaper.MethodEnv, syscall.SIGTERM},
	} {
		sig := tc.sig
		t.Run(tc.method+"/"+sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			marker := "OPSDRILL_TEST_MARK=" + filepath.Base(dir) + sig.String()
			started := filepath.Join(dir, "started")
			scenario := filepath.Join(dir, "sleep.yaml")
			require.NoError(t, os.WriteFile(scenario, []byte(`steps:
  - id: shell
    uses: exec
    background: true
    with: { shell: sh, script: "sleep 300; echo done" }
  - id: escaped
    uses: exec
    background: true
    with: { command: [setsid, sleep, "300"] }
  - id: direct
    uses: exec
    with: { shell: sh, script: "touch `+started+`; exec sleep 300" }
`), 0o644))
			cmd := exec.Command(binary, "run", "--report-dir", filepath.Join(dir, "out"), scenario)
			cmd.Env = append(os.Environ(), "NO_COLOR=1", marker, reaper.EnvMethod+"="+tc.method)
			require.NoError(t, cmd.Start())
			require.Eventually(t, func() bool { return len(sleepers(t, "300", marker)) == 3 }, 20*time.Second, 20*time.Millisecond,
				"three sleep 300 running")
			require.NoError(t, cmd.Process.Signal(sig))
			_ = cmd.Wait()
			if sig != syscall.SIGKILL {
				assert.Empty(t, sleepers(t, "300", marker), "gone when opsdrill exits")
			}
			assert.Eventually(t, func() bool { return len(sleepers(t, "300", marker)) == 0 }, 10*time.Second, 20*time.Millisecond,
				"no sleep 300 survives opsdrill")
			for _, pid := range sleepers(t, "300", marker) {
				p, _ := strconv.Atoi(pid)
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		})
	}
}

func TestSelectionAndVarMistakesExitTwo(t *testing.T) {
	dir := t.TempDir()
	scenario := filepath.Join(dir, "v.yaml")
	require.NoError(t, os.WriteFile(scenario, []byte(`tags: [smoke]
vars: { version: "1.10", writers: 5, verbose: false }
steps:
  - id: show
    uses: exec
    with: { command: [printf, "%s", "${{ vars.version }}"] }
    expect: outputs.stdout == "1.10"
`), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "empty"), 0o755))
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"tags select nothing", []string{"--tags", "nightly"}, 2, "no scenario selected: --tags nightly leave none of the 1 scenarios (their tags: smoke)"},
		{"skip-tags select nothing", []string{"--skip-tags", "smoke"}, 2, "no scenario selected: --skip-tags smoke"},
		{"a folder without scenarios", []string{filepath.Join(dir, "empty")}, 2, "no scenario selected: " + filepath.Join(dir, "empty") + " has no scenario files"},
		{"undeclared var", []string{"--var", "writer=8"}, 2, `--var writer: no selected scenario declares a var "writer" (did you mean "writers"?)`},
		{"var of the wrong type", []string{"--var", "writers=many"}, 2, "--var writers=many: expected a whole number"},
		{"string var keeps its text", []string{"--var", "version=1.10"}, 0, ""},
		{"typed var", []string{"--var", "writers=8", "--var", "verbose=true"}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run", "--report-dir", filepath.Join(dir, "out")}, tc.args...)
			r := opsdrill(t, append(args, scenario)...)
			assert.Equal(t, tc.code, r.code, "%s\n%s", r.stdout, r.stderr)
			assert.Contains(t, r.stderr, tc.want)
		})
	}
}

// The second Ctrl-C aborts cleanup, and every report says so.
func TestSecondInterruptAbortsCleanupAndSaysSo(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "cleanup-started")
	scenario := filepath.Join(dir, "abort.yaml")
	require.NoError(t, os.WriteFile(scenario, []byte(`steps:
  - id: wait
    uses: sleep
    with: { duration: 1h }
cleanup:
  - id: slow
    uses: exec
    with: { shell: sh, script: "touch `+started+`; exec sleep 300" }
  - id: tidy
    uses: exec
    with: { command: ["true"] }
`), 0o644))
	report := filepath.Join(dir, "out")
	cmd := exec.Command(binary, "run", "--report-dir", report, scenario)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(report, "journal.jsonl"))
		return strings.Contains(string(b), `"id":"wait"`)
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 130, ee.ExitCode())
	run := readReport(t, report)
	sc := run.Scenarios[0]
	assert.Equal(t, "interrupted", sc.Status)
	assert.Contains(t, sc.Error, "cleanup aborted (second interrupt)")
	byID := map[string]string{}
	for _, st := range sc.Steps {
		byID[st.Phase+"/"+st.ID] = st.Status + ": " + st.Error + st.SkipReason
	}
	assert.Equal(t, "errored: cleanup aborted (second interrupt)", byID["cleanup/slow"])
	assert.Equal(t, "skipped: skipped: cleanup aborted (second interrupt)", byID["cleanup/tidy"])
}
