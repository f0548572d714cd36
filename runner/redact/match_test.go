package redact

import (
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// naiveMask is the matcher's reference: every byte of every occurrence of
// every form is marked, and each run of marked bytes becomes one Mask.
func naiveMask(s string, forms []string) string {
	marked := make([]bool, len(s))
	for _, f := range forms {
		for from := 0; ; {
			i := strings.Index(s[from:], f)
			if i < 0 {
				break
			}
			for j := from + i; j < from+i+len(f); j++ {
				marked[j] = true
			}
			from += i + 1
		}
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if !marked[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(Mask)
		for i < len(s) && marked[i] {
			i++
		}
	}
	return b.String()
}

func longestFirst(forms []string) []string {
	forms = append([]string(nil), forms...)
	sort.Slice(forms, func(i, j int) bool {
		if len(forms[i]) != len(forms[j]) {
			return len(forms[i]) > len(forms[j])
		}
		return forms[i] < forms[j]
	})
	return forms
}

func TestMatcherMasksEveryOccurrence(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		forms      []string
		want       string
	}{
		{"none", "nothing here", []string{"secret"}, "nothing here"},
		{"one", "a secret b", []string{"secret"}, "a *** b"},
		{"at both ends", "secretxsecret", []string{"secret"}, "***x***"},
		{"adjacent", "secretsecret", []string{"secret"}, "***"},
		{"overlapping secrets leave no piece", "abcdefghi", []string{"abcdef", "defghi"}, "***"},
		{"a shorter form inside a longer", "xx-hunter2-secret-xx", []string{"hunter2-secret", "hunter2"}, "xx-***-xx"},
		{"shortest form sets the window", "ab abc abcd", []string{"abc", "abcdefgh"}, "ab *** ***d"},
		{"text shorter than the window", "ab", []string{"abc"}, "ab"},
		{"repeats of itself", "aaaaaaa", []string{"aaa"}, "***"},
		{"a secret that is the mask", "x *** y", []string{"***"}, "x *** y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMatcher(longestFirst(tc.forms))
			assert.Equal(t, tc.want, m.replace(tc.text))
			assert.Equal(t, naiveMask(tc.text, tc.forms), m.replace(tc.text))
			assert.Equal(t, strings.Contains(tc.text, tc.forms[0]) || tc.want != tc.text, m.contains(tc.text))
		})
	}
}

// The matcher against the reference on random texts built from a small
// alphabet, so forms occur, overlap and touch often.
func TestMatcherAgreesWithTheReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(alphabet string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 3000 {
		alphabet := "abc\x00\xff"[:2+rng.IntN(4)]
		var forms []string
		for range 1 + rng.IntN(6) {
			forms = append(forms, word(alphabet, 3+rng.IntN(10)))
		}
		text := word(alphabet, rng.IntN(200))
		m := newMatcher(longestFirst(forms))
		want := naiveMask(text, forms)
		require.Equal(t, want, m.replace(text), "forms %q text %q", forms, text)
		require.Equal(t, want != text, m.contains(text), "forms %q text %q", forms, text)
	}
}

func FuzzMatcher(f *testing.F) {
	f.Add("abcdefghi", "abcdef", "defghi")
	f.Add("secretsecret", "secret", "ecr")
	f.Add("\x00\xff\x00\xff\x00", "\x00\xff\x00", "\xff\x00\xff")
	f.Fuzz(func(t *testing.T, text, a, b string) {
		var forms []string
		for _, f := range []string{a, b} {
			if len(f) >= MinLen {
				forms = append(forms, f)
			}
		}
		if len(forms) == 0 {
			return
		}
		m := newMatcher(longestFirst(forms))
		if got, want := m.replace(text), naiveMask(text, forms); got != want {
			t.Fatalf("forms %q text %q: got %q, want %q", forms, text, got, want)
		}
	})
}
