package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Hooks connect an Env to the runner. Every field is optional; a zero Hooks
// gives an Env that only records outputs, which is what step unit tests use.
type Hooks struct {
	// Log receives free-form progress lines from the step.
	Log func(line string)
	// Secret is called with every value the step learns is secret, so the
	// runner can redact it everywhere from then on.
	Secret func(value string)
	// Undo pushes an action onto the scenario's cleanup stack.
	Undo func(name string, fn func(ctx context.Context) error)
	// Join waits for background steps (empty ids: all started so far).
	Join func(ctx context.Context, ids []string) error
	// Progress reports a short live status line ("312 writes, 2 errors").
	Progress func(status string)
	// Timeline is shared by every step of the scenario; nil gives the Env
	// a timeline of its own.
	Timeline *Timeline
}

// Env is what a running step sees of the runner.
type Env struct {
	StepID   string
	Scenario string
	// Dir is the report folder; steps write evidence files below it.
	Dir string
	// BaseDir is the folder of the scenario file; relative paths in
	// parameters are resolved against it (see Path).
	BaseDir string

	hooks Hooks

	mu       sync.Mutex
	outputs  map[string]any
	evidence []Evidence
}

// NewEnv returns an Env for one step run.
func NewEnv(scenario, stepID, dir string, hooks Hooks) *Env {
	if hooks.Timeline == nil {
		hooks.Timeline = &Timeline{}
	}
	return &Env{StepID: stepID, Scenario: scenario, Dir: dir, hooks: hooks, outputs: map[string]any{}}
}

// Note puts a moment on the scenario's timeline, for later steps (and
// background steps running now) to line up with.
func (e *Env) Note(kind, label string, at time.Time) {
	e.hooks.Timeline.Note(Moment{Kind: kind, Label: label, Step: e.StepID, At: at})
}

// NoteData is Note with what the step knows of the moment (see Moment.Data).
func (e *Env) NoteData(kind, label string, at time.Time, data map[string]any) {
	e.hooks.Timeline.Note(Moment{Kind: kind, Label: label, Step: e.StepID, At: at, Data: data})
}

// Timeline returns the scenario's timeline.
func (e *Env) Timeline() *Timeline { return e.hooks.Timeline }

// SetOutput records an output value. Values should be JSON-friendly: bool,
// numbers, strings, slices and maps of those.
func (e *Env) SetOutput(name string, v any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.outputs[name] = v
}

// Outputs returns a copy of the outputs recorded so far.
func (e *Env) Outputs() map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]any, len(e.outputs))
	for k, v := range e.outputs {
		out[k] = v
	}
	return out
}

// AddEvidence attaches evidence to the step's result.
func (e *Env) AddEvidence(ev Evidence) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evidence = append(e.evidence, ev)
}

// Evidence returns the evidence recorded so far.
func (e *Env) Evidence() []Evidence {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Evidence(nil), e.evidence...)
}

// Logf sends a progress line to the console and journal.
func (e *Env) Logf(format string, args ...any) {
	if e.hooks.Log != nil {
		e.hooks.Log(fmt.Sprintf(format, args...))
	}
}

// Progress updates the step's live status line.
func (e *Env) Progress(status string) {
	if e.hooks.Progress != nil {
		e.hooks.Progress(status)
	}
}

// Secret marks a value as secret: it is redacted from all output from now on.
func (e *Env) Secret(value string) {
	if e.hooks.Secret != nil && value != "" {
		e.hooks.Secret(value)
	}
}

// Undo registers a cleanup action that runs after the scenario, in reverse
// order of registration, whatever the outcome (also on interrupt).
func (e *Env) Undo(name string, fn func(ctx context.Context) error) {
	if e.hooks.Undo != nil {
		e.hooks.Undo(name, fn)
	}
}

// Join waits for background steps to finish.
func (e *Env) Join(ctx context.Context, ids []string) error {
	if e.hooks.Join == nil {
		return nil
	}
	return e.hooks.Join(ctx, ids)
}

// Path resolves a path given in a parameter: relative paths are taken from
// the scenario's folder, so a scenario and its fixtures move together.
func (e *Env) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || e.BaseDir == "" {
		return p
	}
	return filepath.Join(e.BaseDir, p)
}

// ArtifactPath returns a path inside the report folder for a file this step
// writes, creating the folder. The name is prefixed with the scenario and step
// so parallel scenarios never collide. The returned relative path is what
// evidence should reference.
func (e *Env) ArtifactPath(name string) (abs, rel string, err error) {
	dir := e.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	rel = filepath.Join("artifacts", safeName(e.Scenario), safeName(e.StepID)+"-"+safeName(name))
	abs = filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return "", "", err
	}
	return abs, filepath.ToSlash(rel), nil
}

func safeName(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
