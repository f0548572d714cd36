package reports

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/opsdrill/opsdrill/steps"
)

// WriteJSON writes report.json. Every field of the contract is present:
// what is empty is an empty list or map, never left out or null.
func WriteJSON(w io.Writer, run *Run) error {
	Complete(run)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(run)
}

// ReadJSON reads a report.json.
func ReadJSON(r io.Reader) (*Run, error) {
	var run Run
	if err := json.NewDecoder(r).Decode(&run); err != nil {
		return nil, fmt.Errorf("report.json: %w", err)
	}
	if run.Version != FormatVersion {
		return nil, fmt.Errorf("report.json: version %d, this opsdrill reads version %d", run.Version, FormatVersion)
	}
	return &run, nil
}

// Complete fills the empty lists and maps of run, so its JSON holds every
// field README.md's contract lists.
func Complete(run *Run) {
	if run.Scenarios == nil {
		run.Scenarios = []*Scenario{}
	}
	if run.Findings == nil {
		run.Findings = []Finding{}
	}
	for _, sc := range run.Scenarios {
		if sc.Vars == nil {
			sc.Vars = map[string]any{}
		}
		if sc.Steps == nil {
			sc.Steps = []*Step{}
		}
		if sc.Controls == nil {
			sc.Controls = []string{}
		}
		for _, st := range sc.Steps {
			if st.Phase == "" {
				st.Phase = PhaseMain
			}
			if st.Attempts == nil {
				st.Attempts = Attempts{}
			}
			if st.Outputs == nil {
				st.Outputs = map[string]any{}
			}
			if st.Expectations == nil {
				st.Expectations = []Expectation{}
			}
			if st.Evidence == nil {
				st.Evidence = []steps.Evidence{}
			}
			if st.Figures == nil {
				st.Figures = []Figure{}
			}
			for i := range st.Expectations {
				if st.Expectations[i].Values == nil {
					st.Expectations[i].Values = map[string]string{}
				}
			}
		}
	}
}
