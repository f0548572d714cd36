package port

import (
	"context"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP is how a code is made for portgate: a key and the settings the
// user's app uses (the ones totp.generate_key was given).
type TOTP struct {
	Secret      string `yaml:"secret" doc:"portgate: the user's TOTP key in base32 (totp.generate_key's base32 output)"`
	SecretHex   string `yaml:"secret_hex" doc:"portgate: the key in hex (totp.generate_key's hex output), instead of secret"`
	Code        string `yaml:"code" doc:"portgate: send this code as is instead of computing one (replay drills)"`
	OffsetSteps int    `yaml:"offset_steps" doc:"portgate: compute the code this many time steps from now; 40 makes a wrong code"`
	Digits      int    `yaml:"digits" doc:"code length: 6 (default), 7 or 8"`
	Period      int    `yaml:"period" doc:"time step in seconds (default 30)"`
	Algorithm   string `yaml:"algorithm" doc:"SHA1 (default), SHA256 or SHA512"`
}

var algorithms = map[string]otp.Algorithm{"SHA1": otp.AlgorithmSHA1, "SHA256": otp.AlgorithmSHA256, "SHA512": otp.AlgorithmSHA512}

// validate checks the fields; required says whether a key or code must be
// given (port.open in portgate mode) or may be absent (port.close).
func (t TOTP) validate(required bool) error {
	n := 0
	for _, v := range []string{t.Secret, t.SecretHex, t.Code} {
		if v != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return errors.New("secret, secret_hex, code: give one")
	case n == 0 && required:
		return errors.New("secret: required (or secret_hex, or code)")
	case t.Code != "" && t.OffsetSteps != 0:
		return errors.New("offset_steps: only with secret or secret_hex, not with code")
	}
	if t.Code != "" && !isCode(t.Code) {
		return errors.New("code: must be 6 to 8 digits")
	}
	if _, err := t.key(); err != nil {
		return err
	}
	if t.Digits != 0 && (t.Digits < 6 || t.Digits > 8) {
		return fmt.Errorf("digits: must be 6, 7 or 8, got %d", t.Digits)
	}
	if t.Period < 0 {
		return fmt.Errorf("period: must be a positive number of seconds, got %d", t.Period)
	}
	if _, ok := algorithms[t.alg()]; !ok {
		return fmt.Errorf("algorithm: must be SHA1, SHA256 or SHA512, got %q", t.Algorithm)
	}
	return nil
}

func (t TOTP) alg() string {
	if t.Algorithm == "" {
		return "SHA1"
	}
	return strings.ReplaceAll(strings.ToUpper(t.Algorithm), "-", "")
}

func (t TOTP) period() time.Duration {
	if t.Period == 0 {
		return 30 * time.Second
	}
	return time.Duration(t.Period) * time.Second
}

func (t TOTP) digits() int {
	if t.Digits == 0 {
		return 6
	}
	return t.Digits
}

func (t TOTP) hasKey() bool { return t.Secret != "" || t.SecretHex != "" }

// key returns the key in unpadded base32, or "" when none is given.
// Errors never quote the key.
func (t TOTP) key() (string, error) {
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	switch {
	case t.Secret != "":
		s := strings.TrimRight(strings.ToUpper(strings.Join(strings.Fields(t.Secret), "")), "=")
		if s == "" {
			return "", errors.New("secret: empty")
		}
		if _, err := enc.DecodeString(s); err != nil {
			return "", errors.New("secret: not valid base32 (letters A-Z and digits 2-7)")
		}
		return s, nil
	case t.SecretHex != "":
		b, err := hex.DecodeString(strings.Join(strings.Fields(t.SecretHex), ""))
		if err != nil || len(b) == 0 {
			return "", errors.New("secret_hex: not valid hex")
		}
		return enc.EncodeToString(b), nil
	}
	return "", nil
}

// codeAt computes the code offset steps from at.
func (t TOTP) codeAt(at time.Time, offset int) (string, uint64, error) {
	k, err := t.key()
	if err != nil {
		return "", 0, err
	}
	p := t.period()
	when := at.Add(time.Duration(offset) * p)
	code, err := totp.GenerateCodeCustom(k, when, totp.ValidateOpts{
		Period: uint(p / time.Second), Digits: otp.Digits(t.digits()), Algorithm: algorithms[t.alg()],
	})
	if err != nil {
		return "", 0, errors.New("secret: cannot compute a code")
	}
	return code, uint64(when.Unix()) / uint64(p/time.Second), nil
}

func isCode(s string) bool {
	if len(s) < 6 || len(s) > 8 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// sent remembers, per opener and user, the last time step whose code this
// process sent and had accepted, so a later port.open for the same user
// waits for a fresh step instead of replaying one (portgate accepts each
// step once per user).
var sent = struct {
	sync.Mutex
	m map[string]uint64
}{m: map[string]uint64{}}

// freshCode computes the current code, waiting for the next time step when
// this one was already used. now is the clock.
func (t TOTP) freshCode(ctx context.Context, who string, now func() time.Time) (string, uint64, error) {
	for {
		at := now()
		code, counter, err := t.codeAt(at, t.OffsetSteps)
		if err != nil {
			return "", 0, err
		}
		sent.Lock()
		last, used := sent.m[who]
		sent.Unlock()
		if t.OffsetSteps != 0 || !used || counter > last {
			return code, counter, nil
		}
		ps := int64(t.period() / time.Second)
		next := time.Unix((at.Unix()/ps+1)*ps, 0)
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(next.Sub(at) + 10*time.Millisecond):
		}
	}
}

func markSent(who string, counter uint64) {
	sent.Lock()
	defer sent.Unlock()
	if counter > sent.m[who] {
		sent.m[who] = counter
	}
}
