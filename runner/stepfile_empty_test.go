package runner

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadStepFileRejectsNoSteps(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"steps missing", "name: x\n", "x.yaml:1:1: empty step file: no steps"},
		{"steps empty", "name: x\nsteps: []\n", "x.yaml:2:8: empty step file: no steps"},
		{"steps null", "name: x\nsteps:\n", "x.yaml:2:7: empty step file: no steps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.yaml")
			require.NoError(t, os.WriteFile(path, []byte(tc.src), 0o644))
			_, err := LoadStepFile(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
