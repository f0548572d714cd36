package steps

import (
	"strconv"
	"strings"
)

// Thousands formats n with comma separators, for figures in step summaries
// and reports: 6652 -> "6,652", -1234567 -> "-1,234,567".
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// List turns a string slice into the []any an output list is made of
// (expressions and the journal see outputs as JSON values).
func List(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
