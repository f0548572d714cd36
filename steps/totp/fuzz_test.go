package totp

import (
	"encoding/hex"
	"regexp"
	"slices"
	"testing"
	"time"
)

// secretErrors is every message the secret parsers may return, numbers
// replaced by N: an error outside this list might quote its input.
var secretErrors = []string{
	"empty",
	"not valid baseN",
	"not valid baseN (N characters is not a possible length)",
	"not valid baseN (bad character or length at position N of N)",
	"not valid hex",
	"not valid hex (odd number of digits: N)",
	"not valid hex (a character is not N-N, a-f)",
}

var numbers = regexp.MustCompile(`[0-9]+`)

func checkSecretError(t *testing.T, err error) {
	if msg := numbers.ReplaceAllString(err.Error(), "N"); !slices.Contains(secretErrors, msg) {
		t.Fatalf("unexpected error text (it may quote the secret): %q", msg)
	}
}

// FuzzParseSecret: any input either decodes to a key that round-trips
// through its canonical form, or fails with an error that does not quote
// the input.
func FuzzParseSecret(f *testing.F) {
	for _, s := range []string{"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "gezd gnbv", "GEZDGNA=", "1a2b3c4d5e", "1A:2B", "", "====", "GEZDGNBVG"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if key, err := parseBase32Secret(s); err == nil {
			if len(key) == 0 {
				t.Fatal("empty key accepted")
			}
			again, err := parseBase32Secret(b32.EncodeToString(key))
			if err != nil || string(again) != string(key) {
				t.Fatalf("canonical base32 does not round-trip: %v", err)
			}
		} else {
			checkSecretError(t, err)
		}
		if key, err := parseHexSecret(s); err == nil {
			again, err := parseHexSecret(hex.EncodeToString(key))
			if err != nil || string(again) != string(key) {
				t.Fatalf("hex does not round-trip: %v", err)
			}
		} else {
			checkSecretError(t, err)
		}
	})
}

// FuzzParseInstant: any accepted instant prints and parses back to the
// same second, and its counter is computed without panicking.
func FuzzParseInstant(f *testing.F) {
	for _, s := range []string{"@0", "@1502923560", "2017-08-16 22:46:00", "2017-08-16T22:46:00Z", "2017-08-17T00:46:00+02:00", "@-62167219200", "@253402300799", "9999-12-31T23:59:59Z", "now"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at, err := parseInstant(s, time.UTC)
		if err != nil {
			return
		}
		back, err := parseInstant(formatInstant(at), time.UTC)
		if err != nil {
			t.Fatalf("formatted instant %q does not parse: %v", formatInstant(at), err)
		}
		if back.Unix() != at.Unix() {
			t.Fatalf("round trip moved %s to %s", at, back)
		}
		r, err := Key{SecretHex: "31", At: s}.resolve()
		if err == nil {
			c, err := r.counter(*r.at)
			if err != nil || c < 0 {
				t.Fatalf("counter %d, %v", c, err)
			}
			if _, err := r.gen.code(c); err != nil {
				t.Fatal(err)
			}
		}
	})
}
