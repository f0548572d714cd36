package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
)

// TestRunWithLab brings the hosts environment up around a run with --lab,
// reads its vars, and leaves nothing behind.
func TestRunWithLab(t *testing.T) {
	labtest.Require(t)
	ctx := context.Background()
	dir := t.TempDir()
	r := opsdrill(t, "run", "--lab", "hosts", "--report-dir", dir, "testdata/lab-hosts.yaml")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	run := readReport(t, dir)
	steps := run.Scenarios[0].Steps
	assert.Equal(t, "open", steps[1].Outputs["state"])
	assert.Equal(t, "open", steps[2].Outputs["state"])
	assert.Equal(t, "refused", steps[3].Outputs["state"])
	id := strings.TrimSpace(steps[0].Outputs["stdout"].(string))
	require.NotEmpty(t, id)
	// The lab's vars have no file: the report names the lab and their hash.
	require.Len(t, run.VarsFiles, 1)
	assert.True(t, strings.HasPrefix(run.VarsFiles[0].Path, "lab:"+id+" "), run.VarsFiles[0].Path)
	assert.Len(t, run.VarsFiles[0].SHA256, 64)
	left, err := lab.ListResources(ctx)
	require.NoError(t, err)
	for _, r := range left {
		assert.NotEqual(t, id, r.Lab, "lab %s left %s %s behind", id, r.Kind, r.Name)
	}

	r = opsdrill(t, "run", "--lab", "nosuchenv", "--report-dir", dir, "testdata/lab-hosts.yaml")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "nosuchenv")
}

// TestRunWithLabReusesARunningLab: with `lab up` already done in the
// working folder, --lab uses that lab and leaves it running.
func TestRunWithLabReusesARunningLab(t *testing.T) {
	labtest.Require(t)
	work := t.TempDir()
	scenario, err := filepath.Abs("testdata/lab-hosts.yaml")
	require.NoError(t, err)
	in := func(args ...string) result {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Dir = work
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return result{code: code, stdout: out.String(), stderr: errb.String()}
	}
	require.Equal(t, 0, in("lab", "up", "hosts").code)
	t.Cleanup(func() { in("lab", "down") })
	r := in("run", "--lab", "hosts", "--report-dir", "out", scenario)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, "lab: using lab")
	st := in("lab", "status")
	assert.Equal(t, 0, st.code, "the lab is still up: %s%s", st.stdout, st.stderr)
	assert.Contains(t, st.stdout, "client1")
}
