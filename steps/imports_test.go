package steps

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const labImport = "github.com/opsdrill/opsdrill/lab"

// labImports lists the non-test Go files under root that import the lab
// (lab or any package below it), as "file: import".
func labImports(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if p == labImport || strings.HasPrefix(p, labImport+"/") {
				found = append(found, filepath.ToSlash(path)+": "+p)
			}
		}
		return nil
	})
	require.NoError(t, err)
	return found
}

// TestNoStepImportsTheLab: steps know hosts and failover platforms only
// through steps/host and steps/db/failoverdriver; the lab registers its
// transport and its drivers from its own packages.
func TestNoStepImportsTheLab(t *testing.T) {
	write := func(t *testing.T, dir, name, src string) {
		t.Helper()
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(src), 0o644))
	}
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"a step importing the lab", map[string]string{"db/x.go": "package db\nimport _ \"" + labImport + "\"\n"}, []string{"db/x.go: " + labImport}},
		{"a step importing a lab package", map[string]string{"db/x.go": "package db\nimport (\n\t\"fmt\"\n\tr \"" + labImport + "/rdsapi\"\n)\n"}, []string{"db/x.go: " + labImport + "/rdsapi"}},
		{"tests may", map[string]string{"db/x_test.go": "package db\nimport _ \"" + labImport + "\"\n"}, nil},
		{"a name that only starts like it", map[string]string{"db/x.go": "package db\nimport _ \"" + labImport + "oratory\"\n"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, src := range tc.files {
				write(t, dir, name, src)
			}
			got := labImports(t, dir)
			for i := range got {
				got[i] = strings.TrimPrefix(got[i], filepath.ToSlash(dir)+"/")
			}
			assert.Equal(t, tc.want, got)
		})
	}
	t.Run("this tree", func(t *testing.T) {
		assert.Empty(t, labImports(t, "."), "packages under steps/ must not import the lab")
	})
}
