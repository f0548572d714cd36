package auth

import (
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// MinSecretBytes is the shortest key accepted: 128 bits, RFC 4226 R6.
const MinSecretBytes = 16

// Key is a user's TOTP key and the settings their app computes codes with:
// what totp.generate_key produces.
type Key struct {
	secretB32 string // unpadded upper-case base32, the form pquerna/otp takes
	digits    otp.Digits
	period    int64 // seconds
	alg       otp.Algorithm
}

// algorithms are the accepted HMAC hashes, as FreeOTP and oathtool name them.
var algorithms = map[string]otp.Algorithm{
	"SHA1":   otp.AlgorithmSHA1,
	"SHA256": otp.AlgorithmSHA256,
	"SHA512": otp.AlgorithmSHA512,
}

// NewKey builds a key from raw secret bytes and code settings; zero values
// mean the defaults of FreeOTP, Google Authenticator and oathtool (6 digits,
// 30 s, SHA1).
func NewKey(secret []byte, digits int, period time.Duration, algorithm string) (Key, error) {
	if len(secret) < MinSecretBytes {
		return Key{}, fmt.Errorf("secret: must be at least %d bytes (128 bits, RFC 4226 R6), got %d", MinSecretBytes, len(secret))
	}
	if digits == 0 {
		digits = 6
	}
	if digits < 6 || digits > 8 {
		return Key{}, fmt.Errorf("digits: must be 6, 7 or 8, got %d", digits)
	}
	if period == 0 {
		period = 30 * time.Second
	}
	if period < time.Second || period%time.Second != 0 {
		return Key{}, fmt.Errorf("period: must be a whole number of seconds, at least 1s, got %s", period)
	}
	if algorithm == "" {
		algorithm = "SHA1"
	}
	alg, ok := algorithms[strings.ReplaceAll(strings.ToUpper(algorithm), "-", "")]
	if !ok {
		return Key{}, fmt.Errorf("algorithm: must be SHA1, SHA256 or SHA512, got %q", algorithm)
	}
	return Key{
		secretB32: base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret),
		digits:    otp.Digits(digits),
		period:    int64(period / time.Second),
		alg:       alg,
	}, nil
}

// ParseBase32Secret decodes a base32 secret as apps show it: case and
// spaces do not matter, padding is optional.
func ParseBase32Secret(s string) ([]byte, error) {
	s = strings.ToUpper(strings.Join(strings.Fields(s), ""))
	s = strings.TrimRight(s, "=")
	if s == "" {
		return nil, errors.New("empty")
	}
	b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		// The decoder's message quotes the input: keep the secret out of it.
		return nil, errors.New("not valid base32 (letters A-Z and digits 2-7)")
	}
	return b, nil
}

// ParseHexSecret decodes a hex secret, as oathtool takes it.
func ParseHexSecret(s string) ([]byte, error) {
	s = strings.Join(strings.Fields(s), "")
	if s == "" {
		return nil, errors.New("empty")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not valid hex (an even number of digits 0-9, a-f)")
	}
	return b, nil
}

// Digits is the code length.
func (k Key) Digits() int { return k.digits.Length() }

// Period is the time step.
func (k Key) Period() time.Duration { return time.Duration(k.period) * time.Second }

// Counter is the RFC 6238 counter at t.
func (k Key) Counter(t time.Time) uint64 {
	u := t.Unix()
	if u < 0 {
		return 0
	}
	return uint64(u / k.period)
}

// Code is the code for counter c.
func (k Key) Code(c uint64) string {
	code, err := hotp.GenerateCodeCustom(k.secretB32, c, hotp.ValidateOpts{Digits: k.digits, Algorithm: k.alg})
	if err != nil {
		// The secret was encoded by NewKey; it always decodes.
		panic("auth: key does not decode: " + err.Error())
	}
	return code
}
