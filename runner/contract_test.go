package runner

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/steps"
)

// report.json holds every field README.md's contract lists, on every
// object, whatever the run did: empty lists and maps, never left out.
func TestReportJSONHasEveryContractField(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: plain
    uses: test.emit
  - id: checked
    uses: test.emit
    with: { count: 2 }
    expect: outputs.count == 3
  - id: after
    uses: test.emit
`)
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(h.file(t, JSONFile)), &rep))
	has := func(obj map[string]any, what string, fields ...string) {
		t.Helper()
		for _, f := range fields {
			v, ok := obj[f]
			if assert.True(t, ok, "%s has no %q: %v", what, f, obj) {
				assert.NotNil(t, v, "%s.%s is null", what, f)
			}
		}
	}
	has(rep, "report", "version", "tool", "tool_version", "run_id", "started", "finished", "status", "scenarios", "findings")
	finding := rep["findings"].([]any)[0].(map[string]any)
	has(finding, "finding", "scenario", "claim", "status", "summary", "figures", "controls")
	sc := rep["scenarios"].([]any)[0].(map[string]any)
	has(sc, "scenario", "name", "file", "sha256", "status", "duration_ms", "vars", "steps", "controls")
	assert.Equal(t, map[string]any{}, sc["vars"])
	steps := sc["steps"].([]any)
	require.Len(t, steps, 3)
	for _, s := range steps {
		st := s.(map[string]any)
		has(st, "step "+st["id"].(string), "id", "uses", "phase", "status", "duration_ms", "attempts", "outputs", "error", "expectations", "evidence", "figures")
		for _, e := range st["expectations"].([]any) {
			has(e.(map[string]any), "expectation", "expr", "ok", "values")
		}
	}
	skipped := steps[2].(map[string]any)
	assert.Equal(t, "skipped", skipped["status"])
	assert.Equal(t, []any{}, skipped["attempts"], "a step that never ran has no attempt")
	assert.Equal(t, []any{}, skipped["evidence"])
	checked := steps[1].(map[string]any)
	attempts := checked["attempts"].([]any)
	require.Len(t, attempts, 1)
	has(attempts[0].(map[string]any), "attempt", "attempt", "status", "error", "duration_ms")
	assert.Equal(t, "expected outputs.count == 3 (outputs.count = 2)", attempts[0].(map[string]any)["error"])
}

// A scenario's timeout reads as one in every report, not as the context
// error behind it.
func TestScenarioTimeoutReadsAsTimeout(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
timeout: 300ms
steps:
  - id: long
    uses: sleep
    with: { duration: 1h }
  - id: next
    uses: test.emit
`)
	sc := h.res.Run.Scenarios[0]
	assert.Equal(t, reports.StatusFailed, sc.Status)
	assert.Equal(t, "scenario timed out after 300ms", sc.Error)
	long := h.step(t, 0, "long")
	assert.Equal(t, "scenario timed out after 300ms", long.Error)
	assert.Equal(t, "skipped: scenario timed out after 300ms", h.step(t, 0, "next").SkipReason)
	for _, name := range []string{JSONFile, JUnitFile, HTMLFile, JournalFile} {
		text := h.file(t, name)
		assert.NotContains(t, text, "context deadline exceeded", name)
		assert.NotContains(t, text, "interrupted:", name)
	}
	assert.NotContains(t, h.console.String(), "context deadline exceeded")
}

// A second interrupt aborts cleanup: the cleanup step running then is
// reported aborted, every one not yet run (undo actions too) skipped, and
// the scenario says its cleanup was aborted.
func TestAbortedCleanupIsReportedAborted(t *testing.T) {
	ctx, interrupt := context.WithCancel(context.Background())
	hard, abort := context.WithCancel(context.Background())
	defer abort()
	go func() {
		for !strings.Contains(strings.Join(trailCopy(), ","), "do:port") {
			time.Sleep(5 * time.Millisecond)
		}
		interrupt()
		for !strings.Contains(strings.Join(trailCopy(), ","), "hang:") {
			time.Sleep(5 * time.Millisecond)
		}
		abort()
	}()
	resetTrail()
	sc, err := Load("s.yaml", []byte(`
steps:
  - id: open
    uses: test.undo
    with: { name: port }
  - id: wait
    uses: test.fault
    with: { mode: hang }
cleanup:
  - id: slow
    uses: test.cleanup_hang
  - id: tidy
    uses: test.emit
    with: { label: tidy }
`), LoadOptions{})
	require.NoError(t, err)
	res, err := Run(ctx, []*Scenario{sc}, Options{ReportDir: t.TempDir(), HardStop: hard})
	require.NoError(t, err)
	got := res.Run.Scenarios[0]
	assert.Equal(t, reports.StatusInterrupted, got.Status)
	assert.Contains(t, got.Error, "cleanup aborted (second interrupt)")
	byID := map[string]*reports.Step{}
	for _, st := range got.Steps {
		byID[st.Phase+"/"+st.ID] = st
	}
	slow := byID["cleanup/slow"]
	assert.Equal(t, reports.StatusErrored, slow.Status)
	assert.Equal(t, "cleanup aborted (second interrupt)", slow.Error)
	assert.Equal(t, reports.StatusSkipped, byID["cleanup/tidy"].Status)
	assert.Equal(t, "skipped: cleanup aborted (second interrupt)", byID["cleanup/tidy"].SkipReason)
	undo := byID["cleanup/port"]
	require.NotNil(t, undo, "the undo action is reported")
	assert.Equal(t, reports.StatusSkipped, undo.Status)
	assert.NotContains(t, trailCopy(), "tidy")
	assert.NotContains(t, trailCopy(), "undo:port")
}

// cleanupHangStep hangs until cancelled, noting that it started.
type cleanupHangStep struct{}

func (cleanupHangStep) Run(ctx context.Context, env *steps.Env) error {
	note("hang:cleanup")
	<-ctx.Done()
	return ctx.Err()
}

func init() {
	steps.Register(steps.Spec{Name: "test.cleanup_hang", Summary: "hang in cleanup", New: func() steps.Step { return &cleanupHangStep{} }})
}
