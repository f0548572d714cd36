// Package redact removes secret values from text before it leaves the
// process: console lines, the journal, report.json, junit.xml, HTML.
//
// A secret is hidden in its raw form and in the encodings a value commonly
// takes on its way into a log: standard and URL-safe base64 (padded or not,
// and at each of the three byte alignments it can have inside a longer
// base64 blob such as an HTTP Basic header), hex in either case, and URL
// query or path escaping.
package redact

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Mask replaces every redacted occurrence.
const Mask = "***"

// MinLen is the shortest secret redacted. Shorter values would turn every
// occurrence of a common character into a mask; they are refused by the
// runner with an error instead of being silently exposed.
const MinLen = 3

// minEncodedLen is the shortest encoded form worth masking: shorter forms
// would match unrelated text by chance.
const minEncodedLen = 4

// Redactor holds the set of known secrets. The zero value is ready to use and
// safe for concurrent use.
type Redactor struct {
	mu       sync.RWMutex
	secrets  map[string]struct{}
	replacer *strings.Replacer
	forms    []string
}

// Add registers secret values. Values shorter than MinLen are ignored;
// callers that must not ignore them check Acceptable first.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, v := range values {
		if len(v) < MinLen {
			continue
		}
		if r.secrets == nil {
			r.secrets = map[string]struct{}{}
		}
		if _, ok := r.secrets[v]; ok {
			continue
		}
		r.secrets[v] = struct{}{}
		changed = true
	}
	if changed {
		r.rebuild()
	}
}

// Acceptable reports whether v is long enough to be redacted reliably.
func Acceptable(v string) bool { return len(v) >= MinLen }

// Len returns the number of secrets known.
func (r *Redactor) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.secrets)
}

func (r *Redactor) rebuild() {
	set := map[string]struct{}{}
	for s := range r.secrets {
		for _, f := range Forms(s) {
			set[f] = struct{}{}
		}
	}
	forms := make([]string, 0, len(set))
	for f := range set {
		forms = append(forms, f)
	}
	// Longest first, so a longer form is replaced before a shorter one it
	// contains.
	sort.Slice(forms, func(i, j int) bool {
		if len(forms[i]) != len(forms[j]) {
			return len(forms[i]) > len(forms[j])
		}
		return forms[i] < forms[j]
	})
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, Mask)
	}
	r.forms = forms
	r.replacer = strings.NewReplacer(pairs...)
}

// String returns s with every known secret masked.
func (r *Redactor) String(s string) string {
	r.mu.RLock()
	rep := r.replacer
	r.mu.RUnlock()
	if rep == nil || s == "" {
		return s
	}
	return rep.Replace(s)
}

// Contains reports whether s holds any form of a known secret. Tests and the
// report verifier use it to prove an output is clean.
func (r *Redactor) Contains(s string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, f := range r.forms {
		if strings.Contains(s, f) {
			return true
		}
	}
	return false
}

// Value returns a deep copy of v with every string masked. It understands the
// shapes outputs take: strings, slices, maps and the scalar types; anything
// else is returned unchanged.
func (r *Redactor) Value(v any) any {
	switch t := v.(type) {
	case string:
		return r.String(t)
	case []string:
		out := make([]string, len(t))
		for i, s := range t {
			out[i] = r.String(s)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = r.Value(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[r.String(k)] = r.Value(e)
		}
		return out
	case map[string]string:
		out := make(map[string]string, len(t))
		for k, e := range t {
			out[r.String(k)] = r.String(e)
		}
		return out
	case []byte:
		return r.String(string(t))
	default:
		return v
	}
}

// Forms returns the raw secret and every encoded form that is masked.
func Forms(secret string) []string {
	if len(secret) < MinLen {
		return nil
	}
	forms := []string{secret}
	add := func(f string) {
		if len(f) >= minEncodedLen && f != secret {
			forms = append(forms, f)
		}
	}
	b := []byte(secret)
	add(hex.EncodeToString(b))
	add(strings.ToUpper(hex.EncodeToString(b)))
	add(url.QueryEscape(secret))
	add(url.PathEscape(secret))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for _, f := range base64Cores(enc, b) {
			add(f)
		}
	}
	return forms
}

// base64Cores returns, for each of the three alignments a byte string can
// have inside a longer base64 stream, the run of characters that depends on
// the secret alone. Characters whose 6 bits mix secret bits with neighbouring
// bytes are dropped, so the core matches wherever the secret sits.
func base64Cores(enc *base64.Encoding, b []byte) []string {
	var cores []string
	raw := enc.WithPadding(base64.NoPadding)
	for shift := 0; shift < 3; shift++ {
		buf := make([]byte, shift+len(b))
		copy(buf[shift:], b)
		s := raw.EncodeToString(buf)
		// Secret bits start at bit 8*shift; the first character made only
		// of secret bits is ceil(8*shift/6).
		start := (8*shift + 5) / 6
		// Secret bits end at bit 8*(shift+len); the last full character
		// ends at floor(end/6).
		end := (8 * (shift + len(b))) / 6
		if end > len(s) {
			end = len(s)
		}
		if end-start >= minEncodedLen {
			cores = append(cores, s[start:end])
		}
	}
	// The whole padded encoding, as a value stands when encoded alone.
	cores = append(cores, enc.EncodeToString(b))
	return cores
}
