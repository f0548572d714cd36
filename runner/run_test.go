package runner

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
)

type harness struct {
	dir     string
	console *bytes.Buffer
	res     *Result
}

// run loads each YAML source as a scenario and runs them.
func run(t *testing.T, ctx context.Context, opts Options, sources ...string) *harness {
	t.Helper()
	resetTrail()
	h := &harness{dir: t.TempDir(), console: &bytes.Buffer{}}
	var scs []*Scenario
	for i, src := range sources {
		sc, err := Load(fmt.Sprintf("s%d.yaml", i), []byte(src), LoadOptions{})
		require.NoError(t, err)
		scs = append(scs, sc)
	}
	opts.ReportDir = h.dir
	con := reports.NewConsole(&syncBuffer{b: h.console}, reports.ConsoleOptions{Parallel: opts.Parallel > 1})
	opts.Sinks = append(opts.Sinks, con)
	res, err := Run(ctx, scs, opts)
	require.NoError(t, err)
	h.res = res
	return h
}

type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (h *harness) step(t *testing.T, scenario int, id string) *reports.Step {
	t.Helper()
	for _, st := range h.res.Run.Scenarios[scenario].Steps {
		if st.ID == id {
			return st
		}
	}
	t.Fatalf("no step %q in %+v", id, h.res.Run.Scenarios[scenario].Steps)
	return nil
}

func (h *harness) file(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join(h.dir, name))
	require.NoError(t, err)
	return string(b)
}

func TestStepsRunInOrderWithTypedValues(t *testing.T) {
	h := run(t, context.Background(), Options{Vars: map[string]any{"port": 8443}}, `
vars: { port: 80, host: db }
steps:
  - id: a
    uses: test.emit
    with: { label: a, count: 2 }
  - id: b
    uses: test.typed
    with:
      port: ${{ vars.port }}
      hosts: ["${{ vars.host }}-${{ steps.a.outputs.count }}", x]
      nested: { name: "n${{ steps.a.outputs.count + 1 }}" }
    expect:
      - outputs.type == "int"
      - outputs.port == 8443
  - id: c
    uses: test.emit
    with: { label: c }
`)
	assert.Equal(t, reports.StatusPassed, h.res.Run.Status)
	assert.Equal(t, []string{"a", "c"}, trailCopy())
	b := h.step(t, 0, "b")
	assert.Equal(t, 8443, b.Outputs["port"], "a typed var stays an int")
	assert.Equal(t, []string{"db-2", "x"}, b.Outputs["hosts"])
	assert.Equal(t, "n3", b.Outputs["name"])
}

func TestFailedExpectationExplainsValues(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
vars: { limit: 1 }
steps:
  - id: e
    uses: test.emit
    with: { count: 3 }
    expect:
      - outputs.count > vars.limit
      - outputs.count == vars.limit
  - id: after
    uses: test.emit
    with: { label: after }
`)
	assert.Equal(t, reports.StatusFailed, h.res.Run.Status)
	e := h.step(t, 0, "e")
	assert.Equal(t, reports.StatusFailed, e.Status)
	require.Len(t, e.Expectations, 2)
	assert.True(t, e.Expectations[0].OK)
	assert.False(t, e.Expectations[1].OK)
	assert.Equal(t, map[string]string{"outputs.count": "3", "vars.limit": "1"}, e.Expectations[1].Values)
	after := h.step(t, 0, "after")
	assert.Equal(t, reports.StatusSkipped, after.Status)
	assert.Empty(t, trailCopy(), "a step after a failure does not run")
	assert.Contains(t, h.console.String(), "expected outputs.count == vars.limit (outputs.count = 3, vars.limit = 1)")
	assert.Contains(t, h.file(t, JUnitFile), `message="expected outputs.count == vars.limit (outputs.count = 3, vars.limit = 1)"`)
}

func TestFailureKinds(t *testing.T) {
	for _, tc := range []struct{ mode, status, msg string }{
		{"fail", reports.StatusFailed, "the check found a fault"},
		{"error", reports.StatusErrored, "could not run"},
		{"panic", reports.StatusErrored, "step panicked: boom"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := run(t, context.Background(), Options{}, `
steps:
  - id: f
    uses: test.fault
    with: { mode: `+tc.mode+` }
`)
			f := h.step(t, 0, "f")
			assert.Equal(t, tc.status, f.Status)
			assert.Contains(t, f.Error, tc.msg)
			assert.Equal(t, reports.StatusFailed, h.res.Run.Scenarios[0].Status)
		})
	}
}

func TestBackgroundStepsRunConcurrentlyAndJoin(t *testing.T) {
	start := time.Now()
	h := run(t, context.Background(), Options{}, `
steps:
  - id: slow
    uses: test.emit
    background: true
    with: { label: slow-done, delay: 300ms, count: 7 }
  - id: fast
    uses: test.emit
    with: { label: fast-done }
  - uses: wait
    with: { for: [slow] }
  - uses: assert
    expect: steps.slow.outputs.count == 7
`)
	assert.Equal(t, reports.StatusPassed, h.res.Run.Status)
	assert.Equal(t, []string{"fast-done", "slow-done"}, trailCopy(), "the foreground step ran while the background one slept")
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestBackgroundFailureFailsTheWait(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: bg
    uses: test.fault
    background: true
    with: { mode: fail }
  - id: w
    uses: wait
  - id: after
    uses: test.emit
`)
	assert.Equal(t, reports.StatusFailed, h.step(t, 0, "bg").Status)
	assert.Equal(t, reports.StatusFailed, h.step(t, 0, "w").Status)
	assert.Equal(t, reports.StatusSkipped, h.step(t, 0, "after").Status)
}

func TestUnjoinedBackgroundIsJoinedAtEndAndCancelledOnFailure(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: bg
    uses: test.fault
    background: true
    with: { mode: hang }
  - id: boom
    uses: test.fault
    with: { mode: fail }
`)
	assert.Contains(t, trailCopy(), "hang:cancelled", "a failing scenario cancels its background steps")
	assert.Equal(t, reports.StatusErrored, h.step(t, 0, "bg").Status)
}

func TestRetryWithBackoff(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: r
    uses: test.flaky
    with: { key: r, failures: 2 }
    retry: { attempts: 3, delay: 50ms, backoff: 2 }
    expect: outputs.attempt == 3
  - id: never
    uses: test.flaky
    with: { key: n, failures: 5 }
    retry: { attempts: 2, delay: 10ms }
`)
	r := h.step(t, 0, "r")
	assert.Equal(t, reports.StatusPassed, r.Status)
	assert.Equal(t, 3, r.AttemptCount())
	var times []int64
	for _, line := range trailCopy() {
		if parts := strings.Split(line, ":"); parts[1] == "r" {
			ms, _ := strconv.ParseInt(parts[3], 10, 64)
			times = append(times, ms)
		}
	}
	require.Len(t, times, 3)
	first, second := times[1]-times[0], times[2]-times[1]
	assert.GreaterOrEqual(t, first, int64(45))
	assert.GreaterOrEqual(t, second, int64(95), "the second delay doubled")
	n := h.step(t, 0, "never")
	assert.Equal(t, reports.StatusErrored, n.Status)
	assert.Equal(t, 2, n.AttemptCount())
	assert.Contains(t, n.Error, "attempt 2 failed")
	assert.Equal(t, "attempt 1 failed", n.Attempts[0].Error, "each attempt's error is kept")
	assert.Equal(t, "attempt 2 failed", n.Attempts[1].Error)
}

func TestStepTimeout(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: h
    uses: test.fault
    with: { mode: hang }
    timeout: 100ms
`)
	st := h.step(t, 0, "h")
	assert.Equal(t, reports.StatusErrored, st.Status)
	assert.Equal(t, "timed out after 100ms", st.Error)
}

func TestScenarioTimeoutStillRunsCleanup(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
timeout: 200ms
steps:
  - uses: test.undo
    with: { name: port }
  - id: h
    uses: test.fault
    with: { mode: hang }
  - id: after
    uses: test.emit
cleanup:
  - uses: test.emit
    with: { label: cleanup-step }
`)
	sc := h.res.Run.Scenarios[0]
	assert.Equal(t, reports.StatusFailed, sc.Status)
	assert.Contains(t, sc.Error, "timed out after 200ms")
	assert.Equal(t, []string{"do:port", "hang:cancelled", "cleanup-step", "undo:port"}, trailCopy())
	assert.Equal(t, reports.StatusSkipped, h.step(t, 0, "after").Status)
}

func TestUndoRunsInReverseAfterFailure(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - uses: test.undo
    with: { name: first }
  - uses: test.undo
    with: { name: second, fail: true }
  - uses: test.fault
    with: { mode: fail }
  - uses: test.undo
    with: { name: never }
`)
	assert.Equal(t, []string{"do:first", "do:second", "undo:second", "undo:first"}, trailCopy())
	var undo []string
	for _, st := range h.res.Run.Scenarios[0].Steps {
		if st.Uses == "undo" {
			undo = append(undo, st.ID+"="+st.Status)
			assert.Equal(t, reports.PhaseCleanup, st.Phase)
		}
	}
	assert.Equal(t, []string{"second=errored", "first=passed"}, undo)
}

func TestContinueOnErrorAndIf(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: soft
    uses: test.fault
    with: { mode: fail }
    continue_on_error: true
  - id: ran
    uses: test.emit
    with: { label: ran }
  - id: skipped
    uses: test.emit
    if: steps.soft.status == "passed"
    with: { label: never }
  - id: taken
    uses: test.emit
    if: steps.soft.status == "failed"
    with: { label: taken }
`)
	assert.Equal(t, reports.StatusPassed, h.res.Run.Status, "continue_on_error: the failure does not fail the drill")
	assert.Equal(t, reports.StatusFailed, h.step(t, 0, "soft").Status)
	assert.Equal(t, []string{"ran", "taken"}, trailCopy())
	assert.Contains(t, h.step(t, 0, "skipped").SkipReason, `if: steps.soft.status == "passed" is false`)
}

func TestInterruptRunsCleanupAndMarksInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	h := run(t, ctx, Options{}, `
steps:
  - uses: test.undo
    with: { name: tunnel }
  - uses: test.fault
    with: { mode: hang }
  - id: later
    uses: test.emit
`, `
steps:
  - id: second
    uses: test.emit
`)
	assert.Equal(t, reports.StatusInterrupted, h.res.Run.Status)
	assert.Equal(t, reports.StatusInterrupted, h.res.Run.Scenarios[0].Status)
	assert.Equal(t, reports.StatusInterrupted, h.res.Run.Scenarios[1].Status)
	assert.Equal(t, []string{"do:tunnel", "hang:cancelled", "undo:tunnel"}, trailCopy())
	// Reports are complete even so.
	var parsed reports.Run
	require.NoError(t, json.Unmarshal([]byte(h.file(t, JSONFile)), &parsed))
	assert.Equal(t, "interrupted", parsed.Status)
}

func TestStubbornStepIsAbandoned(t *testing.T) {
	h := run(t, context.Background(), Options{StopGrace: 100 * time.Millisecond}, `
steps:
  - id: s
    uses: test.fault
    with: { mode: stubborn }
    timeout: 50ms
`)
	st := h.step(t, 0, "s")
	assert.Equal(t, reports.StatusErrored, st.Status)
	assert.Less(t, st.DurationMS, int64(1500))
}

func TestParallelScenariosKeepReportOrder(t *testing.T) {
	var srcs []string
	for i := 0; i < 6; i++ {
		// Earlier scenarios sleep longer, so they finish last.
		srcs = append(srcs, fmt.Sprintf("name: sc%d\nsteps:\n  - uses: sleep\n    with: { duration: %dms }\n", i, 300-40*i))
	}
	h := run(t, context.Background(), Options{Parallel: 3}, srcs...)
	for i, sc := range h.res.Run.Scenarios {
		assert.Equal(t, fmt.Sprintf("sc%d", i), sc.Name)
		assert.Equal(t, reports.StatusPassed, sc.Status)
	}
	// Concurrency, not wall time (which a loaded machine stretches): the
	// most scenarios running at one instant is the worker count.
	assert.Equal(t, 3, maxOverlap(h.res.Run.Scenarios), "6 scenarios on 3 workers")
	assert.Contains(t, h.console.String(), "[sc0]")
}

func TestTagFilterSkips(t *testing.T) {
	h := run(t, context.Background(), Options{Skip: func(sc *Scenario) (bool, string) {
		return sc.Name == "b", "not tagged"
	}}, "name: a\nsteps:\n  - uses: test.emit\n    with: { label: a }\n", "name: b\nsteps:\n  - uses: test.emit\n    with: { label: b }\n")
	assert.Equal(t, []string{"a"}, trailCopy())
	assert.Equal(t, reports.StatusSkipped, h.res.Run.Scenarios[1].Status)
	assert.Equal(t, reports.StatusPassed, h.res.Run.Status)
}

// TestSecretsNeverLeak injects a secret through every path (secrets:, a
// secret output, a step log, an error, an expectation value) in every
// encoding, and scans every output format for every form.
func TestSecretsNeverLeak(t *testing.T) {
	const secret = "Tr0ub4dor&3-horse"
	const token = "tok-9f8e7d6c5b4a"
	encodings := map[string]func(string) string{
		"raw":       func(s string) string { return s },
		"base64":    func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64url": func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) },
		"hex":       func(s string) string { return hex.EncodeToString([]byte(s)) },
		"url":       url.QueryEscape,
	}
	t.Setenv("DRILL_SECRET", secret)
	var withLines []string
	for name, enc := range encodings {
		withLines = append(withLines, fmt.Sprintf("  - id: log_%s\n    uses: test.emit\n    with: { log: %q, values: { leak: %q } }\n", name,
			"value "+enc(secret)+" and "+enc(token), "x"+enc(secret)))
	}
	src := `
secrets:
  pw: { env: DRILL_SECRET }
steps:
  - id: tok
    uses: test.emit
    with: { token: "` + token + `" }
` + strings.Join(withLines, "") + `
  - id: cmd
    uses: exec
    with: { command: [sh, -c, "echo ${{ secrets.pw }}; echo $0 >&2; exit 3", "${{ steps.tok.outputs.token }}"] }
    continue_on_error: true
  - id: cmp
    uses: assert
    expect: secrets.pw == "x" + steps.tok.outputs.token
`
	h := run(t, context.Background(), Options{}, src)
	assert.Equal(t, reports.StatusFailed, h.step(t, 0, "cmp").Status)
	assert.Equal(t, "***", h.step(t, 0, "tok").Outputs["token"])
	var md bytes.Buffer
	require.NoError(t, reports.WriteMarkdown(&md, h.res.Run))
	outputs := map[string]string{
		"console":            h.console.String(),
		JournalFile:          h.file(t, JournalFile),
		JSONFile:             h.file(t, JSONFile),
		JUnitFile:            h.file(t, JUnitFile),
		HTMLFile:             h.file(t, HTMLFile),
		reports.ManifestName: h.file(t, reports.ManifestName),
		"summary.md":         md.String(),
	}
	for file, content := range outputs {
		for name, enc := range encodings {
			for _, s := range []string{secret, token} {
				assert.NotContains(t, content, enc(s), "%s leaks the %s form of %q", file, name, s)
			}
		}
		if file != reports.ManifestName { // hashes and names only
			assert.Contains(t, content, "***", "%s shows that something was redacted", file)
		}
	}
}

func TestMissingSecretIsBadInput(t *testing.T) {
	sc, err := Load("s.yaml", []byte("secrets:\n  pw: { env: OPSDRILL_TEST_UNSET }\nsteps:\n  - uses: test.emit\n"), LoadOptions{})
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = Run(context.Background(), []*Scenario{sc}, Options{ReportDir: dir})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "s.yaml:2:7: secrets.pw: environment variable OPSDRILL_TEST_UNSET is not set")
	_, statErr := os.Stat(filepath.Join(dir, JournalFile))
	assert.True(t, os.IsNotExist(statErr), "nothing ran, nothing was written")
}

// TestStepsShareTheScenarioTimeline: a background step sees a moment a
// later foreground step notes (dns.watch and db.failover work this way);
// another scenario's timeline is separate.
func TestStepsShareTheScenarioTimeline(t *testing.T) {
	h := run(t, context.Background(), Options{Parallel: 2}, `
steps:
  - id: watch
    uses: test.await_note
    background: true
    timeout: 5s
    with: { kind: failover.trigger }
  - id: trigger
    uses: test.note
    with: { kind: failover.trigger }
  - uses: wait
    with: { for: [watch] }
  - uses: assert
    expect: steps.watch.outputs.by == "trigger"
`, `
steps:
  - id: other
    uses: test.await_note
    timeout: 300ms
    with: { kind: failover.trigger }
`)
	assert.Equal(t, reports.StatusPassed, h.res.Run.Scenarios[0].Status)
	assert.Equal(t, reports.StatusErrored, h.step(t, 1, "other").Status, "timelines are per scenario")
}

func TestOptionalSecret(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
secrets:
  key: { env: OPSDRILL_TEST_UNSET_OPTIONAL, optional: true }
steps:
  - uses: assert
    expect: secrets.key == ""
`)
	assert.Equal(t, reports.StatusPassed, h.res.Run.Status)
}

func TestJournalRebuildsReports(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: a
    uses: test.emit
    with: { count: 1, log: hello }
  - id: b
    uses: test.fault
    with: { mode: fail }
`)
	f, err := os.Open(filepath.Join(h.dir, JournalFile))
	require.NoError(t, err)
	defer f.Close()
	rebuilt, err := reports.ReadJournal(f)
	require.NoError(t, err)
	live, err := json.Marshal(h.res.Run)
	require.NoError(t, err)
	again, err := json.Marshal(rebuilt)
	require.NoError(t, err)
	assert.JSONEq(t, string(live), string(again), "report.json rebuilt from the journal equals the live one")
}

// maxOverlap is the largest number of scenarios running at one instant.
func maxOverlap(scs []*reports.Scenario) int {
	most := 0
	for _, a := range scs {
		n := 0
		for _, b := range scs {
			if !b.Started.After(a.Started) && b.Finished.After(a.Started) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}
