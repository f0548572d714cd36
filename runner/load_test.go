package runner

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/opsdrill/opsdrill/steps/all"
)

func TestLoadRejectsBadInput(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string // "line:col: fragment"
	}{
		{"invalid yaml", "name: x\nsteps:\n  - uses: exec\n   with: {}\n", []string{"2:1: invalid YAML"}},
		{"empty file", "", []string{"1:1: empty scenario"}},
		{"no steps", "name: x\nsteps: []\n", []string{"2:8: empty scenario: no steps"}},
		{"steps missing", "name: x\n", []string{"1:1: empty scenario: no steps"}},
		{"not a mapping", "- a\n- b\n", []string{"1:1: a scenario must be a mapping"}},
		{"unknown top-level field", "name: x\nstep:\n  - uses: sleep\n", []string{`2:1: scenario: unknown field "step" (did you mean "steps"?)`}},
		{"unknown step", "steps:\n  - uses: tcp.prob\n", []string{`2:11: steps[0].uses: unknown step "tcp.prob" (did you mean "tcp.probe"?)`}},
		{"missing uses", "steps:\n  - id: a\n", []string{"2:5: steps[0]: missing uses:"}},
		{"unknown with field", "steps:\n  - uses: sleep\n    with: { duration: 1s, durration: 2s }\n", []string{`3:27: steps[0].with: unknown field "durration" (did you mean "duration"?)`}},
		{"mistyped with field", "steps:\n  - uses: test.typed\n    with: { port: eighty }\n", []string{"3:19: steps[0].with.port: cannot unmarshal !!str into int"}},
		{"bad duration", "steps:\n  - uses: sleep\n    with: { duration: soon }\n", []string{"3:23: steps[0].with.duration: expected a duration"}},
		{"missing required", "steps:\n  - uses: sleep\n", []string{`2:5: steps[0].with: missing required field "duration"`}},
		{"validate at load", "steps:\n  - uses: test.typed\n    with: { port: 70000 }\n", []string{"3:11: steps[0].with: port: must be 1-65535, got 70000"}},
		{"nested unknown", "steps:\n  - uses: test.typed\n    with: { port: 1, nested: { nam: x } }\n", []string{`3:32: steps[0].with.nested: unknown field "nam"`}},
		{"list expected", "steps:\n  - uses: test.typed\n    with: { port: 1, hosts: a }\n", []string{"3:29: steps[0].with.hosts: expected a list"}},
		{"duplicate ids", "steps:\n  - id: a\n    uses: test.emit\n  - id: a\n    uses: test.emit\n", []string{`4:5: duplicate step id "a" (first used at line 2)`}},
		{"bad id", "steps:\n  - id: my-step\n    uses: test.emit\n", []string{`2:9: steps[0].id: "my-step" is not a valid id`}},
		{"undefined var", "vars: { port: 1 }\nsteps:\n  - uses: test.typed\n    with: { port: \"${{ vars.prot }}\" }\n", []string{`4:24: undefined var "prot"`, `did you mean "port"`}},
		{"undefined secret", "steps:\n  - uses: exec\n    with: { command: [echo, \"${{ secrets.pw }}\"] }\n", []string{`3:34: undefined secret "pw"`}},
		{"undefined step", "steps:\n  - uses: assert\n    expect: steps.nope.outputs.x == 1\n", []string{`3:13: undefined step "nope"`}},
		{"undeclared output", "steps:\n  - id: p\n    uses: tcp.probe\n    with: { address: \"a:1\" }\n  - uses: assert\n    expect: steps.p.outputs.opened\n", []string{`6:13: p (tcp.probe) has no output "opened" (did you mean "open"?)`}},
		{"later step", "steps:\n  - uses: assert\n    expect: steps.b.outputs.count == 1\n  - id: b\n    uses: test.emit\n", []string{`3:13: step "b" runs later`}},
		{"background before wait", "steps:\n  - id: bg\n    uses: test.emit\n    background: true\n  - uses: assert\n    expect: steps.bg.outputs.count == 1\n", []string{`6:13: step "bg" runs in the background; add a wait step`}},
		{"outputs outside expect", "steps:\n  - uses: test.typed\n    with: { port: \"${{ outputs.port }}\" }\n", []string{"3:24: outputs (the step's own outputs) can only be read in expect:"}},
		{"own output undeclared", "steps:\n  - uses: test.emit\n    expect: outputs.nothing == 1\n", []string{`3:13: test.emit has no output "nothing"`}},
		{"unknown root", "steps:\n  - uses: assert\n    expect: foo.bar == 1\n", []string{`3:13: unknown name "foo"`}},
		{"bad expression", "steps:\n  - uses: assert\n    expect: 1 +\n", []string{"3:13: steps[0].expect: invalid expression"}},
		{"unterminated template", "steps:\n  - uses: exec\n    with: { command: [\"${{ vars.x\"] }\n", []string{"3:24: unterminated ${{"}},
		{"wait for non-background", "steps:\n  - id: a\n    uses: test.emit\n  - uses: wait\n    with: { for: [a] }\n", []string{`4:5: wait#2 waits for "a", which is not a background step`}},
		{"background cleanup", "steps:\n  - uses: test.emit\ncleanup:\n  - uses: test.emit\n    background: true\n", []string{"4:5: cleanup[0]: cleanup steps cannot run in the background"}},
		{"secret literal", "secrets:\n  pw: hunter2\nsteps:\n  - uses: test.emit\n", []string{"2:7: secrets.pw: expected {env: NAME} or {file: PATH}"}},
		{"vars not a mapping", "vars: [a]\nsteps:\n  - uses: test.emit\n", []string{"1:7: vars: expected a mapping of names to values, got a list"}},
		{"bad var name", "vars: { my-var: 1 }\nsteps:\n  - uses: test.emit\n", []string{`1:9: vars: "my-var" is not a valid name (letters, digits and _; not starting with a digit)`}},
		{"secrets not a mapping", "secrets: pw\nsteps:\n  - uses: test.emit\n", []string{"1:10: secrets: expected a mapping of names to {env: NAME} or {file: PATH}, got"}},
		{"bad secret name", "secrets: { 1pw: { env: PW } }\nsteps:\n  - uses: test.emit\n", []string{`1:12: secrets: "1pw" is not a valid name`}},
		{"bad retry", "steps:\n  - uses: test.emit\n    retry: { attempts: 0 }\n", []string{"3:24: steps[0].retry.attempts: expected a whole number of at least 1"}},
		{"bad timeout", "steps:\n  - uses: test.emit\n    timeout: -1s\n", []string{"3:14: steps[0].timeout: expected a positive duration"}},
		{"several problems at once", "steps:\n  - uses: nope\n  - uses: sleep\n    with: { duration: x }\n", []string{`2:11: steps[0].uses: unknown step "nope"`, "4:23: steps[1].with.duration"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("s.yaml", []byte(tc.yaml), LoadOptions{})
			require.Error(t, err)
			probs, ok := err.(Problems)
			require.True(t, ok, "want Problems, got %T: %v", err, err)
			text := probs.Error()
			for _, w := range tc.want {
				if pos, msg, ok := strings.Cut(w, ": "); ok && strings.Count(pos, ":") == 1 {
					assert.Contains(t, text, "s.yaml:"+pos+": ", "position of %q", msg)
					assert.Contains(t, text, msg)
					assert.Contains(t, text, "s.yaml:"+w)
					continue
				}
				assert.Contains(t, text, w)
			}
		})
	}
}

func TestLoadAcceptsValidScenario(t *testing.T) {
	src := `
name: ok
tags: [a, b]
timeout: 1m
vars: { port: 8080, host: localhost }
secrets:
  token: { env: TOKEN }
steps:
  - id: bg
    uses: test.emit
    background: true
  - id: first
    uses: test.typed
    with: { port: "${{ vars.port }}", hosts: ["${{ vars.host }}", b] }
    expect:
      - outputs.port == vars.port
      - ${{ outputs.type == "int" }}
  - uses: wait
    with: { for: [bg] }
  - uses: assert
    if: steps.first.status == "passed"
    expect: steps.bg.outputs.count == 0 && len(steps.first.outputs.hosts) == 2
cleanup:
  - uses: exec
    with: { command: [echo, "${{ steps.bg.outputs.count }}", "${{ secrets.token }}"] }
`
	sc, err := Load("ok.yaml", []byte(src), LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "ok", sc.Name)
	assert.Len(t, sc.Steps, 4)
	assert.Len(t, sc.Cleanup, 1)
	assert.Equal(t, "wait#3", sc.Steps[2].ID)
	assert.True(t, sc.Steps[0].Background)
}

func TestLoadAcceptsVarsFromTargets(t *testing.T) {
	src := "steps:\n  - uses: test.typed\n    with: { port: \"${{ vars.lab_port }}\" }\n"
	_, err := Load("s.yaml", []byte(src), LoadOptions{})
	require.Error(t, err)
	_, err = Load("s.yaml", []byte(src), LoadOptions{ExtraVars: map[string]bool{"lab_port": true}})
	require.NoError(t, err)
}

func TestVarsFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/vars.yaml"
	require.NoError(t, writeFile(path, "endpoint: db.lab\nwriters: 5\nsecrets:\n  db_password: s3cret!\n"))
	tg := NewTarget()
	require.NoError(t, tg.LoadVarsFile(path))
	require.NoError(t, tg.SetVar("writers=8"))
	require.NoError(t, tg.SetVar("hosts=[a, b]"))
	assert.Equal(t, 8, tg.Vars["writers"])
	assert.Equal(t, "db.lab", tg.Vars["endpoint"])
	assert.Equal(t, []any{"a", "b"}, tg.Vars["hosts"])
	assert.Equal(t, "s3cret!", tg.Secrets["db_password"])
	require.Error(t, tg.SetVar("novalue"))

	bad := dir + "/bad.yaml"
	require.NoError(t, writeFile(bad, "a: 1\n- b\n"))
	err := NewTarget().LoadVarsFile(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), bad+":1:1: invalid YAML")
}
