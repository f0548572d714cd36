package runner

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestLoadWaivers(t *testing.T) {
	ws, err := LoadWaivers("../examples/ci/waivers.example.yaml")
	require.NoError(t, err)
	require.Len(t, ws, 2)
	assert.Equal(t, "rds-multi-az-failover", ws[0].Scenario)
	assert.Equal(t, "2026-12-31", ws[0].Expires)
	assert.Contains(t, ws[0].Justification, "OPS-1234")

	dir := t.TempDir()
	for name, tc := range map[string]struct{ src, want string }{
		"no justification": {"waivers:\n  - scenario: a\n    step: b\n    expires: 2026-01-01\n", "2:5: waivers[0]: justification is required"},
		"bad date":         {"waivers:\n  - scenario: a\n    step: b\n    justification: j\n    expires: 1/1/26\n", "5:14: waivers[0].expires: expected a date YYYY-MM-DD"},
		"unknown field":    {"waivers:\n  - scenario: a\n    step: b\n    justification: j\n    expires: 2026-01-01\n    owner: me\n", `6:5: waivers[0]: unknown field "owner"`},
		"not a list":       {"waivers: x\n", "1:10: waivers: expected a list"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "w.yaml")
			require.NoError(t, os.WriteFile(p, []byte(tc.src), 0o644))
			_, err := LoadWaivers(p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), p+":"+tc.want)
		})
	}
}

// TestCIExamplesParse keeps the CI examples valid YAML.
func TestCIExamplesParse(t *testing.T) {
	for _, f := range []string{"../examples/ci/github-actions-nightly.yml", "../examples/ci/gitlab-ci.yml"} {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var v map[string]any
		require.NoError(t, yaml.Unmarshal(data, &v), f)
		assert.Contains(t, string(data), "opsdrill run")
		assert.Contains(t, string(data), "junit.xml")
	}
}
