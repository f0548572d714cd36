// Package reports holds opsdrill's result model and its renderers.
//
// The runner emits Events; a Builder folds them into a Run, the one result
// model every renderer reads. The same Builder rebuilds a Run from
// journal.jsonl alone, so a run killed mid-way still yields its reports
// (`opsdrill report render DIR`). One file per output format: console.go,
// json.go, junit.go, journal.go.
package reports

import (
	"encoding/json"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// Statuses of runs, scenarios and steps.
const (
	StatusPassed      = "passed"
	StatusFailed      = "failed"
	StatusErrored     = "errored"
	StatusSkipped     = "skipped"
	StatusInterrupted = "interrupted"
	StatusRunning     = "running"
	// A scenario whose steady state failed before its steps ran nothing
	// (not_started), or failed after them (deviated): the drill left the
	// system unhealthy.
	StatusNotStarted = "not_started"
	StatusDeviated   = "deviated"
)

// Phases a step can run in.
const (
	PhaseMain    = "main"
	PhaseCleanup = "cleanup"
	// Steady-state steps run before the main steps and again after them.
	PhaseSteadyBefore = "steady_state_before"
	PhaseSteadyAfter  = "steady_state_after"
)

// PhaseLabel is how reports name a phase beside a step's id ("" for main).
func PhaseLabel(phase string) string {
	switch phase {
	case PhaseCleanup:
		return "cleanup"
	case PhaseSteadyBefore:
		return "steady state before"
	case PhaseSteadyAfter:
		return "steady state after"
	}
	return ""
}

// FormatVersion is the version of report.json and of journal events.
const FormatVersion = 1

// Run is the result of one `opsdrill run`.
type Run struct {
	Version     int       `json:"version"`
	Tool        string    `json:"tool"`
	ToolVersion string    `json:"tool_version"`
	RunID       string    `json:"run_id"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Status      string    `json:"status"`
	// ToolCommit is the commit opsdrill was built from (+dirty when the
	// build had local changes).
	ToolCommit string `json:"tool_commit,omitempty"`
	Host       string `json:"host,omitempty"`
	// User is the account's name (root, not 0); UID its number.
	User string   `json:"user,omitempty"`
	UID  string   `json:"uid,omitempty"`
	Args []string `json:"args,omitempty"`
	// VarsFiles are the --vars files read, in order, with their hashes.
	VarsFiles []FileRef `json:"vars_files,omitempty"`
	// Hosts are the hosts steps acted from or through.
	Hosts []HostRef `json:"hosts,omitempty"`
	// Reaper is what would have killed any process the run left behind,
	// even with opsdrill killed: "cgroup" (every process the steps started
	// was in the run's cgroup) or "environment" (those carrying the run's
	// token; a process that wiped its environment escapes it).
	Reaper string `json:"reaper,omitempty"`
	// Signer is the fingerprint of the key the manifest is signed with.
	Signer    string      `json:"signer,omitempty"`
	Scenarios []*Scenario `json:"scenarios"`
	Waivers   []Waiver    `json:"waivers,omitempty"`
	// Findings has one row per scenario: its claim, verdict and key
	// figures against their limits.
	Findings []Finding `json:"findings"`
	// Shard is set when the run is one shard of a split run (run --shard);
	// Merged lists the shards a merged run (report merge) was made from.
	Shard  *Shard     `json:"shard,omitempty"`
	Merged []ShardRef `json:"merged,omitempty"`
}

// Shard says which part of a split run a run is: shard Index of Total
// (1-based), over a scenario set of SetSize scenarios whose paths, names
// and contents hash to Set.
type Shard struct {
	Index   int    `json:"index"`
	Total   int    `json:"total"`
	Set     string `json:"set"`
	SetSize int    `json:"set_size"`
}

// ShardRef is one shard folder a merged run was made from.
type ShardRef struct {
	Dir       string    `json:"dir"`
	RunID     string    `json:"run_id"`
	Index     int       `json:"index"`
	Host      string    `json:"host,omitempty"`
	Status    string    `json:"status"`
	Scenarios int       `json:"scenarios"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
}

// Scenario is the result of one scenario file.
type Scenario struct {
	Name        string   `json:"name"`
	File        string   `json:"file"`
	SHA256      string   `json:"sha256"`
	Git         *GitRef  `json:"git,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	// Controls are what the drill evidences (ISO27001:A.5.30, SOC2:CC7.5).
	Controls   []string       `json:"controls"`
	Vars       map[string]any `json:"vars"`
	Status     string         `json:"status"`
	Started    time.Time      `json:"started"`
	Finished   time.Time      `json:"finished"`
	DurationMS int64          `json:"duration_ms"`
	Error      string         `json:"error,omitempty"`
	Steps      []*Step        `json:"steps"`

	index map[string]*Step // phase/id -> step, while building
}

// Step is the result of one step, main or cleanup.
type Step struct {
	ID           string           `json:"id"`
	Uses         string           `json:"uses"`
	Phase        string           `json:"phase"`
	Background   bool             `json:"background,omitempty"`
	Status       string           `json:"status"`
	Started      time.Time        `json:"started"`
	DurationMS   int64            `json:"duration_ms"`
	Attempts     Attempts         `json:"attempts"`
	Outputs      map[string]any   `json:"outputs"`
	Error        string           `json:"error"`
	SkipReason   string           `json:"skip_reason,omitempty"`
	Expectations []Expectation    `json:"expectations"`
	Evidence     []steps.Evidence `json:"evidence"`
	// Figures are the step's key figures in words.
	Figures []Figure `json:"figures"`
	Logs    []string `json:"logs,omitempty"`
	// Waiver is set when the step's failure is waived; WaivedStatus is
	// what the step's status was before.
	Waiver       *Waiver `json:"waiver,omitempty"`
	WaivedStatus string  `json:"waived_status,omitempty"`
	// ContinueOnError steps may fail without failing their scenario.
	ContinueOnError bool `json:"continue_on_error,omitempty"`
}

// Expectation is one `expect:` expression and its verdict. Values holds the
// value seen for each name in the expression, so a failure explains itself.
type Expectation struct {
	Expr   string            `json:"expr"`
	OK     bool              `json:"ok"`
	Values map[string]string `json:"values"`
	Error  string            `json:"error,omitempty"`
}

// Attempt is one try of a step: with retry, every attempt's error is kept,
// not only the last one's.
type Attempt struct {
	Attempt    int    `json:"attempt"`
	Status     string `json:"status"`
	Error      string `json:"error"`
	DurationMS int64  `json:"duration_ms"`
}

// Attempts is a step's attempts, in order.
type Attempts []Attempt

// UnmarshalJSON also reads the form reports had before attempts were
// listed, a count (`"attempts": 2`), so older report folders still load
// (report trend reads a history of them).
func (a *Attempts) UnmarshalJSON(b []byte) error {
	var n int
	if json.Unmarshal(b, &n) == nil {
		*a = make(Attempts, n)
		for i := range *a {
			(*a)[i].Attempt = i + 1
		}
		return nil
	}
	var list []Attempt
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*a = list
	return nil
}

// AttemptCount is how many times the step ran (0 when it never did).
func (s *Step) AttemptCount() int { return len(s.Attempts) }

// Counts summarises step statuses.
type Counts struct {
	Total, Passed, Failed, Errored, Skipped, Waived int
	// Scenarios whose steady state failed before (NotStarted) or after
	// (Deviated) their steps.
	NotStarted, Deviated int
}

// StepCounts counts the steps of s by status.
func (s *Scenario) StepCounts() Counts {
	var c Counts
	for _, st := range s.Steps {
		c.Total++
		switch st.Status {
		case StatusPassed:
			c.Passed++
		case StatusFailed:
			c.Failed++
		case StatusSkipped:
			c.Skipped++
		case StatusWaived:
			c.Waived++
		default:
			c.Errored++
		}
	}
	return c
}

// ScenarioCounts counts the scenarios of r by status.
func (r *Run) ScenarioCounts() Counts {
	var c Counts
	for _, s := range r.Scenarios {
		c.Total++
		switch s.Status {
		case StatusPassed:
			c.Passed++
		case StatusFailed:
			c.Failed++
		case StatusSkipped:
			c.Skipped++
		case StatusNotStarted:
			c.NotStarted++
		case StatusDeviated:
			c.Deviated++
		default:
			c.Errored++
		}
	}
	return c
}
