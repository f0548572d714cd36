package runner

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOversizedInputIsRefusedBeforeReading(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	require.NoError(t, err)
	// Sparse: the size is real, the disk use is not.
	require.NoError(t, f.Truncate(MaxFileSize+1))
	require.NoError(t, f.Close())
	cases := []struct {
		name string
		load func() error
	}{
		{"scenario", func() error { _, err := LoadFile(big, LoadOptions{}); return err }},
		{"vars file", func() error { return NewTarget().LoadVarsFile(big) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.load()
			require.Error(t, err)
			assert.Contains(t, err.Error(), big+":1:1: file is 10 MiB, over the 10 MiB limit")
		})
	}
	small := filepath.Join(dir, "ok.yaml")
	require.NoError(t, os.WriteFile(small, []byte("steps:\n  - uses: test.emit\n"), 0o644))
	_, err = LoadFile(small, LoadOptions{})
	assert.NoError(t, err)
}

// TestGoModTidy keeps go.mod honest: direct dependencies are listed as
// direct, and nothing is missing or left over (`make lint` checks the same).
func TestGoModTidy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go mod tidy")
	}
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	cmd := exec.Command("go", "mod", "tidy", "-diff")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "go mod tidy would change:\n%s", out)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	for _, dep := range []string{"github.com/spf13/cobra", "gopkg.in/yaml.v3", "github.com/expr-lang/expr"} {
		for _, line := range strings.Split(string(mod), "\n") {
			if strings.Contains(line, dep+" ") {
				assert.NotContains(t, line, "// indirect", dep+" is a direct dependency")
			}
		}
	}
}
