package reports

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

func TestNewFigurePhrases(t *testing.T) {
	outputs := map[string]any{
		"lost": 0, "acknowledged": 6652.0, "downtime_ms": 2764.3, "switch_ms": -1.0, "rtt": 1.23, "loss": 0.0,
		"received": 0, "closed_ms": -300, "open": false, "state": "timeout", "reason": "",
	}
	params := map[string]any{"address": "gate:22", "host": ""}
	cases := []struct {
		name   string
		fig    steps.Figure
		limits []Limit
		want   string // "" = not shown
	}{
		{"count of counts", steps.Figure{Output: "lost", Text: "{value} of {acknowledged} acknowledged writes lost"},
			[]Limit{{Op: "==", Value: 0, OK: true}}, "0 of 6,652 acknowledged writes lost (limit 0)"},
		{"ms as seconds", steps.Figure{Output: "downtime_ms", Text: "writes stopped {value}", Unit: "ms", Seconds: true},
			[]Limit{{Op: "<", Value: 30000, OK: true}}, "writes stopped 2.76 s (limit 30 s)"},
		{"ms kept", steps.Figure{Output: "rtt", Text: "RTT {value}", Unit: "ms"},
			[]Limit{{Op: "<", Value: 1000.0, OK: true}}, "RTT 1.23 ms (limit 1,000 ms)"},
		{"percent", steps.Figure{Output: "loss", Text: "{value} loss", Unit: "%"}, nil, "0 % loss"},
		{"minimum", steps.Figure{Output: "acknowledged", Text: "{value} acknowledged"},
			[]Limit{{Op: ">=", Value: 1000, OK: true}, {Op: "!=", Value: 7, OK: true}}, "6,652 acknowledged (at least 1,000; must not be 7)"},
		{"not measured", steps.Figure{Output: "switch_ms", Text: "DNS moved {value}", Unit: "ms", Seconds: true}, nil, ""},
		{"negative has its words", steps.Figure{Output: "closed_ms", Text: "closed {value} after", TextNegative: "closed {value} before", Unit: "ms", Seconds: true}, nil, "closed 0.3 s before"},
		{"when not", steps.Figure{Output: "rtt", Text: "RTT {value}", Unit: "ms", When: "received"}, nil, ""},
		{"absent output", steps.Figure{Output: "nothing", Text: "x"}, nil, ""},
		{"false text and param default", steps.Figure{Output: "open", Text: "{with.address} open", TextFalse: "{with.address} closed from {with.host|this machine} ({state})"}, nil,
			"gate:22 closed from this machine (timeout)"},
		{"only when false", steps.Figure{Output: "open", TextFalse: "never opened"}, nil, "never opened"},
		{"verbatim", steps.Figure{Output: "lost", Text: "port {=acknowledged}, {acknowledged} writes"}, nil, "port 6652, 6,652 writes"},
		{"expected count", steps.Figure{Output: "acknowledged", Text: "{value} installed"}, []Limit{{Op: "==", Value: 6652, OK: true}}, "6,652 installed (expected 6,652)"},
		{"empty output without default", steps.Figure{Output: "open", TextFalse: "refused{reason|}: {reason}"}, nil, "refused: —"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := NewFigure("s", tc.fig, outputs, params, tc.limits)
			if tc.want == "" {
				assert.False(t, ok, f.Text)
				return
			}
			require.True(t, ok)
			assert.Equal(t, tc.want, f.Text)
		})
	}
}

func TestReadableNumber(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", 6652: "6,652", -1234567: "-1,234,567", 2.764: "2.76", 3.6: "3.6", 0.27: "0.27", 0.0042: "0.0042",
		12.34: "12.3", 412.6: "413", 1000: "1,000", 1e-9: "0.000000001",
	} {
		assert.Equal(t, want, readableNumber(in), "%v", in)
	}
}

func TestFindingsInJSONAndMarkdown(t *testing.T) {
	events := sampleEvents()
	events[1].ScenarioInfo.Description = "  Writes\n  survive a failover.  "
	events[1].ScenarioInfo.Controls = []string{"ISO27001:A.5.30"}
	events[4].Result.Figures = []Figure{{Step: "ok", Output: "lost", Text: "0 of 6,652 acknowledged writes lost (limit 0)",
		Limits: []Limit{{Op: "==", Value: 0, OK: true}}}}
	events[6].Result.Figures = []Figure{{Step: "bad", Output: "write_downtime_ms", Text: "writes stopped 41 s (limit 30 s)",
		Limits: []Limit{{Op: "<", Value: 30000, OK: false}}}}
	run := build(events)
	require.Len(t, run.Findings, 1)
	f := run.Findings[0]
	assert.Equal(t, "Writes survive a failover.", f.Claim)
	assert.Equal(t, StatusFailed, f.Status)
	assert.Equal(t, "0 of 6,652 acknowledged writes lost (limit 0); writes stopped 41 s (limit 30 s)", f.Summary)
	assert.Equal(t, "bad: expected outputs.lost == 0 (outputs.lost = 3)", f.Why)
	assert.Equal(t, []string{"ISO27001:A.5.30"}, f.Controls)

	var js bytes.Buffer
	require.NoError(t, WriteJSON(&js, run))
	back, err := ReadJSON(&js)
	require.NoError(t, err)
	assert.Equal(t, f.Summary, back.Findings[0].Summary)

	var md bytes.Buffer
	require.NoError(t, WriteMarkdown(&md, run))
	assert.Contains(t, md.String(), "**Findings**")
	assert.Contains(t, md.String(), "| ❌ | drill &lt;&> | Writes survive a failover. | 0 of 6,652 acknowledged writes lost (limit 0)<br>❌ writes stopped 41 s (limit 30 s)<br>**why:** bad: expected outputs.lost == 0 (outputs.lost = 3) |")
}

// TestFindingsMergeTheSameFigure: two steps that measure the same thing
// give one figure in the findings, with the limits of both.
func TestFindingsMergeTheSameFigure(t *testing.T) {
	events := sampleEvents()
	events[4].Result.Figures = []Figure{{Step: "ok", Output: "switch_ms", Phrase: "DNS moved 3.6 s after the trigger",
		Text: "DNS moved 3.6 s after the trigger (limit 60 s)", Limits: []Limit{{Op: "<", Value: 60000, OK: true, Text: "limit 60 s"}}}}
	events[6].Result.Figures = []Figure{{Step: "bad", Output: "dns_switch_ms", Phrase: "DNS moved 3.6 s after the trigger", Text: "DNS moved 3.6 s after the trigger"},
		{Step: "bad", Output: "split_brain", Phrase: "no split brain", Text: "no split brain"}}
	f := build(events).Findings[0]
	require.Len(t, f.Figures, 2)
	assert.Equal(t, "DNS moved 3.6 s after the trigger (limit 60 s); no split brain", f.Summary)
	assert.Equal(t, StatusFailed, f.Figures[0].Status, "the figure is marked when either step failed")
}
