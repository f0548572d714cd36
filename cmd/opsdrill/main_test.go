package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
)

// binary is the opsdrill command built once for these end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "opsdrill-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "opsdrill")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func opsdrill(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func readReport(t *testing.T, dir string) *reports.Run {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	var run reports.Run
	require.NoError(t, json.Unmarshal(b, &run))
	return &run
}

func TestRunPassingExitsZero(t *testing.T) {
	dir := t.TempDir()
	r := opsdrill(t, "run", "--report-dir", dir, "testdata/pass.yaml")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	run := readReport(t, dir)
	assert.Equal(t, 1, run.Version)
	assert.Equal(t, "opsdrill", run.Tool)
	assert.Equal(t, "passed", run.Status)
	require.Len(t, run.Scenarios, 1)
	assert.Equal(t, "passing", run.Scenarios[0].Name)
	assert.Equal(t, "hello\n", run.Scenarios[0].Steps[0].Outputs["stdout"])
	assert.Contains(t, r.stdout, "PASS  say")
	assert.Contains(t, r.stdout, "PASSED: 1 scenarios, 1 passed")
	for _, f := range []string{"journal.jsonl", "junit.xml"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
}

func TestRunFailingExitsOne(t *testing.T) {
	dir := t.TempDir()
	r := opsdrill(t, "run", "--report-dir", dir, "testdata/pass.yaml", "testdata/fail.yaml")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	run := readReport(t, dir)
	assert.Equal(t, "failed", run.Status)
	assert.Equal(t, "passed", run.Scenarios[0].Status)
	assert.Equal(t, "failed", run.Scenarios[1].Status)
	steps := run.Scenarios[1].Steps
	assert.Equal(t, "failed", steps[0].Status)
	assert.Equal(t, "refused", steps[0].Outputs["state"])
	assert.Equal(t, "skipped", steps[1].Status)

	b, err := os.ReadFile(filepath.Join(dir, "junit.xml"))
	require.NoError(t, err)
	var doc struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Failures int    `xml:"failures,attr"`
			Skipped  int    `xml:"skipped,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(b, &doc))
	require.Len(t, doc.Suites, 2)
	assert.Equal(t, "failing", doc.Suites[1].Name)
	assert.Equal(t, 1, doc.Suites[1].Failures)
	assert.Equal(t, 1, doc.Suites[1].Skipped)
	require.NotNil(t, doc.Suites[1].Cases[0].Failure)
	assert.Contains(t, doc.Suites[1].Cases[0].Failure.Message, "127.0.0.1:1 is not open (refused)")
}

func TestBadInputExitsTwoAndRunsNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	r := opsdrill(t, "run", "--report-dir", dir, "testdata/pass.yaml", "testdata/bad.yaml")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, `testdata/bad.yaml:4:13: steps[0].with: unknown field "comand" (did you mean "command"?)`)
	assert.Contains(t, r.stderr, `testdata/bad.yaml:5:11: steps[1].uses: unknown step "nosuch.step"`)
	assert.NoDirExists(t, dir, "nothing ran, not even the valid scenario")

	v := opsdrill(t, "validate", "testdata/bad.yaml")
	assert.Equal(t, 2, v.code)
	assert.Equal(t, 2, strings.Count(strings.TrimSpace(v.stderr), "\n")+1, "one line per problem:\n%s", v.stderr)

	ok := opsdrill(t, "validate", "testdata/pass.yaml", "testdata/fail.yaml")
	assert.Equal(t, 0, ok.code, ok.stderr)

	assert.Equal(t, 2, opsdrill(t, "run", "--no-such-flag", "x.yaml").code)
	assert.Equal(t, 2, opsdrill(t, "run", "testdata/missing.yaml").code)
	assert.Equal(t, 2, opsdrill(t, "run").code)
}

func TestTagsFilter(t *testing.T) {
	dir := t.TempDir()
	r := opsdrill(t, "run", "--report-dir", dir, "--tags", "smoke", "testdata/pass.yaml", "testdata/fail.yaml")
	require.Equal(t, 0, r.code, r.stdout)
	run := readReport(t, dir)
	assert.Equal(t, "skipped", run.Scenarios[1].Status)
	r = opsdrill(t, "run", "--report-dir", dir, "--skip-tags", "smoke", "testdata/pass.yaml", "testdata/fail.yaml")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "skipped", readReport(t, dir).Scenarios[0].Status)
}

func TestVarsFileAndVarFlag(t *testing.T) {
	dir := t.TempDir()
	vars := filepath.Join(dir, "vars.yaml")
	require.NoError(t, os.WriteFile(vars, []byte("greeting: bonjour\n"), 0o644))
	r := opsdrill(t, "run", "--report-dir", dir, "--vars", vars, "testdata/pass.yaml")
	assert.Equal(t, 1, r.code, "the expectation wants hello")
	assert.Contains(t, r.stdout, `outputs.stdout = "bonjour\n"`)
	r = opsdrill(t, "run", "--report-dir", dir, "--vars", vars, "--var", "greeting=hello", "testdata/pass.yaml")
	assert.Equal(t, 0, r.code, "--var wins over vars files")
}

func startHanging(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	marker := filepath.Join(dir, "marker")
	cmd := exec.Command(binary, "run", "--report-dir", dir, "--var", "marker="+marker, "testdata/hang.yaml")
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 10*time.Second, 20*time.Millisecond)
	return cmd, marker
}

func TestInterruptRunsCleanupAndExits130(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd, marker := startHanging(t, dir)
			require.NoError(t, cmd.Process.Signal(sig))
			err := cmd.Wait()
			ee, ok := err.(*exec.ExitError)
			require.True(t, ok, "%v", err)
			assert.Equal(t, 130, ee.ExitCode())
			assert.FileExists(t, marker+".cleanup", "cleanup ran")
			run := readReport(t, dir)
			assert.Equal(t, "interrupted", run.Status)
			assert.Equal(t, "interrupted", run.Scenarios[0].Status)
		})
	}
}

func TestKilledRunLeavesJournalThatRenders(t *testing.T) {
	dir := t.TempDir()
	cmd, _ := startHanging(t, dir)
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	assert.NoFileExists(t, filepath.Join(dir, "report.json"), "SIGKILL gave no chance to write reports")
	r := opsdrill(t, "report", "render", dir)
	require.Equal(t, 0, r.code, r.stderr)
	run := readReport(t, dir)
	assert.Equal(t, "interrupted", run.Status)
	steps := run.Scenarios[0].Steps
	assert.Equal(t, "passed", steps[0].Status, "evidence of the step that finished survived")
	assert.Equal(t, "errored", steps[1].Status)
	assert.Contains(t, steps[1].Error, "interrupted")
	assert.FileExists(t, filepath.Join(dir, "junit.xml"))
}

func TestStepsSchemaVersionCompletion(t *testing.T) {
	r := opsdrill(t, "steps")
	require.Equal(t, 0, r.code)
	for _, name := range []string{"exec", "sleep", "assert", "wait", "tcp.probe", "http.request"} {
		assert.Contains(t, r.stdout, name)
	}
	r = opsdrill(t, "steps", "tcp.probe")
	require.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "address")
	assert.Contains(t, r.stdout, "required")
	assert.Contains(t, r.stdout, "default 3s")
	assert.Equal(t, 2, opsdrill(t, "steps", "nope").code)

	r = opsdrill(t, "schema")
	require.Equal(t, 0, r.code)
	var schema map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &schema))
	assert.Equal(t, "opsdrill scenario", schema["title"])

	r = opsdrill(t, "version")
	assert.Contains(t, r.stdout, "opsdrill ")
	r = opsdrill(t, "completion", "bash")
	require.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "opsdrill")
	for _, sub := range []string{"run", "validate", "steps", "schema", "version", "report"} {
		h := opsdrill(t, sub, "--help")
		assert.Equal(t, 0, h.code)
		assert.Contains(t, h.stdout, "Examples:", "%s --help has examples", sub)
	}
}

func TestParallelReportOrder(t *testing.T) {
	dir := t.TempDir()
	r := opsdrill(t, "run", "-j", "2", "--report-dir", dir, "testdata/fail.yaml", "testdata/pass.yaml")
	require.Equal(t, 1, r.code)
	run := readReport(t, dir)
	assert.Equal(t, "failing", run.Scenarios[0].Name)
	assert.Equal(t, "passing", run.Scenarios[1].Name)
}
