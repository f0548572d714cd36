package runner

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
)

func TestGeneratedIDsNeverClash(t *testing.T) {
	sc, err := Load("s.yaml", []byte(`
steady_state:
  - uses: exec
    with: { command: ["true"] }
steps:
  - uses: exec
    with: { command: ["true"] }
  - uses: exec
    with: { command: ["true"] }
cleanup:
  - uses: exec
    with: { command: ["true"] }
`), LoadOptions{})
	require.NoError(t, err)
	var ids []string
	for _, list := range [][]*Step{sc.Steps, sc.Cleanup, sc.SteadyState} {
		for _, st := range list {
			ids = append(ids, st.ID)
		}
	}
	assert.Equal(t, []string{"exec#1", "exec#2", "exec#3", "exec#4"}, ids)
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	src := `
x-defaults: &defaults
  timeout: 5s
  continue_on_error: true
x-common: &common
  command: [echo, hello]
name: anchored
steps:
  - id: a
    uses: exec
    with: *common
  - id: b
    <<: *defaults
    uses: exec
    with:
      <<: *common
      command: [echo, bye]
  - id: c
    <<: [*defaults]
    timeout: 9s
    uses: exec
    with: *common
`
	sc, err := Load("s.yaml", []byte(src), LoadOptions{})
	require.NoError(t, err)
	require.Len(t, sc.Steps, 3)
	assert.False(t, sc.Steps[0].ContinueOnError)
	assert.True(t, sc.Steps[1].ContinueOnError, "merged from defaults")
	assert.Equal(t, "5s", sc.Steps[1].Timeout.String())
	assert.Equal(t, "9s", sc.Steps[2].Timeout.String(), "the step's own key wins over a merged one")
	h := run(t, context.Background(), Options{}, src)
	assert.Equal(t, reports.StatusPassed, h.res.Run.Status)
	assert.Equal(t, "hello\n", h.step(t, 0, "a").Outputs["stdout"])
	assert.Equal(t, "bye\n", h.step(t, 0, "b").Outputs["stdout"], "an own key wins inside with: too")
	assert.Equal(t, "hello\n", h.step(t, 0, "c").Outputs["stdout"])
}

func TestAnchorMistakesAreReported(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"billion laughs", "x-a: &a [1,1,1,1,1,1,1,1,1,1]\nx-b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nx-c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
			"x-d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\nx-e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nx-f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\nsteps:\n  - uses: test.emit\n",
			"anchors and aliases expand to more than 1000000 nodes"},
		{"merge of a list", "x-l: &l [1, 2]\nsteps:\n  - <<: *l\n    uses: test.emit\n", "<<: expected a mapping"},
		{"unknown top-level key without x-", "y-a: 1\nsteps:\n  - uses: test.emit\n", `unknown field "y-a"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("s.yaml", []byte(tc.src), LoadOptions{})
			require.Error(t, err)
			assert.True(t, strings.Contains(err.Error(), tc.want), err.Error())
		})
	}
}

func TestNonBooleanConditionsAreErrors(t *testing.T) {
	loadCases := []struct{ name, src, want string }{
		{"if a declared int", "vars: { count: 3 }\nsteps:\n  - uses: test.emit\n    if: vars.count\n", "4:9: steps[0].if: vars.count is 3, not true or false"},
		{"expect a literal", "steps:\n  - uses: test.emit\n    expect: 3\n", "3:13: steps[0].expect: 3 gives int, not true or false"},
		{"expect a length", "vars: { name: x }\nsteps:\n  - uses: test.emit\n    expect: len(vars.name)\n", "steps[0].expect: len(vars.name) gives int"},
		{"if a string in a template", "vars: { mode: fast }\nsteps:\n  - uses: test.emit\n    if: ${{ vars.mode }}\n", "steps[0].if: vars.mode is \"fast\", not true or false"},
	}
	for _, tc := range loadCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("s.yaml", []byte(tc.src), LoadOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	ok, err := Load("s.yaml", []byte("vars: { on: true, count: 3 }\nsteps:\n  - uses: test.emit\n    if: vars.on && vars.count > 1\n"), LoadOptions{})
	require.NoError(t, err)
	require.NotNil(t, ok)
	// Unknown at load (a var from a vars file, an output): the step errors.
	sc, err := Load("s.yaml", []byte(`
steps:
  - id: a
    uses: test.emit
    with: { count: 3 }
  - id: b
    uses: test.emit
    if: steps.a.outputs.count
  - id: c
    uses: test.emit
    with: { count: 3 }
    expect: outputs.count
`), LoadOptions{ExtraVars: map[string]bool{"count": true}})
	require.NoError(t, err)
	res, err := Run(context.Background(), []*Scenario{sc}, Options{ReportDir: t.TempDir(), Vars: map[string]any{"count": 3}})
	require.NoError(t, err)
	steps := res.Run.Scenarios[0].Steps
	assert.Equal(t, reports.StatusErrored, steps[1].Status, "an if: that is not a boolean is no silent skip")
	assert.Equal(t, "if: steps.a.outputs.count is 3, not true or false", steps[1].Error)
	assert.Equal(t, reports.StatusSkipped, steps[2].Status)
	sc2, err := Load("s.yaml", []byte("steps:\n  - id: c\n    uses: test.emit\n    with: { count: 3 }\n    expect: outputs.count\n"), LoadOptions{})
	require.NoError(t, err)
	res, err = Run(context.Background(), []*Scenario{sc2}, Options{ReportDir: t.TempDir()})
	require.NoError(t, err)
	c := res.Run.Scenarios[0].Steps[0]
	assert.Equal(t, reports.StatusErrored, c.Status, "an expect: that is not a boolean errors the step")
	assert.Equal(t, "expected true or false, got 3", c.Expectations[0].Error)
}

func TestSecretsOfScenariosSkippedByTagsAreNotRequired(t *testing.T) {
	skipped, err := Load("skipped.yaml", []byte("tags: [prod]\nsecrets:\n  pw: { env: OPSDRILL_TEST_UNSET_SECRET }\nsteps:\n  - uses: test.emit\n"), LoadOptions{})
	require.NoError(t, err)
	runs, err := Load("runs.yaml", []byte("tags: [lab]\nsteps:\n  - uses: test.emit\n"), LoadOptions{})
	require.NoError(t, err)
	skip := func(sc *Scenario) (bool, string) { return sc.Tags[0] == "prod", "not in --tags lab" }
	res, err := Run(context.Background(), []*Scenario{skipped, runs}, Options{ReportDir: t.TempDir(), Skip: skip})
	require.NoError(t, err, "the skipped scenario's missing secret is not needed")
	assert.Equal(t, reports.StatusSkipped, res.Run.Scenarios[0].Status)
	assert.Equal(t, reports.StatusPassed, res.Run.Scenarios[1].Status)
	_, err = Run(context.Background(), []*Scenario{skipped, runs}, Options{ReportDir: t.TempDir()})
	require.Error(t, err, "selected, the secret is required")
	assert.Contains(t, err.Error(), "environment variable OPSDRILL_TEST_UNSET_SECRET is not set")
}

func TestCommandLineSecretsAreMasked(t *testing.T) {
	args := []string{"run", "--var", "note=pw-is-Kq7ZxAb9Secret", "s.yaml"}
	h := run(t, context.Background(), Options{Secrets: map[string]string{"pw": "Kq7ZxAb9Secret"}, Args: args}, "steps:\n  - uses: test.emit\n")
	assert.Equal(t, []string{"run", "--var", "note=pw-is-***", "s.yaml"}, h.res.Run.Args)
	assert.Equal(t, "note=pw-is-Kq7ZxAb9Secret", args[2], "the caller's slice is left alone")
	for _, name := range []string{JSONFile, JournalFile, HTMLFile} {
		assert.NotContains(t, h.file(t, name), "Kq7ZxAb9Secret", name)
	}
}
