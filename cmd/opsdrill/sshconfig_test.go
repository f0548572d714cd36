package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --ssh-config and OPSDRILL_SSH_CONFIG: a file that cannot be read is bad
// input (exit 2, the file named) before anything runs.
func TestSSHConfigFlag(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken_config")
	require.NoError(t, os.WriteFile(broken, []byte("Match exec true\n  HostName x\n"), 0o600))
	good := filepath.Join(dir, "good_config")
	require.NoError(t, os.WriteFile(good, []byte("Host a\n  HostName 127.0.0.1\n"), 0o600))
	scenario := filepath.Join(dir, "s.yaml")
	require.NoError(t, os.WriteFile(scenario, []byte("name: s\nsteps:\n  - uses: exec\n    with: { command: [\"true\"] }\n"), 0o600))
	missing := filepath.Join(dir, "nope")

	for _, tc := range []struct {
		name string
		args []string
		env  string
		code int
		want string
	}{
		{name: "validate, missing file", args: []string{"validate", "--ssh-config", missing, scenario}, code: 2, want: missing},
		{name: "run, missing file", args: []string{"run", "--report-dir", filepath.Join(dir, "out"), "--ssh-config", missing, scenario}, code: 2, want: missing},
		{name: "validate, env", args: []string{"validate", scenario}, env: missing, code: 2, want: missing},
		{name: "validate, unreadable config", args: []string{"validate", "--ssh-config", broken, scenario}, code: 2, want: broken},
		{name: "validate, good file", args: []string{"validate", "--ssh-config", good, scenario}, code: 0},
		{name: "flag wins over env", args: []string{"validate", "--ssh-config", good, scenario}, env: missing, code: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, tc.args...)
			cmd.Env = append(os.Environ(), "NO_COLOR=1", "OPSDRILL_SSH_CONFIG="+tc.env)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			assert.Equal(t, tc.code, code, string(out))
			if tc.want != "" {
				assert.Contains(t, string(out), tc.want)
			}
		})
	}
}
