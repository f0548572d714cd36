package steps

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestThousands(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0"},
		{7, "7"},
		{999, "999"},
		{1000, "1,000"},
		{6652, "6,652"},
		{100000, "100,000"},
		{1234567, "1,234,567"},
		{-999, "-999"},
		{-1000, "-1,000"},
		{-1234567, "-1,234,567"},
		{math.MinInt64, "-9,223,372,036,854,775,808"},
	} {
		assert.Equal(t, tc.want, Thousands(tc.n), "%d", tc.n)
	}
}

func TestList(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []any
	}{
		{nil, []any{}},
		{[]string{}, []any{}},
		{[]string{"a"}, []any{"a"}},
		{[]string{"b", "a", ""}, []any{"b", "a", ""}},
	} {
		assert.Equal(t, tc.want, List(tc.in), "%q", tc.in)
	}
}
