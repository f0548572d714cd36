package redact

import (
	"math/bits"
	"strings"
)

// matcher finds every occurrence of a set of forms in one pass over the
// text. A window of the w leading bytes of the text at each position (w:
// the shortest form's length, at most 8) is rolled into a key; a bit set
// of hashed keys rules out nearly every position at once, and where the bit
// is set the forms starting with that window are compared. Every match is
// masked, overlapping and adjacent matches together as one run, so two
// secrets that overlap in the text leave no piece of either.
type matcher struct {
	w     int
	mask  uint64              // the key's significant bits: 8*w of them
	set   []uint64            // bit set of hashed window keys
	byKey map[uint64][]string // forms by their window key, longest first
}

// setBits is the bit set's size as a power of two: 64 Ki bits (8 KiB),
// sparse for the few hundred forms a run knows.
const setBits = 16

func newMatcher(forms []string) *matcher {
	if len(forms) == 0 {
		return nil
	}
	w := 8
	for _, f := range forms {
		w = min(w, len(f))
	}
	m := &matcher{w: w, mask: ^uint64(0) >> (64 - 8*w), set: make([]uint64, 1<<setBits/64), byKey: map[uint64][]string{}}
	// forms come longest first; each list keeps that order.
	for _, f := range forms {
		k := windowKey(f, w)
		m.byKey[k] = append(m.byKey[k], f)
		h := hashKey(k)
		m.set[h/64] |= 1 << (h % 64)
	}
	return m
}

func windowKey(s string, w int) uint64 {
	var k uint64
	for i := range w {
		k = k<<8 | uint64(s[i])
	}
	return k
}

func hashKey(k uint64) uint64 {
	hi, lo := bits.Mul64(k, 0x9e3779b97f4a7c15)
	return (hi ^ lo) >> (64 - setBits)
}

// replace returns s with every match masked.
func (m *matcher) replace(s string) string {
	out, _ := m.find(s)
	return out
}

// find returns s with every match masked, and whether anything matched (a
// secret that is itself "***" leaves the text as it was).
func (m *matcher) find(s string) (string, bool) {
	if m == nil || len(s) < m.w {
		return s, false
	}
	var b strings.Builder
	written := 0               // s[:written] is in b
	runStart, runEnd := -1, -1 // the masked run being extended
	var k uint64
	for i := 0; i < len(s); i++ {
		k = (k<<8 | uint64(s[i])) & m.mask
		start := i - m.w + 1
		if start < 0 {
			continue
		}
		h := hashKey(k)
		if m.set[h/64]&(1<<(h%64)) == 0 {
			continue
		}
		for _, f := range m.byKey[k] {
			if !strings.HasPrefix(s[start:], f) {
				continue
			}
			end := start + len(f)
			switch {
			case runStart >= 0 && start <= runEnd:
				runEnd = max(runEnd, end)
			default:
				if runStart >= 0 {
					b.WriteString(s[written:runStart])
					b.WriteString(Mask)
					written = runEnd
				} else if b.Cap() == 0 {
					b.Grow(len(s))
				}
				runStart, runEnd = start, end
			}
			break // the longest form at start covers the shorter ones
		}
	}
	if runStart < 0 {
		return s, false
	}
	b.WriteString(s[written:runStart])
	b.WriteString(Mask)
	b.WriteString(s[runEnd:])
	return b.String(), true
}

// contains reports whether s holds any form.
func (m *matcher) contains(s string) bool {
	_, found := m.find(s)
	return found
}
