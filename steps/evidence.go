package steps

// Evidence is data a step hands over to prove what it saw. Renderers decide
// how it looks: a table becomes an HTML table or JUnit system-out text; a
// series becomes an inline SVG chart.
type Evidence struct {
	Kind  string `json:"kind"` // table, series, log, file, image
	Title string `json:"title"`

	Table  *Table   `json:"table,omitempty"`
	Series []Series `json:"series,omitempty"`
	// Marks are labelled instants on a series chart (failover, DNS switch).
	Marks []Mark `json:"marks,omitempty"`
	// Chart hints how to draw series: "line" (default) or "bars" (discrete
	// x such as TOTP step offsets).
	Chart string `json:"chart,omitempty"`
	// Text is a log excerpt.
	Text string `json:"text,omitempty"`
	// Path is a file in the report folder, relative to it.
	Path      string `json:"path,omitempty"`
	MediaType string `json:"media_type,omitempty"`
	// Show asks renderers to display an image inline; images that may hold
	// secrets (a TOTP QR code) are kept out unless the scenario opts in.
	Show bool `json:"show,omitempty"`
}

// Table is a rectangular piece of evidence.
type Table struct {
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
}

// Series is a named sequence of (x, y) points, x usually seconds or ms
// since a reference instant given in XUnit.
type Series struct {
	Name   string    `json:"name"`
	XUnit  string    `json:"x_unit,omitempty"`
	YUnit  string    `json:"y_unit,omitempty"`
	Points []float64 `json:"points"` // flattened x0,y0,x1,y1,...
}

// Mark is a labelled x position on a series chart.
type Mark struct {
	X     float64 `json:"x"`
	Label string  `json:"label"`
}

// TableEvidence is a shorthand for a table evidence item.
func TableEvidence(title string, columns []string, rows [][]string) Evidence {
	return Evidence{Kind: "table", Title: title, Table: &Table{Columns: columns, Rows: rows}}
}
