package totp

import (
	"bytes"
	"context"
	"encoding/hex"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pquerna/otp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

func TestGenerateKey(t *testing.T) {
	step := newGenerateKey().(*GenerateKey)
	step.Issuer, step.Account = "ACME VPN", "alice@example.com"
	step.random = bytes.NewReader([]byte(rfcSeeds["SHA1"]))
	require.NoError(t, step.Validate())
	env, rec := newEnv(t)
	require.NoError(t, step.Run(context.Background(), env))
	out := env.Outputs()

	assert.Equal(t, "3132333435363738393031323334353637383930", out["hex"])
	assert.Equal(t, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", out["base32"])
	assert.Equal(t, "ACME VPN", out["issuer"])
	assert.Equal(t, "alice@example.com", out["account"])
	assert.Equal(t, 6, out["digits"])
	assert.Equal(t, 30, out["period"])
	assert.Equal(t, "SHA1", out["algorithm"])

	// The URI is what FreeOTP and Google Authenticator import.
	uri := out["uri"].(string)
	assert.True(t, strings.HasPrefix(uri, "otpauth://totp/ACME%20VPN:alice@example.com?"), uri)
	key, err := otp.NewKeyFromURL(uri)
	require.NoError(t, err)
	assert.Equal(t, "totp", key.Type())
	assert.Equal(t, "ACME VPN", key.Issuer())
	assert.Equal(t, "alice@example.com", key.AccountName())
	assert.Equal(t, out["base32"], key.Secret())
	assert.Equal(t, uint64(30), key.Period())
	assert.Equal(t, otp.DigitsSix, key.Digits())
	assert.Equal(t, otp.AlgorithmSHA1, key.Algorithm())

	for _, s := range []string{"hex", "base32", "uri"} {
		assert.Contains(t, rec.secrets, out[s], "%s is declared secret", s)
	}
	assertNoLeak(t, env, rec, nil)

	// The QR code is a PNG in the report folder, readable by its owner only,
	// and hidden from reports by default.
	rel := out["qr_png"].(string)
	require.NotEmpty(t, rel)
	abs := filepath.Join(env.Dir, filepath.FromSlash(rel))
	info, err := os.Stat(abs)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	f, err := os.Open(abs)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.InDelta(t, qrPixels, img.Bounds().Dx(), qrPixels/2, "about qr_pixels a side")
	assert.Equal(t, img.Bounds().Dx(), img.Bounds().Dy())

	ev := evidenceByKind(env.Evidence(), "image")
	require.Len(t, ev, 1)
	assert.Equal(t, rel, ev[0].Path)
	assert.False(t, ev[0].Show, "the QR code is shown only when the scenario opts in")

	tables := evidenceByKind(env.Evidence(), "table")
	require.Len(t, tables, 1)
	assert.Equal(t, "FreeOTP manual entry", tables[0].Title)
}

func TestGenerateKeyOptions(t *testing.T) {
	t.Run("show_qr", func(t *testing.T) {
		step := &GenerateKey{Issuer: "i", Account: "a", Bytes: 32, QR: true, ShowQR: true,
			Format: Format{Digits: 8, Period: 60, Algorithm: "SHA256"}}
		env, _ := newEnv(t)
		require.NoError(t, step.Run(context.Background(), env))
		ev := evidenceByKind(env.Evidence(), "image")
		require.Len(t, ev, 1)
		assert.True(t, ev[0].Show)
		key, err := otp.NewKeyFromURL(env.Outputs()["uri"].(string))
		require.NoError(t, err)
		assert.Equal(t, otp.DigitsEight, key.Digits())
		assert.Equal(t, uint64(60), key.Period())
		assert.Equal(t, otp.AlgorithmSHA256, key.Algorithm())
		assert.Len(t, env.Outputs()["hex"], 64)
	})
	t.Run("no qr", func(t *testing.T) {
		step := &GenerateKey{Issuer: "i", Account: "a", Bytes: 20}
		env, _ := newEnv(t)
		require.NoError(t, step.Run(context.Background(), env))
		assert.Equal(t, "", env.Outputs()["qr_png"])
		assert.Empty(t, evidenceByKind(env.Evidence(), "image"))
		_, err := os.Stat(filepath.Join(env.Dir, "artifacts"))
		assert.True(t, os.IsNotExist(err), "nothing is written")
	})
	t.Run("two keys differ", func(t *testing.T) {
		var keys []any
		for range 2 {
			step := &GenerateKey{Issuer: "i", Account: "a", Bytes: 16}
			env, _ := newEnv(t)
			require.NoError(t, step.Run(context.Background(), env))
			keys = append(keys, env.Outputs()["hex"])
		}
		assert.NotEqual(t, keys[0], keys[1])
	})
}

func TestGenerateKeyValidate(t *testing.T) {
	valid := func() *GenerateKey { return &GenerateKey{Issuer: "ACME", Account: "alice", Bytes: 20, QR: true} }
	cases := []struct {
		name   string
		modify func(g *GenerateKey)
		want   string
	}{
		{"weak key", func(g *GenerateKey) { g.Bytes = 10 }, "bytes: must be at least 16 (128 bits, RFC 4226 R6; 20 recommended), got 10"},
		{"too long", func(g *GenerateKey) { g.Bytes = 65 }, "bytes: must be at most 64 (longer HMAC keys are hashed down), got 65"},
		{"no issuer", func(g *GenerateKey) { g.Issuer = " " }, "issuer: required"},
		{"no account", func(g *GenerateKey) { g.Account = "" }, "account: required"},
		{"colon in issuer", func(g *GenerateKey) { g.Issuer = "a:b" }, `issuer: must not contain ':' (it separates issuer and account in the key URI), got "a:b"`},
		{"digits", func(g *GenerateKey) { g.Digits = 9 }, "digits: must be 6, 7 or 8, got 9"},
		{"algorithm", func(g *GenerateKey) { g.Algorithm = "MD5" }, `algorithm: must be SHA1, SHA256 or SHA512, got "MD5"`},
		{"show_qr without qr", func(g *GenerateKey) { g.QR, g.ShowQR = false, true }, "show_qr: needs qr: true"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := valid()
			tc.modify(g)
			assert.EqualError(t, g.Validate(), tc.want)
		})
	}
	assert.NoError(t, valid().Validate())
}

// TestGenerateKeyWithOathtool follows the runbook: the hex key given to
// oathtool and the base32 key given to FreeOTP yield the same code, and
// oathtool --verbose prints the same base32 secret.
func TestGenerateKeyWithOathtool(t *testing.T) {
	oathtool := requireOathtool(t)
	step := &GenerateKey{Issuer: "ACME", Account: "alice", Bytes: 20}
	env, _ := newEnv(t)
	require.NoError(t, step.Run(context.Background(), env))
	out := env.Outputs()

	verbose, err := exec.Command(oathtool, "--totp", "--verbose", "-N", "@1502923560", out["hex"].(string)).Output()
	require.NoError(t, err)
	assert.Contains(t, string(verbose), "Base32 secret: "+out["base32"].(string))

	code := &Code{Key: Key{Secret: out["base32"].(string), At: "2017-08-16 22:46:00"}}
	cenv, _ := newEnv(t)
	require.NoError(t, code.Run(context.Background(), cenv))
	lines := strings.Fields(string(verbose))
	assert.Equal(t, lines[len(lines)-1], cenv.Outputs()["code"])

	raw, err := hex.DecodeString(out["hex"].(string))
	require.NoError(t, err)
	assert.Len(t, raw, 20)
}

func evidenceByKind(evs []steps.Evidence, kind string) []steps.Evidence {
	var out []steps.Evidence
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}
