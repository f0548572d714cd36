package failoverdriver

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

type nopOpener struct{}

func (nopOpener) Check(Params) error { return nil }
func (nopOpener) Open(context.Context, *steps.Env, Params) (Driver, error) {
	return nil, nil
}

func TestRegister(t *testing.T) {
	Register("zz-b", nopOpener{})
	Register("zz-a", nopOpener{})
	o, ok := Lookup("zz-a")
	require.True(t, ok)
	assert.Equal(t, nopOpener{}, o)
	_, ok = Lookup("zz-none")
	assert.False(t, ok)
	names := Drivers()
	assert.IsIncreasing(t, names)
	assert.Subset(t, names, []string{"zz-a", "zz-b"})

	cases := []struct {
		name string
		fn   func()
	}{
		{"duplicate driver", func() { Register("zz-a", nopOpener{}) }},
		{"empty driver name", func() { Register("", nopOpener{}) }},
		{"nil driver", func() { Register("zz-c", nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { assert.Panics(t, tc.fn) })
	}
}
