package reports

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestApplyWaivers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		waivers   []Waiver
		run, sc   string
		badStatus string
		errStatus string
		states    []string
	}{
		{"none", nil, StatusFailed, StatusFailed, StatusFailed, StatusErrored, nil},
		{"one of two waived", []Waiver{{Scenario: "drill <&>", Step: "bad", Justification: "j", Expires: "2026-12-31"}},
			StatusFailed, StatusFailed, StatusWaived, StatusErrored, []string{WaiverApplied}},
		{"both waived by pattern", []Waiver{{Scenario: "drill*", Step: "*", Justification: "j", Expires: "2026-11-21"}},
			StatusPassed, StatusPassed, StatusWaived, StatusWaived, []string{WaiverApplied}},
		{"expired the day before", []Waiver{{Scenario: "drill*", Step: "*", Justification: "j", Expires: "2026-11-20"}},
			StatusFailed, StatusFailed, StatusFailed, StatusErrored, []string{WaiverExpired}},
		{"unused", []Waiver{{Scenario: "other", Step: "*", Justification: "j", Expires: "2030-01-01"}},
			StatusFailed, StatusFailed, StatusFailed, StatusErrored, []string{WaiverUnused}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := build(sampleEvents())
			run.Started = t0 // 2026-11-21 10:00 UTC
			ApplyWaivers(run, tc.waivers)
			assert.Equal(t, tc.run, run.Status)
			sc := run.Scenarios[0]
			assert.Equal(t, tc.sc, sc.Status)
			byID := map[string]*Step{}
			for _, st := range sc.Steps {
				byID[st.ID] = st
			}
			assert.Equal(t, tc.badStatus, byID["bad"].Status)
			assert.Equal(t, tc.errStatus, byID["err"].Status)
			var states []string
			for _, w := range run.Waivers {
				states = append(states, w.State)
			}
			assert.Equal(t, tc.states, states)
		})
	}
}

func TestWaivedStepInJUnitAndMarkdown(t *testing.T) {
	run := build(sampleEvents())
	run.Started = t0
	ApplyWaivers(run, []Waiver{{Scenario: "drill*", Step: "bad", Justification: "OPS-42 fix scheduled", Expires: "2026-12-31"}})
	var buf bytes.Buffer
	require.NoError(t, WriteJUnit(&buf, run))
	var doc junitSuites
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc))
	assert.Equal(t, 0, doc.Failures, "a waived failure does not fail CI")
	assert.Contains(t, buf.String(), "waived until 2026-12-31: OPS-42 fix scheduled (was failed: expected outputs.lost == 0 (outputs.lost = 3))")

	buf.Reset()
	require.NoError(t, WriteMarkdown(&buf, run))
	md := buf.String()
	assert.Contains(t, md, "APPLIED `drill*/bad` until 2026-12-31: OPS-42 fix scheduled")
	assert.Contains(t, md, "(1 waived)")
}

func TestMarkdownSummary(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteMarkdown(&buf, build(sampleEvents())))
	md := buf.String()
	assert.True(t, strings.HasPrefix(md, "## ❌ opsdrill: FAILED"))
	assert.Contains(t, md, "| ❌ | drill &lt;&> | 3/6 | 19ms |")
	assert.Contains(t, md, "- **drill &lt;&>** › `bad` (assert): expected outputs.lost == 0 (outputs.lost = 3)")
	assert.Contains(t, md, "- **drill &lt;&>** › `err` (tcp.probe): no route")
}

func TestTrend(t *testing.T) {
	var runs []TrendRun
	for i, lost := range []int{0, 3, 0} {
		run := build(sampleEvents())
		run.Started = t0.AddDate(0, 0, i)
		run.Scenarios[0].Steps[0].Outputs = map[string]any{"lost": float64(lost), "constant": float64(1)}
		if lost == 0 {
			run.Scenarios[0].Status = StatusPassed
		}
		runs = append(runs, TrendRun{Dir: "night" + string(rune('1'+i)), Run: run})
	}
	var buf bytes.Buffer
	require.NoError(t, WriteTrend(&buf, runs, TrendOptions{}))
	out := buf.String()
	assert.Equal(t, 2, strings.Count(out, `<span class="badge st-passed">PASSED</span>`))
	assert.Equal(t, 1, strings.Count(out, `<span class="badge st-failed">FAILED</span>`))
	assert.Contains(t, out, "<code>ok.lost</code>")
	assert.NotContains(t, out, "ok.constant", "a constant value is not a trend")
	assert.Contains(t, out, `<svg class="chart"`)
	assert.NotRegexp(t, `(src|href)="https?:`, out)
}

func TestWaiverPatternsCoverNestedSteps(t *testing.T) {
	for _, tc := range []struct {
		pattern, step string
		want          bool
	}{
		{"*", "up/tunnel", true},
		{"up/*", "up/tunnel", true},
		{"up*", "up/tunnel", true},
		{"probe[0]", "probe[0]", true},
		{"probe[*]", "probe[3]", false},
		{"probe*", "probe[3]", true},
		{"ssh_closed/probe*", "ssh_closed/probe[1]", true},
		{"down", "up/tunnel", false},
	} {
		w := Waiver{Scenario: "s", Step: tc.pattern}
		assert.Equal(t, tc.want, w.matches("s", tc.step), "%s ~ %s", tc.pattern, tc.step)
	}
}
