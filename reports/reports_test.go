package reports

import (
	"bytes"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// sampleEvents is a run with every step status and a cleanup step.
func sampleEvents() []*Event {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	si := func(id, uses, phase string) *StepInfo { return &StepInfo{ID: id, Uses: uses, Phase: phase} }
	return []*Event{
		{Type: EventRunStart, Time: at(0), Run: &RunInfo{ToolVersion: "test", RunID: "r1", Host: "h"}},
		{Type: EventScenarioStart, Time: at(1), ScenarioInfo: &ScenarioInfo{Name: "drill <&>", File: "d.yaml", Steps: []StepInfo{
			{ID: "ok", Uses: "exec", Phase: PhaseMain}, {ID: "bad", Uses: "assert", Phase: PhaseMain},
			{ID: "err", Uses: "tcp.probe", Phase: PhaseMain}, {ID: "later", Uses: "exec", Phase: PhaseMain},
			{ID: "bye", Uses: "exec", Phase: PhaseCleanup}}}},
		{Type: EventStepStart, Time: at(2), Step: si("ok", "exec", PhaseMain)},
		{Type: EventStepLog, Time: at(3), Step: si("ok", "exec", PhaseMain), Line: "a line with ]]> inside"},
		{Type: EventStepEnd, Time: at(10), Step: si("ok", "exec", PhaseMain), Result: &StepResult{Status: StatusPassed, DurationMS: 8,
			Outputs: map[string]any{"stdout": "hi"}, Evidence: []steps.Evidence{steps.TableEvidence("t", []string{"a"}, [][]string{{"1"}})}}},
		{Type: EventStepStart, Time: at(11), Step: si("bad", "assert", PhaseMain)},
		{Type: EventStepEnd, Time: at(12), Step: si("bad", "assert", PhaseMain), Result: &StepResult{Status: StatusFailed, DurationMS: 1,
			Expectations: []Expectation{{Expr: "outputs.lost == 0", OK: false, Values: map[string]string{"outputs.lost": "3"}}}}},
		{Type: EventStepStart, Time: at(13), Step: si("err", "tcp.probe", PhaseMain)},
		{Type: EventStepEnd, Time: at(14), Step: si("err", "tcp.probe", PhaseMain), Result: &StepResult{Status: StatusErrored, Error: "no route"}},
		{Type: EventStepEnd, Time: at(14), Step: si("later", "exec", PhaseMain), Result: &StepResult{Status: StatusSkipped, SkipReason: "skipped: step bad failed"}},
		{Type: EventStepStart, Time: at(15), Step: si("bye", "exec", PhaseCleanup)},
		{Type: EventStepEnd, Time: at(16), Step: si("bye", "exec", PhaseCleanup), Result: &StepResult{Status: StatusPassed}},
		{Type: EventStepStart, Time: at(17), Step: si("port", "undo", PhaseCleanup)},
		{Type: EventStepEnd, Time: at(18), Step: si("port", "undo", PhaseCleanup), Result: &StepResult{Status: StatusPassed}},
		{Type: EventScenarioEnd, Time: at(20), Status: StatusFailed, Error: "step bad failed"},
		{Type: EventRunEnd, Time: at(21), Status: StatusFailed},
	}
}

func build(events []*Event) *Run {
	b := NewBuilder()
	for _, ev := range events {
		b.Emit(ev)
	}
	return b.Run(events[len(events)-1].Time)
}

func TestBuilderModel(t *testing.T) {
	run := build(sampleEvents())
	require.Len(t, run.Scenarios, 1)
	sc := run.Scenarios[0]
	assert.Equal(t, StatusFailed, sc.Status)
	assert.Equal(t, int64(19), sc.DurationMS)
	var got []string
	for _, st := range sc.Steps {
		got = append(got, st.Phase+"/"+st.ID+"="+st.Status)
	}
	assert.Equal(t, []string{"main/ok=passed", "main/bad=failed", "main/err=errored", "main/later=skipped", "cleanup/bye=passed", "cleanup/port=passed"}, got)
	assert.Equal(t, Counts{Total: 6, Passed: 3, Failed: 1, Errored: 1, Skipped: 1}, sc.StepCounts())
	assert.Equal(t, []string{"a line with ]]> inside"}, sc.Steps[0].Logs)
}

func TestJUnitValidatesAgainstSchema(t *testing.T) {
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("xmllint (libxml2-utils) is required in CI")
		}
		t.Skip("xmllint not installed (apt-get install libxml2-utils)")
	}
	var buf bytes.Buffer
	require.NoError(t, WriteJUnit(&buf, build(sampleEvents())))
	path := filepath.Join(t.TempDir(), "junit.xml")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	out, err := exec.Command(xmllint, "--noout", "--schema", "testdata/junit.xsd", path).CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, buf.String())
}

func TestJUnitContent(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteJUnit(&buf, build(sampleEvents())))
	var doc junitSuites
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc))
	require.Len(t, doc.Suites, 1)
	s := doc.Suites[0]
	assert.Equal(t, "drill <&>", s.Name)
	assert.Equal(t, 6, s.Tests)
	assert.Equal(t, 1, s.Failures)
	assert.Equal(t, 1, s.Errors)
	assert.Equal(t, 1, s.Skipped)
	byName := map[string]junitTestcase{}
	for _, c := range s.Cases {
		byName[c.Name] = c
	}
	require.NotNil(t, byName["bad (assert)"].Failure)
	assert.Equal(t, "expected outputs.lost == 0 (outputs.lost = 3)", byName["bad (assert)"].Failure.Message)
	require.NotNil(t, byName["err (tcp.probe)"].Error)
	assert.Equal(t, "no route", byName["err (tcp.probe)"].Error.Message)
	require.NotNil(t, byName["later (exec)"].Skipped)
	assert.Contains(t, byName["ok (exec)"].SystemOut, `"stdout": "hi"`)
	assert.Contains(t, byName["ok (exec)"].SystemOut, "a line with ]]> inside")
	assert.Contains(t, byName, "cleanup: bye (exec)")
}

func TestReadJournalToleratesTornLastLine(t *testing.T) {
	var buf bytes.Buffer
	events := sampleEvents()
	// A run killed after the "bad" step started: no ends after it, and
	// the last line cut mid-write.
	for _, ev := range events[:6] {
		b, _ := jsonLine(ev)
		buf.Write(b)
	}
	b, _ := jsonLine(events[6])
	buf.Write(b[:len(b)/2])
	run, err := ReadJournal(&buf)
	require.NoError(t, err)
	sc := run.Scenarios[0]
	assert.Equal(t, StatusInterrupted, sc.Status)
	assert.Equal(t, StatusInterrupted, run.Status)
	states := map[string]string{}
	for _, st := range sc.Steps {
		states[st.ID] = st.Status
	}
	assert.Equal(t, StatusPassed, states["ok"])
	assert.Equal(t, StatusErrored, states["bad"], "a step that never ended is shown as cut short")
	assert.Equal(t, StatusSkipped, states["later"])
}

func TestReadJournalRejectsCorruptMiddle(t *testing.T) {
	in := strings.NewReader("{\"type\":\"run_start\",\"time\":\"2026-11-21T10:00:00Z\"}\nnot json\n{\"type\":\"run_end\",\"time\":\"2026-11-21T10:00:01Z\"}\n")
	_, err := ReadJournal(in)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "journal line 2")
}

func TestJournalWritesEachEventAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	j, err := OpenJournal(path)
	require.NoError(t, err)
	events := sampleEvents()
	j.Emit(events[0])
	// Readable before Close: a SIGKILL now would keep it.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(data), "\n"))
	for _, ev := range events[1:] {
		j.Emit(ev)
	}
	require.NoError(t, j.Close())
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	run, err := ReadJournal(f)
	require.NoError(t, err)
	assert.Equal(t, StatusFailed, run.Status)
}

func TestConsolePlain(t *testing.T) {
	var buf bytes.Buffer
	c := NewConsole(&buf, ConsoleOptions{})
	for _, ev := range sampleEvents() {
		c.Emit(ev)
	}
	c.Close()
	out := buf.String()
	assert.NotContains(t, out, "\x1b[", "plain mode has no escape codes")
	for _, want := range []string{
		"▶ drill <&>",
		"PASS  ok",
		"FAIL  bad",
		"expected outputs.lost == 0 (outputs.lost = 3)",
		"ERROR err",
		"SKIP  later",
		"PASS  cleanup:bye",
		"■ drill <&> FAILED: step bad failed",
		"run FAILED",
	} {
		assert.Contains(t, out, want)
	}
}

func TestConsoleLiveShowsRunningSteps(t *testing.T) {
	var buf bytes.Buffer
	c := NewConsole(&syncWriter{w: &buf}, ConsoleOptions{Live: true, Color: true})
	events := sampleEvents()
	for _, ev := range events[:3] { // "ok" is running
		c.Emit(ev)
	}
	c.Progress(0, PhaseMain, "ok", "312 writes")
	time.Sleep(250 * time.Millisecond)
	c.Close()
	out := buf.String()
	assert.Contains(t, out, "312 writes")
	assert.Contains(t, out, "\x1b[", "live mode redraws in place")
	assert.Regexp(t, `[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] ok`, out)
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		12 * time.Millisecond:   "12ms",
		3400 * time.Millisecond: "3.4s",
		125 * time.Second:       "2m05s",
	} {
		assert.Equal(t, want, FormatDuration(d))
	}
}
