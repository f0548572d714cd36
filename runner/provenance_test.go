package runner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
)

// TestProvenance: the report names the user (not a uid), the vars files
// with their hashes, the hosts steps named, and the git commit and state
// of each scenario file.
func TestProvenance(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	repo := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	git("init", "-q")
	clean := filepath.Join(repo, "clean.yaml")
	changed := filepath.Join(repo, "changed.yaml")
	untracked := filepath.Join(repo, "new.yaml")
	src := "steps:\n  - uses: test.measure\n    with: { host: lab:cgw }\n"
	for _, f := range []string{clean, changed} {
		require.NoError(t, os.WriteFile(f, []byte(src), 0o644))
	}
	git("add", ".")
	git("commit", "-q", "-m", "drills")
	require.NoError(t, os.WriteFile(changed, []byte(src+"# edited\n"), 0o644))
	require.NoError(t, os.WriteFile(untracked, []byte(src), 0o644))
	outside := filepath.Join(t.TempDir(), "loose.yaml")
	require.NoError(t, os.WriteFile(outside, []byte(src), 0o644))

	varsFile := filepath.Join(t.TempDir(), "lab.yaml")
	require.NoError(t, os.WriteFile(varsFile, []byte("endpoint: db\n"), 0o644))
	ref, err := HashFile(varsFile)
	require.NoError(t, err)
	assert.Len(t, ref.SHA256, 64)

	var scs []*Scenario
	for _, f := range []string{clean, changed, untracked, outside} {
		sc, err := LoadFile(f, LoadOptions{})
		require.NoError(t, err)
		scs = append(scs, sc)
	}
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	res, err := Run(context.Background(), scs, Options{ReportDir: dir, VarsFiles: []reports.FileRef{ref}, ToolCommit: "abc123+dirty", SignKey: priv})
	require.NoError(t, err)
	run := res.Run

	if u, err := user.Current(); err == nil {
		assert.Equal(t, u.Username, run.User, "the user by name")
	}
	assert.NotEmpty(t, run.UID)
	assert.Equal(t, "abc123+dirty", run.ToolCommit)
	assert.Equal(t, []reports.FileRef{ref}, run.VarsFiles)
	require.Len(t, run.Hosts, 1)
	assert.Equal(t, "lab:cgw", run.Hosts[0].Ref)
	assert.Equal(t, "lab", run.Hosts[0].Transport)
	assert.Len(t, run.Hosts[0].Steps, 4, "every step that named it")

	states := map[string]string{}
	for _, sc := range run.Scenarios {
		if sc.Git == nil {
			states[filepath.Base(sc.File)] = "none"
			continue
		}
		assert.Len(t, sc.Git.Commit, 40)
		states[filepath.Base(sc.File)] = sc.Git.State
	}
	assert.Equal(t, map[string]string{"clean.yaml": "clean", "changed.yaml": "modified", "new.yaml": "untracked", "loose.yaml": "none"}, states)
	assert.Equal(t, reports.KeyFingerprint(priv.Public().(ed25519.PublicKey)), run.Signer)

	html, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	require.NoError(t, err)
	for _, want := range []string{run.Signer, ref.SHA256, "lab:cgw", ">modified<", ">untracked<", "not in a git repository", "abc123"} {
		assert.True(t, strings.Contains(string(html), strings.ReplaceAll(want, "+", "&#43;")), "report.html shows %q", want)
	}
	js, err := os.ReadFile(filepath.Join(dir, JSONFile))
	require.NoError(t, err)
	assert.Contains(t, string(js), `"vars_files": [`)
	assert.Contains(t, string(js), `"hosts": [`)
	assert.Contains(t, string(js), `"state": "untracked"`)
}

// The vars of an in-process lab: a stable hash of what the run was given,
// the lab named, the secrets left out of what is hashed.
func TestHashLabVars(t *testing.T) {
	vars := map[string]any{"hosts": map[string]any{"client1": map[string]any{"ip": "10.213.1.10"}}, "lab": map[string]any{"id": "ab12cd"},
		"secrets": map[string]any{"db": "hunter2-secret"}}
	a, err := HashLabVars("ab12cd", vars, "secrets")
	require.NoError(t, err)
	assert.Equal(t, "lab:ab12cd (vars of the lab this run brought up)", a.Path)
	assert.Len(t, a.SHA256, 64)
	vars["secrets"] = map[string]any{"db": "another-secret"}
	b, err := HashLabVars("ab12cd", vars, "secrets")
	require.NoError(t, err)
	assert.Equal(t, a.SHA256, b.SHA256, "the secrets are not in the hash")
	vars["lab"] = map[string]any{"id": "ab12cd", "subnet": "10.213.1.0/24"}
	c, err := HashLabVars("ab12cd", vars, "secrets")
	require.NoError(t, err)
	assert.NotEqual(t, a.SHA256, c.SHA256, "other vars, another hash")
}
