package host

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

// TestIdentities: the pool says, for the report, where each host it
// opened connected and which host key an SSH host proved.
func TestIdentities(t *testing.T) {
	s := sshtest.Start(t)
	cfg := s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})
	p, h := openSSH(t, cfg, "ssh://box")
	_, err := p.Open(context.Background(), "local")
	require.NoError(t, err)
	_, err = h.Run(context.Background(), Command{Args: []string{"true"}})
	require.NoError(t, err)

	ids := p.Identities()
	name, _ := os.Hostname()
	assert.Equal(t, Identity{Transport: "local", Address: name}, ids["local"])
	assert.Equal(t, Identity{Transport: "ssh", Address: s.Addr(), HostKey: s.HostKey.Type() + " " + ssh.FingerprintSHA256(s.HostKey)}, ids["ssh://box"])
}
