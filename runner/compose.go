package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/runner/redact"
)

// execForEach runs a for_each step: one iteration per item, reported as
// ID[KEY], up to st.Parallel at once, every iteration run whatever the
// others gave. The step itself is reported as ID with the worst status of
// its iterations; its `each` (list or map, like the items) holds their
// outputs.
func (sr *scenarioRun) execForEach(ctx context.Context, fr *frame, st *Step, phase string, scope map[string]any) *outcome {
	id := fr.prefix + st.ID
	info := &reports.StepInfo{ID: id, Uses: st.Uses, Phase: phase, Background: st.Background}
	start := time.Now()
	sr.em.emit(&reports.Event{Type: reports.EventStepStart, Scenario: sr.idx, Step: info})
	items, isMap, err := st.ForEach.iterations(scope)
	if err != nil {
		return sr.finishForEach(info, start, &outcome{status: reports.StatusErrored, err: "for_each: " + err.Error()})
	}
	outs := make([]*outcome, len(items))
	sem := make(chan struct{}, max(st.Parallel, 1))
	var wg sync.WaitGroup
	for i, it := range items {
		iid := iterationID(id, it.key)
		if ctx.Err() != nil {
			sr.skipID(iid, st, phase, sr.stopReason(ctx))
			outs[i] = &outcome{status: reports.StatusSkipped}
			continue
		}
		iscope := maps.Clone(scope)
		iscope["each"] = map[string]any{"key": it.key, "value": it.value}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			outs[i] = sr.execOne(ctx, fr, iid, st, phase, iscope)
		}()
	}
	wg.Wait()

	out := &outcome{status: reports.StatusPassed}
	var list []any
	byKey := map[string]any{}
	var bads []string
	skipped := 0
	for i, o := range outs {
		if isMap {
			byKey[fmt.Sprint(items[i].key)] = o.outputs
		} else {
			list = append(list, o.outputs)
		}
		switch {
		case o.status == reports.StatusSkipped:
			skipped++
		case o.status == reports.StatusErrored:
			out.status = reports.StatusErrored
		case o.status == reports.StatusFailed && out.status != reports.StatusErrored:
			out.status = reports.StatusFailed
		}
		if bad(o.status) {
			bads = append(bads, iterationID(id, items[i].key))
		}
	}
	if isMap {
		out.each = byKey
	} else {
		if list == nil {
			list = []any{}
		}
		out.each = list
	}
	switch {
	case len(items) == 0:
		out.status, out.err = reports.StatusSkipped, "for_each gave no items"
	case skipped == len(items):
		out.status, out.err = reports.StatusSkipped, "every iteration was skipped"
	case len(bads) > 0:
		out.err = fmt.Sprintf("%d of %d iterations did not pass: %v", len(bads), len(items), bads)
	}
	return sr.finishForEach(info, start, out)
}

func (sr *scenarioRun) finishForEach(info *reports.StepInfo, start time.Time, out *outcome) *outcome {
	out.ms = time.Since(start).Milliseconds()
	res := &reports.StepResult{Status: out.status, DurationMS: out.ms, Attempts: 1, Error: out.err}
	if out.status == reports.StatusSkipped {
		res.SkipReason, res.Error = out.err, ""
	}
	sr.em.emit(&reports.Event{Type: reports.EventStepEnd, Scenario: sr.idx, Step: info, Result: res})
	return out
}

// attemptFile runs a step file once: check the inputs, run its steps
// (reported as id/inner; their undo actions join the scenario's stack;
// its background steps are its own, joined before it ends), compute its
// outputs, check the caller's expectations.
func (sr *scenarioRun) attemptFile(ctx context.Context, id string, st *Step, phase string, scope map[string]any) (*outcome, []reports.Expectation, bool) {
	inputs, err := sr.fileInputs(st, scope)
	if err != nil {
		return &outcome{status: reports.StatusErrored, err: "with: " + err.Error()}, nil, false
	}
	sctx := ctx
	var cancel context.CancelFunc
	if st.Timeout > 0 {
		sctx, cancel = context.WithTimeout(ctx, st.Timeout)
		defer cancel()
	}
	child := newFrame(id+"/", map[string]any{"inputs": inputs, "env": sr.env, "scenario": scope["scenario"]})
	failed := sr.runMain(sctx, child, st.File.Steps, phase)
	out := &outcome{status: reports.StatusPassed, outputs: map[string]any{}}
	for _, f := range failed {
		if f.status == reports.StatusErrored {
			out.status = reports.StatusErrored
		} else if out.status != reports.StatusErrored {
			out.status = reports.StatusFailed
		}
	}
	if len(failed) > 0 {
		out.err = summarise(failed)
	}
	for _, o := range st.File.Outputs {
		v, err := o.Value.Eval(child.scope)
		if err != nil {
			if out.status == reports.StatusPassed {
				out.status, out.err = reports.StatusErrored, fmt.Sprintf("output %s: %s", o.Name, err)
			}
			continue
		}
		if o.Secret {
			sr.registerSecret(v)
		}
		out.outputs[o.Name] = v
	}
	switch {
	case st.Timeout > 0 && errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		out.status, out.err = reports.StatusErrored, fmt.Sprintf("timed out after %s", st.Timeout)
		return out, nil, true
	case out.status == reports.StatusErrored:
		return out, nil, true
	}
	exps, _ := sr.expectations(st, scope, out.outputs)
	for _, e := range exps {
		if !e.OK && out.status == reports.StatusPassed {
			out.status = reports.StatusFailed
		}
	}
	return out, exps, true
}

// fileInputs resolves a step file's inputs: the caller's with: values
// (checked against their types now that they are known), defaults for the
// rest. Secret inputs are redacted from here on.
func (sr *scenarioRun) fileInputs(st *Step, scope map[string]any) (map[string]any, error) {
	with := st.With
	if len(st.tmpls) > 0 {
		var err error
		if with, err = resolveNode(st.With, st.tmpls, scope); err != nil {
			return nil, err
		}
	}
	given := map[string]any{}
	if with != nil && with.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(with.Content); i += 2 {
			var v any
			if err := with.Content[i+1].Decode(&v); err != nil {
				return nil, fmt.Errorf("input %s: %s", with.Content[i].Value, cleanDecodeError(err, nil))
			}
			given[with.Content[i].Value] = v
		}
	}
	out := make(map[string]any, len(st.File.Inputs))
	for i := range st.File.Inputs {
		in := &st.File.Inputs[i]
		v, ok := given[in.Name]
		switch {
		case ok:
		case in.HasDefault:
			v = in.Default
		case in.Required:
			return nil, fmt.Errorf("missing required input %s", in.Name)
		default:
			out[in.Name] = nil
			continue
		}
		v, err := coerceInput(in, v)
		if err != nil {
			return nil, err
		}
		if in.Secret {
			if s, isStr := v.(string); isStr && s != "" {
				if !redact.Acceptable(s) {
					return nil, fmt.Errorf("secret input %s is shorter than %d characters and could not be redacted reliably", in.Name, redact.MinLen)
				}
				sr.red.Add(s)
			}
		}
		out[in.Name] = v
	}
	return out, nil
}
