package redact

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactsEveryEncoding(t *testing.T) {
	secrets := []string{"hunter2-secret", "p@ss w0rd/+?&=", "JBSWY3DPEHPK3PXP", "ab\x00\xffcd"}
	encoders := map[string]func(string) string{
		"raw":           func(s string) string { return s },
		"base64":        func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64-raw":    func(s string) string { return base64.RawStdEncoding.EncodeToString([]byte(s)) },
		"base64url":     func(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) },
		"base64url-raw": func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) },
		"hex":           func(s string) string { return hex.EncodeToString([]byte(s)) },
		"HEX":           func(s string) string { return strings.ToUpper(hex.EncodeToString([]byte(s))) },
		"query":         url.QueryEscape,
		"path":          url.PathEscape,
		// A secret inside a longer base64 value, at each alignment: the
		// HTTP Basic header case.
		"basic-auth-0": func(s string) string { return base64.StdEncoding.EncodeToString([]byte("admin:" + s)) },
		"basic-auth-1": func(s string) string { return base64.StdEncoding.EncodeToString([]byte("admin1:" + s + "!")) },
		"basic-auth-2": func(s string) string { return base64.StdEncoding.EncodeToString([]byte("admin12:" + s + "!!")) },
	}
	for _, secret := range secrets {
		var r Redactor
		r.Add(secret)
		for name, enc := range encoders {
			t.Run(name, func(t *testing.T) {
				encoded := enc(secret)
				text := "before " + encoded + " after"
				out := r.String(text)
				assert.NotContains(t, out, encoded, "encoded secret survived")
				assert.Contains(t, out, Mask)
				assert.False(t, r.Contains(out), "Contains still finds a form in %q", out)
				assert.True(t, strings.HasPrefix(out, "before "), "text around the secret is kept: %q", out)
			})
		}
	}
}

func TestLeavesOtherTextAlone(t *testing.T) {
	var r Redactor
	r.Add("s3cr3t-value")
	in := "nothing to hide here: 42 rows, status ok"
	assert.Equal(t, in, r.String(in))
	assert.False(t, r.Contains(in))
}

func TestShortValuesAreNotSecrets(t *testing.T) {
	var r Redactor
	r.Add("ab", "")
	assert.Equal(t, 0, r.Len())
	assert.False(t, Acceptable("ab"))
	assert.True(t, Acceptable("abc"))
}

func TestValueWalksStructures(t *testing.T) {
	var r Redactor
	r.Add("topsecret")
	in := map[string]any{
		"dsn":   "admin:topsecret@tcp(db:3306)/x",
		"list":  []any{"a", "topsecret", 3},
		"strs":  []string{"x", "dG9wc2VjcmV0"},
		"num":   7,
		"inner": map[string]string{"k": "topsecret"},
	}
	out := r.Value(in).(map[string]any)
	require.Equal(t, "admin:***@tcp(db:3306)/x", out["dsn"])
	require.Equal(t, []any{"a", "***", 3}, out["list"])
	require.Equal(t, []string{"x", "***"}, out["strs"])
	require.Equal(t, 7, out["num"])
	require.Equal(t, map[string]string{"k": "***"}, out["inner"])
	// The input is not modified.
	require.Equal(t, "topsecret", in["inner"].(map[string]string)["k"])
}

func TestConcurrentAddAndRedact(t *testing.T) {
	var r Redactor
	done := make(chan struct{})
	go func() {
		for i := 0; i < 200; i++ {
			r.Add(strings.Repeat("x", 3) + string(rune('a'+i%26)) + "secret")
		}
		close(done)
	}()
	for i := 0; i < 200; i++ {
		_ = r.String("xxxasecret and more")
	}
	<-done
	assert.Equal(t, "*** and more", r.String("xxxasecret and more"))
}
