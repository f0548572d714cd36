package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab/labtest"
)

const sshFaultsScenario = `name: ssh-faults
steps:
  - id: before
    uses: exec
    with: { host: "ssh://client2", command: [hostname] }
  - id: outlive
    uses: exec
    timeout: 2s
    continue_on_error: true
    with: { host: "ssh://client1", shell: sh, script: "sleep 3051 & sleep 3051" }
  - id: stranger
    uses: exec
    continue_on_error: true
    with: { host: "ssh://stranger", command: ["true"] }
  - id: drop
    uses: exec
    with: { host: "ssh://client1?sudo=true", shell: sh, script: "pkill -KILL -x sshd; sleep 10" }
  - id: never
    uses: exec
    with: { host: "ssh://client2", command: ["true"] }
cleanup:
  - id: mark
    uses: exec
    with: { host: "ssh://client2", command: [touch, /tmp/cleanup-ran] }
`

// TestRunOverSSHFaults: faults on one host error their steps (not fail
// them), with messages that say what happened, and the cleanup on another
// host still runs.
func TestRunOverSSHFaults(t *testing.T) {
	l := labtest.Up(t, "hosts")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// stranger: a host whose key known_hosts does not have.
	cfg, err := os.ReadFile(l.SSHConfig())
	require.NoError(t, err)
	server, err := l.Host("server")
	require.NoError(t, err)
	extra := "\nHost stranger\n  HostName " + server.IP.String() + "\n  User ops\n  UserKnownHostsFile " + filepath.Join(dir, "empty_known_hosts") + "\n  IdentityFile " + filepath.Join(l.SSHDir(), "id_ed25519") + "\n"
	sshConfig := filepath.Join(dir, "ssh_config")
	require.NoError(t, os.WriteFile(sshConfig, append(cfg, extra...), 0o600))
	scenario := filepath.Join(dir, "ssh-faults.yaml")
	require.NoError(t, os.WriteFile(scenario, []byte(sshFaultsScenario), 0o600))

	r := opsdrill(t, "run", "--ssh-config", sshConfig, "--report-dir", filepath.Join(dir, "out"), scenario)
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	run := readReport(t, filepath.Join(dir, "out"))
	byID := map[string]string{}
	errs := map[string]string{}
	for _, s := range run.Scenarios[0].Steps {
		byID[s.ID], errs[s.ID] = string(s.Status), s.Error
	}
	assert.Equal(t, "passed", byID["before"])
	assert.Equal(t, "errored", byID["outlive"])
	assert.Contains(t, errs["outlive"], "timed out after 2s")
	assert.Equal(t, "errored", byID["stranger"])
	assert.Contains(t, errs["stranger"], "host key")
	assert.Contains(t, errs["stranger"], "ssh://stranger")
	assert.Equal(t, "errored", byID["drop"])
	assert.Contains(t, errs["drop"], "connection lost")
	assert.Equal(t, "skipped", byID["never"])
	assert.Equal(t, "passed", byID["mark"], "cleanup ran on the other host")

	client1, err := l.Host("client1")
	require.NoError(t, err)
	client2, err := l.Host("client2")
	require.NoError(t, err)
	res, err := client2.Exec(ctx, "test", "-e", "/tmp/cleanup-ran")
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode, "the cleanup's file is on client2")
	res, err = client1.Exec(ctx, "sh", "-c", "pgrep -f '^sleep 3051' || true")
	require.NoError(t, err)
	assert.Empty(t, strings.TrimSpace(res.Stdout), "the command that outlived its timeout is gone from client1")
}
