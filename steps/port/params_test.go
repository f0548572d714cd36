package port

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

const rfcSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // RFC 6238's SHA1 key

func newOpen(mod func(o *Open)) *Open {
	spec, _ := steps.Lookup("port.open")
	o := spec.New().(*Open)
	o.URL = "https://gate.example.internal:8443"
	o.User = "drill"
	o.Secret = rfcSecret
	o.Port = 22
	if mod != nil {
		mod(o)
	}
	return o
}

func TestOpenValidate(t *testing.T) {
	// fw turns the defaults into an fwknop request, then applies mod.
	fw := func(mod func(o *Open)) func(o *Open) {
		return func(o *Open) {
			o.Driver, o.URL, o.Secret, o.KeyFile = "fwknop", "spa://10.0.0.1", "", "/etc/fwknop/drill.rc"
			if mod != nil {
				mod(o)
			}
		}
	}
	cases := []struct {
		name string
		mod  func(o *Open)
		want string // "" = valid
	}{
		{"defaults", nil, ""},
		{"hex key", func(o *Open) { o.Secret, o.SecretHex = "", "3132333435363738393031323334353637383930" }, ""},
		{"explicit code", func(o *Open) { o.Secret, o.Code = "", "123456" }, ""},
		{"lab host", func(o *Open) { o.Host, o.CACert = "lab:pgclient1", "/etc/portgate/ca.pem" }, ""},
		{"form", func(o *Open) {
			o.Mode, o.User, o.Secret, o.Password, o.SuccessMatch, o.Fields = "form", "", "", "randompassword123", "lime", map[string]string{"submit": "Open Port"}
		}, ""},
		{"no url", func(o *Open) { o.URL = "" }, "url: expected an absolute http(s) URL"},
		{"ftp url", func(o *Open) { o.URL = "ftp://gate/" }, "url:"},
		{"url credentials", func(o *Open) { o.URL = "https://u:p@gate/" }, "url:"},
		{"mode", func(o *Open) { o.Mode = "knock" }, `mode: must be portgate, form or fwknop, got "knock"`},
		{"fwknop", fw(nil), ""},
		{"fwknop replay", fw(func(o *Open) { o.KeyFile, o.Code = "", strings.Repeat("QUJD", 20) }), ""},
		{"fwknop wrong keys", fw(func(o *Open) { o.KeyFile, o.WrongCreds = "", true }), ""},
		{"fwknop mode", func(o *Open) { fw(nil)(o); o.Driver, o.Mode = "", "fwknop" }, ""},
		{"driver and mode", func(o *Open) { o.Driver, o.Mode = "fwknop", "form" }, `driver, mode: "fwknop" and "form" disagree`},
		{"fwknop url", fw(func(o *Open) { o.URL = "https://gate:8443" }), "url: with driver: fwknop, expected spa://GATE[:PORT]"},
		{"fwknop no key file", fw(func(o *Open) { o.KeyFile = "" }), "key_file: required with driver: fwknop"},
		{"fwknop totp key", fw(func(o *Open) { o.Secret = rfcSecret }), "secret: not with driver: fwknop"},
		{"fwknop udp", fw(func(o *Open) { o.Proto = "udp" }), "proto: udp: fwknopd answers nothing"},
		{"fwknop bad packet", fw(func(o *Open) { o.KeyFile, o.Code = "", "123456" }), "code: with driver: fwknop, an SPA packet"},
		{"fwknop attempts", fw(func(o *Open) { o.KeyFile, o.WrongCreds, o.Attempts, o.Expect = "", true, 3, "refused" }), "attempts: not with driver: fwknop"},
		{"key file for portgate", func(o *Open) { o.KeyFile = "x" }, "key_file: only with driver: fwknop"},
		{"attempts", func(o *Open) { o.Attempts = 3 }, "attempts: only with wrong_credentials and expect: refused"},
		{"guessing", func(o *Open) { o.WrongCreds, o.Attempts, o.Expect = true, 12, "refused" }, ""},
		{"proto", func(o *Open) { o.Proto = "icmp" }, `proto: must be tcp or udp, got "icmp"`},
		{"no user", func(o *Open) { o.User = "" }, "user: required with mode: portgate"},
		{"no port", func(o *Open) { o.Port = 0 }, "port: required with mode: portgate"},
		{"port range", func(o *Open) { o.Port = 70000 }, "port: must be 1 to 65535, got 70000"},
		{"no key", func(o *Open) { o.Secret = "" }, "secret: required (or secret_hex, or code)"},
		{"two keys", func(o *Open) { o.SecretHex = "00" }, "secret, secret_hex, code: give one"},
		{"bad base32", func(o *Open) { o.Secret = "NOT BASE 32 1!" }, "secret: not valid base32"},
		{"bad hex", func(o *Open) { o.Secret, o.SecretHex = "", "zz" }, "secret_hex: not valid hex"},
		{"bad code", func(o *Open) { o.Secret, o.Code = "", "12ab56" }, "code: must be 6 to 8 digits"},
		{"offset with code", func(o *Open) { o.Secret, o.Code, o.OffsetSteps = "", "123456", 3 }, "offset_steps: only with secret"},
		{"digits", func(o *Open) { o.Digits = 5 }, "digits: must be 6, 7 or 8, got 5"},
		{"algorithm", func(o *Open) { o.Algorithm = "MD5" }, `algorithm: must be SHA1, SHA256 or SHA512, got "MD5"`},
		{"duration", func(o *Open) { o.Duration = 1500 * time.Millisecond }, "duration: must be a whole number of seconds"},
		{"ip", func(o *Open) { o.IP = "10.0.0.0/8" }, `ip: "10.0.0.0/8" is not an IP address`},
		{"source", func(o *Open) { o.Source = "eth0" }, `source: "eth0" is not an IP address`},
		{"expect", func(o *Open) { o.Expect = "closed" }, `expect: must be opened, refused or any, got "closed"`},
		{"timeout", func(o *Open) { o.Timeout = 0 }, "timeout: must be positive"},
		{"host", func(o *Open) { o.Host = "pgclient1" }, `host: "pgclient1" is not a host reference`},
		{"tls both", func(o *Open) { o.CACert, o.InsecureTLS = "ca.pem", true }, "ca_cert, insecure_tls: give one, not both"},
		{"form without password", func(o *Open) { o.Mode, o.User, o.Secret = "form", "", "" }, "password: required with mode: form"},
		{"form with key", func(o *Open) { o.Mode, o.User, o.Password = "form", "", "p" }, "secret: only with mode: portgate"},
		{"form field name", func(o *Open) { o.Mode, o.User, o.Secret, o.Password, o.PasswordField = "form", "", "", "p", "p w" }, `password_field: "p w" is not a form field name`},
		{"form regexp", func(o *Open) { o.Mode, o.User, o.Secret, o.Password, o.SuccessMatch = "form", "", "", "p", "(" }, "success_match:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := newOpen(c.mod).Validate()
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), rfcSecret, "a key is never quoted")
		})
	}
}

func TestCloseValidate(t *testing.T) {
	base := func(mod func(c *Close)) *Close {
		spec, _ := steps.Lookup("port.close")
		c := spec.New().(*Close)
		c.URL, c.LeaseID, c.Token = "https://gate:8443", "pg-0123456789abcdef", "tok"
		if mod != nil {
			mod(c)
		}
		return c
	}
	for _, c := range []struct {
		name string
		mod  func(c *Close)
		want string
	}{
		{"token", nil, ""},
		{"user", func(c *Close) { c.Token, c.User, c.Secret = "", "drill", rfcSecret }, ""},
		{"no credentials", func(c *Close) { c.Token = "" }, "token: required"},
		{"both", func(c *Close) { c.User = "drill" }, "token, user: give a token or user credentials, not both"},
		{"user without key", func(c *Close) { c.Token, c.User = "", "drill" }, "secret: required"},
		{"key without user", func(c *Close) { c.Secret = rfcSecret }, "secret, code, password: only with user"},
		{"lease id", func(c *Close) { c.LeaseID = "../admin" }, `lease_id: "../admin" is not a lease id`},
		{"expect", func(c *Close) { c.Expect = "opened" }, "expect: must be closed or any"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := base(c.mod).Validate()
			if c.want == "" {
				require.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, c.want)
		})
	}
}

// TestCodes checks code computation against RFC 6238 (SHA1, 8 digits),
// and the other spellings of the key.
func TestCodes(t *testing.T) {
	tp := TOTP{Secret: rfcSecret, Digits: 8}
	for unix, want := range map[int64]string{59: "94287082", 1111111109: "07081804", 2000000000: "69279037"} {
		code, counter, err := tp.codeAt(time.Unix(unix, 0), 0)
		require.NoError(t, err)
		assert.Equal(t, want, code)
		assert.Equal(t, uint64(unix/30), counter)
	}
	code, _, err := TOTP{SecretHex: "3132333435363738393031323334353637383930", Digits: 8}.codeAt(time.Unix(29, 0), 1)
	require.NoError(t, err)
	assert.Equal(t, "94287082", code, "offset_steps moves by whole steps")
	code, _, err = TOTP{Secret: "gezd gnbv gy3t qojq gezd gnbv gy3t qojq", Digits: 8}.codeAt(time.Unix(59, 0), 0)
	require.NoError(t, err)
	assert.Equal(t, "94287082", code, "case and spaces do not matter")
}

// TestFreshCodeWaitsForTheNextStep: a step whose code this run already
// had accepted is not sent again; the step waits (here until cancelled).
func TestFreshCodeWaitsForTheNextStep(t *testing.T) {
	tp := TOTP{Secret: rfcSecret}
	now := func() time.Time { return time.Unix(1_700_000_010, 0) }
	who := t.Name()
	_, counter, err := tp.freshCode(context.Background(), who, now)
	require.NoError(t, err)
	markSent(who, counter)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = tp.freshCode(ctx, who, now)
	assert.ErrorIs(t, err, context.Canceled, "it waited instead of replaying")
	// A deliberately wrong code (offset) is never held back.
	tp.OffsetSteps = 40
	_, _, err = tp.freshCode(ctx, who, now)
	assert.NoError(t, err)
}

func TestCurlQuote(t *testing.T) {
	assert.Equal(t, `a\\b\"c\nd\te`, curlQuote("a\\b\"c\nd\te"))
}
