package reports

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func folder(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "artifacts", "s"), 0o755))
	for name, content := range map[string]string{
		"report.json": `{"version":1}`, "junit.xml": "<testsuites/>", "artifacts/s/oplog.jsonl": "{}\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return dir
}

func TestManifestDetectsTampering(t *testing.T) {
	privPEM, pubPEM, err := GenerateKey()
	require.NoError(t, err)
	priv, err := ParsePrivateKey(privPEM)
	require.NoError(t, err)
	pub, err := ParsePublicKey(pubPEM)
	require.NoError(t, err)
	_, otherPEM, err := GenerateKey()
	require.NoError(t, err)
	other, err := ParsePublicKey(otherPEM)
	require.NoError(t, err)

	cases := []struct {
		name   string
		tamper func(dir string)
		pub    []byte
		want   []string
	}{
		{"intact", func(string) {}, nil, nil},
		{"intact and signed", func(string) {}, pub, nil},
		{"changed", func(d string) { os.WriteFile(filepath.Join(d, "report.json"), []byte(`{"version":2}`), 0o644) }, nil, []string{"changed: report.json"}},
		{"added", func(d string) { os.WriteFile(filepath.Join(d, "artifacts", "extra.txt"), []byte("x"), 0o644) }, nil, []string{"added: artifacts/extra.txt"}},
		{"removed", func(d string) { os.Remove(filepath.Join(d, "artifacts", "s", "oplog.jsonl")) }, nil, []string{"removed: artifacts/s/oplog.jsonl"}},
		{"manifest edited to match", func(d string) {
			os.WriteFile(filepath.Join(d, "report.json"), []byte(`{"version":2}`), 0o644)
			WriteManifest(d, "r", nil) // an attacker without the key
			os.WriteFile(filepath.Join(d, SignatureName), []byte("AAAA\n"), 0o644)
		}, pub, []string{"signature: does not match manifest.json for this key"}},
		{"wrong key", func(string) {}, other, []string{"signature: does not match manifest.json for this key"}},
		{"signature removed", func(d string) { os.Remove(filepath.Join(d, SignatureName)) }, pub, []string{"signature: manifest.sig is missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := folder(t)
			require.NoError(t, WriteManifest(dir, "r", priv))
			tc.tamper(dir)
			var key []byte
			if tc.pub != nil {
				key = tc.pub
			}
			v, err := VerifyManifest(dir, key)
			require.NoError(t, err)
			assert.Equal(t, tc.want, v.Problems())
			assert.Equal(t, len(tc.want) == 0, v.OK())
		})
	}
}

func TestManifestRefusesLinks(t *testing.T) {
	dir := folder(t)
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "link")))
	_, err := BuildManifest(dir, "r")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "link: not a regular file")
}

func TestParseKeysRejectsOtherPEM(t *testing.T) {
	_, err := ParsePrivateKey([]byte("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n"))
	assert.Error(t, err)
	_, err = ParsePublicKey([]byte("not pem"))
	assert.Error(t, err)
}
