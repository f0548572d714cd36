package totp

import (
	"context"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RFC 6238 Appendix B seeds, as corrected by errata 2866: each algorithm
// uses a seed as long as its hash output.
var rfcSeeds = map[string]string{
	"SHA1":   "12345678901234567890",
	"SHA256": "12345678901234567890123456789012",
	"SHA512": "1234567890123456789012345678901234567890123456789012345678901234",
}

// TestRFC6238AppendixB runs all 18 test vectors through totp.code.
func TestRFC6238AppendixB(t *testing.T) {
	vectors := []struct {
		unix int64
		alg  string
		code string
	}{
		{59, "SHA1", "94287082"}, {59, "SHA256", "46119246"}, {59, "SHA512", "90693936"},
		{1111111109, "SHA1", "07081804"}, {1111111109, "SHA256", "68084774"}, {1111111109, "SHA512", "25091201"},
		{1111111111, "SHA1", "14050471"}, {1111111111, "SHA256", "67062674"}, {1111111111, "SHA512", "99943326"},
		{1234567890, "SHA1", "89005924"}, {1234567890, "SHA256", "91819424"}, {1234567890, "SHA512", "93441116"},
		{2000000000, "SHA1", "69279037"}, {2000000000, "SHA256", "90698825"}, {2000000000, "SHA512", "38618901"},
		{20000000000, "SHA1", "65353130"}, {20000000000, "SHA256", "77737706"}, {20000000000, "SHA512", "47863826"},
	}
	require.Len(t, vectors, 18)
	for _, v := range vectors {
		t.Run(v.alg+"@"+strconv.FormatInt(v.unix, 10), func(t *testing.T) {
			step := &Code{Key: Key{
				Format:    Format{Digits: 8, Algorithm: v.alg},
				SecretHex: hex.EncodeToString([]byte(rfcSeeds[v.alg])),
				At:        "@" + strconv.FormatInt(v.unix, 10),
			}}
			require.NoError(t, step.Validate())
			env, _ := newEnv(t)
			require.NoError(t, step.Run(context.Background(), env))
			assert.Equal(t, v.code, env.Outputs()["code"])
			assert.Equal(t, int(v.unix/30), env.Outputs()["counter"])
		})
	}
}

// TestRFC4226Counters checks counters 0..9 (RFC 4226 Appendix D) reached
// through a non-zero T0 and a 60 s period, at the first and last second of
// each step.
func TestRFC4226Counters(t *testing.T) {
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	const t0 = 1_700_000_000
	for c, code := range want {
		for _, phase := range []int64{0, 59} {
			step := &Code{Key: Key{
				Format:    Format{Period: 60},
				SecretHex: hex.EncodeToString([]byte(rfcSeeds["SHA1"])),
				T0:        "@" + strconv.Itoa(t0),
				At:        "@" + strconv.FormatInt(t0+int64(c)*60+phase, 10),
			}}
			env, _ := newEnv(t)
			require.NoError(t, step.Run(context.Background(), env))
			assert.Equal(t, code, env.Outputs()["code"], "counter %d phase %d", c, phase)
			assert.Equal(t, c, env.Outputs()["counter"])
		}
	}
}

func TestParseSecret(t *testing.T) {
	rfc := []byte(rfcSeeds["SHA1"])
	const b32rfc = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	cases := []struct {
		name    string
		key     Key
		want    []byte
		wantErr string
	}{
		{name: "base32", key: Key{Secret: b32rfc}, want: rfc},
		{name: "base32 lowercase", key: Key{Secret: strings.ToLower(b32rfc)}, want: rfc},
		{name: "base32 grouped like FreeOTP shows it", key: Key{Secret: "gezd gnbv gy3t qojq gezd-gnbv-gy3t-qojq"}, want: rfc},
		{name: "base32 padded", key: Key{Secret: "GEZDGNA="}, want: []byte("1234")},
		{name: "base32 unpadded odd length", key: Key{Secret: "GEZDGNA"}, want: []byte("1234")},
		{name: "hex", key: Key{SecretHex: "3132333435"}, want: []byte("12345")},
		{name: "hex uppercase with colons", key: Key{SecretHex: "1A:2B:3C:4D:5E"}, want: []byte{0x1a, 0x2b, 0x3c, 0x4d, 0x5e}},
		{name: "runbook hex key", key: Key{SecretHex: "1a2b3c4d5e"}, want: []byte{0x1a, 0x2b, 0x3c, 0x4d, 0x5e}},
		{name: "base32 bad character", key: Key{Secret: "GEZDGNB1"}, wantErr: "secret: not valid base32"},
		{name: "base32 bad length", key: Key{Secret: "GEZDGNBVG"}, wantErr: "secret: not valid base32"},
		{name: "base32 padding inside", key: Key{Secret: "GE=ZDGNA"}, wantErr: "secret: not valid base32"},
		{name: "base32 only padding", key: Key{Secret: "===="}, wantErr: "secret: empty"},
		{name: "hex odd", key: Key{SecretHex: "123"}, wantErr: "secret_hex: not valid hex (odd number of digits: 3)"},
		{name: "hex bad character", key: Key{SecretHex: "zz"}, wantErr: "secret_hex: not valid hex"},
		{name: "base32 given as hex", key: Key{SecretHex: b32rfc}, wantErr: "secret_hex: not valid hex"},
		{name: "both", key: Key{Secret: b32rfc, SecretHex: "31"}, wantErr: "secret, secret_hex: set one, not both"},
		{name: "none", key: Key{}, wantErr: "secret: required (or secret_hex)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.key.resolve()
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				for _, s := range []string{tc.key.Secret, tc.key.SecretHex} {
					if len(s) > 3 {
						assert.NotContains(t, err.Error(), s, "errors must not quote secrets")
					}
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, r.secret)
			assert.Equal(t, b32.EncodeToString(tc.want), r.gen.b32, "normalised to unpadded upper-case base32")
		})
	}
}

func TestFormatValidate(t *testing.T) {
	cases := []struct {
		f       Format
		wantErr string
	}{
		{f: Format{}},
		{f: Format{Digits: 7, Period: 60, Algorithm: "sha-256"}},
		{f: Format{Digits: 8, Algorithm: "SHA512"}},
		{f: Format{Digits: 5}, wantErr: "digits: must be 6, 7 or 8, got 5"},
		{f: Format{Digits: 9}, wantErr: "digits: must be 6, 7 or 8, got 9"},
		{f: Format{Digits: -6}, wantErr: "digits: must be 6, 7 or 8, got -6"},
		{f: Format{Period: -30}, wantErr: "period: must be a positive number of seconds, got -30"},
		{f: Format{Algorithm: "MD5"}, wantErr: `algorithm: must be SHA1, SHA256 or SHA512, got "MD5"`},
		{f: Format{Algorithm: "SHA3"}, wantErr: `algorithm: must be SHA1, SHA256 or SHA512, got "SHA3"`},
	}
	for _, tc := range cases {
		_, err := tc.f.resolve()
		if tc.wantErr == "" {
			assert.NoError(t, err, "%+v", tc.f)
			continue
		}
		assert.EqualError(t, err, tc.wantErr)
	}
}

func TestParseInstant(t *testing.T) {
	cases := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "@0", want: 0},
		{in: "@1502923560", want: 1502923560},
		{in: "1502923560", want: 1502923560},
		{in: "@-30", want: -30},
		{in: "2017-08-16 22:46:00", want: 1502923560},
		{in: "2017-08-16T22:46:00Z", want: 1502923560},
		{in: "2017-08-16T22:46:00.9Z", want: 1502923560},
		{in: "2017-08-17T00:46:00+02:00", want: 1502923560},
		{in: "yesterday", wantErr: true},
		{in: "@", wantErr: true},
		{in: "@99999999999999", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range cases {
		got, err := parseInstant(tc.in, time.UTC)
		if tc.wantErr {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got.Unix(), tc.in)
	}
}

func TestCodeStep(t *testing.T) {
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	t.Run("now, from the clock", func(t *testing.T) {
		step := newCode().(*Code)
		step.Secret = strings.ToLower(secret)
		step.clock = newFakeClock(time.Unix(59, 0))
		env, rec := newEnv(t)
		require.NoError(t, step.Run(context.Background(), env))
		out := env.Outputs()
		assert.Equal(t, "287082", out["code"])
		assert.Equal(t, 1, out["counter"])
		assert.Equal(t, "1970-01-01T00:00:59Z", out["at"])
		assert.Contains(t, rec.secrets, "287082", "the code is declared secret")
		assert.Contains(t, rec.secrets, secret, "the key is declared secret in canonical form")
		assert.Contains(t, rec.secrets, strings.ToLower(secret), "and in the form given")
		assertNoLeak(t, env, rec, nil)
	})
	t.Run("offset_steps and 7 digits", func(t *testing.T) {
		step := &Code{Key: Key{Format: Format{Digits: 7}, Secret: secret, At: "@95", OffsetSteps: -3}}
		env, _ := newEnv(t)
		require.NoError(t, step.Run(context.Background(), env))
		assert.Equal(t, "4755224", env.Outputs()["code"])
		assert.Equal(t, 0, env.Outputs()["counter"])
	})
	errs := []struct {
		name string
		key  Key
		want string
	}{
		{"negative counter", Key{Secret: secret, At: "@59", OffsetSteps: -2}, "offset_steps: 2 steps before counter 1 gives a negative counter"},
		{"before t0", Key{Secret: secret, At: "@59", T0: "@60"}, "at: 1970-01-01T00:00:59Z is before t0 1970-01-01T00:01:00Z"},
		{"bad at", Key{Secret: secret, At: "noon"}, `at: want RFC 3339`},
		{"bad t0", Key{Secret: secret, T0: "epoch"}, `t0: want RFC 3339`},
		{"bad digits", Key{Secret: secret, Format: Format{Digits: 10}}, "digits: must be 6, 7 or 8, got 10"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			step := &Code{Key: tc.key}
			err := step.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestMatchOrderAndCounterZero(t *testing.T) {
	r, err := Key{SecretHex: hex.EncodeToString([]byte(rfcSeeds["SHA1"]))}.resolve()
	require.NoError(t, err)
	assert.Equal(t, []int{0, -1, 1, -2, 2}, orderPastFirst.offsets(2))
	assert.Equal(t, []int{0, 1, -1, 2, -2}, orderLiboath.offsets(2))

	// At counter 0 with a window of 2, counters -2 and -1 do not exist and
	// must be skipped, not wrapped around to 2^64-1.
	off, ok, err := r.gen.match("755224", 0, 2, orderPastFirst)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, 0, off)
	off, ok, err = r.gen.match("359152", 0, 2, orderPastFirst)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, 2, off)
	_, ok, err = r.gen.match("969429", 0, 2, orderPastFirst)
	require.NoError(t, err)
	assert.False(t, ok)

	_, _, err = r.gen.match("12345", 0, 2, orderPastFirst)
	assert.EqualError(t, err, "code: must be 6 digits, got 5 characters")
	_, _, err = r.gen.match("12345a", 0, 2, orderPastFirst)
	assert.EqualError(t, err, "code: must be 6 digits, got a non-digit character")
}
