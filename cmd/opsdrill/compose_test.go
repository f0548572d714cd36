package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStepFilesOnTheCommandLine(t *testing.T) {
	r := opsdrill(t, "steps", "../../scenarios/lib/port-closed.yaml")
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{"port closed from these hosts (step file)", "address  string", "required", `default "2s"`,
		"probe", "tcp.probe (for_each)", "states", "uses: ./"} {
		assert.Contains(t, r.stdout, want)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("inputs:\n  n: { type: int, default: x }\nsteps:\n  - uses: wait\n"), 0o644))
	r = opsdrill(t, "steps", bad)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "bad.yaml:2:28: inputs.n.default: expected a whole number")

	r = opsdrill(t, "validate", "../../scenarios/lib/port-closed.yaml", "../../scenarios/lib/tunnel-up-ping.yaml", "testdata/pass.yaml")
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "ok: 1 scenario(s) valid")
	assert.Contains(t, r.stdout, "ok: 2 step file(s) valid")
	r = opsdrill(t, "validate", bad)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "bad.yaml:2:28")

	r = opsdrill(t, "run", "--report-dir", t.TempDir(), "../../scenarios/lib/port-closed.yaml")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "a step file (it declares inputs or outputs), not a scenario")
}

func TestSchemaCoversComposition(t *testing.T) {
	r := opsdrill(t, "schema")
	require.Equal(t, 0, r.code)
	var schema map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &schema))
	defs := schema["$defs"].(map[string]any)
	props := defs["step"].(map[string]any)["properties"].(map[string]any)
	assert.Contains(t, props, "for_each")
	assert.Contains(t, props, "parallel")
	assert.Contains(t, r.stdout, `\\.ya?ml$`, "uses: ./file.yaml")
	assert.Contains(t, defs["scenario"].(map[string]any)["properties"], "steady_state")
	assert.Contains(t, defs["step_file"].(map[string]any)["properties"], "inputs")
	assert.Contains(t, defs["step_file"].(map[string]any)["properties"], "outputs")
}
