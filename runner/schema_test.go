package runner

import (
	"encoding/json"
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
	for name, bad := range map[string]string{
		"unknown step":        "steps:\n  - uses: nope\n",
		"unknown with field":  "steps:\n  - uses: tcp.probe\n    with: { adress: x }\n",
		"missing required":    "steps:\n  - uses: tcp.probe\n    with: { expect: open }\n",
		"wrong type":          "steps:\n  - uses: test.typed\n    with: { port: [1] }\n",
		"unknown step field":  "steps:\n  - uses: exec\n    with: { command: [a] }\n    retries: 3\n",
		"bad id":              "steps:\n  - id: a-b\n    uses: wait\n",
		"unknown top level":   "step: []\n",
		"secret given inline": "secrets: { pw: hunter2 }\nsteps:\n  - uses: wait\n",
		"bad duration":        "steps:\n  - uses: sleep\n    with: { duration: soon }\n",
	} {
		assert.Error(t, validate(bad), name)
	}
}
