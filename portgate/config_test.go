package portgate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate/firewall"
)

// testSecret is RFC 6238's SHA1 test key, in base32.
const testSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

const minimalConfig = `
ports: [22]
users:
  - name: alice
    secret: ` + testSecret + `
`

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig(strings.NewReader(minimalConfig), "")
	require.NoError(t, err)
	assert.Equal(t, ":8443", c.Listen)
	assert.Equal(t, 5*time.Minute, c.Lease.Default)
	assert.Equal(t, time.Hour, c.Lease.Max)
	assert.Equal(t, 1, *c.TOTP.Window, "window is one step by default")
	assert.Equal(t, "keep", c.OnShutdown)
	assert.Equal(t, "nftables", c.Firewall.Backend)
	require.Len(t, c.users, 1)
	assert.Equal(t, 6, c.users[0].Key.Digits())
	assert.Empty(t, c.userPolicy["alice"].Secret, "key material is not kept in the policy")
}

func TestParseConfigFull(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bob.key"), []byte("3132333435363738393031323334353637383930\n"), 0o600))
	c, err := ParseConfig(strings.NewReader(`
listen: "127.0.0.1:9443"
tls: {cert: /etc/portgate/tls.crt, key: /etc/portgate/tls.key}
state_file: /tmp/x/state.json
audit_log: "-"
ports: [3389, 22]
lease: {default: 2m, min: 1s, max: 10m}
totp: {window: 0}
lockout: {max_failures: 3, base: 10s, max: 1m, reset_after: 5m}
on_shutdown: close
firewall:
  backend: iptables
  keep_established: false
  iptables: {chain: GATE, ipv6: false, kernel_expiry: true}
  nftables: {table: gate, priority: -10, mark: 0x100}
admin_token_sha256: ["`+strings.Repeat("ab", 32)+`"]
users:
  - {name: alice, secret: "`+strings.ToLower(testSecret)+`", digits: 8, period: 60s, algorithm: SHA256, ports: [22]}
  - {name: bob, secret_hex_file: bob.key, stated_ip: true, stated_ip_ranges: [192.0.2.0/24], max_lease: 1m}
`), dir)
	require.NoError(t, err)
	assert.Equal(t, []firewall.Port{{Proto: "tcp", Num: 22}, {Proto: "tcp", Num: 3389}}, c.Ports)
	assert.Equal(t, 0, *c.TOTP.Window)
	assert.Equal(t, uint32(0x100), *c.Firewall.NFTables.Mark)
	assert.Equal(t, 8, c.users[0].Key.Digits())
	assert.Equal(t, time.Minute, c.users[0].Key.Period())
	assert.True(t, c.userPolicy["bob"].StatedIP)
	assert.Len(t, c.adminHashes, 1)
	p := c.Policy()
	assert.Equal(t, 3, p.MaxFailures)
}

func TestParseConfigErrorsNameTheField(t *testing.T) {
	user := "users:\n  - {name: alice, secret: " + testSecret + "}\n"
	cases := map[string]struct{ yaml, want string }{
		"unknown field":     {"ports: [22]\nport: 22\n" + user, "field port not found"},
		"no ports":          {user, "ports: list at least one port"},
		"port zero":         {"ports: [0]\n" + user, `line 1: port "0": expected a port 1 to 65535`},
		"port dup":          {"ports: [22, 22/tcp]\n" + user, "ports[1]: 22/tcp is listed twice"},
		"port range":        {"ports: [70000]\n" + user, `line 1: port "70000": expected a port 1 to 65535`},
		"port proto":        {"ports: [22/sctp]\n" + user, `line 1: port "22/sctp": the protocol must be tcp or udp`},
		"no users":          {"ports: [22]\n", "users: configure at least one user"},
		"bad name":          {"ports: [22]\nusers:\n  - {name: 'a b', secret: " + testSecret + "}\n", "users[0].name"},
		"dup name":          {"ports: [22]\n" + user + "  - {name: alice, secret: " + testSecret + "}\n", "users[1].name: \"alice\" is configured twice"},
		"two secrets":       {"ports: [22]\nusers:\n  - {name: a, secret: " + testSecret + ", secret_hex: '00'}\n", "users[0] (a).secret: set exactly one"},
		"no secret":         {"ports: [22]\nusers:\n  - {name: a}\n", "users[0] (a).secret: set exactly one"},
		"short secret":      {"ports: [22]\nusers:\n  - {name: a, secret: GEZDGNBV}\n", "users[0] (a).secret: must be at least 16 bytes"},
		"bad base32":        {"ports: [22]\nusers:\n  - {name: a, secret: 'NOT-BASE32!'}\n", "users[0] (a).secret: not valid base32"},
		"missing file":      {"ports: [22]\nusers:\n  - {name: a, secret_file: /nonexistent/key}\n", "users[0] (a).secret_file:"},
		"digits":            {"ports: [22]\nusers:\n  - {name: a, secret: " + testSecret + ", digits: 4}\n", "users[0] (a).digits: must be 6, 7 or 8"},
		"user port":         {"ports: [22]\nusers:\n  - {name: a, secret: " + testSecret + ", ports: [80]}\n", "users[0] (a).ports[0]: 80/tcp is not in the allow-list"},
		"ranges w/o stated": {"ports: [22]\nusers:\n  - {name: a, secret: " + testSecret + ", stated_ip_ranges: [10.0.0.0/8]}\n", "stated_ip_ranges: needs stated_ip: true"},
		"window":            {"ports: [22]\ntotp: {window: 4}\n" + user, "totp.window: must be 0 to 3"},
		"lease order":       {"ports: [22]\nlease: {min: 1m, max: 30s}\n" + user, "lease.max: 30s is below lease.min 1m0s"},
		"lease default":     {"ports: [22]\nlease: {default: 2h}\n" + user, "lease.default: 2h0m0s is outside"},
		"lease min":         {"ports: [22]\nlease: {min: 100ms}\n" + user, "lease.min: must be at least 1s"},
		"shutdown":          {"ports: [22]\non_shutdown: maybe\n" + user, `on_shutdown: must be keep or close, got "maybe"`},
		"backend":           {"ports: [22]\nfirewall: {backend: pf}\n" + user, `firewall.backend: must be nftables or iptables, got "pf"`},
		"tls half":          {"ports: [22]\ntls: {cert: a.pem}\n" + user, "tls: give both cert and key"},
		"listen":            {"ports: [22]\nlisten: nowhere\n" + user, "listen:"},
		"admin hash":        {"ports: [22]\nadmin_token_sha256: [abc]\n" + user, "admin_token_sha256[0]: must be 64 hex digits"},
		"fixed hash":        {"ports: [22]\nfixed_password: {sha256: nothex, port: 22}\n", "fixed_password.sha256: must be 64 hex digits"},
		"fixed port":        {"ports: [22]\nfixed_password: {sha256: " + strings.Repeat("0", 64) + ", port: 23}\n", "fixed_password.port: 23 is not in the allow-list"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(c.yaml), "")
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), testSecret, "never quote a key")
		})
	}
}

func TestLoadConfigRelativeSecretFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alice.b32"), []byte(testSecret+"\n"), 0o600))
	p := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(p, []byte("ports: [22]\nusers:\n  - {name: alice, secret_file: alice.b32}\n"), 0o600))
	c, err := LoadConfig(p)
	require.NoError(t, err)
	assert.Len(t, c.users, 1)
	_, err = LoadConfig(filepath.Join(dir, "missing.yaml"))
	assert.Error(t, err)
}

func TestCheckPerms(t *testing.T) {
	for _, c := range []struct {
		name        string
		config      string
		configMode  os.FileMode
		keyMode     os.FileMode
		wantProblem string
	}{
		{"inline key, private", "users:\n  - {name: alice, secret: " + testSecret + "}\n", 0o600, 0o600, ""},
		{"inline key, world readable", "users:\n  - {name: alice, secret: " + testSecret + "}\n", 0o644, 0o600, "config.yaml holds key material and has mode 0644"},
		{"key file elsewhere, config may be read", "users:\n  - {name: alice, secret_file: alice.b32}\n", 0o644, 0o600, ""},
		{"key file group readable", "users:\n  - {name: alice, secret_file: alice.b32}\n", 0o600, 0o640, "alice.b32 holds key material and has mode 0640"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			key := filepath.Join(dir, "alice.b32")
			require.NoError(t, os.WriteFile(key, []byte(testSecret+"\n"), 0o600))
			require.NoError(t, os.Chmod(key, c.keyMode))
			p := filepath.Join(dir, "config.yaml")
			require.NoError(t, os.WriteFile(p, []byte("ports: [22]\n"+c.config), 0o600))
			require.NoError(t, os.Chmod(p, c.configMode))
			cfg, err := LoadConfig(p)
			require.NoError(t, err)
			err = cfg.CheckPerms()
			if c.wantProblem == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.wantProblem)
			assert.NotContains(t, err.Error(), testSecret)
		})
	}
}

func TestPasswordHashConfig(t *testing.T) {
	_, err := ParseConfig(strings.NewReader(minimalConfig+"    password_hash: plain-text\n"), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "users[0] (alice).password_hash: expected an argon2id hash")
	assert.NotContains(t, err.Error(), "plain-text", "the value is never quoted")
}

func TestPortsWithProtocols(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("ports: [3389/udp, 22, 3389/TCP]\nusers:\n  - {name: a, secret: "+testSecret+", ports: [3389/udp]}\n"), "")
	require.NoError(t, err)
	assert.Equal(t, []firewall.Port{{Proto: "tcp", Num: 22}, {Proto: "tcp", Num: 3389}, {Proto: "udp", Num: 3389}}, c.Ports)
	for _, x := range []struct {
		port  uint16
		proto string
		want  firewall.Port
		ok    bool
	}{
		{22, "", firewall.Port{Proto: "tcp", Num: 22}, true},
		{22, "udp", firewall.Port{}, false},
		{3389, "", firewall.Port{Proto: "tcp", Num: 3389}, true},
		{3389, "udp", firewall.Port{Proto: "udp", Num: 3389}, true},
		{80, "", firewall.Port{}, false},
	} {
		got, ok := c.Allowed(x.port, x.proto)
		assert.Equal(t, x.ok, ok, "%d/%s", x.port, x.proto)
		assert.Equal(t, x.want, got)
	}
}

func TestForwardConfig(t *testing.T) {
	user := "users:\n  - {name: a, secret: " + testSecret + "}\n"
	c, err := ParseConfig(strings.NewReader("ports: [22, 3389, 3389/udp]\nforward:\n  - {port: 3389, to: 10.0.5.2:3389}\n  - {port: 3389/udp, to: 10.0.5.2:3389}\n"+user), "")
	require.NoError(t, err)
	require.Len(t, c.Firewall.Forward, 2, "handed to the firewall")
	assert.Equal(t, firewall.Port{Proto: "udp", Num: 3389}, c.Firewall.Forward[1].Port)
	c, err = ParseConfig(strings.NewReader("ports: [3389]\nfirewall: {backend: iptables}\nforward: [{port: 3389, to: 10.0.5.2:3389}]\n"+user), "")
	require.NoError(t, err, "the iptables backend forwards too")
	assert.Len(t, c.Firewall.Forward, 1)
	for _, x := range []struct{ yaml, want string }{
		{"ports: [22]\nforward: [{port: 3389, to: 10.0.5.2:3389}]\n", "forward[0].port: 3389/tcp is not in the allow-list"},
		{"ports: [3389]\nforward: [{port: 3389, to: 10.0.5.2}]\n", `line 2: forward to: "10.0.5.2" is not ADDRESS:PORT`},
		{"ports: [3389]\nforward: [{port: 3389, to: '[fd00::1]:3389'}]\n", "forward[0].to: an IPv4 address and port"},
		{"ports: [3389]\nforward: [{port: 3389, to: 10.0.5.2:3389}, {port: 3389, to: 10.0.5.3:3389}]\n", "forward[1].port: 3389/tcp is forwarded twice"},
		{"ports: [3389]\nfirewall: {backend: iptables, iptables: {chain: ABCDEFGHIJKLMNOPQRSTUVWXY}}\nforward: [{port: 3389, to: 10.0.5.2:3389}]\n", "firewall.iptables.chain: \"ABCDEFGHIJKLMNOPQRSTUVWXY\": at most 24 characters with forward:"},
	} {
		_, err := ParseConfig(strings.NewReader(x.yaml+user), "")
		require.Error(t, err, x.yaml)
		assert.Contains(t, err.Error(), x.want)
	}
}
