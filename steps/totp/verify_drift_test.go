package totp

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

const testB32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // RFC 6238 SHA1 seed

func TestVerifyDriftValidate(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-oathtool")
	cases := []struct {
		name string
		v    func(v *VerifyDrift)
		want string
	}{
		{"no mode", func(v *VerifyDrift) {}, "reference, code, endpoint, validator_command: set one to choose what to verify"},
		{"two modes", func(v *VerifyDrift) { v.Reference, v.ValidatorCommand = "oathtool", []string{"check", "{code}"} }, "reference, validator_command: set only one of them"},
		{"code and an unknown reference", func(v *VerifyDrift) { v.Reference, v.Code = "pam_oath", "123456" }, `reference: must be "oathtool", got "pam_oath"`},
		{"search order", func(v *VerifyDrift) { v.Code, v.SearchOrder = "123456", "nearest" }, `search_order: must be past_first or liboath, got "nearest"`},
		{"search order without code", func(v *VerifyDrift) { v.Reference, v.SearchOrder = "oathtool", "liboath" }, "search_order: only used with code"},
		{"unknown reference", func(v *VerifyDrift) { v.Reference = "google" }, `reference: must be "oathtool", got "google"`},
		{"oathtool missing", func(v *VerifyDrift) { v.Reference, v.OathtoolPath = "oathtool", missing },
			`oathtool_path: "` + missing + `" not found; reference: oathtool needs the oathtool binary (Debian/Ubuntu: apt-get install oathtool)`},
		{"samples", func(v *VerifyDrift) { v.Reference, v.Samples = "oathtool", 0 }, "samples: must be 1 to 1000000, got 0"},
		{"code too long", func(v *VerifyDrift) { v.Code = "1234567" }, "code: must be 6 digits, got 7 characters"},
		{"code of 8 digits for 8", func(v *VerifyDrift) { v.Code, v.Digits = "1234567", 8 }, "code: must be 8 digits, got 7 characters"},
		{"code not digits", func(v *VerifyDrift) { v.Code = "12345x" }, "code: must be 6 digits, got a non-digit character"},
		{"window", func(v *VerifyDrift) { v.Code, v.Window = "123456", 21 }, "window: must be 0 to 20 steps, got 21"},
		{"negative window", func(v *VerifyDrift) { v.Code, v.Window = "123456", -1 }, "window: must be 0 to 20 steps, got -1"},
		{"offset_steps", func(v *VerifyDrift) { v.Code, v.OffsetSteps = "123456", 1 }, "offset_steps: not used by totp.verify_drift, got 1"},
		{"bad secret", func(v *VerifyDrift) { v.Code, v.Secret = "123456", "not base32!" }, "secret: not valid base32"},
		{"period", func(v *VerifyDrift) { v.Code, v.Period = "123456", -1 }, "period: must be a positive number of seconds, got -1"},
		{"at with a validator", func(v *VerifyDrift) { v.ValidatorCommand, v.At = []string{"check", "{code}"}, "@0" },
			"at: not used with endpoint or validator_command: the validator's own clock is probed, against this machine's clock"},
		{"command without placeholder", func(v *VerifyDrift) { v.ValidatorCommand = []string{"check", "code"} }, "validator_command: no argument contains {code}"},
		{"command is the placeholder", func(v *VerifyDrift) { v.ValidatorCommand = []string{"{code}"} }, "validator_command: the first element must name the program"},
		{"endpoint without url", func(v *VerifyDrift) { v.Endpoint = &Endpoint{} }, "endpoint.url: required"},
		{"endpoint ftp", func(v *VerifyDrift) { v.Endpoint = &Endpoint{URL: "ftp://user:pw@host/x"} }, `endpoint.url: want an http:// or https:// URL, got "ftp://user:xxxxx@host/x"`},
		{"endpoint method", func(v *VerifyDrift) { v.Endpoint = &Endpoint{URL: "http://h/", Method: "PUT"} }, `endpoint.method: must be POST or GET, got "PUT"`},
		{"endpoint encoding", func(v *VerifyDrift) { v.Endpoint = &Endpoint{URL: "http://h/", Encoding: "xml"} }, `endpoint.encoding: must be form or json, got "xml"`},
		{"endpoint GET with encoding", func(v *VerifyDrift) { v.Endpoint = &Endpoint{URL: "http://h/", Method: "get", Encoding: "json"} },
			"endpoint.encoding: only for POST; GET sends fields in the query string"},
		{"endpoint same fields", func(v *VerifyDrift) { v.Endpoint = &Endpoint{URL: "http://h/", UserField: "code"} },
			`endpoint.user_field, endpoint.code_field: must differ, both are "code"`},
		{"endpoint status", func(v *VerifyDrift) { v.Endpoint = &Endpoint{URL: "http://h/", SuccessStatus: []int{2000}} }, "endpoint.success_status: 2000 is not an HTTP status"},
		{"endpoint regex", func(v *VerifyDrift) { v.Endpoint = &Endpoint{URL: "http://h/", SuccessBody: "("} }, "endpoint.success_body: error parsing regexp: missing closing ): `(`"},
		{"delay too long", func(v *VerifyDrift) { v.Endpoint, v.Delay = &Endpoint{URL: "http://h/"}, 3*time.Second },
			"delay: 7 submissions 3s apart take 21s, more than half the 30s period; lower delay or window"},
		{"attempt timeout", func(v *VerifyDrift) { v.Endpoint, v.AttemptTimeout = &Endpoint{URL: "http://h/"}, 0 }, "attempt_timeout: must be positive, got 0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifyDrift().(*VerifyDrift)
			v.Secret = testB32
			tc.v(v)
			err := v.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), testB32)
		})
	}

	ok := []func(v *VerifyDrift){
		func(v *VerifyDrift) { v.Code = "123456" },
		func(v *VerifyDrift) { v.Code, v.Digits = "0123456", 7 },
		func(v *VerifyDrift) { v.ValidatorCommand = []string{"ssh", "host", "check --otp={code}"} },
		func(v *VerifyDrift) {
			v.Endpoint = &Endpoint{URL: "https://h/otp", Method: "get", SuccessStatus: []int{204}}
		},
	}
	for i, f := range ok {
		v := newVerifyDrift().(*VerifyDrift)
		v.Secret = testB32
		f(v)
		assert.NoError(t, v.Validate(), "case %d", i)
	}
}

// TestVerifyDriftCode: a code read from a device at a known instant.
func TestVerifyDriftCode(t *testing.T) {
	seed := hex.EncodeToString([]byte(rfcSeeds["SHA1"]))
	// RFC 4226 Appendix D codes, counters 0..9.
	hotp := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	cases := []struct {
		name      string
		code      string
		at        int64 // unix
		window    int
		wantMatch bool
		wantDrift int
	}{
		{"in step", hotp[5], 5*30 + 7, 2, true, 0},
		{"device a step behind", hotp[4], 5*30 + 7, 2, true, -1},
		{"code read 60 s ago", hotp[3], 5*30 + 7, 2, true, -2},
		{"device a step ahead", hotp[6], 5*30 + 7, 2, true, 1},
		{"outside the window", hotp[2], 5*30 + 7, 2, false, 0},
		{"window 0 is exact", hotp[4], 5*30 + 7, 0, false, 0},
		{"counter 0 with skew", hotp[1], 10, 3, true, 1},
		{"counter 0 itself", hotp[0], 29, 3, true, 0},
		{"no negative counters", hotp[9], 0, 3, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifyDrift().(*VerifyDrift)
			v.SecretHex, v.Code, v.Window = seed, tc.code, tc.window
			v.At = "@" + strconv.FormatInt(tc.at, 10)
			env, rec := newEnv(t)
			require.NoError(t, v.Run(context.Background(), env))
			out := env.Outputs()
			assert.Equal(t, tc.wantMatch, out["matched"])
			if tc.wantMatch {
				assert.Equal(t, tc.wantDrift, out["drift_steps"])
			} else {
				assert.NotContains(t, out, "drift_steps", "drift_steps is unset without a match")
			}
			assert.Contains(t, rec.secrets, tc.code)
			assertNoLeak(t, env, rec, nil)

			series := evidenceByKind(env.Evidence(), "series")
			require.Len(t, series, 1)
			assert.Len(t, series[0].Series[0].Points, 2*(2*tc.window+1))
		})
	}
}

// TestVerifyDriftCodeNow reads "now" from the clock when at is omitted.
func TestVerifyDriftCodeNow(t *testing.T) {
	v := newVerifyDrift().(*VerifyDrift)
	v.Secret, v.Code, v.Window = testB32, "287082", 1 // counter 1
	v.clock = newFakeClock(time.Unix(95, 0))          // counter 3
	env, _ := newEnv(t)
	require.NoError(t, v.Run(context.Background(), env))
	assert.Equal(t, false, env.Outputs()["matched"])

	v.clock = newFakeClock(time.Unix(65, 0)) // counter 2
	env, _ = newEnv(t)
	require.NoError(t, v.Run(context.Background(), env))
	assert.Equal(t, true, env.Outputs()["matched"])
	assert.Equal(t, -1, env.Outputs()["drift_steps"])
}

func TestVerifyDriftReference(t *testing.T) {
	oathtool := requireOathtool(t)
	cases := []struct {
		name string
		key  Key
	}{
		{"runbook defaults", Key{SecretHex: "1a2b3c4d5e"}},
		{"SHA256 8 digits", Key{Format: Format{Digits: 8, Algorithm: "SHA256"}, SecretHex: hex.EncodeToString([]byte(rfcSeeds["SHA256"]))}},
		{"SHA512 7 digits 60 s", Key{Format: Format{Digits: 7, Period: 60, Algorithm: "SHA512"}, SecretHex: hex.EncodeToString([]byte(rfcSeeds["SHA512"]))}},
		{"t0 and lowercase padded base32", Key{Format: Format{Period: 45}, Secret: "gezdgna=", T0: "2001-09-09T01:46:40Z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifyDrift().(*VerifyDrift)
			v.Key, v.Reference, v.Samples, v.OathtoolPath = tc.key, "oathtool", 203, oathtool
			require.NoError(t, v.Validate())
			env, rec := newEnv(t)
			require.NoError(t, v.Run(context.Background(), env))
			assert.Equal(t, 203, env.Outputs()["samples"])
			assert.Equal(t, 0, env.Outputs()["mismatches"])
			assertNoLeak(t, env, rec, nil)
		})
	}
}

// TestVerifyDriftReferenceWrongAlgorithm injects a fault: an oathtool
// configured with another algorithm than opsdrill's must show mismatches.
func TestVerifyDriftReferenceWrongAlgorithm(t *testing.T) {
	oathtool := requireOathtool(t)
	wrapper := filepath.Join(t.TempDir(), "oathtool-sha256")
	script := "#!/bin/sh\n" +
		"for a; do shift; case $a in --totp=*) set -- \"$@\" --totp=SHA256;; *) set -- \"$@\" \"$a\";; esac; done\n" +
		"exec " + oathtool + " \"$@\"\n"
	require.NoError(t, os.WriteFile(wrapper, []byte(script), 0o755))

	v := newVerifyDrift().(*VerifyDrift)
	v.Secret, v.Reference, v.Samples, v.OathtoolPath = testB32, "oathtool", 100, wrapper
	env, rec := newEnv(t)
	err := v.Run(context.Background(), env)
	require.Error(t, err)
	assert.True(t, steps.IsFailure(err), "a mismatch is a failed check, not an error: %v", err)
	assert.Contains(t, err.Error(), "codes differ from oathtool (SHA1, 6 digits, 30 s)")
	assert.Equal(t, 100, env.Outputs()["samples"])
	assert.Greater(t, env.Outputs()["mismatches"], 90)
	assertNoLeak(t, env, rec, err)
	require.Len(t, evidenceByKind(env.Evidence(), "table"), 2)
}

// TestVerifyDriftReferenceBrokenOathtool: a reference that cannot run is
// an error (status errored), not a failure.
func TestVerifyDriftReferenceBrokenOathtool(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "oathtool")
	require.NoError(t, os.WriteFile(broken, []byte("#!/bin/sh\necho 'oathtool: broken' >&2\nexit 1\n"), 0o755))
	v := newVerifyDrift().(*VerifyDrift)
	v.Secret, v.Reference, v.Samples, v.OathtoolPath = testB32, "oathtool", 50, broken
	env, _ := newEnv(t)
	err := v.Run(context.Background(), env)
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err))
	assert.Contains(t, err.Error(), "oathtool: broken")
}

func TestReferenceBatches(t *testing.T) {
	r, err := Key{SecretHex: "31", T0: "@100"}.resolve()
	require.NoError(t, err)
	batches := referenceBatches(r.gen, 1000, time.Unix(5000, 0), rand.New(rand.NewPCG(1, 2)))
	total := 0
	for _, b := range batches {
		total += b.n
		assert.GreaterOrEqual(t, b.first, int64(0))
		assert.GreaterOrEqual(t, b.at.Unix(), int64(100))
	}
	assert.Equal(t, 1000, total)
	assert.Equal(t, int64(0), batches[0].first, "counter 0 is always sampled")
	assert.Equal(t, int64(1)<<31, batches[2].at.Unix(), "the 2038 rollover is sampled")
}
