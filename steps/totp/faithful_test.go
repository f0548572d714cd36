package totp

import (
	"bytes"
	"context"
	"image"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	pqtotp "github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// requireZbarimg returns zbarimg's path (zbar-tools), a second QR decoder
// independent of the one the step uses; like oathtool it is required in CI.
func requireZbarimg(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("zbarimg")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("zbarimg is required in CI (apt-get install -y zbar-tools): %v", err)
	}
	tb.Skipf("zbarimg not installed (apt-get install -y zbar-tools): %v", err)
	return ""
}

// TestKeyURISurvivesEveryIssuer: whatever the issuer and account hold, the
// URI an app reads back (Go's query parser, pquerna/otp's, and the QR code
// decoded by ZXing and by zbarimg) gives exactly them.
func TestKeyURISurvivesEveryIssuer(t *testing.T) {
	zbar := requireZbarimg(t)
	cases := []struct{ issuer, account string }{
		{"R&D", "alice@example.com"},
		{"Dev+Ops", "bob+otp@example.com"},
		{"ACME VPN", "carol smith"},
		{"a/b?c#d%e=f", "x;y,z"},
		{"Zürich Büro", "dörte@example.ch"},
		{"100%", "tab\there"},
	}
	for _, tc := range cases {
		t.Run(tc.issuer, func(t *testing.T) {
			step := newGenerateKey().(*GenerateKey)
			step.Issuer, step.Account = tc.issuer, tc.account
			require.NoError(t, step.Validate())
			env, _ := newEnv(t)
			require.NoError(t, step.Run(context.Background(), env))
			out := env.Outputs()
			uri := out["uri"].(string)
			assert.Equal(t, true, out["qr_verified"])

			u, err := url.Parse(uri)
			require.NoError(t, err)
			assert.Equal(t, "otpauth", u.Scheme)
			assert.Equal(t, "totp", u.Host)
			assert.Equal(t, "/"+tc.issuer+":"+tc.account, u.Path)
			q := u.Query()
			assert.Equal(t, []string{tc.issuer}, q["issuer"], "one issuer parameter, intact")
			assert.ElementsMatch(t, []string{"secret", "issuer", "algorithm", "digits", "period"}, keys(q), "no stray parameter")
			assert.NotContains(t, uri, " ")

			key, err := otp.NewKeyFromURL(uri)
			require.NoError(t, err)
			assert.Equal(t, tc.issuer, key.Issuer())
			assert.Equal(t, tc.account, key.AccountName())
			assert.Equal(t, out["base32"], key.Secret())

			png := filepath.Join(env.Dir, filepath.FromSlash(out["qr_png"].(string)))
			raw, err := exec.Command(zbar, "--raw", "-q", png).Output()
			require.NoError(t, err)
			assert.Equal(t, uri, strings.TrimRight(string(raw), "\n"), "zbarimg reads the same URI")
		})
	}
}

// TestPquernaURIBreaksOnAmpersand documents why the URI is built here:
// pquerna/otp v1.5 leaves '&' unescaped in the issuer parameter.
func TestPquernaURIBreaksOnAmpersand(t *testing.T) {
	key, err := pqtotp.Generate(pqtotp.GenerateOpts{Issuer: "R&D", AccountName: "a", Secret: []byte(rfcSeeds["SHA1"])})
	require.NoError(t, err)
	u, err := url.Parse(key.String())
	require.NoError(t, err)
	assert.NotEqual(t, "R&D", u.Query().Get("issuer"))
}

func keys(q url.Values) []string {
	out := make([]string, 0, len(q))
	for k := range q {
		out = append(out, k)
	}
	return out
}

// TestGenerateKeyQRMismatch injects a QR code that does not carry the URI:
// the one pquerna/otp would have drawn (issuer cut at '&'), a blank image.
func TestGenerateKeyQRMismatch(t *testing.T) {
	seed := []byte(rfcSeeds["SHA1"])
	broken, err := pqtotp.Generate(pqtotp.GenerateOpts{Issuer: "R&D", AccountName: "alice", Secret: seed})
	require.NoError(t, err)
	cases := []struct {
		name   string
		render func(w, h int) (image.Image, error)
		want   string
	}{
		{"pquerna's URI", broken.Image, "decodes to a different key URI than the uri output (differs in: issuer)"},
		{"blank image", func(w, h int) (image.Image, error) {
			img := image.NewGray(image.Rect(0, 0, w, h))
			for i := range img.Pix {
				img.Pix[i] = 0xff
			}
			return img, nil
		}, "the QR code cannot be decoded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			step := newGenerateKey().(*GenerateKey)
			step.Issuer, step.Account = "R&D", "alice"
			step.random = bytes.NewReader(seed)
			step.render = tc.render
			env, rec := newEnv(t)
			err := step.Run(context.Background(), env)
			require.Error(t, err)
			assert.True(t, steps.IsFailure(err), "a wrong QR code is a failed check: %v", err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, env.Outputs(), "qr_verified")
			assertNoLeak(t, env, rec, err)
		})
	}
}

// TestSevenDigitsWarn: 7 digits are valid (RFC 4226) but FreeOTP up to
// 1.5 offers only 6 or 8, so every totp step warns.
func TestSevenDigitsWarn(t *testing.T) {
	for _, digits := range []int{6, 7, 8} {
		step := newGenerateKey().(*GenerateKey)
		step.Issuer, step.Account, step.Digits = "ACME", "alice", digits
		require.NoError(t, step.Validate())
		env, rec := newEnv(t)
		require.NoError(t, step.Run(context.Background(), env))
		warned := strings.Contains(strings.Join(rec.logs, "\n"), "FreeOTP up to 1.5 offers only 6 or 8 digits")
		assert.Equal(t, digits == 7, warned, "digits %d", digits)

		code := &Code{Key: Key{Format: Format{Digits: digits}, Secret: testB32, At: "@0"}}
		env, rec = newEnv(t)
		require.NoError(t, code.Run(context.Background(), env))
		warned = strings.Contains(strings.Join(rec.logs, "\n"), "FreeOTP up to 1.5 offers only 6 or 8 digits")
		assert.Equal(t, digits == 7, warned, "totp.code, digits %d", digits)
	}
}

// TestInstantLocalZone: a zone-less instant is local time, as oathtool -N
// reads it; Z and offsets are honoured. The code oathtool computes for the
// runbook's `-N "2017-08-16 22:46:00"` under TZ equals ours in that zone.
func TestInstantLocalZone(t *testing.T) {
	oathtool := requireOathtool(t)
	cases := []struct {
		zone, in string
		want     int64
	}{
		{"UTC", "2017-08-16 22:46:00", 1502923560},
		{"Asia/Kolkata", "2017-08-16 22:46:00", 1502923560 - 5*3600 - 1800},
		{"America/New_York", "2017-08-16 22:46:00", 1502923560 + 4*3600},
		{"America/New_York", "2017-08-16T22:46:00", 1502923560 + 4*3600},
		{"Asia/Kolkata", "2017-08-16T22:46:00Z", 1502923560},
		{"Asia/Kolkata", "2017-08-16T22:46:00+02:00", 1502923560 - 2*3600},
		{"Asia/Kolkata", "@1502923560", 1502923560},
	}
	for _, tc := range cases {
		t.Run(tc.zone+" "+tc.in, func(t *testing.T) {
			loc, err := time.LoadLocation(tc.zone)
			require.NoError(t, err)
			k := Key{SecretHex: "1a2b3c4d5e", At: tc.in, loc: loc}
			r, err := k.resolve()
			require.NoError(t, err)
			assert.Equal(t, tc.want, r.at.Unix())

			c, err := r.counter(*r.at)
			require.NoError(t, err)
			ours, err := r.gen.code(c)
			require.NoError(t, err)
			cmd := exec.Command(oathtool, "--totp", "-N", tc.in, "1a2b3c4d5e")
			cmd.Env = append(os.Environ(), "TZ="+tc.zone)
			theirs, err := cmd.Output()
			require.NoError(t, err)
			assert.Equal(t, strings.TrimSpace(string(theirs)), ours, "oathtool -N under TZ=%s", tc.zone)
		})
	}
}

// collision is a key and instant where one code occurs twice in a window
// of 1: counters 153567 and 153569 of the RFC 4226 test key both give
// 468457, and the instant is in counter 153568. The search order alone
// decides the sign of the drift.
var collision = struct {
	hex, code string
	at        string
}{"3132333435363738393031323334353637383930", "468457", "@4607040"}

// TestVerifyDriftCodeWithOathtool: with reference: oathtool, oathtool -w
// validates the device's code itself, and this implementation must agree.
func TestVerifyDriftCodeWithOathtool(t *testing.T) {
	requireOathtool(t)
	cases := []struct {
		name        string
		code, at    string
		window      int
		order       string
		wantMatched bool
		wantDrift   int
		wantSteps   int
	}{
		{"now", "287082", "@59", 2, "", true, 0, 0},
		{"a minute late", "287082", "@119", 2, "", true, -2, 2},
		{"too late", "287082", "@149", 2, "", false, 0, 0},
		{"ahead", "359152", "@0", 2, "", true, 2, 2},
		{"collision, past first", collision.code, collision.at, 1, "past_first", true, -1, 1},
		{"collision, liboath's order", collision.code, collision.at, 1, "liboath", true, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifyDrift().(*VerifyDrift)
			v.SecretHex, v.Code, v.At, v.Window, v.SearchOrder, v.Reference = collision.hex, tc.code, tc.at, tc.window, tc.order, "oathtool"
			require.NoError(t, v.Validate())
			env, rec := newEnv(t)
			err := v.Run(context.Background(), env)
			require.NoError(t, err)
			out := env.Outputs()
			assert.Equal(t, "oathtool", out["validated_by"])
			assert.Equal(t, tc.wantMatched, out["matched"])
			if tc.wantMatched {
				assert.Equal(t, tc.wantDrift, out["drift_steps"])
				assert.Equal(t, tc.wantSteps, out["oathtool_steps"])
			} else {
				assert.NotContains(t, out, "drift_steps")
				assert.NotContains(t, out, "oathtool_steps")
			}
			require.NotEmpty(t, evidenceTitled(env.Evidence(), "Validation by oathtool"))
			assertNoLeak(t, env, rec, err)
		})
	}
}

// TestVerifyDriftCodeOathtoolDisagrees injects a validator that disagrees
// with this implementation: the step fails and says how.
func TestVerifyDriftCodeOathtoolDisagrees(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, script, want string
	}{
		{"refuses a valid code", "#!/bin/sh\ncat >/dev/null\nexit 2\n", "oathtool not found, opsdrill found at +0 steps"},
		{"finds it elsewhere", "#!/bin/sh\ncat >/dev/null\necho 3\n", "oathtool found 3 steps away, opsdrill found at +0 steps"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := filepath.Join(dir, "oathtool"+string(rune('a'+i)))
			require.NoError(t, os.WriteFile(fake, []byte(tc.script), 0o755))
			v := newVerifyDrift().(*VerifyDrift)
			v.Secret, v.Code, v.At, v.Reference, v.OathtoolPath = testB32, "287082", "@59", "oathtool", fake
			env, rec := newEnv(t)
			err := v.Run(context.Background(), env)
			require.Error(t, err)
			assert.True(t, steps.IsFailure(err))
			assert.Contains(t, err.Error(), tc.want)
			assertNoLeak(t, env, rec, err, "287082")
		})
	}
}

func evidenceTitled(evs []steps.Evidence, title string) []steps.Evidence {
	var out []steps.Evidence
	for _, e := range evs {
		if e.Title == title {
			out = append(out, e)
		}
	}
	return out
}
