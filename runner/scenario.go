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

// scenarioRun executes one scenario: steady-state steps, main steps in
// order (background ones concurrently), steady-state steps again, then
// cleanup steps, then the undo stack in reverse.
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
	hosts     *hostRecord

	top *frame // the scenario's own steps; touched by the scenario goroutine only

	timeline steps.Timeline // moments steps note, shared by the scenario

	mu       sync.Mutex
	undo     []undoAction
	failures []string // "step x failed: ..." for the scenario summary
}

// frame is one list of steps and the expression scope they run in: the
// scenario's, or a step file's, whose steps are reported under the
// caller's id (prefix "caller/"). Each frame has its own background
// steps: a wait joins those of its own list, and a step file's end joins
// what it started, so nothing outlives it.
type frame struct {
	prefix string
	scope  map[string]any
	steps  map[string]any // scope["steps"]

	mu       sync.Mutex
	bg       map[string]*bgStep
	bgOrder  []string
	bgFailed []failure // background steps found failed when joined, not yet taken
}

func newFrame(prefix string, scope map[string]any) *frame {
	fr := &frame{prefix: prefix, scope: scope, steps: map[string]any{}, bg: map[string]*bgStep{}}
	scope["steps"] = fr.steps
	return fr
}

// takeFailed returns the background failures found since the last call.
func (fr *frame) takeFailed() []failure {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	out := fr.bgFailed
	fr.bgFailed = nil
	return out
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
	each    any            // for_each: the iterations' outputs, a list or a map
	err     string
	ms      int64
	figures []reports.Figure
	// attempts is every attempt's own result, kept when a retry follows.
	attempts []reports.Attempt
}

// attemptError is what an attempt's record says went wrong: the step's
// error, else its first failed expectation.
func attemptError(out *outcome, exps []reports.Expectation) string {
	if out.err != "" || !bad(out.status) {
		return out.err
	}
	for _, e := range exps {
		if !e.OK {
			return "expected " + reports.ExpectationText(e)
		}
	}
	return ""
}

// failure is a step that failed its list of steps.
type failure struct {
	id, status, err string
}

func (f failure) String() string { return fmt.Sprintf("step %s %s", f.id, f.status) }

func (f failure) detail() string {
	if f.err == "" {
		return f.String()
	}
	return f.String() + ": " + f.err
}

func (sr *scenarioRun) run() string {
	sc := sr.sc
	vars := maps.Clone(sc.Vars)
	maps.Copy(vars, sr.opts.Vars)
	sr.top = newFrame("", map[string]any{
		"vars":    vars,
		"secrets": sr.secrets,
		"env":     sr.env,
		"scenario": map[string]any{
			"name": sc.Name, "file": sc.File, "dir": sc.Dir, "report_dir": sr.reportDir,
			"run_id": sr.runID, "tags": sc.Tags,
		},
	})
	info := &reports.ScenarioInfo{Name: sc.Name, File: sc.File, SHA256: sc.SHA256,
		Description: sc.Description, Tags: sc.Tags, Controls: sc.Controls, Vars: declaredVars(sc, vars)}
	declare(&info.Steps, "", sc.SteadyState, reports.PhaseSteadyBefore)
	declare(&info.Steps, "", sc.Steps, reports.PhaseMain)
	declare(&info.Steps, "", sc.SteadyState, reports.PhaseSteadyAfter)
	declare(&info.Steps, "", sc.Cleanup, reports.PhaseCleanup)
	sr.em.emit(&reports.Event{Type: reports.EventScenarioStart, Scenario: sr.idx, ScenarioInfo: info})

	if sr.opts.Skip != nil {
		if skip, reason := sr.opts.Skip(sc); skip {
			for _, st := range sc.Steps {
				sr.skip(sr.top, st, reports.PhaseMain, reason)
			}
			sr.em.emit(&reports.Event{Type: reports.EventScenarioEnd, Scenario: sr.idx, Status: reports.StatusSkipped, Error: reason})
			return reports.StatusSkipped
		}
	}
	if sr.ctx.Err() != nil {
		for _, st := range sc.Steps {
			sr.skip(sr.top, st, reports.PhaseMain, sr.interruption()+" before this scenario started")
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

	// Steady state before: a system that is not healthy to begin with is
	// not drilled, and nothing is changed.
	var before, after []failure
	if len(sc.SteadyState) > 0 {
		before, _ = sr.runList(ctx, nil, sr.top, sc.SteadyState, reports.PhaseSteadyBefore)
	}
	if len(before) > 0 {
		reason := "skipped: steady state not met before the drill; nothing was changed"
		for _, st := range sc.Steps {
			sr.skip(sr.top, st, reports.PhaseMain, reason)
		}
		for _, st := range sc.SteadyState {
			sr.skip(sr.top, st, reports.PhaseSteadyAfter, reason)
		}
		for _, st := range sc.Cleanup {
			sr.skip(sr.top, st, reports.PhaseCleanup, reason)
		}
		cancel()
		sr.cleanup(false)
		status, errMsg := reports.StatusNotStarted, "steady state not met before the drill: "+summarise(before)
		if sr.ctx.Err() != nil {
			status, errMsg = reports.StatusInterrupted, sr.interruption()+"; cleanup ran"
		}
		sr.em.emit(&reports.Event{Type: reports.EventScenarioEnd, Scenario: sr.idx, Status: status, Error: errMsg})
		return status
	}

	for _, f := range sr.runMain(ctx, sr.top, sc.Steps, reports.PhaseMain) {
		sr.fail(f.String())
	}
	// Steady state after, before cleanup: has the drill left the system as
	// healthy as it found it?
	if len(sc.SteadyState) > 0 {
		after, _ = sr.runList(ctx, nil, sr.top, sc.SteadyState, reports.PhaseSteadyAfter)
	}
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) && sr.ctx.Err() == nil
	cancel()

	sr.cleanup(true)

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
	if len(after) > 0 && !timedOut {
		msg := "steady state not met after the drill: " + summarise(after)
		if errMsg != "" {
			msg += "; also " + errMsg
		}
		status, errMsg = reports.StatusDeviated, msg
	}
	if sr.ctx.Err() != nil {
		status = reports.StatusInterrupted
		errMsg = sr.interruption() + "; cleanup ran"
		if sr.opts.HardStop.Err() != nil {
			errMsg = sr.interruption() + "; " + cleanupAborted + ": cleanup steps not yet run were skipped"
		}
	}
	sr.em.emit(&reports.Event{Type: reports.EventScenarioEnd, Scenario: sr.idx, Status: status, Error: errMsg})
	return status
}

func summarise(fs []failure) string {
	msg := fs[0].detail()
	if len(fs) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(fs)-1)
	}
	return msg
}

// declare lists the steps a scenario will report, so those never reached
// show too: a step file's steps under their caller, and the iterations of a
// literal for_each.
func declare(out *[]reports.StepInfo, prefix string, list []*Step, phase string) {
	for _, st := range list {
		id := prefix + st.ID
		*out = append(*out, reports.StepInfo{ID: id, Uses: st.Uses, Phase: phase,
			Background: st.Background, ContinueOnError: st.ContinueOnError})
		var ids []string
		if st.ForEach != nil {
			keys, ok := st.ForEach.literalIterations()
			if !ok {
				continue
			}
			for _, k := range keys {
				iid := iterationID(id, k)
				*out = append(*out, reports.StepInfo{ID: iid, Uses: st.Uses, Phase: phase, ContinueOnError: st.ContinueOnError})
				ids = append(ids, iid)
			}
		} else {
			ids = []string{id}
		}
		if st.File != nil {
			for _, iid := range ids {
				declare(out, iid+"/", st.File.Steps, phase)
			}
		}
	}
}

// runMain runs a list of steps that may start background steps (the
// scenario's steps:, a step file's), then waits for those still running:
// none outlives its list. It returns the steps that failed the list: the
// background ones a wait found failed, the step that stopped the list,
// then the background ones found failed at its end.
func (sr *scenarioRun) runMain(ctx context.Context, fr *frame, list []*Step, phase string) []failure {
	bgCtx, cancelBg := context.WithCancel(ctx)
	defer cancelBg()
	failed, stopped := sr.runList(ctx, bgCtx, fr, list, phase)
	failed = append(fr.takeFailed(), failed...)
	if stopped != "" {
		// A list that stopped early does not wait for its background
		// load to run its course.
		cancelBg()
	}
	_ = sr.join(context.WithoutCancel(ctx), fr, nil) // failures are kept by join
	return append(failed, fr.takeFailed()...)
}

// runList runs a list of steps in order; background steps start when bgCtx
// is given. It returns the steps that failed it and, when the list stopped
// early, why.
func (sr *scenarioRun) runList(ctx, bgCtx context.Context, fr *frame, list []*Step, phase string) (failed []failure, stopped string) {
	for _, st := range list {
		if stopped != "" {
			sr.skip(fr, st, phase, stopped)
			continue
		}
		if ctx.Err() != nil {
			stopped = sr.stopReason(ctx)
			sr.skip(fr, st, phase, stopped)
			continue
		}
		if st.Background && bgCtx != nil {
			sr.startBackground(bgCtx, fr, st, phase)
			continue
		}
		out := sr.execStep(ctx, fr, st, phase, fr.scope)
		sr.record(fr, st, out)
		if bad(out.status) && !st.ContinueOnError {
			failed = append(failed, failure{id: fr.prefix + st.ID, status: out.status, err: out.err})
			stopped = fmt.Sprintf("skipped: step %s %s", fr.prefix+st.ID, out.status)
			if ctx.Err() != nil {
				// The step ended because the scenario did: say why.
				stopped = sr.stopReason(ctx)
			}
		}
	}
	return failed, stopped
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

// skip reports a step that did not run, with the steps of its step file.
func (sr *scenarioRun) skip(fr *frame, st *Step, phase, reason string) {
	sr.skipID(fr.prefix+st.ID, st, phase, reason)
}

func (sr *scenarioRun) skipID(id string, st *Step, phase, reason string) {
	info := &reports.StepInfo{ID: id, Uses: st.Uses, Phase: phase, Background: st.Background}
	sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info,
		Result: &reports.StepResult{Status: reports.StatusSkipped, SkipReason: reason}})
	ids := []string{id}
	if st.ForEach != nil {
		ids = nil
		if keys, ok := st.ForEach.literalIterations(); ok {
			for _, k := range keys {
				iid := iterationID(id, k)
				sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx,
					Step:   &reports.StepInfo{ID: iid, Uses: st.Uses, Phase: phase},
					Result: &reports.StepResult{Status: reports.StatusSkipped, SkipReason: reason}})
				ids = append(ids, iid)
			}
		}
	}
	if st.File != nil {
		for _, iid := range ids {
			for _, inner := range st.File.Steps {
				sr.skipID(iid+"/"+inner.ID, inner, phase, reason)
			}
		}
	}
}

// record publishes a finished step's results to its frame's scope.
func (sr *scenarioRun) record(fr *frame, st *Step, out *outcome) {
	res := map[string]any{"status": out.status, "error": out.err, "duration_ms": out.ms}
	if st.ForEach != nil {
		res["each"] = out.each
	} else {
		res["outputs"] = out.outputs
	}
	fr.steps[st.ID] = res
}

func (sr *scenarioRun) fail(msg string) {
	sr.mu.Lock()
	sr.failures = append(sr.failures, msg)
	sr.mu.Unlock()
}

func (sr *scenarioRun) startBackground(ctx context.Context, fr *frame, st *Step, phase string) {
	b := &bgStep{st: st, done: make(chan struct{})}
	fr.mu.Lock()
	fr.bg[st.ID] = b
	fr.bgOrder = append(fr.bgOrder, st.ID)
	fr.mu.Unlock()
	// The scope is read by the background goroutine while the list's
	// goroutine writes it; give the step its own snapshot.
	scope := maps.Clone(fr.scope)
	scope["steps"] = maps.Clone(fr.steps)
	go func() {
		defer close(b.done)
		b.out = sr.execStep(ctx, fr, st, phase, scope)
	}()
}

// join waits for background steps of frame fr (all started so far when
// ids is empty) and publishes their results to its scope. It runs while
// fr's list is blocked: from a wait step, or at the list's end. A joined
// step that failed is kept as a failure of fr's list.
func (sr *scenarioRun) join(ctx context.Context, fr *frame, ids []string) error {
	fr.mu.Lock()
	if len(ids) == 0 {
		ids = append([]string(nil), fr.bgOrder...)
	}
	targets := make([]*bgStep, 0, len(ids))
	for _, id := range ids {
		if b := fr.bg[id]; b != nil && !b.joined {
			targets = append(targets, b)
		}
	}
	fr.mu.Unlock()
	var failed []string
	for _, b := range targets {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.joined = true
		sr.record(fr, b.st, b.out)
		if bad(b.out.status) && !b.st.ContinueOnError {
			id := fr.prefix + b.st.ID
			fr.mu.Lock()
			fr.bgFailed = append(fr.bgFailed, failure{id: id, status: b.out.status, err: b.out.err})
			fr.mu.Unlock()
			failed = append(failed, fmt.Sprintf("%s %s", id, b.out.status))
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return steps.Failf("background step %v", failed)
	}
	return nil
}

// cleanup runs the scenario's cleanup steps (unless the drill never
// started), then the undo stack in reverse, with a context of its own: it
// runs after failures, timeouts and interrupts alike, and only a hard stop
// (a second signal) cuts it short.
func (sr *scenarioRun) cleanup(steps bool) {
	ctx, cancel := context.WithTimeout(sr.opts.HardStop, sr.opts.CleanupTimeout)
	defer cancel()
	if steps {
		for _, st := range sr.sc.Cleanup {
			if sr.opts.HardStop.Err() != nil {
				sr.skip(sr.top, st, reports.PhaseCleanup, "skipped: "+cleanupAborted)
				continue
			}
			out := sr.execStep(ctx, sr.top, st, reports.PhaseCleanup, sr.top.scope)
			if bad(out.status) {
				sr.fail(fmt.Sprintf("cleanup step %s %s", st.ID, out.status))
			}
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
		if sr.opts.HardStop.Err() != nil {
			sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info,
				Result: &reports.StepResult{Status: reports.StatusSkipped, SkipReason: "skipped: " + cleanupAborted}})
			continue
		}
		sr.em.emit(&reports.Event{Type: reports.EventStepStart, Scenario: sr.idx, Step: info, Time: time.Now()})
		start := time.Now()
		err := sr.callGuarded(ctx, func(ctx context.Context) error { return u.fn(ctx) })
		res := &reports.StepResult{Status: reports.StatusPassed, DurationMS: time.Since(start).Milliseconds()}
		if err != nil {
			res.Status = reports.StatusErrored
			res.Error = sr.stepError(ctx, err)
			sr.fail(fmt.Sprintf("undo %s errored", id))
		}
		sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info, Result: res})
	}
}

// cleanupAborted is why cleanup stopped short: a second interrupt.
const cleanupAborted = "cleanup aborted (second interrupt)"

// cancelReason says in words why ctx, a context of this scenario, ended:
// cleanup aborted, the scenario's timeout, an interrupt, or evidence that
// could not be written. Reports say this, not "context deadline exceeded".
func (sr *scenarioRun) cancelReason(ctx context.Context) string {
	switch {
	case sr.opts.HardStop.Err() != nil:
		return cleanupAborted
	case sr.ctx.Err() != nil:
		return sr.interruption()
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && sr.sc.Timeout > 0:
		return fmt.Sprintf("scenario timed out after %s", sr.sc.Timeout)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("cleanup timed out after %s", sr.opts.CleanupTimeout)
	}
	return "scenario stopped"
}

// stepError words the error of a step whose context ended: the reason
// alone when the error is only the context's, else both.
func (sr *scenarioRun) stepError(ctx context.Context, err error) string {
	if ctx.Err() == nil {
		return err.Error()
	}
	reason := sr.cancelReason(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return reason
	}
	return reason + ": " + err.Error()
}

// execStep runs a step of frame fr in scope: once, or once per for_each
// item.
func (sr *scenarioRun) execStep(ctx context.Context, fr *frame, st *Step, phase string, scope map[string]any) *outcome {
	if st.ForEach != nil {
		return sr.execForEach(ctx, fr, st, phase, scope)
	}
	return sr.execOne(ctx, fr, fr.prefix+st.ID, st, phase, scope)
}

// execOne runs one step (or one iteration) reported as id, with its
// retries.
func (sr *scenarioRun) execOne(ctx context.Context, fr *frame, id string, st *Step, phase string, scope map[string]any) *outcome {
	info := &reports.StepInfo{ID: id, Uses: st.Uses, Phase: phase, Background: st.Background}
	if st.If != nil {
		v, err := st.If.Eval(scope)
		if err != nil {
			return sr.finish(st, info, time.Now(), 0, &outcome{status: reports.StatusErrored, err: "if: " + err.Error()}, nil, nil)
		}
		b, ok := v.(bool)
		if !ok {
			return sr.finish(st, info, time.Now(), 0, &outcome{status: reports.StatusErrored,
				err: fmt.Sprintf("if: %s is %s, not true or false", st.If.Src, formatValue(sr.maskValue(v)))}, nil, nil)
		}
		if !b {
			reason := "if: " + st.If.Src + " is false"
			sr.skipID(id, st, phase, reason)
			return &outcome{status: reports.StatusSkipped}
		}
	}
	start := time.Now()
	delay := st.Retry.Delay
	var out *outcome
	var exps []reports.Expectation
	var evidence []steps.Evidence
	attempt := 1
	var prevAttempts []reports.Attempt
	for ; ; attempt++ {
		ai := *info
		ai.Attempt = attempt
		sr.em.emit(&reports.Event{Type: reports.EventStepStart, Scenario: sr.idx, Step: &ai})
		var retryable bool
		began := time.Now()
		if st.File != nil {
			out, exps, retryable = sr.attemptFile(ctx, id, st, phase, scope)
		} else {
			out, exps, evidence, retryable = sr.attempt(ctx, fr, id, st, phase, scope)
		}
		out.attempts = append(prevAttempts, reports.Attempt{Attempt: attempt, Status: out.status, Error: attemptError(out, exps),
			DurationMS: time.Since(began).Milliseconds()})
		prevAttempts = out.attempts
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
	return sr.finish(st, info, start, attempt, out, exps, evidence)
}

func (sr *scenarioRun) finish(st *Step, info *reports.StepInfo, start time.Time, attempts int, out *outcome, exps []reports.Expectation, evidence []steps.Evidence) *outcome {
	out.ms = time.Since(start).Milliseconds()
	res := &reports.StepResult{
		Status: out.status, DurationMS: out.ms, Attempts: attempts, AttemptLog: out.attempts, Error: out.err,
		Expectations: exps, Evidence: evidence, Outputs: sr.reportOutputs(st, out.outputs),
		Figures: out.figures,
	}
	sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info, Result: res})
	return out
}

// reportOutputs copies outputs for reports, masking declared secret ones
// whole (the redactor then masks secrets wherever else they appear).
func (sr *scenarioRun) reportOutputs(st *Step, outputs map[string]any) map[string]any {
	if len(outputs) == 0 {
		return nil
	}
	out := make(map[string]any, len(outputs))
	for k, v := range outputs {
		if secretOutput(st, k) {
			out[k] = redact.Mask
			continue
		}
		out[k] = v
	}
	return out
}

func secretOutput(st *Step, name string) bool {
	if st.File != nil {
		o := st.File.output(name)
		return o != nil && o.Secret
	}
	o, ok := st.Spec.Output(name)
	return ok && o.Secret
}

// attempt runs a Go step once: resolve parameters, run, check expectations.
// retryable is false for errors retrying cannot fix (bad parameters).
func (sr *scenarioRun) attempt(ctx context.Context, fr *frame, id string, st *Step, phase string, scope map[string]any) (*outcome, []reports.Expectation, []steps.Evidence, bool) {
	with := st.With
	if len(st.tmpls) > 0 {
		var err error
		with, err = resolveNode(st.With, st.tmpls, scope)
		if err != nil {
			return &outcome{status: reports.StatusErrored, err: "with: " + err.Error()}, nil, nil, false
		}
	}
	if sr.hosts != nil {
		sr.hosts.note(sr.sc.Name, st.ID, with)
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
	env := steps.NewEnv(sr.sc.Name, id, sr.reportDir, sr.hooks(fr, id, st, phase))
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
		out.status, out.err = reports.StatusErrored, sr.stepError(ctx, err)
		out.figures = figures(st, step, with, outputs, nil)
		return out, nil, evidence, true
	}
	exps, limits := sr.expectations(st, scope, outputs)
	for _, e := range exps {
		if !e.OK && out.status == reports.StatusPassed {
			out.status = reports.StatusFailed
		}
	}
	for _, e := range exps {
		// An expectation that could not say true or false is a mistake
		// in the scenario, not a verdict on the system.
		if e.Error != "" {
			out.status = reports.StatusErrored
		}
	}
	out.figures = figures(st, step, with, outputs, limits)
	return out, exps, evidence, true
}

// figures phrases the key figures the step's spec declares, each with the
// limits its expectations set.
func figures(st *Step, step steps.Step, with *yaml.Node, outputs map[string]any, limits map[string][]reports.Limit) []reports.Figure {
	if len(st.Spec.Figures) == 0 && st.Finding == "" {
		return nil
	}
	var params map[string]any
	wants := func(text string) {
		if params == nil && strings.Contains(text, "{with.") {
			params = paramValues(step, with)
		}
	}
	if st.Finding != "" {
		wants(st.Finding)
		var all []reports.Limit
		for _, name := range sortedKeys(limits) {
			all = append(all, limits[name]...)
		}
		if fig, ok := reports.StepFinding(st.ID, st.Finding, outputs, params, all); ok {
			return []reports.Figure{fig}
		}
		return nil
	}
	var out []reports.Figure
	for _, f := range st.Spec.Figures {
		wants(f.Text + f.TextFalse + f.TextNegative)
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
			x.Error = fmt.Sprintf("expected true or false, got %s", formatValue(sr.maskValue(v)))
		default:
			x.OK = b
		}
		if !x.OK {
			x.Values = e.Explain(env, sr.maskValue)
		}
		exps = append(exps, x)
		if name, op, v, ok := e.Limit(env); ok {
			limits[name] = append(limits[name], reports.Limit{Expr: e.Src, Op: op, Value: v, OK: x.OK})
		}
	}
	return exps, limits
}

// maskValue is v with secrets masked, for formatting: quoting a value
// escapes it, and a secret escaped twice is a form the redactor does not
// know, so masking comes first.
func (sr *scenarioRun) maskValue(v any) any {
	return sr.red.Value(reports.PlainValue(v))
}

func (sr *scenarioRun) registerSecretOutputs(spec steps.Spec, outputs map[string]any) {
	for _, o := range spec.Outputs {
		if !o.Secret {
			continue
		}
		sr.registerSecret(outputs[o.Name])
	}
}

func (sr *scenarioRun) registerSecret(v any) {
	switch v := v.(type) {
	case nil:
	case string:
		sr.red.Add(v)
	case []string:
		sr.red.Add(v...)
	default:
		sr.red.Add(fmt.Sprint(v))
	}
}

func (sr *scenarioRun) hooks(fr *frame, id string, st *Step, phase string) steps.Hooks {
	info := &reports.StepInfo{ID: id, Uses: st.Uses, Phase: phase, Background: st.Background}
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
		Join:     func(ctx context.Context, ids []string) error { return sr.join(ctx, fr, ids) },
		Timeline: &sr.timeline,
		Progress: func(status string) {
			if sr.opts.Progress != nil {
				sr.opts.Progress(sr.idx, phase, id, sr.red.String(status))
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
