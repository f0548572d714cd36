package tcp

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

func TestProbeVia(t *testing.T) {
	s := sshtest.Start(t)
	p := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"bastion": ""})}
	t.Cleanup(func() { _ = p.Close() })
	ctx := host.WithPool(context.Background(), p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	open := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	closedLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := strconv.Itoa(closedLn.Addr().(*net.TCPAddr).Port)
	require.NoError(t, closedLn.Close())

	for _, tc := range []struct {
		name, address, expect, state string
		fails                        bool
	}{
		{name: "open, name resolved there", address: "localhost:" + open, expect: "open", state: "open"},
		{name: "refused", address: "127.0.0.1:" + closed, expect: "closed", state: "refused"},
		{name: "expected open but refused", address: "127.0.0.1:" + closed, expect: "open", state: "refused", fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := &Probe{Address: tc.address, Expect: tc.expect, Timeout: 3 * time.Second, Via: "ssh://bastion"}
			require.NoError(t, pr.Validate())
			env := steps.NewEnv("s", "x", t.TempDir(), steps.Hooks{})
			err := pr.Run(ctx, env)
			if tc.fails {
				require.Error(t, err)
				assert.True(t, steps.IsFailure(err))
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tc.state, env.Outputs()["state"])
		})
	}
	fw := s.Forwarded(t)
	assert.Contains(t, fw, "localhost "+open, "the bastion was handed the name, not an address")
	assert.Contains(t, fw, "127.0.0.1 "+closed)
	assert.Equal(t, 1, s.Accepted(t), "every probe rode one connection")

	// A bastion that cannot be trusted errors the step: the port was
	// never tried, so neither open nor closed is true.
	other := sshtest.WriteKey(t, t.TempDir()+"/other")
	bad := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, other), map[string]string{"bastion": ""})}
	t.Cleanup(func() { _ = bad.Close() })
	pr := &Probe{Address: "localhost:" + open, Expect: "closed", Timeout: 3 * time.Second, Via: "ssh://bastion"}
	err = pr.Run(host.WithPool(context.Background(), bad), steps.NewEnv("s", "x", t.TempDir(), steps.Hooks{}))
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err), "errored, not failed")
	assert.Contains(t, err.Error(), "host key")
}

func TestProbeViaValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Probe
		want string
	}{
		{Probe{Address: "a:1", Via: "local"}, "via:"},
		{Probe{Address: "a:1", Via: "bastion"}, "not a host reference"},
		{Probe{Address: "a:1", Via: "ssh://b", Host: "lab:x"}, "does not combine"},
		{Probe{Address: "a:1", Via: "ssh://b", Source: "10.0.0.1"}, "does not combine"},
	} {
		tc.p.Expect, tc.p.Timeout = "open", time.Second
		err := tc.p.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}
