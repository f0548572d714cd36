// Package labtest starts lab environments from Go tests.
//
//	func TestFailover(t *testing.T) {
//		l := labtest.Up(t, "db")
//		db1, _ := l.Host("db1")
//		...
//	}
//
// A test that needs the lab is skipped with a message saying what is missing
// (a Docker engine, the lab image) when it runs outside CI, and fails in CI
// (the CI environment variable is set), where the lab must work. With
// -short it is always skipped.
package labtest

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/lab"
)

// InCI reports whether the tests run in CI: CI is set and not "false"/"0".
func InCI() bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv("CI")))
	return v != "" && v != "false" && v != "0"
}

// Require checks that a Docker engine answers and the lab image is present.
// When not, it skips the test outside CI and fails it in CI.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: needs the Docker lab, not run with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := lab.CheckImage(ctx, "")
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("lab unavailable in CI: %v", err)
	}
	switch {
	case errors.Is(err, lab.ErrNoDocker):
		t.Skipf("skipping: needs a Docker engine: %v", err)
	case errors.Is(err, lab.ErrImageMissing):
		t.Skipf("skipping: needs the lab image: %v", err)
	default:
		t.Skipf("skipping: lab unavailable: %v", err)
	}
}

// Up starts the named environments for the test (after Require) and removes
// them when the test and its subtests end.
func Up(t testing.TB, envs ...string) *lab.Lab {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Envs: envs, Logf: t.Logf})
	if err != nil {
		t.Fatalf("lab up %v: %v", envs, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Down(ctx); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}
