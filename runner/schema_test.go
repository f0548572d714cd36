package runner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// TestSchemaAcceptsValidAndRejectsInvalid checks the generated JSON Schema
// with an independent validator, the way an editor would use it.
func TestSchemaAcceptsValidAndRejectsInvalid(t *testing.T) {
	raw, err := json.Marshal(Schema())
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("opsdrill.schema.json", doc))
	schema, err := c.Compile("opsdrill.schema.json")
	require.NoError(t, err)

	validate := func(src string) error {
		var v any
		require.NoError(t, yaml.Unmarshal([]byte(src), &v))
		b, err := json.Marshal(v)
		require.NoError(t, err)
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(string(b)))
		require.NoError(t, err)
		return schema.Validate(inst)
	}
	ok := `
name: ok
tags: [a]
vars: { port: 22 }
secrets: { pw: { env: PW } }
steps:
  - id: probe
    uses: tcp.probe
    with: { address: "h:22", expect: closed, timeout: 2s }
    retry: { attempts: 2, delay: 1s, backoff: 2 }
  - uses: test.typed
    with: { port: "${{ vars.port }}", hosts: [a] }
  - uses: wait
cleanup:
  - uses: exec
    with: { command: [echo] }
`
	assert.NoError(t, validate(ok))
	composed := `
steady_state:
  - id: closed
    uses: ./lib/port-closed.yaml
    with: { address: "h:22", from: [a, b] }
steps:
  - id: probe
    uses: tcp.probe
    for_each: { a: x, b: y }
    parallel: 2
    with: { address: "${{ each.value }}:22", expect: closed }
  - uses: tcp.probe
    for_each: ${{ vars.hosts }}
    with: { address: "${{ each.value }}:22" }
`
	assert.NoError(t, validate(composed))
	stepFile := `
name: port closed
inputs:
  address: { type: string, required: true }
  from: { type: list, default: [local], secret: false, description: hosts }
steps:
  - uses: tcp.probe
    with: { address: "${{ inputs.address }}" }
outputs:
  n: ${{ len(inputs.from) }}
  m: { value: "${{ 1 }}", secret: true }
`
	assert.NoError(t, validate(stepFile))
	shipped, err := filepath.Glob("../scenarios/*.yaml")
	require.NoError(t, err)
	lib, err := filepath.Glob("../scenarios/lib/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, lib)
	for _, f := range append(shipped, lib...) {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.NoError(t, validate(string(data)), "the schema accepts %s", f)
	}
	for name, bad := range map[string]string{
		"unknown step":         "steps:\n  - uses: nope\n",
		"unknown with field":   "steps:\n  - uses: tcp.probe\n    with: { adress: x }\n",
		"missing required":     "steps:\n  - uses: tcp.probe\n    with: { expect: open }\n",
		"wrong type":           "steps:\n  - uses: test.typed\n    with: { port: [1] }\n",
		"unknown step field":   "steps:\n  - uses: exec\n    with: { command: [a] }\n    retries: 3\n",
		"bad id":               "steps:\n  - id: a-b\n    uses: wait\n",
		"unknown top level":    "step: []\n",
		"secret given inline":  "secrets: { pw: hunter2 }\nsteps:\n  - uses: wait\n",
		"bad duration":         "steps:\n  - uses: sleep\n    with: { duration: soon }\n",
		"uses a non-yaml file": "steps:\n  - uses: ./lib/x.txt\n",
		"bad parallel":         "steps:\n  - uses: wait\n    for_each: [1]\n    parallel: 0\n",
		"scalar for_each":      "steps:\n  - uses: wait\n    for_each: hosts\n",
		"bad input type":       "inputs: { a: { type: integer } }\nsteps:\n  - uses: wait\n",
		"unknown input field":  "inputs: { a: { typ: int } }\nsteps:\n  - uses: wait\n",
		"output not an expr":   "outputs: { a: plain }\nsteps:\n  - uses: wait\n",
		"steady_state a map":   "steady_state: { a: 1 }\nsteps:\n  - uses: wait\n",
	} {
		assert.Error(t, validate(bad), name)
	}
}
