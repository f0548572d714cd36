package runner

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/steps"
)

// concurrentStep records how many of its kind run at once.
type concurrentStep struct {
	Delay time.Duration `yaml:"delay"`
	Label string        `yaml:"label"`
}

var (
	running    atomic.Int64
	maxRunning atomic.Int64
)

func (s *concurrentStep) Run(ctx context.Context, env *steps.Env) error {
	n := running.Add(1)
	defer running.Add(-1)
	for {
		m := maxRunning.Load()
		if n <= m || maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-time.After(s.Delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	note("ran:" + s.Label)
	env.SetOutput("label", s.Label)
	return nil
}

func init() {
	steps.Register(steps.Spec{Name: "test.concurrent", Summary: "count concurrent runs", New: func() steps.Step { return &concurrentStep{} },
		Outputs: []steps.Output{{Name: "label"}}})
}

// writeFiles writes files (path: content) below a temporary folder and
// returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return dir
}

// runFile loads and runs the scenario at path.
func runFile(t *testing.T, opts Options, path string) *harness {
	t.Helper()
	resetTrail()
	sc, err := LoadFile(path, LoadOptions{})
	require.NoError(t, err)
	h := &harness{dir: t.TempDir(), console: &bytes.Buffer{}}
	opts.ReportDir = h.dir
	opts.Sinks = append(opts.Sinks, reports.NewConsole(&syncBuffer{b: h.console}, reports.ConsoleOptions{}))
	res, err := Run(context.Background(), []*Scenario{sc}, opts)
	require.NoError(t, err)
	h.res = res
	return h
}

func stepIDs(sc *reports.Scenario) []string {
	var out []string
	for _, st := range sc.Steps {
		out = append(out, st.Phase+":"+st.ID)
	}
	return out
}

const probeFile = `name: probe pair
description: emit a value and a token, then check the value
inputs:
  label: { type: string, required: true, description: what to emit }
  count: { type: int, default: 2 }
  token: { type: string, secret: true }
steps:
  - id: first
    uses: test.emit
    with: { label: "${{ inputs.label }}", count: "${{ inputs.count }}", values: { t: "${{ inputs.token }}" } }
  - id: mark
    uses: test.undo
    with: { name: "${{ inputs.label }}" }
  - id: check
    uses: assert
    expect: steps.first.outputs.count == inputs.count
outputs:
  count: ${{ steps.first.outputs.count }}
  label: { value: "${{ inputs.label }}-done", description: "the label, done" }
`

func TestStepFileRunsNestedUnderTheCaller(t *testing.T) {
	const token = "tok-5a4b3c2d1e0f"
	dir := writeFiles(t, map[string]string{
		"lib/probe.yaml": probeFile,
		"drill.yaml": `
steps:
  - id: outer
    uses: test.undo
    with: { name: outer }
  - id: pair
    uses: ./lib/probe.yaml
    with: { label: a, token: "` + token + `" }
    expect: outputs.count == 2
  - id: after
    uses: test.emit
    with: { count: "${{ steps.pair.outputs.count + 1 }}", label: "${{ steps.pair.outputs.label }}" }
`,
	})
	h := runFile(t, Options{}, filepath.Join(dir, "drill.yaml"))
	sc := h.res.Run.Scenarios[0]
	require.Equal(t, reports.StatusPassed, sc.Status, sc.Error)
	assert.Equal(t, []string{"main:outer", "main:pair", "main:pair/first", "main:pair/mark", "main:pair/check", "main:after",
		"cleanup:a", "cleanup:outer"}, stepIDs(sc))
	pair := h.step(t, 0, "pair")
	assert.Equal(t, "./lib/probe.yaml", pair.Uses)
	assert.Equal(t, map[string]any{"count": 2, "label": "a-done"}, pair.Outputs)
	assert.Equal(t, "test.emit", h.step(t, 0, "pair/first").Uses)
	assert.Equal(t, 3, h.step(t, 0, "after").Outputs["count"])
	// The step file's undo joined the scenario's stack: undone first.
	assert.Equal(t, []string{"do:outer", "a", "do:a", "a-done", "undo:a", "undo:outer"}, filterTrail("do:", "undo:", "a"))
	for _, f := range []string{JournalFile, JSONFile, JUnitFile, HTMLFile} {
		assert.NotContains(t, h.file(t, f), token, "%s leaks a secret input", f)
	}
	assert.NotContains(t, h.console.String(), token)
	assert.Contains(t, h.file(t, JSONFile), `"pair/first"`)
	assert.Contains(t, h.file(t, JUnitFile), `pair/check`)
}

func filterTrail(prefixes ...string) []string {
	var out []string
	for _, s := range trailCopy() {
		for _, p := range prefixes {
			if strings.HasPrefix(s, p) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func TestStepFileFailureStopsItAndTheScenario(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"lib/bad.yaml": `
inputs:
  mode: { type: string, default: fail }
steps:
  - id: fault
    uses: test.fault
    with: { mode: "${{ inputs.mode }}" }
  - id: never
    uses: test.emit
    with: { label: never }
outputs:
  x: ${{ steps.never.outputs.count }}
`,
		"drill.yaml": `
steps:
  - id: b
    uses: ./lib/bad.yaml
  - id: later
    uses: test.emit
`,
	})
	h := runFile(t, Options{}, filepath.Join(dir, "drill.yaml"))
	sc := h.res.Run.Scenarios[0]
	assert.Equal(t, reports.StatusFailed, sc.Status)
	assert.Equal(t, reports.StatusFailed, h.step(t, 0, "b").Status)
	assert.Contains(t, h.step(t, 0, "b").Error, "step b/fault failed")
	assert.Equal(t, reports.StatusFailed, h.step(t, 0, "b/fault").Status)
	assert.Equal(t, reports.StatusSkipped, h.step(t, 0, "b/never").Status)
	assert.Equal(t, reports.StatusSkipped, h.step(t, 0, "later").Status)
	assert.NotContains(t, trailCopy(), "never")
}

func TestStepFileLoadErrors(t *testing.T) {
	lib := map[string]string{
		"lib/probe.yaml":  probeFile,
		"lib/loop_a.yaml": "steps:\n  - uses: ./loop_b.yaml\n",
		"lib/loop_b.yaml": "steps:\n  - uses: ./loop_a.yaml\n",
		"lib/self.yaml":   "steps:\n  - uses: ./self.yaml\n",
		"lib/broken.yaml": "inputs:\n  n: { type: int }\nsteps:\n  - id: e\n    uses: test.emit\n    with: { count: \"${{ vars.n }}\" }\n  - uses: test.emti\n",
		"lib/badout.yaml": "steps:\n  - id: e\n    uses: test.emit\noutputs:\n  x: ${{ steps.e.outputs.cont }}\n  y: plain\n",
		"lib/types.yaml":  "inputs:\n  n: { type: integer }\n  d: { type: duration, default: soon }\n  r: { type: int, required: true, default: 1 }\nsteps:\n  - uses: assert\n",
	}
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown input", "steps:\n  - uses: ./lib/probe.yaml\n    with: { label: a, cuont: 3 }\n",
			[]string{`drill.yaml:3:23: steps[0].with: ./lib/probe.yaml has no input "cuont" (did you mean "count"?)`}},
		{"missing required", "steps:\n  - uses: ./lib/probe.yaml\n    with: { count: 3 }\n",
			[]string{`drill.yaml:3:11: steps[0].with: missing required input "label" of ./lib/probe.yaml`}},
		{"missing required, no with", "steps:\n  - uses: ./lib/probe.yaml\n",
			[]string{`drill.yaml:2:5: steps[0].with: missing required input "label"`}},
		{"wrong type", "steps:\n  - uses: ./lib/probe.yaml\n    with: { label: a, count: three }\n",
			[]string{`drill.yaml:3:30: steps[0].with.count: expected a whole number, got "three"`}},
		{"text around an expression for an int", "vars: { n: 1 }\nsteps:\n  - uses: ./lib/probe.yaml\n    with: { label: a, count: \"n=${{ vars.n }}\" }\n",
			[]string{`drill.yaml:4:30: steps[0].with.count: expected a whole number, got text around ${{ }}`}},
		{"undeclared output", "steps:\n  - id: p\n    uses: ./lib/probe.yaml\n    with: { label: a }\n  - uses: assert\n    expect: steps.p.outputs.cout == 2\n",
			[]string{`drill.yaml:6:13: p (./lib/probe.yaml) has no output "cout" (did you mean "count"?)`}},
		{"undeclared output in expect", "steps:\n  - uses: ./lib/probe.yaml\n    with: { label: a }\n    expect: outputs.lable == 1\n",
			[]string{`drill.yaml:4:13: ./lib/probe.yaml has no output "lable" (did you mean "label"?)`}},
		{"missing file", "steps:\n  - uses: ./lib/nope.yaml\n", []string{`drill.yaml:2:11: steps[0].uses: step file lib/nope.yaml: no such file or directory`}},
		{"recursion", "steps:\n  - uses: ./lib/loop_a.yaml\n", []string{`loop_b.yaml:2:11: steps[0].uses: ./loop_a.yaml uses itself (loop_a.yaml -> loop_b.yaml -> loop_a.yaml)`}},
		{"self recursion", "steps:\n  - uses: ./lib/self.yaml\n", []string{`self.yaml:2:11: steps[0].uses: ./self.yaml uses itself`}},
		{"errors inside the step file name it", "steps:\n  - uses: ./lib/broken.yaml\n",
			[]string{`lib/broken.yaml:6:25: a step file cannot read the scenario's vars`, `lib/broken.yaml:7:11: steps[1].uses: unknown step "test.emti"`}},
		{"bad outputs", "steps:\n  - uses: ./lib/badout.yaml\n",
			[]string{`lib/badout.yaml:5:10: e (test.emit) has no output "cont" (did you mean "count"?)`, `lib/badout.yaml:6:6: outputs.y: expected an expression`}},
		{"bad input declarations", "steps:\n  - uses: ./lib/types.yaml\n",
			[]string{`lib/types.yaml:2:14: inputs.n.type: unknown type "integer"`, `lib/types.yaml:3:33: inputs.d.default: expected a duration`, `lib/types.yaml:4:44: inputs.r: a required input has no default`}},
		{"finding of a step file names its outputs", "steps:\n  - uses: ./lib/probe.yaml\n    with: { label: a }\n    finding: \"counted {cont}\"\n",
			[]string{`drill.yaml:4:14: steps[0].finding: ./lib/probe.yaml has no output "cont" (did you mean "count"?)`}},
		{"inputs in a scenario", "steps:\n  - uses: assert\n    expect: inputs.x == 1\n", []string{`drill.yaml:3:13: inputs are read in step files`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"drill.yaml": tc.yaml}
			for k, v := range lib {
				files[k] = v
			}
			dir := writeFiles(t, files)
			wd, err := os.Getwd()
			require.NoError(t, err)
			require.NoError(t, os.Chdir(dir))
			defer func() { require.NoError(t, os.Chdir(wd)) }()
			_, err = LoadFile("drill.yaml", LoadOptions{})
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestForEachIteratesListsAndMaps(t *testing.T) {
	h := run(t, context.Background(), Options{Vars: map[string]any{"hosts": []any{"h1", "h2", "h3"}}}, `
vars: { hosts: [] }
steps:
  - id: list
    uses: test.emit
    for_each: ${{ vars.hosts }}
    with: { label: "${{ each.value }}-${{ each.key }}", count: "${{ each.key }}" }
    expect: outputs.count == each.key
  - id: map
    uses: test.emit
    for_each: { gate: 22, web: 443 }
    with: { label: "${{ each.key }}", count: "${{ each.value }}" }
  - id: read
    uses: test.emit
    with:
      count: ${{ steps.list.each[2].count + steps.map.each.web.count }}
      values: { n: "${{ len(steps.list.each) }}" }
`)
	sc := h.res.Run.Scenarios[0]
	require.Equal(t, reports.StatusPassed, sc.Status, sc.Error)
	assert.Equal(t, []string{"main:list", "main:list[0]", "main:list[1]", "main:list[2]", "main:map", "main:map[gate]", "main:map[web]", "main:read"}, stepIDs(sc))
	assert.Equal(t, []string{"h1-0", "h2-1", "h3-2", "gate", "web"}, trailCopy())
	assert.Equal(t, 445, h.step(t, 0, "read").Outputs["count"])
	assert.Equal(t, map[string]any{"n": 3}, h.step(t, 0, "read").Outputs["value"])
}

func TestForEachRunsEveryIterationAndFailsOnAny(t *testing.T) {
	h := run(t, context.Background(), Options{}, `
steps:
  - id: probe
    uses: test.emit
    for_each: [a, b, c]
    with: { label: "${{ each.value }}", count: "${{ each.key }}" }
    expect: outputs.count != 1
  - id: after
    uses: test.emit
`)
	assert.Equal(t, reports.StatusFailed, h.res.Run.Scenarios[0].Status)
	assert.Equal(t, []string{"a", "b", "c"}, trailCopy(), "every iteration ran")
	assert.Equal(t, reports.StatusFailed, h.step(t, 0, "probe[1]").Status)
	assert.Equal(t, reports.StatusPassed, h.step(t, 0, "probe[2]").Status)
	assert.Equal(t, reports.StatusFailed, h.step(t, 0, "probe").Status)
	assert.Contains(t, h.step(t, 0, "probe").Error, "1 of 3 iterations did not pass: [probe[1]]")
	assert.Equal(t, reports.StatusSkipped, h.step(t, 0, "after").Status)
}

func TestForEachParallel(t *testing.T) {
	for _, tc := range []struct {
		parallel string
		want     int64
	}{{"", 1}, {"parallel: 3", 3}} {
		t.Run("max "+tc.parallel, func(t *testing.T) {
			maxRunning.Store(0)
			h := run(t, context.Background(), Options{}, `
steps:
  - id: p
    uses: test.concurrent
    for_each: { e: 5, a: 1, d: 4, b: 2, f: 6, c: 3 }
    `+tc.parallel+`
    with: { delay: "${{ string(each.value * 40) + 'ms' }}", label: "${{ each.key }}" }
`)
			require.Equal(t, reports.StatusPassed, h.res.Run.Scenarios[0].Status, h.res.Run.Scenarios[0].Error)
			assert.Equal(t, tc.want, maxRunning.Load())
			// Reported in key order whatever order they finished in.
			assert.Equal(t, []string{"main:p", "main:p[a]", "main:p[b]", "main:p[c]", "main:p[d]", "main:p[e]", "main:p[f]"}, stepIDs(h.res.Run.Scenarios[0]))
		})
	}
}

func TestForEachOverAStepFileNestsIterations(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"lib/probe.yaml": probeFile,
		"drill.yaml": `
vars: { clients: [x, y] }
steps:
  - id: each_client
    uses: ./lib/probe.yaml
    for_each: ${{ vars.clients }}
    parallel: 2
    with: { label: "${{ each.value }}" }
  - uses: assert
    expect: steps.each_client.each[1].label == "y-done"
`,
	})
	h := runFile(t, Options{}, filepath.Join(dir, "drill.yaml"))
	sc := h.res.Run.Scenarios[0]
	require.Equal(t, reports.StatusPassed, sc.Status, sc.Error)
	ids := stepIDs(sc)
	assert.Equal(t, []string{"main:each_client",
		"main:each_client[0]", "main:each_client[0]/first", "main:each_client[0]/mark", "main:each_client[0]/check",
		"main:each_client[1]", "main:each_client[1]/first", "main:each_client[1]/mark", "main:each_client[1]/check"}, ids[:9])
	assert.ElementsMatch(t, []string{"cleanup:x", "cleanup:y"}, ids[10:])
}

func TestForEachLoadErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"outputs of a for_each step", "steps:\n  - id: p\n    uses: test.emit\n    for_each: [1, 2]\n  - uses: assert\n    expect: steps.p.outputs.count == 1\n",
			`6:13: steps.p runs for_each: read its iterations' outputs as steps.p.each[KEY].NAME`},
		{"each outside for_each", "steps:\n  - uses: test.emit\n    with: { label: \"${{ each.value }}\" }\n", `3:25: each (the current item) is defined only in a step with for_each`},
		{"each in its own for_each", "steps:\n  - uses: test.emit\n    for_each: ${{ each.value }}\n", `3:19: each (the current item) is defined only`},
		{"parallel without for_each", "steps:\n  - uses: test.emit\n    parallel: 2\n", `3:15: steps[0].parallel: only a step with for_each runs in parallel`},
		{"bad parallel", "steps:\n  - uses: test.emit\n    for_each: [1]\n    parallel: 0\n", `4:15: steps[0].parallel: expected a whole number of at least 1`},
		{"scalar for_each", "steps:\n  - uses: test.emit\n    for_each: hosts\n", `3:15: steps[0].for_each: expected a list, a mapping or one ${{ expression }}`},
		{"unknown map key", "steps:\n  - id: p\n    uses: test.emit\n    for_each: { gate: 1 }\n  - uses: assert\n    expect: steps.p.each.gaet.count == 1\n", `steps.p.each has no key "gaet" (did you mean "gate"?)`},
		{"list index out of range", "steps:\n  - id: p\n    uses: test.emit\n    for_each: [a]\n  - uses: assert\n    expect: steps.p.each[3].count == 1\n", `steps.p.each has 1 items (0 to 0); [3] is not one of them`},
		{"undeclared iteration output", "steps:\n  - id: p\n    uses: test.emit\n    for_each: [a]\n  - uses: assert\n    expect: steps.p.each[0].cont == 1\n", `p (test.emit) has no output "cont"`},
		{"each of a plain step", "steps:\n  - id: p\n    uses: test.emit\n  - uses: assert\n    expect: len(steps.p.each) == 1\n", `steps.p has no for_each: read steps.p.outputs`},
		{"each field", "steps:\n  - uses: test.emit\n    for_each: [a]\n    with: { label: \"${{ each.val }}\" }\n", `each has no field "val"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("s.yaml", []byte(tc.yaml), LoadOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSteadyState(t *testing.T) {
	cases := []struct {
		name       string
		steady     string // the steady-state check
		main       string
		status     string
		ran        []string
		beforeStat string
		afterStat  string
	}{
		{"healthy before and after", `[{ uses: test.emit, with: { label: check } }]`, `{ uses: test.emit, with: { label: drill } }`,
			reports.StatusPassed, []string{"check", "drill", "check"}, reports.StatusPassed, reports.StatusPassed},
		// The check reads a fault file the drill creates: broken after.
		{"deviated", `[{ id: ok, uses: test.flaky, with: { key: s, failures: 0 }, expect: outputs.attempt == 1 }]`, `{ uses: test.emit, with: { label: drill } }`,
			reports.StatusDeviated, []string{"drill"}, reports.StatusPassed, reports.StatusFailed},
		{"not started", `[{ id: ok, uses: test.fault, with: { mode: fail } }]`, `{ uses: test.emit, with: { label: drill } }`,
			reports.StatusNotStarted, nil, reports.StatusFailed, reports.StatusSkipped},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := run(t, context.Background(), Options{}, `
steady_state: `+tc.steady+`
steps:
  - `+tc.main+`
cleanup:
  - uses: test.emit
    with: { label: cleanup }
`)
			sc := h.res.Run.Scenarios[0]
			assert.Equal(t, tc.status, sc.Status, sc.Error)
			var ran []string
			for _, s := range trailCopy() {
				if s != "cleanup" && !strings.HasPrefix(s, "flaky:") {
					ran = append(ran, s)
				}
			}
			assert.Equal(t, tc.ran, ran)
			var before, after *reports.Step
			for _, st := range sc.Steps {
				switch st.Phase {
				case reports.PhaseSteadyBefore:
					before = st
				case reports.PhaseSteadyAfter:
					after = st
				}
			}
			require.NotNil(t, before)
			require.NotNil(t, after)
			assert.Equal(t, tc.beforeStat, before.Status)
			assert.Equal(t, tc.afterStat, after.Status)
			if tc.status != reports.StatusPassed {
				assert.Equal(t, reports.StatusFailed, h.res.Run.Status, "a deviated or not started scenario fails the run")
			}
			if tc.status == reports.StatusNotStarted {
				assert.NotContains(t, trailCopy(), "cleanup", "nothing was changed, so nothing is cleaned up")
				assert.Contains(t, sc.Error, "steady state not met before the drill")
				assert.Contains(t, h.file(t, HTMLFile), "NOT_STARTED")
				assert.Contains(t, h.file(t, JSONFile), `"status": "not_started"`)
			}
			if tc.status == reports.StatusDeviated {
				assert.Contains(t, trailCopy(), "cleanup")
				assert.Contains(t, sc.Error, "steady state not met after the drill")
				assert.Contains(t, h.console.String(), "DEVIATED")
				assert.Contains(t, h.file(t, JUnitFile), "steady state after: ok")
				assert.Contains(t, h.file(t, HTMLFile), "DEVIATED")
				assert.Contains(t, h.file(t, JSONFile), `"status": "deviated"`)
			}
		})
	}
}

func TestSteadyStateLoadErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"background", "steady_state:\n  - uses: test.emit\n    background: true\nsteps:\n  - uses: test.emit\n", `steady_state[0]: steady_state steps cannot run in the background`},
		{"reads a main step", "steady_state:\n  - uses: assert\n    expect: steps.m.outputs.count == 1\nsteps:\n  - id: m\n    uses: test.emit\n", `step "m" runs later`},
		{"duplicate id with a main step", "steady_state:\n  - id: a\n    uses: test.emit\nsteps:\n  - id: a\n    uses: test.emit\n", `duplicate step id "a"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("s.yaml", []byte(tc.yaml), LoadOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := Load("s.yaml", []byte("steady_state:\n  - id: pre\n    uses: test.emit\nsteps:\n  - uses: assert\n    expect: steps.pre.outputs.count == 0\n"), LoadOptions{})
	assert.NoError(t, err, "main steps read the steady state's results")
}

func TestStepFileSecretsStaySecret(t *testing.T) {
	const token = "tok-0a9b8c7d6e5f"
	const pw = "pw-Zq81-xx-secret"
	t.Setenv("STEPFILE_PW", pw)
	dir := writeFiles(t, map[string]string{
		"lib/login.yaml": `
inputs:
  password: { type: string, secret: true }
steps:
  - id: get
    uses: test.emit
    with: { token: "` + token + `", log: "using ${{ inputs.password }}" }
outputs:
  token: { value: "${{ steps.get.outputs.token }}", secret: true }
  echoed: ${{ inputs.password }}
`,
		"drill.yaml": `
secrets:
  pw: { env: STEPFILE_PW }
steps:
  - id: login
    uses: ./lib/login.yaml
    with: { password: "${{ secrets.pw }}" }
  - id: use
    uses: test.emit
    with: { label: "${{ steps.login.outputs.token }}", values: { p: "${{ steps.login.outputs.echoed }}" } }
`,
	})
	h := runFile(t, Options{}, filepath.Join(dir, "drill.yaml"))
	require.Equal(t, reports.StatusPassed, h.res.Run.Scenarios[0].Status, h.res.Run.Scenarios[0].Error)
	assert.Equal(t, "***", h.step(t, 0, "login").Outputs["token"])
	assert.Equal(t, "***", h.step(t, 0, "login/get").Outputs["token"])
	assert.Contains(t, trailCopy(), token, "the step got the real value")
	for _, f := range []string{JournalFile, JSONFile, JUnitFile, HTMLFile} {
		content := h.file(t, f)
		assert.NotContains(t, content, token, f)
		assert.NotContains(t, content, pw, f)
	}
	assert.NotContains(t, h.console.String(), pw)
}
