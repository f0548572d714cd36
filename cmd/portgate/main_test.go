package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate"
	"github.com/opsdrill/opsdrill/portgate/auth"
	"github.com/opsdrill/opsdrill/portgate/firewall"
)

// TestExampleConfig: the example configuration is valid once its key
// files exist.
func TestExampleConfig(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("config.example.yaml")
	require.NoError(t, err)
	cfg := strings.ReplaceAll(string(b), "/etc/portgate/keys/", dir+"/")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alice.b32"), []byte("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bob.hex"), []byte("3132333435363738393031323334353637383930\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "carol.b32"), []byte("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"), 0o600))
	c, err := portgate.ParseConfig(strings.NewReader(cfg), dir)
	require.NoError(t, err)
	assert.Equal(t, []firewall.Port{{Proto: "tcp", Num: 22}, {Proto: "tcp", Num: 3389}, {Proto: "udp", Num: 3389}}, c.Ports)
}

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("ports: [22]\nusers:\n  - {name: alice, secret: GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ}\n"), 0o600))
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, "usage: portgate"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"argument", []string{"extra"}, 2, `unexpected argument "extra"`},
		{"missing config", []string{"--config", filepath.Join(dir, "none.yaml"), "--check"}, 2, "config:"},
		{"no tls", []string{"--config", good, "--check"}, 2, "plain HTTP only with --insecure-plain-http"},
		{"half tls", []string{"--config", good, "--tls-cert", "a.pem", "--check"}, 2, "give both a certificate and a key"},
		{"bad tls", []string{"--config", good, "--tls-cert", "a.pem", "--tls-key", "b.pem", "--check"}, 2, "TLS:"},
		{"plain ok", []string{"--config", good, "--insecure-plain-http", "--check"}, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			assert.Equal(t, c.code, run(c.args, &stderr), stderr.String())
			assert.Contains(t, stderr.String(), c.want)
		})
	}
}

func TestInsecurePermsRefused(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "open.yaml")
	require.NoError(t, os.WriteFile(p, []byte("ports: [22]\nusers:\n  - {name: alice, secret: GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ}\n"), 0o600))
	require.NoError(t, os.Chmod(p, 0o644))
	var stderr bytes.Buffer
	assert.Equal(t, 2, run([]string{"--config", p, "--insecure-plain-http", "--check"}, &stderr))
	assert.Contains(t, stderr.String(), "refusing to start")
	assert.Contains(t, stderr.String(), "mode 0644")
	stderr.Reset()
	assert.Equal(t, 0, run([]string{"--config", p, "--insecure-plain-http", "--check", "--insecure-perms"}, &stderr), stderr.String())
	assert.Contains(t, stderr.String(), "INSECURE PERMISSIONS")
}

func TestHashPassword(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, hashPassword(nil, strings.NewReader("correct horse battery\n"), &out, &errb), errb.String())
	h := strings.TrimSpace(out.String())
	ph, err := auth.ParsePasswordHash(h)
	require.NoError(t, err)
	assert.True(t, ph.Verify("correct horse battery"))
	assert.NotContains(t, h, "correct horse")
	out.Reset()
	assert.Equal(t, 2, hashPassword([]string{"pw"}, strings.NewReader(""), &out, &errb), "never from arguments")
	assert.Equal(t, 2, hashPassword(nil, strings.NewReader("short\n"), &out, &errb))
	assert.Empty(t, out.String())
}
