package totp

import (
	"context"
	"time"
)

// clock is the time source of a step. Steps use the system clock; tests
// substitute a fake one whose Sleep returns at once, so the one-period wait
// of the replay check costs nothing.
type clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, whichever comes first.
	Sleep(ctx context.Context, d time.Duration) error
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// clockOr returns c, or the system clock when c is nil.
func clockOr(c clock) clock {
	if c == nil {
		return systemClock{}
	}
	return c
}
