package totp

import (
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"

	"github.com/opsdrill/opsdrill/steps"
)

// Defaults shared by every step; they are FreeOTP's, Google Authenticator's
// and oathtool's defaults, so a scenario that says nothing gets the runbook's
// settings.
const (
	defaultDigits    = 6
	defaultPeriod    = 30
	defaultAlgorithm = "SHA1"
)

// Format is how codes are computed from a key: the settings a TOTP app is
// configured with next to the secret. Every totp step embeds it, so the
// parameter names are the same everywhere.
type Format struct {
	Digits    int    `yaml:"digits" doc:"code length: 6, 7 or 8 (default 6)"`
	Period    int    `yaml:"period" doc:"time step in seconds, FreeOTP's 'Interval' and oathtool -s (default 30)"`
	Algorithm string `yaml:"algorithm" doc:"HMAC hash: SHA1 (default), SHA256 or SHA512"`
}

// Key is a shared secret plus the instant a code is computed for. It embeds
// Format; totp.code and totp.verify_drift embed Key.
type Key struct {
	Format      `yaml:",inline"`
	Secret      string `yaml:"secret" doc:"shared secret in base32 (case-insensitive; padding and spaces allowed); or use secret_hex"`
	SecretHex   string `yaml:"secret_hex" doc:"shared secret in hex, as oathtool takes it; or use secret"`
	At          string `yaml:"at" doc:"instant: RFC 3339 (Z or an offset), \"2006-01-02 15:04:05\" in the local time zone as oathtool -N reads it, or @<unix seconds>; default now"`
	OffsetSteps int    `yaml:"offset_steps" doc:"time steps added to the counter at 'at' (-2: the code shown 2 steps earlier)"`
	T0          string `yaml:"t0" doc:"instant counting starts from (RFC 6238 T0), same formats as 'at'; default the Unix epoch"`

	// loc is the zone of instants written without one; nil means
	// time.Local, the zone oathtool -N uses (TZ, /etc/localtime).
	loc *time.Location
}

// settings is a validated Format.
type settings struct {
	digits int
	period int64
	alg    otp.Algorithm
}

// algorithms maps the accepted spellings (upper-cased, dashes removed) to
// pquerna/otp's algorithms. MD5 is deliberately absent: no RFC 6238 client
// supports it and oathtool cannot check it.
var algorithms = map[string]otp.Algorithm{
	"SHA1":   otp.AlgorithmSHA1,
	"SHA256": otp.AlgorithmSHA256,
	"SHA512": otp.AlgorithmSHA512,
}

func (f Format) resolve() (settings, error) {
	s := settings{digits: f.Digits, period: int64(f.Period)}
	if s.digits == 0 {
		s.digits = defaultDigits
	}
	if s.digits < 6 || s.digits > 8 {
		return s, fmt.Errorf("digits: must be 6, 7 or 8, got %d", f.Digits)
	}
	if f.Period == 0 {
		s.period = defaultPeriod
	}
	if s.period <= 0 {
		return s, fmt.Errorf("period: must be a positive number of seconds, got %d", f.Period)
	}
	alg, err := parseAlgorithm(f.Algorithm)
	if err != nil {
		return s, err
	}
	s.alg = alg
	return s, nil
}

func parseAlgorithm(name string) (otp.Algorithm, error) {
	if name == "" {
		name = defaultAlgorithm
	}
	alg, ok := algorithms[strings.ReplaceAll(strings.ToUpper(strings.TrimSpace(name)), "-", "")]
	if !ok {
		return 0, fmt.Errorf("algorithm: must be SHA1, SHA256 or SHA512, got %q", name)
	}
	return alg, nil
}

// resolved is a validated Key. at is nil when the step should use its clock.
type resolved struct {
	gen    generator
	secret []byte
	at     *time.Time
	offset int64
}

func (k Key) resolve() (resolved, error) {
	var r resolved
	s, err := k.Format.resolve()
	if err != nil {
		return r, err
	}
	switch {
	case k.Secret != "" && k.SecretHex != "":
		return r, errors.New("secret, secret_hex: set one, not both")
	case k.Secret != "":
		r.secret, err = parseBase32Secret(k.Secret)
		if err != nil {
			return r, fmt.Errorf("secret: %w", err)
		}
	case k.SecretHex != "":
		r.secret, err = parseHexSecret(k.SecretHex)
		if err != nil {
			return r, fmt.Errorf("secret_hex: %w", err)
		}
	default:
		return r, errors.New("secret: required (or secret_hex)")
	}
	t0 := time.Unix(0, 0)
	if k.T0 != "" {
		if t0, err = parseInstant(k.T0, k.loc); err != nil {
			return r, fmt.Errorf("t0: %w", err)
		}
	}
	if k.At != "" {
		at, err := parseInstant(k.At, k.loc)
		if err != nil {
			return r, fmt.Errorf("at: %w", err)
		}
		if at.Unix() < t0.Unix() {
			return r, fmt.Errorf("at: %s is before t0 %s", formatInstant(at), formatInstant(t0))
		}
		r.at = &at
	}
	r.offset = int64(k.OffsetSteps)
	r.gen = newGenerator(r.secret, s, t0.Unix())
	if r.at != nil {
		if _, err := r.counter(*r.at); err != nil {
			return r, err
		}
	}
	return r, nil
}

// counter is the counter of the code the step works with: the time step at
// t plus offset_steps.
func (r resolved) counter(t time.Time) (int64, error) {
	c, err := r.gen.counter(t)
	if err != nil {
		return 0, fmt.Errorf("at: %w", err)
	}
	if c+r.offset < 0 {
		return 0, fmt.Errorf("offset_steps: %d steps before counter %d gives a negative counter", -r.offset, c)
	}
	return c + r.offset, nil
}

// markSecret tells the runner about every form of the key this step may
// handle, so none can leak into a report or log.
func (k Key) markSecret(env *steps.Env, r resolved) {
	h := hex.EncodeToString(r.secret)
	for _, v := range []string{k.Secret, k.SecretHex, h, strings.ToUpper(h), r.gen.b32} {
		env.Secret(v)
	}
}

// warnWeakKey notes keys below RFC 4226 R6's 128 bits. Existing keys are
// still checked (the runbook's own example key is 5 bytes): the drill's job
// is to report, totp.generate_key is where weak keys are refused.
func warnWeakKey(env *steps.Env, secret []byte) {
	if len(secret) < minKeyBytes {
		env.Logf("warning: the key is only %d bits; RFC 4226 R6 requires at least 128", 8*len(secret))
	}
}

// warnSevenDigits notes that 7-digit codes are legal (RFC 4226 allows 6
// to 8) but not enrollable everywhere.
func warnSevenDigits(env *steps.Env, digits int) {
	if digits == 7 {
		env.Logf("warning: 7-digit codes: FreeOTP up to 1.5 offers only 6 or 8 digits and Google Authenticator only 6; check every app that will enrol this key")
	}
}

// instant is the configured instant, or the clock's now.
func (r resolved) instant(c clock) time.Time {
	if r.at != nil {
		return *r.at
	}
	return c.Now()
}

// b32 is the canonical base32 alphabet without padding, the form key URIs,
// FreeOTP and Google Authenticator use.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// parseBase32Secret accepts what people copy from apps and tools: any case,
// spaces or dashes between groups, trailing padding. Errors never quote the
// input: it is a secret.
func parseBase32Secret(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r', '-':
			return -1
		}
		return r
	}, strings.ToUpper(s))
	clean = strings.TrimRight(clean, "=")
	if clean == "" {
		return nil, errors.New("empty")
	}
	// Go's unpadded decoder accepts a dangling final group; base32 itself
	// cannot end 1, 3 or 6 characters into a group of 8.
	switch len(clean) % 8 {
	case 1, 3, 6:
		return nil, fmt.Errorf("not valid base32 (%d characters is not a possible length)", len(clean))
	}
	key, err := b32.DecodeString(clean)
	if err != nil {
		var corrupt base32.CorruptInputError
		if errors.As(err, &corrupt) {
			return nil, fmt.Errorf("not valid base32 (bad character or length at position %d of %d)", int64(corrupt), len(clean))
		}
		return nil, errors.New("not valid base32")
	}
	return key, nil
}

// parseHexSecret accepts hex in any case, with spaces or colons between
// bytes, as printed by oathtool --verbose and openssl.
func parseHexSecret(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r', ':':
			return -1
		}
		return r
	}, s)
	if clean == "" {
		return nil, errors.New("empty")
	}
	if len(clean)%2 != 0 {
		return nil, fmt.Errorf("not valid hex (odd number of digits: %d)", len(clean))
	}
	key, err := hex.DecodeString(clean)
	if err != nil {
		var bad hex.InvalidByteError
		if errors.As(err, &bad) {
			return nil, errors.New("not valid hex (a character is not 0-9, a-f)")
		}
		return nil, errors.New("not valid hex")
	}
	return key, nil
}

// instantLayouts are tried in order after the @<unix> form. The first
// carries its zone (Z or an offset); the others, the runbook's
// `oathtool -N "2017-08-16 22:46:00"` form among them, have none and are
// read in the local zone, as oathtool's date parser reads them.
var instantLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04"}

// parseInstant reads an RFC 3339 time (Z or an offset honoured), a
// zone-less "2006-01-02 15:04:05" in loc (nil: time.Local, like oathtool
// -N), or @<unix seconds> (bare integers are read as unix seconds too, so
// YAML numbers work).
func parseInstant(s string, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.Local
	}
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(strings.TrimPrefix(s, "@"), 10, 64); err == nil {
		// Keep to years 0..9999 so every instant can also be printed in RFC 3339.
		if n < -62167219200 || n > 253402300799 {
			return time.Time{}, fmt.Errorf("unix time %d out of range", n)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	for _, layout := range instantLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("want RFC 3339 (2006-01-02T15:04:05Z or +05:30), \"2006-01-02 15:04:05\" (local time, as oathtool -N) or @<unix seconds>, got %q", s)
}

// formatInstant prints an instant the way parseInstant reads it back.
func formatInstant(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

// generator computes codes for one key with pquerna/otp's HOTP (RFC 4226)
// over the RFC 6238 time counter. pquerna's totp package has no T0 and
// wraps around below counter 0, so the counter is computed here.
type generator struct {
	b32    string
	opts   hotp.ValidateOpts
	period int64
	t0     int64
	digits int
}

func newGenerator(secret []byte, s settings, t0 int64) generator {
	return generator{
		b32:    b32.EncodeToString(secret),
		opts:   hotp.ValidateOpts{Digits: otp.Digits(s.digits), Algorithm: s.alg},
		period: s.period,
		t0:     t0,
		digits: s.digits,
	}
}

// errBeforeT0 reports an instant before the start of counting.
var errBeforeT0 = errors.New("instant is before t0")

// counter is RFC 6238's T = floor((unix - T0) / X), whole seconds as
// oathtool counts them.
func (g generator) counter(t time.Time) (int64, error) {
	d := t.Unix() - g.t0
	if d < 0 {
		return 0, errBeforeT0
	}
	return d / g.period, nil
}

// stepStart is the first instant of counter c.
func (g generator) stepStart(c int64) time.Time {
	return time.Unix(g.t0+c*g.period, 0)
}

// code is the code for counter c (c >= 0).
func (g generator) code(c int64) (string, error) {
	if c < 0 {
		return "", fmt.Errorf("counter %d is negative", c)
	}
	return hotp.GenerateCodeCustom(g.b32, uint64(c), g.opts)
}

// match looks for code within window steps of counter c in the given
// search order and returns the offset it matched at. The order matters
// only when one code occurs twice in the window (about once in a million
// pairs for 6 digits): the first one found is reported. Counters below 0
// do not exist and are skipped.
func (g generator) match(code string, c int64, window int, order searchOrder) (offset int, ok bool, err error) {
	if err := checkCode(code, g.digits); err != nil {
		return 0, false, err
	}
	for _, off := range order.offsets(window) {
		if c+int64(off) < 0 {
			continue
		}
		ok, err := hotp.ValidateCustom(code, uint64(c+int64(off)), g.b32, g.opts)
		if err != nil {
			return 0, false, err
		}
		if ok {
			return off, true, nil
		}
	}
	return 0, false, nil
}

// searchOrder is the order in which a window is searched.
type searchOrder string

// The search orders. liboath's oath_totp_validate (behind oathtool -w and
// pam_oath) tries 0, then for each distance the later step before the
// earlier one: 0, +1, -1, +2, -2, .... pastFirst tries the earlier step
// first, 0, -1, +1, ..., favouring the common case of a code typed late.
const (
	orderPastFirst searchOrder = "past_first"
	orderLiboath   searchOrder = "liboath"
)

// parseSearchOrder reads the search_order parameter ("" is past_first).
func parseSearchOrder(s string) (searchOrder, error) {
	switch o := searchOrder(s); o {
	case "":
		return orderPastFirst, nil
	case orderPastFirst, orderLiboath:
		return o, nil
	}
	return "", fmt.Errorf("search_order: must be %s or %s, got %q", orderPastFirst, orderLiboath, s)
}

// offsets lists the offsets -w..+w in this order.
func (o searchOrder) offsets(w int) []int {
	out := make([]int, 0, 2*w+1)
	out = append(out, 0)
	for d := 1; d <= w; d++ {
		if o == orderLiboath {
			out = append(out, d, -d)
		} else {
			out = append(out, -d, d)
		}
	}
	return out
}

// checkCode checks a code's shape without ever quoting it.
func checkCode(code string, digits int) error {
	if len(code) != digits {
		return fmt.Errorf("code: must be %d digits, got %d characters", digits, len(code))
	}
	for _, r := range code {
		if r < '0' || r > '9' {
			return fmt.Errorf("code: must be %d digits, got a non-digit character", digits)
		}
	}
	return nil
}
