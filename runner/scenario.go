package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/runner/redact"
	"github.com/opsdrill/opsdrill/steps"
)

// scenarioRun executes one scenario: main steps in order (background ones
// concurrently), then cleanup steps, then the undo stack in reverse.
type scenarioRun struct {
	ctx       context.Context
	opts      *Options
	em        *emitter
	red       *redact.Redactor
	idx       int
	sc        *Scenario
	secrets   map[string]any
	env       map[string]any
	reportDir string
	runID     string

	scope      map[string]any // expression scope; touched by the scenario goroutine only
	stepsScope map[string]any

	timeline steps.Timeline // moments steps note, shared by the scenario

	mu       sync.Mutex
	undo     []undoAction
	bg       map[string]*bgStep
	bgOrder  []string
	failures []string // "step x failed: ..." for the scenario summary
}

type undoAction struct {
	name string
	fn   func(ctx context.Context) error
}

type bgStep struct {
	st     *Step
	done   chan struct{}
	out    *outcome
	joined bool
}

// outcome is a finished step.
type outcome struct {
	status  string
	outputs map[string]any // raw, for expressions
	err     string
	ms      int64
	figures []reports.Figure
}

func (sr *scenarioRun) run() string {
	sc := sr.sc
	vars := maps.Clone(sc.Vars)
	maps.Copy(vars, sr.opts.Vars)
	sr.stepsScope = map[string]any{}
	sr.scope = map[string]any{
		"vars":    vars,
		"secrets": sr.secrets,
		"env":     sr.env,
		"steps":   sr.stepsScope,
		"scenario": map[string]any{
			"name": sc.Name, "file": sc.File, "dir": sc.Dir, "report_dir": sr.reportDir,
			"run_id": sr.runID, "tags": sc.Tags,
		},
	}
	sr.bg = map[string]*bgStep{}
	info := &reports.ScenarioInfo{Name: sc.Name, File: sc.File, SHA256: sc.SHA256,
		Description: sc.Description, Tags: sc.Tags, Controls: sc.Controls, Vars: declaredVars(sc, vars)}
	for _, st := range sc.Steps {
		info.Steps = append(info.Steps, reports.StepInfo{ID: st.ID, Uses: st.Uses, Phase: reports.PhaseMain,
			Background: st.Background, ContinueOnError: st.ContinueOnError})
	}
	for _, st := range sc.Cleanup {
		info.Steps = append(info.Steps, reports.StepInfo{ID: st.ID, Uses: st.Uses, Phase: reports.PhaseCleanup})
	}
	sr.em.emit(&reports.Event{Type: reports.EventScenarioStart, Scenario: sr.idx, ScenarioInfo: info})

	if sr.opts.Skip != nil {
		if skip, reason := sr.opts.Skip(sc); skip {
			for _, st := range sc.Steps {
				sr.skip(st, reason)
			}
			sr.em.emit(&reports.Event{Type: reports.EventScenarioEnd, Scenario: sr.idx, Status: reports.StatusSkipped, Error: reason})
			return reports.StatusSkipped
		}
	}
	if sr.ctx.Err() != nil {
		for _, st := range sc.Steps {
			sr.skip(st, sr.interruption()+" before this scenario started")
		}
		sr.em.emit(&reports.Event{Type: reports.EventScenarioEnd, Scenario: sr.idx, Status: reports.StatusInterrupted, Error: sr.interruption()})
		return reports.StatusInterrupted
	}

	ctx := sr.ctx
	var cancel context.CancelFunc
	if sc.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, sc.Timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	bgCtx, cancelBg := context.WithCancel(ctx)
	stopped := ""
	for _, st := range sc.Steps {
		if stopped != "" {
			sr.skip(st, stopped)
			continue
		}
		if ctx.Err() != nil {
			stopped = sr.stopReason(ctx)
			sr.skip(st, stopped)
			continue
		}
		if st.Background {
			sr.startBackground(bgCtx, st)
			continue
		}
		out := sr.execStep(ctx, st, reports.PhaseMain)
		sr.record(st, out)
		if bad(out.status) && !st.ContinueOnError {
			stopped = fmt.Sprintf("skipped: step %s %s", st.ID, out.status)
		}
	}
	if stopped != "" {
		// A drill that stopped early does not wait for its background
		// load to run its course.
		cancelBg()
	}
	sr.joinAll(context.WithoutCancel(ctx))
	cancelBg()
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) && sr.ctx.Err() == nil
	cancel()

	sr.cleanup()

	status := reports.StatusPassed
	errMsg := ""
	sr.mu.Lock()
	if len(sr.failures) > 0 {
		status = reports.StatusFailed
		errMsg = sr.failures[0]
		if len(sr.failures) > 1 {
			errMsg += fmt.Sprintf(" (and %d more)", len(sr.failures)-1)
		}
	}
	sr.mu.Unlock()
	if timedOut {
		status = reports.StatusFailed
		errMsg = fmt.Sprintf("scenario timed out after %s", sc.Timeout)
	}
	if sr.ctx.Err() != nil {
		status = reports.StatusInterrupted
		errMsg = sr.interruption() + "; cleanup ran"
	}
	sr.em.emit(&reports.Event{Type: reports.EventScenarioEnd, Scenario: sr.idx, Status: status, Error: errMsg})
	return status
}

// declaredVars reports the vars the scenario declares with their effective
// values; extra names from shared vars files are left out.
func declaredVars(sc *Scenario, vars map[string]any) map[string]any {
	out := make(map[string]any, len(sc.Vars))
	for k := range sc.Vars {
		out[k] = vars[k]
	}
	return out
}

func bad(status string) bool {
	return status == reports.StatusFailed || status == reports.StatusErrored
}

// interruption says why the run was stopped from outside the scenario: a
// signal, or evidence that could not be written.
func (sr *scenarioRun) interruption() string {
	var ee *EvidenceError
	if errors.As(context.Cause(sr.ctx), &ee) {
		return "run stopped: " + ee.Err.Error()
	}
	return "run interrupted"
}

func (sr *scenarioRun) stopReason(ctx context.Context) string {
	if sr.ctx.Err() != nil {
		return "skipped: " + sr.interruption()
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("skipped: scenario timed out after %s", sr.sc.Timeout)
	}
	return "skipped: scenario stopped"
}

func (sr *scenarioRun) skip(st *Step, reason string) {
	info := &reports.StepInfo{ID: st.ID, Uses: st.Uses, Phase: st.Phase, Background: st.Background}
	sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info,
		Result: &reports.StepResult{Status: reports.StatusSkipped, SkipReason: reason}})
}

// record publishes a finished step's results to the expression scope.
func (sr *scenarioRun) record(st *Step, out *outcome) {
	sr.stepsScope[st.ID] = map[string]any{
		"outputs": out.outputs, "status": out.status, "error": out.err, "duration_ms": out.ms,
	}
	if bad(out.status) && !st.ContinueOnError {
		sr.fail(fmt.Sprintf("step %s %s", st.ID, out.status))
	}
}

func (sr *scenarioRun) fail(msg string) {
	sr.mu.Lock()
	sr.failures = append(sr.failures, msg)
	sr.mu.Unlock()
}

func (sr *scenarioRun) startBackground(ctx context.Context, st *Step) {
	b := &bgStep{st: st, done: make(chan struct{})}
	sr.mu.Lock()
	sr.bg[st.ID] = b
	sr.bgOrder = append(sr.bgOrder, st.ID)
	sr.mu.Unlock()
	// The scope is read by the background goroutine while the scenario
	// goroutine writes it; give the step its own snapshot.
	scope := sr.snapshotScope()
	go func() {
		defer close(b.done)
		b.out = sr.execStepScoped(ctx, st, reports.PhaseMain, scope)
	}()
}

func (sr *scenarioRun) snapshotScope() map[string]any {
	scope := maps.Clone(sr.scope)
	scope["steps"] = maps.Clone(sr.stepsScope)
	return scope
}

// join waits for background steps and publishes their results. It runs on
// the scenario goroutine (from a wait step or at scenario end).
func (sr *scenarioRun) join(ctx context.Context, ids []string) error {
	sr.mu.Lock()
	if len(ids) == 0 {
		ids = append([]string(nil), sr.bgOrder...)
	}
	targets := make([]*bgStep, 0, len(ids))
	for _, id := range ids {
		if b := sr.bg[id]; b != nil && !b.joined {
			targets = append(targets, b)
		}
	}
	sr.mu.Unlock()
	var failed []string
	for _, b := range targets {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.joined = true
		sr.record(b.st, b.out)
		if bad(b.out.status) && !b.st.ContinueOnError {
			failed = append(failed, fmt.Sprintf("%s %s", b.st.ID, b.out.status))
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return steps.Failf("background step %v", failed)
	}
	return nil
}

func (sr *scenarioRun) joinAll(ctx context.Context) {
	_ = sr.join(ctx, nil) // failures are recorded by join itself
}

// cleanup runs the scenario's cleanup steps, then the undo stack in
// reverse, with a context of its own: it runs after failures, timeouts and
// interrupts alike, and only a hard stop (a second signal) cuts it short.
func (sr *scenarioRun) cleanup() {
	ctx, cancel := context.WithTimeout(sr.opts.HardStop, sr.opts.CleanupTimeout)
	defer cancel()
	for _, st := range sr.sc.Cleanup {
		out := sr.execStep(ctx, st, reports.PhaseCleanup)
		if bad(out.status) {
			sr.fail(fmt.Sprintf("cleanup step %s %s", st.ID, out.status))
		}
	}
	sr.mu.Lock()
	undo := sr.undo
	sr.undo = nil
	sr.mu.Unlock()
	used := map[string]int{}
	for i := len(undo) - 1; i >= 0; i-- {
		u := undo[i]
		used[u.name]++
		id := u.name
		if used[u.name] > 1 {
			id = fmt.Sprintf("%s#%d", u.name, used[u.name])
		}
		info := &reports.StepInfo{ID: id, Uses: "undo", Phase: reports.PhaseCleanup}
		sr.em.emit(&reports.Event{Type: reports.EventStepStart, Scenario: sr.idx, Step: info, Time: time.Now()})
		start := time.Now()
		err := sr.callGuarded(ctx, func(ctx context.Context) error { return u.fn(ctx) })
		res := &reports.StepResult{Status: reports.StatusPassed, DurationMS: time.Since(start).Milliseconds()}
		if err != nil {
			res.Status = reports.StatusErrored
			res.Error = err.Error()
			sr.fail(fmt.Sprintf("undo %s errored", id))
		}
		sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info, Result: res})
	}
}

// execStep runs a step on the scenario goroutine.
func (sr *scenarioRun) execStep(ctx context.Context, st *Step, phase string) *outcome {
	return sr.execStepScoped(ctx, st, phase, sr.scope)
}

func (sr *scenarioRun) execStepScoped(ctx context.Context, st *Step, phase string, scope map[string]any) *outcome {
	info := &reports.StepInfo{ID: st.ID, Uses: st.Uses, Phase: phase, Background: st.Background}
	if st.If != nil {
		v, err := st.If.Eval(scope)
		if err != nil {
			return sr.finish(info, time.Now(), 0, &outcome{status: reports.StatusErrored, err: "if: " + err.Error()}, nil, nil)
		}
		if b, ok := v.(bool); !ok || !b {
			out := &outcome{status: reports.StatusSkipped}
			sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info,
				Result: &reports.StepResult{Status: reports.StatusSkipped, SkipReason: "if: " + st.If.Src + " is false"}})
			return out
		}
	}
	start := time.Now()
	delay := st.Retry.Delay
	var out *outcome
	var exps []reports.Expectation
	var evidence []steps.Evidence
	attempt := 1
	for ; ; attempt++ {
		ai := *info
		ai.Attempt = attempt
		sr.em.emit(&reports.Event{Type: reports.EventStepStart, Scenario: sr.idx, Step: &ai})
		var retryable bool
		out, exps, evidence, retryable = sr.attempt(ctx, st, phase, scope)
		if !bad(out.status) || !retryable || attempt >= st.Retry.Attempts || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		delay = time.Duration(float64(delay) * st.Retry.Backoff)
		if ctx.Err() != nil {
			break
		}
	}
	return sr.finish(info, start, attempt, out, exps, evidence)
}

func (sr *scenarioRun) finish(info *reports.StepInfo, start time.Time, attempts int, out *outcome, exps []reports.Expectation, evidence []steps.Evidence) *outcome {
	out.ms = time.Since(start).Milliseconds()
	res := &reports.StepResult{
		Status: out.status, DurationMS: out.ms, Attempts: attempts, Error: out.err,
		Expectations: exps, Evidence: evidence, Outputs: sr.reportOutputs(info.Uses, out.outputs),
		Figures: out.figures,
	}
	sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info, Result: res})
	return out
}

// reportOutputs copies outputs for reports, masking declared secret ones
// whole (the redactor then masks secrets wherever else they appear).
func (sr *scenarioRun) reportOutputs(uses string, outputs map[string]any) map[string]any {
	if len(outputs) == 0 {
		return nil
	}
	spec, _ := steps.Lookup(uses)
	out := make(map[string]any, len(outputs))
	for k, v := range outputs {
		if o, ok := spec.Output(k); ok && o.Secret {
			out[k] = redact.Mask
			continue
		}
		out[k] = v
	}
	return out
}

// attempt runs a step once: resolve parameters, run, check expectations.
// retryable is false for errors retrying cannot fix (bad parameters).
func (sr *scenarioRun) attempt(ctx context.Context, st *Step, phase string, scope map[string]any) (*outcome, []reports.Expectation, []steps.Evidence, bool) {
	with := st.With
	if len(st.tmpls) > 0 {
		var err error
		with, err = resolveNode(st.With, st.tmpls, scope)
		if err != nil {
			return &outcome{status: reports.StatusErrored, err: "with: " + err.Error()}, nil, nil, false
		}
	}
	// Decoded afresh for every attempt: a step never sees state left by an
	// earlier attempt.
	step, err := decodeStep(st.Spec, with)
	if err != nil {
		return &outcome{status: reports.StatusErrored, err: err.Error()}, nil, nil, false
	}
	sctx := ctx
	var cancel context.CancelFunc
	if st.Timeout > 0 {
		sctx, cancel = context.WithTimeout(ctx, st.Timeout)
		defer cancel()
	}
	env := steps.NewEnv(sr.sc.Name, st.ID, sr.reportDir, sr.hooks(st, phase))
	env.BaseDir = sr.sc.Dir
	err = sr.callGuarded(sctx, func(ctx context.Context) error { return step.Run(ctx, env) })
	outputs := env.Outputs()
	sr.registerSecretOutputs(st.Spec, outputs)
	out := &outcome{status: reports.StatusPassed, outputs: outputs}
	evidence := env.Evidence()
	switch {
	case err == nil:
	case st.Timeout > 0 && errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		out.status, out.err = reports.StatusErrored, fmt.Sprintf("timed out after %s", st.Timeout)
		out.figures = figures(st, step, with, outputs, nil)
		return out, nil, evidence, true
	case steps.IsFailure(err):
		out.status, out.err = reports.StatusFailed, err.Error()
	default:
		out.status, out.err = reports.StatusErrored, err.Error()
		if ctx.Err() != nil {
			out.err = "interrupted: " + out.err
		}
		out.figures = figures(st, step, with, outputs, nil)
		return out, nil, evidence, true
	}
	exps, limits := sr.expectations(st, scope, outputs)
	for _, e := range exps {
		if !e.OK && out.status == reports.StatusPassed {
			out.status = reports.StatusFailed
		}
	}
	out.figures = figures(st, step, with, outputs, limits)
	return out, exps, evidence, true
}

// figures phrases the key figures the step's spec declares, each with the
// limits its expectations set.
func figures(st *Step, step steps.Step, with *yaml.Node, outputs map[string]any, limits map[string][]reports.Limit) []reports.Figure {
	if len(st.Spec.Figures) == 0 {
		return nil
	}
	var params map[string]any
	var out []reports.Figure
	for _, f := range st.Spec.Figures {
		if params == nil && strings.Contains(f.Text+f.TextFalse, "{with.") {
			params = paramValues(step, with)
		}
		if fig, ok := reports.NewFigure(st.ID, f, outputs, params, limits[f.Output]); ok {
			out = append(out, fig)
		}
	}
	return out
}

// paramValues gives a step's parameters by name: its defaults, overridden
// by what `with:` says (in the scenario's own words: 2s, not 2000000000).
func paramValues(step steps.Step, with *yaml.Node) (params map[string]any) {
	params = map[string]any{}
	defer func() {
		// A parameter struct YAML cannot encode gives no defaults.
		_ = recover()
		if with != nil {
			var given map[string]any
			if with.Decode(&given) == nil {
				maps.Copy(params, given)
			}
		}
	}()
	if b, err := yaml.Marshal(step); err == nil {
		_ = yaml.Unmarshal(b, &params)
	}
	return params
}

// expectations evaluates the step's expect: list; an expectation that
// compares an output with a value is also a limit of that output.
func (sr *scenarioRun) expectations(st *Step, scope map[string]any, outputs map[string]any) ([]reports.Expectation, map[string][]reports.Limit) {
	if len(st.Expect) == 0 {
		return nil, nil
	}
	env := maps.Clone(scope)
	env["outputs"] = outputs
	exps := make([]reports.Expectation, 0, len(st.Expect))
	limits := map[string][]reports.Limit{}
	for _, e := range st.Expect {
		x := reports.Expectation{Expr: e.Src}
		v, err := e.Eval(env)
		switch b, isBool := v.(bool); {
		case err != nil:
			x.Error = err.Error()
		case !isBool:
			x.Error = fmt.Sprintf("expected true or false, got %s", formatValue(v))
		default:
			x.OK = b
		}
		if !x.OK {
			x.Values = e.Explain(env)
		}
		exps = append(exps, x)
		if name, op, v, ok := e.Limit(env); ok {
			limits[name] = append(limits[name], reports.Limit{Expr: e.Src, Op: op, Value: v, OK: x.OK})
		}
	}
	return exps, limits
}

func (sr *scenarioRun) registerSecretOutputs(spec steps.Spec, outputs map[string]any) {
	for _, o := range spec.Outputs {
		if !o.Secret {
			continue
		}
		switch v := outputs[o.Name].(type) {
		case nil:
		case string:
			sr.red.Add(v)
		case []string:
			sr.red.Add(v...)
		default:
			sr.red.Add(fmt.Sprint(v))
		}
	}
}

func (sr *scenarioRun) hooks(st *Step, phase string) steps.Hooks {
	info := &reports.StepInfo{ID: st.ID, Uses: st.Uses, Phase: phase, Background: st.Background}
	return steps.Hooks{
		Log: func(line string) {
			sr.em.emit(&reports.Event{Type: reports.EventStepLog, Scenario: sr.idx, Step: info, Line: line})
		},
		Secret: func(v string) { sr.red.Add(v) },
		Undo: func(name string, fn func(ctx context.Context) error) {
			sr.mu.Lock()
			sr.undo = append(sr.undo, undoAction{name: name, fn: fn})
			sr.mu.Unlock()
		},
		Join:     func(ctx context.Context, ids []string) error { return sr.join(ctx, ids) },
		Timeline: &sr.timeline,
		Progress: func(status string) {
			if sr.opts.Progress != nil {
				sr.opts.Progress(sr.idx, phase, st.ID, sr.red.String(status))
			}
		},
	}
}

// callGuarded runs fn, turning a panic into an error, and abandons it when
// it does not return within StopGrace after ctx is cancelled: a drill must
// reach its cleanup even when a step misbehaves.
func (sr *scenarioRun) callGuarded(ctx context.Context, fn func(context.Context) error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("step panicked: %v\n%s", p, stack())
			}
		}()
		done <- fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(sr.opts.StopGrace)
	defer t.Stop()
	select {
	case err := <-done:
		if err == nil {
			err = ctx.Err()
		}
		return err
	case <-t.C:
		return fmt.Errorf("step did not stop within %s of being cancelled (%w); abandoned", sr.opts.StopGrace, ctx.Err())
	}
}
