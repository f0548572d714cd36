package reports

import (
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// Event types, in the order a run emits them.
const (
	EventRunStart      = "run_start"
	EventScenarioStart = "scenario_start"
	EventStepStart     = "step_start"
	EventStepLog       = "step_log"
	EventStepEnd       = "step_end"
	EventScenarioEnd   = "scenario_end"
	EventRunEnd        = "run_end"
)

// Event is one line of journal.jsonl. Fields are filled according to Type;
// everything in an Event has already been redacted.
type Event struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`

	// Scenario is the index of the scenario in the run, stable across -j.
	Scenario int `json:"scenario"`

	Run          *RunInfo      `json:"run,omitempty"`
	ScenarioInfo *ScenarioInfo `json:"scenario_info,omitempty"`
	Step         *StepInfo     `json:"step,omitempty"`
	Line         string        `json:"line,omitempty"`
	Result       *StepResult   `json:"result,omitempty"`
	// Status and Error close a scenario or the run.
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	// Hosts, on run_end, are the hosts the run acted from or through.
	Hosts []HostRef `json:"hosts,omitempty"`
	// Git, on run_end, places the scenario files (by file) in their
	// repositories.
	Git map[string]*GitRef `json:"git,omitempty"`
}

// RunInfo opens a run.
type RunInfo struct {
	ToolVersion string `json:"tool_version"`
	// Waivers in force for the run, so rendering the journal again
	// gives the same verdict.
	Waivers    []Waiver  `json:"waivers,omitempty"`
	RunID      string    `json:"run_id"`
	ToolCommit string    `json:"tool_commit,omitempty"`
	Host       string    `json:"host,omitempty"`
	User       string    `json:"user,omitempty"`
	UID        string    `json:"uid,omitempty"`
	Args       []string  `json:"args,omitempty"`
	VarsFiles  []FileRef `json:"vars_files,omitempty"`
	Reaper     string    `json:"reaper,omitempty"`
	// Shard and Merged: see Run.
	Shard  *Shard     `json:"shard,omitempty"`
	Merged []ShardRef `json:"merged,omitempty"`
}

// ScenarioInfo opens a scenario. Steps lists every step declared, so the
// report shows steps that never started.
type ScenarioInfo struct {
	Name        string         `json:"name"`
	File        string         `json:"file"`
	SHA256      string         `json:"sha256,omitempty"`
	Git         *GitRef        `json:"git,omitempty"`
	Description string         `json:"description,omitempty"`
	Tags        []string       `json:"tags,omitempty"`
	Controls    []string       `json:"controls,omitempty"`
	Vars        map[string]any `json:"vars,omitempty"`
	Steps       []StepInfo     `json:"steps,omitempty"`
}

// StepInfo identifies a step.
type StepInfo struct {
	ID         string `json:"id"`
	Uses       string `json:"uses"`
	Phase      string `json:"phase,omitempty"`
	Background bool   `json:"background,omitempty"`
	Attempt    int    `json:"attempt,omitempty"`
	// ContinueOnError is set in scenario_start's step list.
	ContinueOnError bool `json:"continue_on_error,omitempty"`
}

// StepResult closes a step.
type StepResult struct {
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Attempts   int    `json:"attempts,omitempty"`
	// AttemptLog is each attempt's status, error and duration.
	AttemptLog   []Attempt        `json:"attempt_log,omitempty"`
	Outputs      map[string]any   `json:"outputs,omitempty"`
	Error        string           `json:"error,omitempty"`
	SkipReason   string           `json:"skip_reason,omitempty"`
	Expectations []Expectation    `json:"expectations,omitempty"`
	Evidence     []steps.Evidence `json:"evidence,omitempty"`
	Figures      []Figure         `json:"figures,omitempty"`
}

// Sink receives events as they happen. Emit is called from one goroutine at a
// time (the runner serialises), but sinks must not block for long.
type Sink interface {
	Emit(ev *Event)
}
