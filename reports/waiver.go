package reports

import (
	"path"
	"strings"
	"time"
)

// StatusWaived marks a failed or errored step covered by a waiver that had
// not expired when the run started.
const StatusWaived = "waived"

// Waiver states, as reported.
const (
	WaiverApplied = "applied" // covered at least one failure
	WaiverExpired = "expired" // matched a failure but had expired: the failure counts
	WaiverUnused  = "unused"  // matched nothing
)

// Waiver excuses a known failure for a while, with a reason an auditor can
// read, as InSpec waivers do. Scenario and Step are exact names or
// path.Match patterns ("*" for every step).
type Waiver struct {
	Scenario      string `json:"scenario" yaml:"scenario"`
	Step          string `json:"step" yaml:"step"`
	Justification string `json:"justification" yaml:"justification"`
	// Expires is the last day (UTC, inclusive) the waiver holds: YYYY-MM-DD.
	Expires string `json:"expires" yaml:"expires"`
	// State and Matched are filled when the waiver is applied to a run.
	State   string   `json:"state,omitempty" yaml:"-"`
	Matched []string `json:"matched,omitempty" yaml:"-"`
}

// ExpiresAt returns the instant the waiver stops holding: the end of its
// expiry day, UTC.
func (w Waiver) ExpiresAt() (time.Time, error) {
	d, err := time.Parse("2006-01-02", w.Expires)
	if err != nil {
		return time.Time{}, err
	}
	return d.Add(24 * time.Hour), nil
}

func (w Waiver) matches(scenario, step string) bool {
	return globMatch(w.Scenario, scenario) && globMatch(w.Step, step)
}

// globMatch matches a waiver pattern: a step's exact id (so probe[0] needs
// no escaping), or a path.Match pattern whose * also spans the / of a step
// file's steps (pair/* and * both cover pair/check).
func globMatch(pattern, name string) bool {
	if pattern == name {
		return true
	}
	ok, _ := path.Match(strings.ReplaceAll(pattern, "/", "\x1f"), strings.ReplaceAll(name, "/", "\x1f"))
	return ok
}

// ApplyWaivers marks the failed and errored steps that a waiver covers as
// waived, recomputes scenario and run status, and records each waiver's
// state in run.Waivers. Expiry is judged at the run's start, so rendering
// the same journal again gives the same verdict.
func ApplyWaivers(run *Run, waivers []Waiver) {
	if len(waivers) == 0 {
		return
	}
	at := run.Started
	run.Waivers = make([]Waiver, len(waivers))
	for i, w := range waivers {
		w.State = WaiverUnused
		w.Matched = nil
		run.Waivers[i] = w
	}
	for _, sc := range run.Scenarios {
		changed := false
		for _, st := range sc.Steps {
			if st.Status != StatusFailed && st.Status != StatusErrored {
				continue
			}
			for i := range run.Waivers {
				w := &run.Waivers[i]
				if !w.matches(sc.Name, st.ID) {
					continue
				}
				w.Matched = append(w.Matched, sc.Name+"/"+st.ID)
				end, err := w.ExpiresAt()
				if err != nil || !at.Before(end) {
					if w.State != WaiverApplied {
						w.State = WaiverExpired
					}
					continue
				}
				w.State = WaiverApplied
				wc := *w
				wc.Matched = nil
				st.Waiver = &wc
				st.WaivedStatus = st.Status
				st.Status = StatusWaived
				changed = true
				break
			}
		}
		if changed && sc.Status == StatusFailed && !sc.hasUnwaivedFailure() {
			sc.Status = StatusPassed
			sc.Error = "failures waived"
		}
	}
	if run.Status == StatusFailed {
		failed := false
		for _, sc := range run.Scenarios {
			if sc.Status != StatusPassed && sc.Status != StatusSkipped {
				failed = true
			}
		}
		if !failed {
			run.Status = StatusPassed
		}
	}
}

func (s *Scenario) hasUnwaivedFailure() bool {
	for _, st := range s.Steps {
		if (st.Status == StatusFailed || st.Status == StatusErrored) && !st.ContinueOnError {
			return true
		}
	}
	return false
}
