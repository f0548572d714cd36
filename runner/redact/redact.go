// Package redact removes secret values from text before it leaves the
// process: console lines, the journal, report.json, junit.xml, HTML.
//
// A secret is hidden in its raw form and in the forms a value takes on its
// way into a log: escaped or quoted (JSON, Go's %q, Python's repr and
// json.dumps), percent-encoded (Go's and Python's URL escaping, URL.String()
// of a password or path, + or %20 for a space, upper or lower case hex),
// standard and URL-safe base64 (padded or not, and at each of the three
// byte alignments it can have inside a longer base64 blob such as an HTTP
// Basic header), hex in either case; each line of 8 characters or more of a
// multi-line secret (a PEM key printed line by line) is a secret of its own.
// Text cut through a secret leaves a piece of it beside the cut mark ("…",
// "..."): that piece is masked too.
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
	mu      sync.RWMutex
	secrets map[string]struct{}
	match   *matcher
	forms   []string
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
	// Longest first, so the longest form at a position is the one masked.
	sort.Slice(forms, func(i, j int) bool {
		if len(forms[i]) != len(forms[j]) {
			return len(forms[i]) > len(forms[j])
		}
		return forms[i] < forms[j]
	})
	r.forms = forms
	r.match = newMatcher(forms)
}

// String returns s with every known secret masked, also where text was cut
// through a secret (see CutMarks).
func (r *Redactor) String(s string) string {
	r.mu.RLock()
	m, forms := r.match, r.forms
	r.mu.RUnlock()
	if m == nil || s == "" {
		return s
	}
	return maskCuts(m.replace(s), forms)
}

// CutMarks are what opsdrill and the tools it runs put where they cut text
// ("first 200 bytes…", yaml.v3's "`Kq7Zx/a...`"). Text cut through a secret
// leaves a piece of it beside the mark, which no whole form matches: the
// piece is masked too.
var CutMarks = []string{"…", "..."}

// minCutPiece is the shortest piece of a secret beside a cut mark that is
// masked; a single character reveals nothing and matches by chance.
const minCutPiece = 2

// maskCuts masks, beside every cut mark in s, a piece that is the start of
// a secret's form (before the mark) or the end of one (after it).
func maskCuts(s string, forms []string) string {
	for _, mark := range CutMarks {
		if !strings.Contains(s, mark) {
			continue
		}
		var b strings.Builder
		rest := s
		for {
			i := strings.Index(rest, mark)
			if i < 0 {
				b.WriteString(rest)
				break
			}
			before := rest[:i]
			if n := longestPrefixAtEnd(before, forms); n >= minCutPiece {
				before = before[:len(before)-n] + Mask
			}
			b.WriteString(before)
			b.WriteString(mark)
			rest = rest[i+len(mark):]
			if n := longestSuffixAtStart(rest, forms); n >= minCutPiece {
				b.WriteString(Mask)
				rest = rest[n:]
			}
		}
		s = b.String()
	}
	return s
}

// longestPrefixAtEnd is the length of the longest proper start of a form
// that text ends with.
func longestPrefixAtEnd(text string, forms []string) int {
	best := 0
	for _, f := range forms {
		// A start of f at text[i:] has f[0] at i; try each such i from the
		// earliest, so the first hit is the longest.
		from := max(0, len(text)-len(f)+1)
		for i := from; i < len(text) && len(text)-i > best; i++ {
			if text[i] == f[0] && strings.HasPrefix(f, text[i:]) {
				best = len(text) - i
				break
			}
		}
	}
	return best
}

// longestSuffixAtStart is the length of the longest proper end of a form
// that text starts with.
func longestSuffixAtStart(text string, forms []string) int {
	best := 0
	for _, f := range forms {
		last := f[len(f)-1]
		for j := min(len(text), len(f)-1); j > best; j-- {
			if text[j-1] == last && strings.HasSuffix(f, text[:j]) {
				best = j
				break
			}
		}
	}
	return best
}

// Contains reports whether s holds any form of a known secret. Tests and the
// report verifier use it to prove an output is clean.
func (r *Redactor) Contains(s string) bool {
	r.mu.RLock()
	m := r.match
	r.mu.RUnlock()
	return m.contains(s)
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
	for _, f := range escapedForms(secret) {
		add(f)
	}
	add(hex.EncodeToString(b))
	add(strings.ToUpper(hex.EncodeToString(b)))
	add(url.QueryEscape(secret))
	add(url.PathEscape(secret))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for _, f := range base64Cores(enc, b) {
			add(f)
		}
	}
	for _, l := range lines(secret) {
		forms = append(forms, Forms(l)...)
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
