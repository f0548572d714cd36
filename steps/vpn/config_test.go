package vpn

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// recorder is an Env's hooks with everything a step hands over kept.
type recorder struct {
	logs    []string
	secrets []string
	undo    []func(context.Context) error
}

func (r *recorder) env(t *testing.T, id string) *steps.Env {
	env := steps.NewEnv("vpn-test", id, t.TempDir(), steps.Hooks{
		Log:    func(l string) { r.logs = append(r.logs, l) },
		Secret: func(v string) { r.secrets = append(r.secrets, v) },
		Undo:   func(_ string, fn func(context.Context) error) { r.undo = append(r.undo, fn) },
	})
	env.BaseDir = "../../scenarios"
	return env
}

func (r *recorder) runUndo(t *testing.T) {
	for i := len(r.undo) - 1; i >= 0; i-- {
		assert.NoError(t, r.undo[i](context.Background()))
	}
	r.undo = nil
}

func fixtureConfig() *Config {
	c := newConfig().(*Config)
	c.File = "fixtures/aws-vpn-generic.txt"
	c.VPCCIDR = "172.28.0.0/16"
	return c
}

func TestConfigStep(t *testing.T) {
	rec := &recorder{}
	env := rec.env(t, "config")
	c := fixtureConfig()
	require.NoError(t, c.Validate())
	require.NoError(t, c.Run(context.Background(), env))
	out := env.Outputs()

	want := map[string]any{
		"connection": "aws-tunnel-1", "children": []string{"aws-tunnel-1-inside", "aws-tunnel-1-vpc"},
		"vpn_connection_id": "vpn-0a1b2c3d4e5f60718", "gateway_id": "vgw-0f1e2d3c4b5a69788", "customer_gateway": "cgw-0123456789abcdef0",
		"tunnel": 1, "cgw_outside_ip": "192.0.2.10", "vgw_outside_ip": "203.0.113.11", "remote_address": "203.0.113.11",
		"cgw_inside_ip": "169.254.21.46", "vgw_inside_ip": "169.254.21.45", "inside_cidr": "169.254.21.44/30",
		"vpc_cidr": "172.28.0.0/16", "psk": fixturePSKs[0], "ike_version": 1, "ike_mode": "main",
		"ike_proposal": "aes128-sha1-modp1024", "ike_lifetime_s": 28800, "esp_proposal": "aes128-sha1-modp1024",
		"esp_lifetime_s": 3600, "pfs_groups": []any{2}, "dpd_interval_s": 10, "dpd_retries": 3, "mtu": 1436, "mss": 1379,
		"routing": "static",
	}
	for k, v := range want {
		assert.Equal(t, v, out[k], k)
	}
	for _, o := range configOutputs {
		assert.Contains(t, out, o.Name, "declared output %s is set", o.Name)
	}
	assert.Len(t, out, len(configOutputs), "every output is declared")

	// Both tunnels' keys are secrets; none is logged or put in evidence.
	assert.ElementsMatch(t, fixturePSKs, rec.secrets)
	for _, psk := range fixturePSKs {
		assert.NotContains(t, strings.Join(rec.logs, "\n"), psk)
		for _, ev := range env.Evidence() {
			assert.NotContains(t, ev.Text, psk, ev.Title)
			if ev.Table != nil {
				for _, row := range ev.Table.Rows {
					assert.NotContains(t, strings.Join(row, " "), psk)
				}
			}
		}
	}
	ev := env.Evidence()
	require.Len(t, ev, 2)
	assert.Len(t, ev[0].Table.Rows, 2, "both tunnels in the table")
	assert.Contains(t, ev[1].Text, `secret = "***"`)

	// The file holds the key: private, outside the report folder, and gone
	// after the scenario.
	path := out["config_file"].(string)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	assert.False(t, strings.HasPrefix(path, env.Dir), "swanctl.conf is not written to the report folder")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, readTestdata(t, "tunnel1.swanctl.conf"), string(b))
	rec.runUndo(t)
	_, err = os.Stat(filepath.Dir(path))
	assert.True(t, os.IsNotExist(err), "the temporary folder is removed by the undo action")
}

func TestConfigStepOptions(t *testing.T) {
	rec := &recorder{}
	env := rec.env(t, "config")
	c := fixtureConfig()
	c.Tunnel = 2
	c.Name = "corp"
	c.LocalAddress = "10.0.0.5"
	c.RemoteAddress = "10.0.0.6"
	c.Interface = "ens4"
	c.Output = filepath.Join(t.TempDir(), "aws.conf")
	require.NoError(t, c.Validate())
	require.NoError(t, c.Run(context.Background(), env))
	out := env.Outputs()
	assert.Equal(t, c.Output, out["config_file"])
	assert.Equal(t, "corp", out["connection"])
	assert.Equal(t, "198.51.100.12", out["vgw_outside_ip"])
	assert.Equal(t, "10.0.0.6", out["remote_address"])
	assert.Equal(t, fixturePSKs[1], out["psk"])
	assert.Equal(t, []string{"ip addr replace 169.254.117.134/30 dev ens4", "ip route replace 172.28.0.0/16 via 169.254.117.133 dev ens4"}, out["up_commands"])
	assert.Empty(t, rec.undo, "a file written where asked stays")
	st, err := os.Stat(c.Output)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestConfigStepBadFiles(t *testing.T) {
	dir := t.TempDir()
	partial := filepath.Join(dir, "partial.txt")
	fx := readFixture(t)
	require.NoError(t, os.WriteFile(partial, []byte(fx[:strings.Index(fx, "IPSec Tunnel #2")]), 0o644))

	rec := &recorder{}
	c := fixtureConfig()
	c.File = partial
	err := c.Run(context.Background(), rec.env(t, "config"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), partial+":")
	assert.Contains(t, err.Error(), "only tunnel #1 found")
	assert.False(t, steps.IsFailure(err), "a bad file is bad input, not a finding")

	c = fixtureConfig()
	c.File = filepath.Join(dir, "missing.txt")
	err = c.Run(context.Background(), rec.env(t, "config"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "file: open ")

	c = fixtureConfig()
	c.VPCCIDR = "169.254.0.0/16"
	err = c.Run(context.Background(), rec.env(t, "config"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tunnel #1: VPC CIDR 169.254.0.0/16 overlaps")
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{"no file", func(c *Config) { c.File = " " }, "file: required"},
		{"tunnel 3", func(c *Config) { c.Tunnel = 3 }, "tunnel: must be 1 or 2, got 3"},
		{"no vpc", func(c *Config) { c.VPCCIDR = "" }, `vpc_cidr: expected an IPv4 CIDR such as 172.28.0.0/16, got ""`},
		{"host bits", func(c *Config) { c.VPCCIDR = "172.28.16.136/16" }, "vpc_cidr: 172.28.16.136/16 has host bits set; the network is 172.28.0.0/16"},
		{"ipv6 vpc", func(c *Config) { c.VPCCIDR = "fd00::/64" }, "vpc_cidr: expected an IPv4 CIDR"},
		{"bad name", func(c *Config) { c.Name = "my tunnel" }, `name: "my tunnel"`},
		{"bad local", func(c *Config) { c.LocalAddress = "gw.example" }, `local_address: expected an IPv4 address, got "gw.example"`},
		{"bad remote", func(c *Config) { c.RemoteAddress = "::1" }, `remote_address: expected an IPv4 address, got "::1"`},
		{"bad interface", func(c *Config) { c.Interface = "eth0; reboot" }, `interface: "eth0; reboot" is not an interface name`},
	}
	require.NoError(t, fixtureConfig().Validate())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fixtureConfig()
			tt.modify(c)
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestUpDownValidate(t *testing.T) {
	up := func() *Up {
		u := newUp().(*Up)
		u.Config, u.Connection = "/tmp/x.conf", "aws-tunnel-1"
		return u
	}
	require.NoError(t, up().Validate())
	tests := []struct {
		name   string
		modify func(u *Up)
		want   string
	}{
		{"no config", func(u *Up) { u.Config = "" }, "config: required"},
		{"bad connection", func(u *Up) { u.Connection = "a b" }, `connection: "a b"`},
		{"bad child", func(u *Up) { u.Children = []string{"x;y"} }, `children[0]: "x;y"`},
		{"short timeout", func(u *Up) { u.Timeout = 0 }, "timeout: must be at least 1s"},
		{"empty command", func(u *Up) { u.UpCommands = []string{" "} }, "up_commands/down_commands: entry 0 is empty"},
		{"bad host", func(u *Up) { u.Host = "cgw" }, `host: "cgw" is not a host reference`},
		{"bad socket", func(u *Up) { u.Socket = "http://x" }, "socket: \"http://x\": use a path, unix://PATH or tcp://HOST:PORT"},
		{"relative conf_dir", func(u *Up) { u.ConfDir = "conf.d" }, "conf_dir: \"conf.d\" must be an absolute path"},
		{"relative swanctl_conf", func(u *Up) { u.SwanctlConf = "swanctl.conf" }, "swanctl_conf:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := up()
			tt.modify(u)
			err := u.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	d := newDown().(*Down)
	d.Connection = "aws-tunnel-1"
	require.NoError(t, d.Validate())
	d.DownCommands = []string{""}
	assert.ErrorContains(t, d.Validate(), "down_commands[0]: empty command")
	d.DownCommands, d.Timeout = nil, 0
	assert.ErrorContains(t, d.Validate(), "timeout: must be at least 1s")
	d.Timeout, d.Connection = 1e9, ""
	assert.ErrorContains(t, d.Validate(), "connection:")
}

// TestUpWithoutSwanctl runs tunnel.up on this machine, which has no
// strongSwan: the step says what is missing instead of failing a check.
func TestUpWithoutSwanctl(t *testing.T) {
	if _, err := exec.LookPath("swanctl"); err == nil {
		t.Skip("swanctl is installed here")
	}
	rec := &recorder{}
	env := rec.env(t, "up")
	u := newUp().(*Up)
	u.Config, u.Connection = "../steps/vpn/testdata/tunnel1.swanctl.conf", "aws-tunnel-1"
	require.NoError(t, u.Validate())
	err := u.Run(context.Background(), env)
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err))
	assert.Contains(t, err.Error(), "swanctl is not installed on this machine (strongswan-swanctl)")
	assert.Empty(t, rec.undo, "nothing changed, nothing to undo")
}
