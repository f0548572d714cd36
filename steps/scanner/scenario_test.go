package scanner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/runner"
)

const scenarioFile = "../../scenarios/epson-scanner.yaml"

type scenarioReport struct {
	Findings []struct {
		Summary string `json:"summary"`
	} `json:"findings"`
	Scenarios []struct {
		Status string `json:"status"`
		Steps  []struct {
			ID       string         `json:"id"`
			Status   string         `json:"status"`
			Error    string         `json:"error"`
			Outputs  map[string]any `json:"outputs"`
			Evidence []struct {
				Kind  string `json:"kind"`
				Title string `json:"title"`
			} `json:"evidence"`
		} `json:"steps"`
	} `json:"scenarios"`
}

// runScenario runs scenarios/epson-scanner.yaml with vars and returns its
// report.json.
func runScenario(t *testing.T, vars map[string]any) scenarioReport {
	t.Helper()
	sc, err := runner.LoadFile(scenarioFile, runner.LoadOptions{})
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = runner.Run(context.Background(), []*runner.Scenario{sc}, runner.Options{ReportDir: dir, Vars: vars})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, runner.JSONFile))
	require.NoError(t, err)
	var rep scenarioReport
	require.NoError(t, json.Unmarshal(b, &rep))
	require.Len(t, rep.Scenarios, 1)
	require.Len(t, rep.Scenarios[0].Steps, 1)
	return rep
}

// TestScenarioLocal runs the scenario on this machine with a target that
// points it at the L350 sysfs fixture and a SANE folder in the runbook's
// state (test backend as the scanner), then with epson2 left configured.
func TestScenarioLocal(t *testing.T) {
	requireScanimage(t)
	vars := func(cfg map[string]string) map[string]any {
		return map[string]any{
			"scanner_sysfs_root":      fixtureRoot(t),
			"scanner_sane_config_dir": writeConfig(t, cfg),
			"scanner_expect_device":   "^test:0$",
		}
	}

	rep := runScenario(t, vars(runbookConfig()))
	st := rep.Scenarios[0].Steps[0]
	assert.Equal(t, "passed", rep.Scenarios[0].Status, st.Error)
	assert.Equal(t, "passed", st.Status)
	// test:0 is the test backend's: reported, not counted as visible.
	assert.Equal(t, false, st.Outputs["visible"])
	assert.Equal(t, false, st.Outputs["listing_exercised"])
	assert.Equal(t, testBackendNote, st.Outputs["listing_note"])
	// The report's findings say so too, not "does not list the scanner".
	require.Len(t, rep.Findings, 1)
	assert.Contains(t, rep.Findings[0].Summary, testBackendNote)
	assert.NotContains(t, rep.Findings[0].Summary, "list the scanner")
	var titles []string
	for _, ev := range st.Evidence {
		titles = append(titles, ev.Title)
	}
	assert.Equal(t, "findings", titles[0], "the verdict comes first")
	assert.Contains(t, titles, "scanimage device list")

	cfg := runbookConfig()
	cfg["epson2.conf"] = epson2Stock
	rep = runScenario(t, vars(cfg))
	st = rep.Scenarios[0].Steps[0]
	assert.Equal(t, "failed", rep.Scenarios[0].Status)
	assert.Equal(t, "failed", st.Status)
	assert.Contains(t, st.Error, "1 of 4 findings failed: no conflicting backend: epson2 enabled in ")
	assert.Contains(t, st.Error, "(runbook step 7)")
	assert.Len(t, st.Outputs["conflicts"], 1)
}

// TestScenarioLab is what `make demo` does for this drill: the scenario
// with scenarios/targets/lab.yaml and the lab's vars, against the scanner
// lab host.
func TestScenarioLab(t *testing.T) {
	l := labtest.Up(t, lab.ScannerEnv)
	target := runner.NewTarget()
	require.NoError(t, target.LoadVarsFile("../../scenarios/targets/lab.yaml"))
	for k, v := range l.Vars() {
		target.Vars[k] = v
	}
	rep := runScenario(t, target.Vars)
	st := rep.Scenarios[0].Steps[0]
	assert.Equal(t, "passed", rep.Scenarios[0].Status, st.Error)
	assert.Equal(t, true, st.Outputs["usb_present"])
	assert.Equal(t, true, st.Outputs["backend_configured"])
	// The lab has no scanner for SANE to list: the report says so.
	assert.Equal(t, false, st.Outputs["visible"])
	assert.Equal(t, testBackendNote, st.Outputs["listing_note"])
	assert.Equal(t, false, st.Outputs["listing_exercised"])
}
