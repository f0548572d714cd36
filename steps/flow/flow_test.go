package flow

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

func TestSleepStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := (&Sleep{Duration: time.Hour}).Run(ctx, steps.NewEnv("s", "x", "", steps.Hooks{}))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
	assert.Error(t, (&Sleep{}).Validate())
}

func TestWaitJoinsThroughHook(t *testing.T) {
	var got []string
	env := steps.NewEnv("s", "w", "", steps.Hooks{Join: func(_ context.Context, ids []string) error {
		got = ids
		return steps.Failf("background step [flood failed]")
	}})
	w := &Wait{For: []string{"flood"}}
	err := w.Run(context.Background(), env)
	require.Error(t, err)
	assert.True(t, steps.IsFailure(err))
	assert.Equal(t, []string{"flood"}, got)
	assert.Equal(t, []string{"flood"}, w.JoinIDs())
}
