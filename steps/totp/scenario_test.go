package totp_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/runner"
	_ "github.com/opsdrill/opsdrill/steps/totp"
)

const scenarioFile = "../../scenarios/totp-freeotp.yaml"

// TestScenarioRuns runs scenarios/totp-freeotp.yaml through the runner
// and checks every step passed and no key leaked into the reports.
func TestScenarioRuns(t *testing.T) {
	if _, err := exec.LookPath("oathtool"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("oathtool is required in CI: %v", err)
		}
		t.Skipf("oathtool not installed: %v", err)
	}
	sc, err := runner.LoadFile(scenarioFile, runner.LoadOptions{})
	require.NoError(t, err)
	dir := t.TempDir()
	res, err := runner.Run(context.Background(), []*runner.Scenario{sc}, runner.Options{ReportDir: dir})
	require.NoError(t, err)

	require.Len(t, res.Run.Scenarios, 1)
	got := res.Run.Scenarios[0]
	for _, st := range got.Steps {
		want := "passed"
		if st.ID == "validator" {
			want = "skipped" // no live validator in the vars
		}
		assert.Equal(t, want, st.Status, "step %s: %s %+v", st.ID, st.Error, st.Expectations)
	}
	assert.Equal(t, "passed", got.Status)
	assert.Len(t, got.Steps, 9)

	// Secret outputs are redacted, and no 40-hex-digit or 32-character
	// base32 key appears anywhere in the reports.
	key := got.Steps[0]
	require.Equal(t, "key", key.ID)
	for _, name := range []string{"hex", "base32", "uri"} {
		assert.NotRegexp(t, `^[0-9a-f]{40}$|^[A-Z2-7]{32}$|secret=`, key.Outputs[name], name)
	}
	keyish := regexp.MustCompile(`\b[0-9a-f]{40}\b|\b[A-Z2-7]{32}\b`)
	// The run's provenance records the repository's commit, 40 hex digits
	// too; it is not a key.
	commit := regexp.MustCompile(`"commit":\s*"[0-9a-f]{40}"`)
	for _, f := range []string{runner.JSONFile, runner.JournalFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		b = commit.ReplaceAll(b, nil)
		assert.False(t, keyish.Match(b), "%s holds something like a key: %s", f, keyish.Find(b))
	}

	// The QR code is in the report folder but not shown.
	b, err := os.ReadFile(filepath.Join(dir, runner.JSONFile))
	require.NoError(t, err)
	var report struct {
		Scenarios []struct {
			Steps []struct {
				ID       string `json:"id"`
				Evidence []struct {
					Kind string `json:"kind"`
					Path string `json:"path"`
					Show bool   `json:"show"`
				} `json:"evidence"`
			} `json:"steps"`
		} `json:"scenarios"`
	}
	require.NoError(t, json.Unmarshal(b, &report))
	var images int
	for _, ev := range report.Scenarios[0].Steps[0].Evidence {
		if ev.Kind == "image" {
			images++
			assert.False(t, ev.Show)
			assert.FileExists(t, filepath.Join(dir, filepath.FromSlash(ev.Path)))
		}
	}
	assert.Equal(t, 1, images)
}

// TestScenarioProbesTheLabGate runs the scenario against the lab's portgate
// with the lab's vars, as make demo does: the live validator's window is
// ±1, its clock agrees, and it refuses a replayed code.
func TestScenarioProbesTheLabGate(t *testing.T) {
	l := labtest.Up(t, "portgate")
	target := runner.NewTarget()
	target.Merge(l.Vars())
	sc, err := runner.LoadFile(scenarioFile, runner.LoadOptions{ExtraVars: target.Names()})
	require.NoError(t, err)
	res, err := runner.Run(context.Background(), []*runner.Scenario{sc}, runner.Options{
		ReportDir: t.TempDir(), Vars: target.Vars, Secrets: target.Secrets,
	})
	require.NoError(t, err)
	got := res.Run.Scenarios[0]
	require.Equal(t, "passed", got.Status, "%s", got.Error)
	v := got.Steps[len(got.Steps)-1]
	require.Equal(t, "validator", v.ID)
	assert.Equal(t, "passed", v.Status)
	assert.Equal(t, []any{-1, 0, 1}, toAny(v.Outputs["accepted_offsets"]))
	assert.Equal(t, true, v.Outputs["replay_rejected"])
	assert.Equal(t, 0, v.Outputs["clock_offset_steps"])
}

func toAny(v any) []any {
	switch t := v.(type) {
	case []int:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = x
		}
		return out
	case []any:
		return t
	}
	return nil
}
