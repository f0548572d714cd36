package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/steps"
)

// measureStep reports what a failover check would: lost writes out of
// acknowledged ones, and a downtime in milliseconds.
type measureStep struct {
	Lost     int     `yaml:"lost"`
	Acked    int     `yaml:"acked"`
	Downtime float64 `yaml:"downtime_ms"`
	Where    string  `yaml:"where"`
	Closed   bool    `yaml:"closed"`
	Host     string  `yaml:"host"`
}

func (s *measureStep) Run(ctx context.Context, env *steps.Env) error {
	env.SetOutput("lost", s.Lost)
	env.SetOutput("acknowledged", s.Acked)
	env.SetOutput("downtime_ms", s.Downtime)
	env.SetOutput("closed", s.Closed)
	if s.Downtime < 0 {
		env.SetOutput("downtime_ms", -1.0)
	}
	return nil
}

func init() {
	steps.Register(steps.Spec{Name: "test.measure", Summary: "measure", New: func() steps.Step { return &measureStep{Where: "the gate"} },
		Outputs: []steps.Output{{Name: "lost"}, {Name: "acknowledged"}, {Name: "downtime_ms"}, {Name: "closed"}},
		Figures: []steps.Figure{
			{Output: "lost", Text: "{value} of {acknowledged} acknowledged writes lost"},
			{Output: "downtime_ms", Text: "writes stopped {value}", Unit: "ms", Seconds: true},
			{Output: "closed", Text: "port closed at {with.where}", TextFalse: "port open at {with.where}"},
		}})
}

func TestFiguresPairWithTheirLimits(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
description: Writes survive a failover.
vars: { max_ms: 30000 }
steps:
  - id: ok
    uses: test.measure
    with: { lost: 0, acked: 6652, downtime_ms: 2764, closed: true }
    expect:
      - outputs.lost == 0
      - vars.max_ms > outputs.downtime_ms
  - id: bad
    uses: test.measure
    with: { lost: 3, acked: 1200, downtime_ms: 41000.5, where: client2 }
    continue_on_error: true
    expect:
      - outputs.lost == 0
      - outputs.downtime_ms <= vars.max_ms
      - outputs.closed
  - id: unmeasured
    uses: test.measure
    with: { downtime_ms: -1, acked: 5 }
`)
	ok := h.step(t, 0, "ok")
	require.Len(t, ok.Figures, 3)
	assert.Equal(t, "0 of 6,652 acknowledged writes lost (limit 0)", ok.Figures[0].Text)
	assert.Equal(t, "writes stopped 2.76 s (limit 30 s)", ok.Figures[1].Text, "the limit is read the right way round")
	assert.Equal(t, "port closed at the gate", ok.Figures[2].Text, "a parameter's default")
	assert.True(t, ok.Figures[0].Met())

	bad := h.step(t, 0, "bad")
	require.Len(t, bad.Figures, 3)
	assert.Equal(t, "3 of 1,200 acknowledged writes lost (limit 0)", bad.Figures[0].Text)
	assert.False(t, bad.Figures[0].Met())
	assert.Equal(t, "writes stopped 41 s (limit 30 s)", bad.Figures[1].Text)
	assert.False(t, bad.Figures[1].Met())
	assert.Equal(t, "port open at client2", bad.Figures[2].Text, "a bool figure's false text; a boolean expectation is no limit")
	assert.Empty(t, bad.Figures[2].Limits)

	un := h.step(t, 0, "unmeasured")
	require.Len(t, un.Figures, 2, "a negative duration is not a measurement")
	assert.Equal(t, "0 of 5 acknowledged writes lost", un.Figures[0].Text, "no expectation, no limit")

	run := h.res.Run
	require.Len(t, run.Findings, 1)
	f := run.Findings[0]
	assert.Equal(t, "Writes survive a failover.", f.Claim)
	assert.Equal(t, reports.StatusPassed, f.Status)
	assert.Len(t, f.Figures, 8)
	assert.True(t, strings.HasPrefix(f.Summary, "0 of 6,652 acknowledged writes lost (limit 0); writes stopped 2.76 s (limit 30 s); "), f.Summary)

	// The journal alone gives the same findings (report render).
	jf, err := os.Open(filepath.Join(h.dir, JournalFile))
	require.NoError(t, err)
	defer jf.Close()
	again, err := reports.ReadJournal(jf)
	require.NoError(t, err)
	assert.Equal(t, f.Summary, again.Findings[0].Summary)
	assert.Contains(t, h.file(t, JSONFile), `"findings": [`)
}

func TestFiguresAreRedacted(t *testing.T) {
	t.Setenv("OPSDRILL_TEST_WHERE", "s3cr3t-gate-name")
	h := run(t, context.Background(), Options{}, `
secrets:
  where: { env: OPSDRILL_TEST_WHERE }
steps:
  - uses: test.measure
    with: { where: "${{ secrets.where }}", closed: true }
`)
	st := h.res.Run.Scenarios[0].Steps[0]
	require.Len(t, st.Figures, 3)
	assert.Equal(t, "port closed at ***", st.Figures[2].Text)
	for _, name := range []string{JournalFile, JSONFile, JUnitFile, HTMLFile} {
		assert.NotContains(t, h.file(t, name), "s3cr3t-gate-name", name)
	}
}

func TestControls(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
controls: [ISO27001:A.5.30, "SOC2:CC7.5"]
steps:
  - uses: test.emit
`)
	assert.Equal(t, []string{"ISO27001:A.5.30", "SOC2:CC7.5"}, h.res.Run.Scenarios[0].Controls)
	assert.Equal(t, []string{"ISO27001:A.5.30", "SOC2:CC7.5"}, h.res.Run.Findings[0].Controls)
	assert.Contains(t, h.file(t, JSONFile), `"controls": [`)
	assert.Contains(t, h.file(t, JUnitFile), `<property name="control" value="ISO27001:A.5.30"></property>`)

	cases := []struct{ name, yaml, want string }{
		{"a string", "controls: SOC2:CC7.5\nsteps: [{uses: test.emit}]\n", `1:11: controls: expected a list of strings`},
		{"a mapping", "controls: {soc2: CC7.5}\nsteps: [{uses: test.emit}]\n", `1:11: controls: expected a list of strings`},
		{"a number", "controls:\n  - 11.4\nsteps: [{uses: test.emit}]\n", `2:5: controls[0]: expected a string, got the float 11.4; quote it: "11.4"`},
		{"a nested list", "controls:\n  - [a]\nsteps: [{uses: test.emit}]\n", `2:5: controls[0]: expected a string, got a list`},
		{"empty", "controls: [ok, \"\"]\nsteps: [{uses: test.emit}]\n", `1:16: controls[1]: empty control`},
		{"twice", "controls:\n  - SOC2:CC7.5\n  - SOC2:CC7.5\nsteps: [{uses: test.emit}]\n", `3:5: controls[1]: "SOC2:CC7.5" is listed twice (first at line 2)`},
		{"misspelt key", "control: [a]\nsteps: [{uses: test.emit}]\n", `1:1: scenario: unknown field "control" (did you mean "controls"?)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("s.yaml", []byte(tc.yaml), LoadOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "s.yaml:"+tc.want)
		})
	}
}

// TestStepFinding: a scenario's finding: gives a step its own words in the
// findings, with the limits of its expectations; a placeholder that names
// no output is refused at load with its position.
func TestStepFinding(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: other
    uses: test.measure
    finding: "SSH closed from the other client, {acknowledged} probes at {with.where}"
    with: { closed: true, acked: 3 }
    expect:
      - outputs.lost == 0
  - id: plain
    uses: exec
    finding: "the gate's own check passed"
    with: { command: ["true"] }
`)
	figs := h.res.Run.Findings[0].Figures
	require.Len(t, figs, 2)
	assert.Equal(t, "SSH closed from the other client, 3 probes at the gate (limit 0)", figs[0].Text)
	assert.Equal(t, "the gate's own check passed", figs[1].Text, "a step without key figures of its own")

	_, err := Load("s.yaml", []byte("steps:\n  - uses: test.measure\n    finding: \"{lots} lost\"\n"), LoadOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `s.yaml:3:14: steps[0].finding: test.measure has no output "lots" (did you mean "lost"?)`)
}
