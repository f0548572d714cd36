package main

import (
	"context"
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
	assert.Equal(t, "refused", steps[1].Outputs["state"])
	assert.Equal(t, "refused", steps[2].Outputs["state"])
	id := strings.TrimSpace(steps[0].Outputs["stdout"].(string))
	require.NotEmpty(t, id)
	left, err := lab.ListResources(ctx)
	require.NoError(t, err)
	for _, r := range left {
		assert.NotEqual(t, id, r.Lab, "lab %s left %s %s behind", id, r.Kind, r.Name)
	}

	r = opsdrill(t, "run", "--lab", "nosuchenv", "--report-dir", dir, "testdata/lab-hosts.yaml")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "nosuchenv")
}
