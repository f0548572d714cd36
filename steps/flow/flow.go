// Package flow holds the steps that shape a scenario rather than probe a
// system: sleep, assert (expectations only) and wait (join background
// steps).
package flow

import (
	"context"
	"fmt"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

func init() {
	steps.Register(steps.Spec{
		Name:     "sleep",
		Summary:  "Pause the scenario for a fixed duration",
		Doc:      "Waits for `duration`, or until the scenario is cancelled. Useful to let a lease expire or a background load build up.",
		New:      func() steps.Step { return &Sleep{} },
		Examples: []steps.Example{{Title: "Let a 10 s lease expire", YAML: "- uses: sleep\n  with: { duration: 11s }"}},
	})
	steps.Register(steps.Spec{
		Name:     "assert",
		Summary:  "Check expectations over earlier steps' outputs",
		Doc:      "Runs nothing; its `expect:` expressions are the check. Use it to compare results of several steps.",
		New:      func() steps.Step { return &Assert{} },
		Examples: []steps.Example{{Title: "Compare two steps", YAML: "- uses: assert\n  expect:\n    - steps.before.outputs.open == false\n    - steps.after.outputs.open"}},
	})
	steps.Register(steps.Spec{
		Name:    "wait",
		Summary: "Wait for background steps to finish",
		Doc: "Joins the background steps named in `for` (all started so far when empty); in a step file, the file's own. " +
			"Their outputs can be read only after a wait. The wait fails when a joined step failed " +
			"(unless that step has continue_on_error).",
		New:      func() steps.Step { return &Wait{} },
		Examples: []steps.Example{{Title: "Join a flood", YAML: "- uses: wait\n  with: { for: [flood] }"}},
	})
}

// Sleep pauses the scenario.
type Sleep struct {
	Duration time.Duration `yaml:"duration" doc:"how long to sleep, e.g. 500ms, 10s" required:"true"`
}

// Validate checks the duration.
func (s *Sleep) Validate() error {
	if s.Duration <= 0 {
		return fmt.Errorf("duration: must be positive, got %s", s.Duration)
	}
	return nil
}

// Run sleeps.
func (s *Sleep) Run(ctx context.Context, env *steps.Env) error {
	t := time.NewTimer(s.Duration)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Assert has no parameters; its expectations are the check.
type Assert struct{}

// Run does nothing.
func (Assert) Run(context.Context, *steps.Env) error { return nil }

// Wait joins background steps.
type Wait struct {
	For []string `yaml:"for" doc:"ids of the background steps to wait for; empty: all started so far"`
}

// JoinIDs tells the loader which steps this wait joins.
func (w *Wait) JoinIDs() []string { return w.For }

// Run waits.
func (w *Wait) Run(ctx context.Context, env *steps.Env) error {
	return env.Join(ctx, w.For)
}
