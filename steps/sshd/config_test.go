package sshd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

// writeConfig writes an sshd_config with a host key of its own, so that
// the real sshd -T evaluates it.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	sshtest.WriteKey(t, filepath.Join(dir, "host_key"))
	p := filepath.Join(dir, "sshd_config")
	require.NoError(t, os.WriteFile(p, []byte(fmt.Sprintf("HostKey %s/host_key\n", dir)+body), 0o600))
	return p
}

// runbook is the seed's sshd_config changes, with the root login it
// warns about.
const runbook = `PermitRootLogin yes
UseDNS no
ClientAliveInterval 180
ClientAliveCountMax 3
GatewayPorts yes
PasswordAuthentication yes
`

// fixed is the runbook done without the risk: keys only, no root login.
const fixed = `PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
ClientAliveInterval 180
ClientAliveCountMax 3
GatewayPorts clientspecified
`

var drillPolicy = map[string]any{
	"gatewayports":        []any{"clientspecified", "yes"},
	"clientaliveinterval": "> 0",
	"clientalivecountmax": 3,
	"allowtcpforwarding":  []any{"yes", "remote", "all"},
}

func runConfig(t *testing.T, c *Config, ctx context.Context) (map[string]any, error) {
	t.Helper()
	require.NoError(t, c.Validate())
	env := steps.NewEnv("sshd", "policy", t.TempDir(), steps.Hooks{})
	err := c.Run(ctx, env)
	return env.Outputs(), err
}

// TestConfigPolicy evaluates real sshd_config files with the machine's
// sshd -T, each fault injected in its own file.
func TestConfigPolicy(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		match    map[string]string
		require  map[string]any
		want     []string // parts of the failure; none: compliant
		gateway  string   // effective gatewayports seen
		rootSeen string   // effective permitrootlogin for root
	}{
		{name: "the runbook without its risk", config: fixed, require: drillPolicy, gateway: "clientspecified", rootSeen: "no"},
		{name: "the runbook as written: root logs in with a password", config: runbook, require: drillPolicy,
			want: []string{"permitrootlogin yes: root logs in directly", "password authentication is on for root"}, gateway: "yes", rootSeen: "yes"},
		{name: "GatewayPorts no", config: strings.Replace(fixed, "GatewayPorts clientspecified", "GatewayPorts no", 1), require: drillPolicy,
			want: []string{"gatewayports is no, required clientspecified or yes"}, gateway: "no"},
		{name: "the first GatewayPorts wins, as sshd reads it", config: fixed + "GatewayPorts no\n", require: drillPolicy, gateway: "clientspecified"},
		{name: "GatewayPorts left at its default", config: "PermitRootLogin no\nPasswordAuthentication no\nClientAliveInterval 180\n", require: drillPolicy,
			want: []string{"gatewayports is no, required clientspecified or yes"}, gateway: "no"},
		{name: "no client keepalives", config: "GatewayPorts yes\nPermitRootLogin no\n", require: drillPolicy,
			want: []string{"clientaliveinterval is 0, required > 0"}, gateway: "yes"},
		{name: "a Match block lets root in with a password", config: fixed + "Match User root\n  PermitRootLogin yes\n  PasswordAuthentication yes\n",
			require: drillPolicy, want: []string{"permitrootlogin yes", "password authentication is on for root"}, rootSeen: "yes"},
		{name: "a Match block for the remote's address turns GatewayPorts off", config: "PermitRootLogin no\nPasswordAuthentication no\nClientAliveInterval 180\nMatch Address 203.0.113.0/24\n  GatewayPorts no\nMatch all\n  GatewayPorts yes\n",
			match: map[string]string{"user": "ops", "addr": "203.0.113.7", "host": "home.example"}, require: drillPolicy,
			want: []string{"gatewayports is no"}, gateway: "no"},
		{name: "the same Match, another address", config: "PermitRootLogin no\nPasswordAuthentication no\nClientAliveInterval 180\nMatch Address 203.0.113.0/24\n  GatewayPorts no\nMatch all\n  GatewayPorts yes\n",
			match: map[string]string{"user": "ops", "addr": "198.51.100.9"}, require: drillPolicy, gateway: "yes"},
		{name: "empty passwords allowed", config: fixed + "PermitEmptyPasswords yes\n", want: []string{"permitemptypasswords yes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Sshd: "sshd", ConfigFile: writeConfig(t, tt.config), Match: tt.match, Require: tt.require}
			out, err := runConfig(t, c, context.Background())
			if len(tt.want) == 0 {
				require.NoError(t, err)
				assert.Equal(t, true, out["compliant"])
			} else {
				require.Error(t, err)
				assert.True(t, steps.IsFailure(err), err)
				for _, w := range tt.want {
					assert.Contains(t, err.Error(), w)
				}
				assert.Equal(t, false, out["compliant"])
			}
			cfg := out["config"].(map[string]any)
			if tt.gateway != "" {
				assert.Equal(t, tt.gateway, cfg["gatewayports"])
			}
			if tt.rootSeen != "" {
				assert.Equal(t, tt.rootSeen, out["root_config"].(map[string]any)["permitrootlogin"])
			}
		})
	}
}

// TestConfigOverSSH reads the effective configuration of the host behind
// ssh://box (a real sshd: the test server's own file).
func TestConfigOverSSH(t *testing.T) {
	s := sshtest.StartWith(t, "GatewayPorts yes\nClientAliveInterval 180\nClientAliveCountMax 3")
	p := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})}
	t.Cleanup(func() { _ = p.Close() })
	ctx := host.WithPool(context.Background(), p)
	c := &Config{Host: "ssh://box", Sshd: "sshd", ConfigFile: filepath.Join(s.Dir, "sshd_config"), Require: drillPolicy}
	out, err := runConfig(t, c, ctx)
	require.NoError(t, err)
	cfg := out["config"].(map[string]any)
	assert.Equal(t, "yes", cfg["gatewayports"])
	assert.Equal(t, "180", cfg["clientaliveinterval"])
	// sshd -T spells prohibit-password by its old name.
	assert.Equal(t, "without-password", out["root_config"].(map[string]any)["permitrootlogin"])
}

func TestConfigErrors(t *testing.T) {
	c := &Config{Sshd: "sshd", ConfigFile: writeConfig(t, "GatewayPorts sometimes\n")}
	_, err := runConfig(t, c, context.Background())
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err), "a config sshd cannot read is an error, not a verdict")
	assert.Contains(t, err.Error(), "sshd -T on local exited")
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"bad host", Config{Host: "server"}, "is not a host reference"},
		{"unknown match criterion", Config{Match: map[string]string{"user": "ops", "group": "x"}}, "unknown criterion \"group\""},
		{"match without user", Config{Match: map[string]string{"addr": "1.2.3.4"}}, "user is required"},
		{"comma in a match value", Config{Match: map[string]string{"user": "ops,root"}}, "one word without commas"},
		{"upper-case keyword", Config{Require: map[string]any{"GatewayPorts": "yes"}}, "lower-case keyword"},
		{"comparison without a number", Config{Require: map[string]any{"clientaliveinterval": ">= soon"}}, "needs a number"},
		{"empty list", Config{Require: map[string]any{"gatewayports": []any{}}}, "accepts nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
