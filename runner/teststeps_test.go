package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// Test-only steps that let runner tests inject every kind of fault.

var (
	journalMu sync.Mutex
	trail     []string // what test steps and undo actions did, in order
	attempts  = map[string]int{}
)

func resetTrail() {
	journalMu.Lock()
	defer journalMu.Unlock()
	trail = nil
	attempts = map[string]int{}
}

func note(s string) {
	journalMu.Lock()
	defer journalMu.Unlock()
	trail = append(trail, s)
}

func trailCopy() []string {
	journalMu.Lock()
	defer journalMu.Unlock()
	return append([]string(nil), trail...)
}

type emitStep struct {
	Label  string         `yaml:"label"`
	Values map[string]any `yaml:"values"`
	Token  string         `yaml:"token"`
	Count  int            `yaml:"count"`
	Delay  time.Duration  `yaml:"delay"`
	Log    string         `yaml:"log"`
}

func (s *emitStep) Run(ctx context.Context, env *steps.Env) error {
	if s.Delay > 0 {
		select {
		case <-time.After(s.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.Label != "" {
		note(s.Label)
	}
	if s.Log != "" {
		env.Logf("%s", s.Log)
	}
	env.SetOutput("value", s.Values)
	env.SetOutput("count", s.Count)
	if s.Token != "" {
		env.SetOutput("token", s.Token)
	}
	return nil
}

type faultStep struct {
	Mode string `yaml:"mode" required:"true"`
}

func (s *faultStep) Validate() error {
	switch s.Mode {
	case "fail", "error", "panic", "hang", "stubborn":
		return nil
	}
	return fmt.Errorf("mode: unknown %q", s.Mode)
}

func (s *faultStep) Run(ctx context.Context, env *steps.Env) error {
	switch s.Mode {
	case "fail":
		return steps.Failf("the check found a fault")
	case "error":
		return errors.New("could not run")
	case "panic":
		panic("boom")
	case "hang":
		<-ctx.Done()
		note("hang:cancelled")
		return ctx.Err()
	default: // stubborn: ignores cancellation
		time.Sleep(2 * time.Second)
		return nil
	}
}

type undoStep struct {
	Name string `yaml:"name" required:"true"`
	Fail bool   `yaml:"fail"`
}

func (s *undoStep) Run(ctx context.Context, env *steps.Env) error {
	note("do:" + s.Name)
	env.Undo(s.Name, func(ctx context.Context) error {
		note("undo:" + s.Name)
		if s.Fail {
			return errors.New("undo failed")
		}
		return nil
	})
	return nil
}

type flakyStep struct {
	Key      string `yaml:"key" required:"true"`
	Failures int    `yaml:"failures"`
}

func (s *flakyStep) Run(ctx context.Context, env *steps.Env) error {
	journalMu.Lock()
	attempts[s.Key]++
	n := attempts[s.Key]
	journalMu.Unlock()
	note(fmt.Sprintf("flaky:%s:%d:%d", s.Key, n, time.Now().UnixMilli()))
	env.SetOutput("attempt", n)
	if n <= s.Failures {
		return fmt.Errorf("attempt %d failed", n)
	}
	return nil
}

type typedStep struct {
	Port    int           `yaml:"port" required:"true"`
	Ratio   float64       `yaml:"ratio"`
	Enabled bool          `yaml:"enabled"`
	Wait    time.Duration `yaml:"wait"`
	Hosts   []string      `yaml:"hosts"`
	Nested  struct {
		Name string `yaml:"name"`
	} `yaml:"nested"`
}

func (s *typedStep) Validate() error {
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("port: must be 1-65535, got %d", s.Port)
	}
	return nil
}

func (s *typedStep) Run(ctx context.Context, env *steps.Env) error {
	env.SetOutput("port", s.Port)
	env.SetOutput("hosts", s.Hosts)
	env.SetOutput("name", s.Nested.Name)
	env.SetOutput("type", fmt.Sprintf("%T", s.Port))
	return nil
}

func init() {
	steps.Register(steps.Spec{Name: "test.emit", Summary: "emit outputs", New: func() steps.Step { return &emitStep{} },
		Outputs: []steps.Output{{Name: "value"}, {Name: "count"}, {Name: "token", Secret: true}}})
	steps.Register(steps.Spec{Name: "test.fault", Summary: "inject a fault", New: func() steps.Step { return &faultStep{} }})
	steps.Register(steps.Spec{Name: "test.undo", Summary: "register an undo", New: func() steps.Step { return &undoStep{} }})
	steps.Register(steps.Spec{Name: "test.flaky", Summary: "fail N times", New: func() steps.Step { return &flakyStep{} },
		Outputs: []steps.Output{{Name: "attempt"}}})
	steps.Register(steps.Spec{Name: "test.typed", Summary: "typed params", New: func() steps.Step { return &typedStep{} },
		Outputs: []steps.Output{{Name: "port"}, {Name: "hosts"}, {Name: "name"}, {Name: "type"}}})
}

type noteStep struct {
	Kind string `yaml:"kind" required:"true"`
}

func (s *noteStep) Run(ctx context.Context, env *steps.Env) error {
	env.Note(s.Kind, "noted "+s.Kind, time.Now())
	return nil
}

// awaitNoteStep waits for a moment of kind on the timeline.
type awaitNoteStep struct {
	Kind string `yaml:"kind" required:"true"`
}

func (s *awaitNoteStep) Run(ctx context.Context, env *steps.Env) error {
	for {
		if m, ok := env.Timeline().Latest(s.Kind, time.Now()); ok {
			env.SetOutput("seen", true)
			env.SetOutput("by", m.Step)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func init() {
	steps.Register(steps.Spec{Name: "test.note", Summary: "note a moment", New: func() steps.Step { return &noteStep{} }})
	steps.Register(steps.Spec{Name: "test.await_note", Summary: "wait for a moment", New: func() steps.Step { return &awaitNoteStep{} },
		Outputs: []steps.Output{{Name: "seen"}, {Name: "by"}}})
}
