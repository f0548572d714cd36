package reports

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes report.json.
func WriteJSON(w io.Writer, run *Run) error {
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
