package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
)

// TestPortgateEnvForward: portgate's forward: mode with the lab's host
// behind the gate, on each backend. The inner host's sshd is reached
// through the gate (port 3389 DNAT'ed to it) by the lease's address only;
// with the inner host's own firewall (only the gate may connect) removed,
// so that nothing but portgate stands in the way, the other client still
// does not get through the gate.
func TestPortgateEnvForward(t *testing.T) {
	l := labtest.Up(t, lab.PortgateEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gate, err := l.Host(lab.PortgateGate)
	require.NoError(t, err)
	inner, err := l.Host(lab.PortgateInner)
	require.NoError(t, err)
	c1, err := l.Host(lab.PortgateClient1)
	require.NoError(t, err)
	c2, err := l.Host(lab.PortgateClient2)
	require.NoError(t, err)
	orig, err := gate.Exec(ctx, "cat", "/etc/portgate/config.yaml")
	require.NoError(t, err)
	require.NoError(t, orig.Err())
	secret := l.Vars()[lab.SecretsKey].(map[string]any)[lab.PortgateSecretName].(string)
	run := func(h *lab.Host, args ...string) {
		t.Helper()
		r, err := h.Exec(ctx, args...)
		require.NoError(t, err)
		require.NoError(t, r.Err(), "%v", args)
	}
	nftFile := func(h *lab.Host, ruleset string) {
		t.Helper()
		r, err := h.ExecCommand(ctx, lab.Command{Args: []string{"nft", "-f", "-"}, Stdin: []byte(ruleset + "\n")})
		require.NoError(t, err)
		require.NoError(t, r.Err(), "%s", ruleset)
	}
	// The flat lab network stands for the private one: the inner host's
	// own firewall lets only the gate in, and the gate masquerades what it
	// forwards, so replies come back through it.
	innerFW := fmt.Sprintf("table inet innerfw {\n chain input {\n  type filter hook input priority 0; policy drop;\n  iif \"lo\" accept\n  ct state established,related accept\n  ip saddr %s accept\n }\n}", gate.IP)
	nftFile(inner, innerFW)
	t.Cleanup(func() { _, _ = inner.Exec(context.Background(), "nft", "delete", "table", "inet", "innerfw") })
	nftFile(gate, fmt.Sprintf("table ip labnat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  ip daddr %s tcp dport 22 masquerade\n }\n}", inner.IP))
	t.Cleanup(func() { _, _ = gate.Exec(context.Background(), "nft", "delete", "table", "ip", "labnat") })
	via := gate.IP.String()
	reach := func(h *lab.Host, addr string) bool {
		r, err := h.Exec(ctx, "nc", "-z", "-w", "2", addr, map[bool]string{true: "3389", false: "22"}[addr == via])
		return err == nil && r.ExitCode == 0
	}
	lastStep := uint64(0)
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			config := strings.Replace(orig.Stdout, fmt.Sprintf("ports: [%d]", lab.PortgateSSHPort),
				fmt.Sprintf("ports: [%d, 3389]\nforward: [{port: 3389, to: '%s:22'}]", lab.PortgateSSHPort, inner.IP), 1)
			config = strings.Replace(config, "firewall: {backend: nftables}", "firewall: {backend: "+backend+"}", 1)
			require.Contains(t, config, "forward:")
			restartPortgate(ctx, t, l, gate, config, nil)
			t.Cleanup(func() { restartPortgate(ctx, t, l, gate, orig.Stdout, []string{"nft", "-f", "/etc/labfw.nft"}) })
			_, _ = inner.Exec(ctx, "nft", "delete", "table", "inet", "innerfw")
			nftFile(inner, innerFW)

			assert.False(t, reach(c1, via), "closed through the gate by default")
			assert.False(t, reach(c1, inner.IP.String()), "the inner host is not reached directly")
			// A fresh code step: the replay floor refuses one already used.
			now := time.Now()
			for uint64(now.Unix()/30) <= lastStep {
				time.Sleep(time.Second)
				now = time.Now()
			}
			lastStep = uint64(now.Unix() / 30)
			code, err := totp.GenerateCode(secret, now)
			require.NoError(t, err)
			body := fmt.Sprintf(`{"user":%q,"code":%q,"port":3389}`, lab.PortgateUser, code)
			r, err := c1.Exec(ctx, "curl", "-sS", "--noproxy", "*", "--cacert", lab.PortgateCAPath, "-X", "POST", "-H", "Content-Type: application/json", "-d", body,
				fmt.Sprintf("https://%s/v1/leases", gate.Addr(lab.PortgateAPIPort)))
			require.NoError(t, err)
			require.NoError(t, r.Err())
			var granted struct{ ID, Token, IP string }
			require.NoError(t, json.Unmarshal([]byte(r.Stdout), &granted), r.Stdout)
			require.NotEmpty(t, granted.Token, r.Stdout)
			assert.Equal(t, c1.IP.String(), granted.IP)

			assert.True(t, reach(c1, via), "the inner host through the gate, for the lease's address")
			assert.False(t, reach(c2, via), "not for the other client")
			assert.False(t, reach(c1, inner.IP.String()), "still not directly")

			run(inner, "nft", "delete", "table", "inet", "innerfw")
			assert.False(t, reach(c2, via), "with the inner host's own firewall gone, portgate's guard still holds")
			assert.True(t, reach(c1, via))

			r, err = c1.Exec(ctx, "curl", "-sS", "--noproxy", "*", "--cacert", lab.PortgateCAPath, "-X", "DELETE",
				"-H", "Authorization: Bearer "+granted.Token, fmt.Sprintf("https://%s/v1/leases/%s", gate.Addr(lab.PortgateAPIPort), granted.ID))
			require.NoError(t, err)
			require.NoError(t, r.Err())
			assert.Contains(t, r.Stdout, `"closed":true`)
			assert.False(t, reach(c1, via), "closed through the gate when the lease goes")
		})
	}
}
