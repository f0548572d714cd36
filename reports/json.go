package reports

import (
	"encoding/json"
	"io"
)

// WriteJSON writes report.json.
func WriteJSON(w io.Writer, run *Run) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(run)
}
