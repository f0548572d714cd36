package reports

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxLogLines bounds the log lines kept per step in the model; the journal
// keeps them all.
const maxLogLines = 200

// Builder folds events into a Run. It is a Sink, so the runner feeds it
// live; ReadJournal feeds it from a file.
type Builder struct {
	run       *Run
	scenarios map[int]*Scenario
	open      map[int]map[string]*Step // steps started and not ended, by scenario
	waivers   []Waiver
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{
		run:       &Run{Version: FormatVersion, Tool: "opsdrill", Status: StatusRunning},
		scenarios: map[int]*Scenario{},
		open:      map[int]map[string]*Step{},
	}
}

// Emit applies one event.
func (b *Builder) Emit(ev *Event) {
	switch ev.Type {
	case EventRunStart:
		b.run.Started = ev.Time
		if ev.Run != nil {
			b.run.ToolVersion = ev.Run.ToolVersion
			b.run.RunID = ev.Run.RunID
			b.run.Host = ev.Run.Host
			b.run.User = ev.Run.User
			b.run.UID = ev.Run.UID
			b.run.ToolCommit = ev.Run.ToolCommit
			b.run.VarsFiles = ev.Run.VarsFiles
			b.run.Args = ev.Run.Args
			b.run.Reaper = ev.Run.Reaper
			b.run.Shard = ev.Run.Shard
			b.run.Merged = ev.Run.Merged
			b.waivers = ev.Run.Waivers
		}
	case EventScenarioStart:
		info := ev.ScenarioInfo
		if info == nil {
			return
		}
		sc := &Scenario{
			Name: info.Name, File: info.File, SHA256: info.SHA256, Git: info.Git, Description: info.Description,
			Tags: info.Tags, Controls: info.Controls, Vars: info.Vars, Status: StatusRunning, Started: ev.Time,
		}
		for _, si := range info.Steps {
			sc.Steps = append(sc.Steps, &Step{
				ID: si.ID, Uses: si.Uses, Phase: si.Phase, Background: si.Background,
				ContinueOnError: si.ContinueOnError,
				Status:          StatusSkipped, SkipReason: "not reached", Outputs: map[string]any{},
			})
		}
		b.scenarios[ev.Scenario] = sc
		b.open[ev.Scenario] = map[string]*Step{}
	case EventStepStart:
		sc := b.scenarios[ev.Scenario]
		if sc == nil || ev.Step == nil {
			return
		}
		st := sc.step(ev.Step)
		st.Status = StatusRunning
		st.SkipReason = ""
		st.Started = ev.Time
		b.open[ev.Scenario][stepKey(ev.Step.Phase, ev.Step.ID)] = st
	case EventStepLog:
		sc := b.scenarios[ev.Scenario]
		if sc == nil || ev.Step == nil {
			return
		}
		st := sc.step(ev.Step)
		if len(st.Logs) < maxLogLines {
			st.Logs = append(st.Logs, ev.Line)
		} else if len(st.Logs) == maxLogLines {
			st.Logs = append(st.Logs, "… more lines in journal.jsonl")
		}
	case EventStepEnd:
		sc := b.scenarios[ev.Scenario]
		if sc == nil || ev.Step == nil || ev.Result == nil {
			return
		}
		st := sc.step(ev.Step)
		r := ev.Result
		st.Status = r.Status
		st.DurationMS = r.DurationMS
		st.Attempts = r.AttemptLog
		st.Outputs = r.Outputs
		if st.Outputs == nil {
			st.Outputs = map[string]any{}
		}
		st.Error = r.Error
		st.SkipReason = r.SkipReason
		st.Expectations = r.Expectations
		st.Evidence = r.Evidence
		st.Figures = r.Figures
		if st.Started.IsZero() {
			st.Started = ev.Time
		}
		delete(b.open[ev.Scenario], stepKey(ev.Step.Phase, ev.Step.ID))
	case EventScenarioEnd:
		sc := b.scenarios[ev.Scenario]
		if sc == nil {
			return
		}
		sc.Status = ev.Status
		sc.Error = ev.Error
		sc.Finished = ev.Time
		sc.DurationMS = ev.Time.Sub(sc.Started).Milliseconds()
	case EventRunEnd:
		b.run.Status = ev.Status
		b.run.Finished = ev.Time
		b.run.Hosts = ev.Hosts
		for _, sc := range b.scenarios {
			if g, ok := ev.Git[sc.File]; ok && sc.Git == nil {
				sc.Git = g
			}
		}
	}
}

// step finds the model step for info, adding it when the scenario did not
// declare it (undo actions are only known when registered).
func (s *Scenario) step(info *StepInfo) *Step {
	if s.index == nil {
		s.index = make(map[string]*Step, len(s.Steps))
		for _, st := range s.Steps {
			s.index[stepKey(st.Phase, st.ID)] = st
		}
	}
	key := stepKey(info.Phase, info.ID)
	if st, ok := s.index[key]; ok {
		return st
	}
	st := &Step{ID: info.ID, Uses: info.Uses, Phase: info.Phase, Background: info.Background, Outputs: map[string]any{}}
	s.Steps = slices.Insert(s.Steps, s.insertAt(st), st)
	s.index[key] = st
	return st
}

// insertAt places a step known only once it runs: an iteration ID[KEY] of
// a for_each over an expression, or a step of its step file (ID[KEY]/inner),
// goes inside its parent's block, iterations in key order, so every run of
// the same scenario lists its steps in the same order. Anything else (undo
// actions) goes at the end.
func (s *Scenario) insertAt(st *Step) int {
	parent, key, iter := splitStepID(st.ID)
	if parent == "" {
		return len(s.Steps)
	}
	at := -1
	for i, o := range s.Steps {
		if o.Phase != st.Phase {
			if at >= 0 {
				break
			}
			continue
		}
		switch {
		case o.ID == parent:
			at = i + 1
		case at >= 0 && strings.HasPrefix(o.ID, parent+"[") || at >= 0 && strings.HasPrefix(o.ID, parent+"/"):
			if iter {
				if p, k, ok := splitStepID(o.ID); ok && p == parent && keyLess(key, k) {
					return i
				}
			}
			at = i + 1
		case at >= 0:
			return at
		}
	}
	if at < 0 {
		return len(s.Steps)
	}
	return at
}

// splitStepID splits "a/b[k]" into parent "a/b", key "k", iteration true,
// and "a[k]/b" into parent "a[k]", key "b", false; a top-level id has no
// parent.
func splitStepID(id string) (parent, key string, iter bool) {
	if strings.HasSuffix(id, "]") {
		if i := strings.LastIndex(id, "["); i > 0 && !strings.Contains(id[i:], "/") {
			return id[:i], id[i+1 : len(id)-1], true
		}
	}
	if i := strings.LastIndex(id, "/"); i > 0 {
		return id[:i], id[i+1:], false
	}
	return "", "", false
}

// keyLess orders iteration keys: list indexes as numbers, map keys as text.
func keyLess(a, b string) bool {
	ai, aerr := strconv.Atoi(a)
	bi, berr := strconv.Atoi(b)
	if aerr == nil && berr == nil {
		return ai < bi
	}
	return a < b
}

func stepKey(phase, id string) string {
	if phase == "" {
		phase = PhaseMain
	}
	return phase + "/" + id
}

// Run returns the model. Anything still open — the journal of a run that was
// killed — is closed as interrupted at the time of the last event seen.
func (b *Builder) Run(last time.Time) *Run {
	idx := make([]int, 0, len(b.scenarios))
	for i := range b.scenarios {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	run := *b.run
	run.Scenarios = make([]*Scenario, 0, len(idx))
	for _, i := range idx {
		sc := b.scenarios[i]
		for _, st := range b.open[i] {
			st.Status = StatusErrored
			st.Error = "interrupted: the run ended before this step finished"
			st.DurationMS = last.Sub(st.Started).Milliseconds()
		}
		b.open[i] = map[string]*Step{}
		if sc.Status == StatusRunning {
			sc.Status = StatusInterrupted
			sc.Error = "the run ended before this scenario finished"
			sc.Finished = last
			sc.DurationMS = last.Sub(sc.Started).Milliseconds()
		}
		run.Scenarios = append(run.Scenarios, sc)
	}
	if run.Status == StatusRunning {
		run.Status = StatusInterrupted
		run.Finished = last
	}
	ApplyWaivers(&run, b.waivers)
	Complete(&run)
	run.Findings = findings(&run)
	return &run
}

// ReadJournal rebuilds a Run from journal.jsonl. A torn last line (the
// process was killed mid-write) is ignored; any other bad line is an error.
func ReadJournal(r io.Reader) (*Run, error) {
	b := NewBuilder()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64*1024*1024)
	var last time.Time
	line := 0
	var pendingErr error
	for sc.Scan() {
		line++
		if pendingErr != nil {
			return nil, pendingErr
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// Only the last line may be torn.
			pendingErr = fmt.Errorf("journal line %d: %w", line, err)
			continue
		}
		b.Emit(&ev)
		last = ev.Time
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if line == 0 || last.IsZero() {
		return nil, fmt.Errorf("journal is empty")
	}
	return b.Run(last), nil
}
