// Package steps is the registry of drill steps and the contract between a step
// and the runner.
//
// A step family lives in its own package (steps/totp, steps/netcheck, ...) and
// joins the registry from its init function, the way database/sql drivers do:
//
//	func init() {
//		steps.Register(steps.Spec{
//			Name:    "tcp.probe",
//			Summary: "Check that a TCP port is open or closed",
//			New:     func() steps.Step { return &Probe{Timeout: 3 * time.Second} },
//			Outputs: []steps.Output{{Name: "open", Type: "bool"}},
//		})
//	}
//
// New returns a pointer to the step's parameter struct, pre-filled with its
// defaults. The runner decodes the scenario's `with:` mapping into it (yaml
// tags name the fields; unknown fields are rejected at load time), calls
// Validate when the struct has one, then Run. A step reports results through
// the Env: outputs, evidence, undo actions and secrets it discovers. It never
// knows how results are rendered.
package steps

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Step is a decoded, validated step ready to run. Run must return promptly
// once ctx is cancelled.
type Step interface {
	Run(ctx context.Context, env *Env) error
}

// Validator is implemented by parameter structs that check themselves.
// Validate runs at load time when `with:` holds only literals, and again at
// run time after expressions are substituted.
type Validator interface {
	Validate() error
}

// Joiner is implemented by steps that wait for background steps. JoinIDs
// returns the ids joined; empty means every background step started so far.
// The loader uses it to decide when a background step's outputs may be read.
type Joiner interface {
	JoinIDs() []string
}

// Output declares one output of a step.
type Output struct {
	Name   string
	Type   string // bool, int, float, string, duration, list, map, any
	Doc    string
	Secret bool // the value is redacted in every report and log
}

// Figure declares a key figure of a step: an output an auditor reads in
// the report's findings, in words ("0 of 6,652 acknowledged writes lost").
// An expectation of the scenario that compares the output with a value
// (outputs.lost == 0, outputs.rtt_avg_ms < vars.max_rtt_ms) is the
// figure's limit; the report shows it beside the figure.
type Figure struct {
	// Output is the declared output measured.
	Output string
	// Text is the figure in words: {value} is the output formatted with
	// Unit; {NAME} is another output of the step, {with.NAME} one of its
	// parameters (defaults included); {NAME|text} gives text when the
	// value is empty; {=NAME} is the value as it is (a port: 7000, not
	// 7,000).
	Text string
	// TextFalse, for a bool output, is the text when it is false. A
	// figure with only TextFalse shows only when the output is false.
	TextFalse string
	// TextNegative is the text for a negative number ({value} is then its
	// magnitude: "closed 0.3 s before the lease ended"). Without it, a
	// negative duration means "not measured" and the figure is left out.
	TextNegative string
	// When names an output that must be true, non-zero or non-empty for
	// the figure to show (rtt only when a reply came back).
	When string
	// Unit of the output's number: "ms", "s", "%", or "" for a count.
	Unit string
	// Seconds shows a millisecond value, and its limit, in seconds.
	Seconds bool
}

// Example is a scenario snippet shown by `opsdrill steps NAME`.
type Example struct {
	Title string
	YAML  string
}

// Spec describes a step type.
type Spec struct {
	Name    string // family.verb, e.g. "tcp.probe"
	Summary string // one line
	Doc     string // paragraphs shown by `opsdrill steps NAME`
	New     func() Step
	Outputs []Output
	// DynamicOutputs lets a step set outputs not declared in Outputs
	// (e.g. exec with a parser); references to them are not checked at load.
	DynamicOutputs bool
	// Figures are the outputs the report's findings give in words, in
	// order of importance.
	Figures  []Figure
	Examples []Example
}

// Output returns the declared output named name.
func (s Spec) Output(name string) (Output, bool) {
	for _, o := range s.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return Output{}, false
}

var (
	mu       sync.RWMutex
	registry = map[string]Spec{}
)

// Register adds a step type. It panics on a duplicate or incomplete spec,
// or a figure of an output the spec does not declare (or declares
// secret): programming errors caught by any test that imports the package.
func Register(s Spec) {
	if s.Name == "" || s.New == nil || s.Summary == "" {
		panic(fmt.Sprintf("steps: incomplete spec %q", s.Name))
	}
	for _, f := range s.Figures {
		o, ok := s.Output(f.Output)
		_, when := s.Output(f.When)
		if !ok || o.Secret || f.Text+f.TextFalse == "" || (f.When != "" && !when) {
			panic(fmt.Sprintf("steps: %s: figure of output %q: declare it (and When's), not secret, with a text", s.Name, f.Output))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[s.Name]; dup {
		panic("steps: duplicate registration of " + s.Name)
	}
	registry[s.Name] = s
}

// Lookup returns the spec registered under name.
func Lookup(name string) (Spec, bool) {
	mu.RLock()
	defer mu.RUnlock()
	s, ok := registry[name]
	return s, ok
}

// All returns every registered spec sorted by name.
func All() []Spec {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Spec, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Failure is a check that ran and found the system at fault, as opposed to a
// step that could not run at all. The runner marks the step "failed" rather
// than "errored".
type Failure struct {
	Msg string
}

func (f *Failure) Error() string { return f.Msg }

// Failf returns a *Failure with a formatted message.
func Failf(format string, args ...any) error {
	return &Failure{Msg: fmt.Sprintf(format, args...)}
}

// IsFailure reports whether err is or wraps a *Failure.
func IsFailure(err error) bool {
	var f *Failure
	return errors.As(err, &f)
}
