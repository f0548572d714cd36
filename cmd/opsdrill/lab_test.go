package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/lab/labtest"
)

func TestLabUpStatusDown(t *testing.T) {
	labtest.Require(t)
	dir := filepath.Join(t.TempDir(), "state")
	t.Cleanup(func() { opsdrill(t, "lab", "down", "--state-dir", dir) })

	r := opsdrill(t, "lab", "up", "--state-dir", dir, "hosts")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "is up: hosts")
	assert.Contains(t, r.stderr, "host server")

	b, err := os.ReadFile(filepath.Join(dir, "vars.yaml"))
	require.NoError(t, err)
	var vars struct {
		Lab   struct{ ID, Subnet string }
		Hosts map[string]struct{ IP string }
	}
	require.NoError(t, yaml.Unmarshal(b, &vars))
	assert.Len(t, vars.Hosts, 3)
	assert.NotEmpty(t, vars.Hosts["server"].IP)

	r = opsdrill(t, "lab", "up", "--state-dir", dir, "hosts")
	assert.Equal(t, 1, r.code, "a second lab up is refused")
	assert.Contains(t, r.stderr, "already running")
	assert.Contains(t, r.stderr, "opsdrill lab down")

	r = opsdrill(t, "lab", "status", "--state-dir", dir, "--json")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	var status labReport
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &status))
	require.NotNil(t, status.Lab)
	assert.Equal(t, vars.Lab.ID, status.Lab.ID)
	require.Len(t, status.Hosts, 3)
	for _, h := range status.Hosts {
		assert.Equal(t, "running", h.State, h.Name)
		assert.Equal(t, vars.Hosts[h.Name].IP, h.IP)
	}

	r = opsdrill(t, "lab", "down", "--state-dir", dir)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "removed lab "+vars.Lab.ID+": 3 containers, 1 networks")
	assert.NoFileExists(t, filepath.Join(dir, "vars.yaml"))
	assert.NoFileExists(t, filepath.Join(dir, "state.json"))

	r = opsdrill(t, "lab", "status", "--state-dir", dir)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "no lab is up")
}

func TestLabBadUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		code    int
		message string
	}{
		{"unknown environment", []string{"lab", "up", "nope"}, exitBadInput, `unknown lab environment "nope"`},
		{"bad subnet", []string{"lab", "up", "--subnet", "10.1.2.3", "hosts"}, exitBadInput, "--subnet"},
		{"status takes no arguments", []string{"lab", "status", "extra"}, exitBadInput, "unknown command"},
		{"down takes no arguments", []string{"lab", "down", "extra"}, exitBadInput, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := opsdrill(t, append(tt.args, "--state-dir", t.TempDir())...)
			assert.Equal(t, tt.code, r.code, r.stdout+r.stderr)
			assert.Contains(t, r.stderr, tt.message)
		})
	}
}

func TestLabHelpHasExamples(t *testing.T) {
	for _, sub := range []string{"up", "status", "down"} {
		r := opsdrill(t, "lab", sub, "--help")
		require.Equal(t, 0, r.code)
		assert.Contains(t, r.stdout, "Examples:")
		assert.Contains(t, r.stdout, "opsdrill lab "+sub)
	}
	r := opsdrill(t, "lab", "up", "--help")
	assert.Regexp(t, `(?m)^  hosts +two clients and a server on one network \(client1, client2, server\)$`, r.stdout)
}
