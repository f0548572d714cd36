package runner

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

// TestReportNamesSSHHostsTouched: a step that acts over SSH leaves, in the
// report, the host it named, the address connected to and the host key
// fingerprint the host proved.
func TestReportNamesSSHHostsTouched(t *testing.T) {
	s := sshtest.Start(t)
	pool := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})}
	t.Cleanup(func() { _ = pool.Close() })
	h := run(t, host.WithPool(context.Background(), pool), Options{}, `
steps:
  - id: remote
    uses: exec
    with: { command: ["true"], host: "ssh://box" }
`)
	require.Equal(t, "passed", h.res.Run.Status)
	require.Len(t, h.res.Run.Hosts, 1)
	got := h.res.Run.Hosts[0]
	assert.Equal(t, "ssh://box", got.Ref)
	assert.Equal(t, "ssh", got.Transport)
	assert.Equal(t, s.Addr(), got.Address)
	assert.Equal(t, s.HostKey.Type()+" "+ssh.FingerprintSHA256(s.HostKey), got.HostKey)
	assert.Equal(t, []string{"s0/remote"}, got.Steps)
	assert.Contains(t, h.file(t, JSONFile), ssh.FingerprintSHA256(s.HostKey))
}
