package runner

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
)

// floodFile is the reusable piece the feature is for: flood in the
// background, fail over while it runs, wait, verify. The flood's marker
// appears only after the failover step has looked for it and not found it,
// which proves the two ran at once.
const floodFile = `name: flood and fail over
inputs:
  marker: { type: string, required: true }
steps:
  - id: flood
    uses: exec
    background: true
    with: { shell: sh, script: "sleep 0.4; touch ${{ inputs.marker }}; echo flooded" }
  - id: failover
    uses: exec
    with: { shell: sh, script: "test ! -e ${{ inputs.marker }} && echo failed-over" }
  - uses: wait
    with: { for: [flood] }
  - id: verify
    uses: exec
    with: { command: [cat, "${{ inputs.marker }}"] }
    expect: steps.flood.outputs.stdout == "flooded\n"
outputs:
  flood: ${{ steps.flood.outputs.stdout }}
  failover: ${{ steps.failover.outputs.stdout }}
`

func TestStepFileBackgroundStepAndWait(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"lib/flood.yaml": floodFile,
		"drill.yaml": `
vars: { marker: "" }
steps:
  - id: drill
    uses: ./lib/flood.yaml
    with: { marker: "${{ vars.marker }}" }
    expect: outputs.flood == "flooded\n"
  - id: after
    uses: exec
    with: { command: [echo, "${{ steps.drill.outputs.failover }}"] }
`,
	})
	marker := filepath.Join(dir, "flooded")
	h := runFile(t, Options{Vars: map[string]any{"marker": marker}}, filepath.Join(dir, "drill.yaml"))
	sc := h.res.Run.Scenarios[0]
	require.Equal(t, reports.StatusPassed, sc.Status, sc.Error)
	assert.Equal(t, []string{"main:drill", "main:drill/flood", "main:drill/failover", "main:drill/wait#3", "main:drill/verify", "main:after"}, stepIDs(sc))
	assert.True(t, h.step(t, 0, "drill/flood").Background, "the inner step is reported as a background step")
	assert.Equal(t, reports.StatusPassed, h.step(t, 0, "drill/failover").Status, "the failover ran while the flood had not finished")
	assert.Equal(t, map[string]any{"flood": "flooded\n", "failover": "failed-over\n"}, h.step(t, 0, "drill").Outputs)
	assert.Equal(t, "failed-over\n\n", h.step(t, 0, "after").Outputs["stdout"])
	assert.Contains(t, h.file(t, JSONFile), `"drill/flood"`)
	assert.Contains(t, h.file(t, JUnitFile), `drill/flood`)
}

// An inner background step nobody waits for is waited for when the step
// file's steps end, as at the end of a scenario's steps: the file's
// outputs read it, and the caller's next step runs after it.
func TestStepFileWaitsForItsBackgroundStepsAtItsEnd(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"lib/late.yaml": `
inputs:
  marker: { type: string, required: true }
steps:
  - id: late
    uses: exec
    background: true
    with: { shell: sh, script: "sleep 0.3; touch ${{ inputs.marker }}; echo late" }
  - id: quick
    uses: exec
    with: { command: [echo, quick] }
outputs:
  late: ${{ steps.late.outputs.stdout }}
`,
		"drill.yaml": `
vars: { marker: "" }
steps:
  - id: f
    uses: ./lib/late.yaml
    with: { marker: "${{ vars.marker }}" }
  - id: next
    uses: exec
    with: { command: [test, -e, "${{ vars.marker }}"] }
`,
	})
	marker := filepath.Join(dir, "late")
	h := runFile(t, Options{Vars: map[string]any{"marker": marker}}, filepath.Join(dir, "drill.yaml"))
	sc := h.res.Run.Scenarios[0]
	require.Equal(t, reports.StatusPassed, sc.Status, sc.Error)
	assert.Equal(t, "late\n", h.step(t, 0, "f").Outputs["late"])
	assert.Equal(t, reports.StatusPassed, h.step(t, 0, "next").Status, "the step file ended only after its background step")
	f, late := h.step(t, 0, "f"), h.step(t, 0, "f/late")
	assert.GreaterOrEqual(t, f.DurationMS, late.DurationMS)
}

func TestStepFileBackgroundFailureFailsTheFile(t *testing.T) {
	cases := []struct {
		name, steps   string
		fileStatus    string
		fileError     string
		scenarioState string
		statuses      map[string]string
	}{
		{"found by a wait", `
  - id: bg
    uses: exec
    background: true
    with: { shell: sh, script: "exit 3" }
  - id: w
    uses: wait
  - id: never
    uses: exec
    with: { command: [echo, never] }
`, reports.StatusFailed, "step f/bg failed: sh exited with 3 (expected 0) (and 1 more)", reports.StatusFailed,
			map[string]string{"f/bg": reports.StatusFailed, "f/w": reports.StatusFailed, "f/never": reports.StatusSkipped}},
		{"found at the file's end", `
  - id: bg
    uses: exec
    background: true
    with: { shell: sh, script: "sleep 0.2; exit 3" }
  - id: fg
    uses: exec
    with: { command: [echo, fg] }
`, reports.StatusFailed, "step f/bg failed: sh exited with 3 (expected 0)", reports.StatusFailed,
			map[string]string{"f/bg": reports.StatusFailed, "f/fg": reports.StatusPassed}},
		{"a foreground failure cancels it", `
  - id: bg
    uses: exec
    background: true
    with: { command: [sleep, "30"] }
  - id: boom
    uses: exec
    with: { shell: sh, script: "exit 4" }
`, reports.StatusErrored, "step f/boom failed: sh exited with 4 (expected 0) (and 1 more)", reports.StatusFailed,
			map[string]string{"f/bg": reports.StatusErrored, "f/boom": reports.StatusFailed}},
		{"continue_on_error", `
  - id: bg
    uses: exec
    background: true
    continue_on_error: true
    with: { shell: sh, script: "exit 3" }
  - uses: wait
`, reports.StatusPassed, "", reports.StatusPassed,
			map[string]string{"f/bg": reports.StatusFailed}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{
				"lib/f.yaml": "inputs:\n  x: { type: string }\nsteps:" + tc.steps,
				"drill.yaml": "steps:\n  - id: f\n    uses: ./lib/f.yaml\n  - id: after\n    uses: exec\n    with: { command: [echo, after] }\n",
			})
			start := time.Now()
			h := runFile(t, Options{}, filepath.Join(dir, "drill.yaml"))
			sc := h.res.Run.Scenarios[0]
			assert.Equal(t, tc.scenarioState, sc.Status, sc.Error)
			f := h.step(t, 0, "f")
			assert.Equal(t, tc.fileStatus, f.Status)
			if tc.fileError != "" {
				assert.Contains(t, f.Error, tc.fileError)
				assert.Equal(t, reports.StatusSkipped, h.step(t, 0, "after").Status, "the failed file stops the scenario")
			}
			for id, want := range tc.statuses {
				assert.Equal(t, want, h.step(t, 0, id).Status, id)
			}
			assert.Less(t, time.Since(start), 20*time.Second, "a cancelled background step does not run its course")
		})
	}
}

// uniqueSleep is a sleep whose command line no other process on the
// machine has, to find it in /proc whatever its environment.
func uniqueSleep(t *testing.T) string {
	return fmt.Sprintf("300.%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
}

// sleepersOf lists the live processes running `sleep arg`.
func sleepersOf(arg string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) == 2 && filepath.Base(args[0]) == "sleep" && args[1] == arg {
			if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
				if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
					continue
				}
			}
			out = append(out, e.Name())
		}
	}
	return out
}

// A step file's timeout, and an interrupt of the run, stop its background
// steps: their processes (a shell's child too) are gone when the run ends.
func TestStepFileTimeoutAndInterruptStopItsBackgroundSteps(t *testing.T) {
	for _, how := range []string{"timeout", "interrupt"} {
		t.Run(how, func(t *testing.T) {
			arg := uniqueSleep(t)
			timeout := ""
			if how == "timeout" {
				timeout = "\n    timeout: 500ms"
			}
			dir := writeFiles(t, map[string]string{
				"lib/hang.yaml": `
inputs:
  arg: { type: string, required: true }
steps:
  - id: load
    uses: exec
    background: true
    with: { shell: sh, script: "sleep ${{ inputs.arg }}; echo done" }
  - id: direct
    uses: exec
    background: true
    with: { command: [sleep, "${{ inputs.arg }}"] }
  - id: hold
    uses: sleep
    with: { duration: 60s }
`,
				"drill.yaml": `
vars: { arg: "" }
steps:
  - id: f
    uses: ./lib/hang.yaml
    with: { arg: "${{ vars.arg }}" }` + timeout + `
  - id: after
    uses: exec
    with: { command: [echo, after] }
`,
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if how == "interrupt" {
				go func() {
					for len(sleepersOf(arg)) < 2 {
						time.Sleep(20 * time.Millisecond)
					}
					cancel()
				}()
			}
			resetTrail()
			sc, err := LoadFile(filepath.Join(dir, "drill.yaml"), LoadOptions{})
			require.NoError(t, err)
			start := time.Now()
			res, err := Run(ctx, []*Scenario{sc}, Options{ReportDir: t.TempDir(), Vars: map[string]any{"arg": arg}})
			require.NoError(t, err)
			assert.Less(t, time.Since(start), 20*time.Second)
			assert.Empty(t, sleepersOf(arg), "no process of the step file's background steps is left")
			got := res.Run.Scenarios[0]
			steps := map[string]*reports.Step{}
			for _, st := range got.Steps {
				steps[st.ID] = st
			}
			assert.Equal(t, reports.StatusErrored, steps["f/load"].Status)
			assert.Equal(t, reports.StatusErrored, steps["f/direct"].Status)
			assert.Equal(t, reports.StatusSkipped, steps["after"].Status)
			if how == "timeout" {
				assert.Equal(t, reports.StatusFailed, got.Status)
				assert.Equal(t, "timed out after 500ms", steps["f"].Error)
			} else {
				assert.Equal(t, reports.StatusInterrupted, got.Status)
				assert.Contains(t, steps["f/load"].Error, "run interrupted")
			}
		})
	}
}

func TestStepFileBackgroundLoadErrors(t *testing.T) {
	bg := "  - id: bg\n    uses: sleep\n    background: true\n    with: { duration: 1s }\n"
	fg := "  - id: fg\n    uses: exec\n    with: { command: [echo] }\n"
	cases := []struct{ name, file, want string }{
		{"wait for an unknown step", "steps:\n" + bg + "  - uses: wait\n    with: { for: [bgg] }\n",
			`lib/f.yaml:6:5: wait#2 waits for "bgg", which is not an earlier step`},
		{"wait for a foreground step", "steps:\n" + fg + "  - uses: wait\n    with: { for: [fg] }\n",
			`lib/f.yaml:5:5: wait#2 waits for "fg", which is not a background step`},
		{"wait for a later step", "steps:\n  - uses: wait\n    with: { for: [bg] }\n" + bg,
			`lib/f.yaml:2:5: wait#1 waits for "bg", which is not an earlier step`},
		{"read before the wait", "steps:\n  - id: bg\n    uses: exec\n    background: true\n    with: { command: [echo] }\n" +
			"  - uses: exec\n    with: { command: [echo, \"${{ steps.bg.outputs.stdout }}\"] }\n",
			`lib/f.yaml:7:34: step "bg" runs in the background; add a wait step (uses: wait, with: {for: [bg]}) before reading its results`},
		{"an output it does not have", "steps:\n  - id: bg\n    uses: exec\n    background: true\n    with: { command: [echo] }\n" +
			"outputs:\n  x: ${{ steps.bg.outputs.stdot }}\n",
			`lib/f.yaml:7:10: bg (exec) has no output "stdot" (did you mean "stdout"?)`},
		{"a wait in the background", "steps:\n" + bg + "  - uses: wait\n    background: true\n    with: { for: [bg] }\n",
			`lib/f.yaml:6:5: steps[1]: a step that waits for background steps cannot run in the background itself`},
		{"the caller's background step", "steps:\n  - uses: wait\n    with: { for: [outer] }\n",
			`lib/f.yaml:2:5: wait#1 waits for "outer", which is not an earlier step`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{
				"lib/f.yaml": tc.file,
				"drill.yaml": "steps:\n  - id: outer\n    uses: sleep\n    background: true\n    with: { duration: 1s }\n  - uses: ./lib/f.yaml\n",
			})
			_, err := LoadFile(filepath.Join(dir, "drill.yaml"), LoadOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), filepath.Join(dir, tc.want))
		})
	}
	// Reading a background step after its wait, and in the file's
	// outputs (its steps' end waits for it), is fine; so is a step file
	// used in cleanup, whose background steps end with it.
	dir := writeFiles(t, map[string]string{
		"lib/f.yaml": "steps:\n  - id: bg\n    uses: exec\n    background: true\n    with: { command: [echo] }\n" +
			"  - uses: wait\n  - uses: exec\n    with: { command: [echo, \"${{ steps.bg.outputs.stdout }}\"] }\n" +
			"outputs:\n  x: ${{ steps.bg.outputs.stdout }}\n",
		"drill.yaml": "steps:\n  - id: f\n    uses: ./lib/f.yaml\n  - uses: assert\n    expect: steps.f.outputs.x == \"\\n\"\ncleanup:\n  - uses: ./lib/f.yaml\n",
	})
	_, err := LoadFile(filepath.Join(dir, "drill.yaml"), LoadOptions{})
	require.NoError(t, err)
	_, err = LoadStepFile(filepath.Join(dir, "lib/f.yaml"))
	require.NoError(t, err, "opsdrill validate and opsdrill steps accept it on its own")
}

// for_each over a step file with a background step, two iterations at
// once: each iteration has its own background step, reported under it,
// joined by its own wait, and its outputs are its own.
func TestForEachOverAStepFileWithABackgroundStep(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"lib/pair.yaml": `
inputs:
  name: { type: string, required: true }
  marker: { type: string, required: true }
steps:
  - id: load
    uses: exec
    background: true
    with: { shell: sh, script: "sleep 0.4; touch ${{ inputs.marker }}; echo load-${{ inputs.name }}" }
  - id: probe
    uses: exec
    with: { shell: sh, script: "test ! -e ${{ inputs.marker }}" }
  - uses: wait
    with: { for: [load] }
outputs:
  load: ${{ steps.load.outputs.stdout }}
`,
		"drill.yaml": `
vars: { dir: "" }
steps:
  - id: pairs
    uses: ./lib/pair.yaml
    for_each: { a: 1, b: 2 }
    parallel: 2
    with: { name: "${{ each.key }}", marker: "${{ vars.dir }}/${{ each.key }}" }
  - uses: assert
    expect:
      - steps.pairs.each.a.load == "load-a\n"
      - steps.pairs.each.b.load == "load-b\n"
`,
	})
	start := time.Now()
	h := runFile(t, Options{Vars: map[string]any{"dir": dir}}, filepath.Join(dir, "drill.yaml"))
	elapsed := time.Since(start)
	sc := h.res.Run.Scenarios[0]
	require.Equal(t, reports.StatusPassed, sc.Status, sc.Error)
	assert.Equal(t, []string{"main:pairs",
		"main:pairs[a]", "main:pairs[b]",
		"main:pairs[a]/load", "main:pairs[a]/probe", "main:pairs[a]/wait#3",
		"main:pairs[b]/load", "main:pairs[b]/probe", "main:pairs[b]/wait#3",
		"main:assert#2"}, stepIDs(sc))
	for _, k := range []string{"a", "b"} {
		assert.True(t, h.step(t, 0, "pairs["+k+"]/load").Background)
		assert.Equal(t, "load-"+k+"\n", h.step(t, 0, "pairs["+k+"]/load").Outputs["stdout"])
		assert.Equal(t, reports.StatusPassed, h.step(t, 0, "pairs["+k+"]/probe").Status, "each probe ran during its own load")
	}
	assert.Less(t, elapsed, 10*time.Second)
}
