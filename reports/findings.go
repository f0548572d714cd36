package reports

import (
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
)

// Finding is one row of the report's findings, the first thing an auditor
// reads: what a drill claimed (its description), whether it held, and its
// key figures in words against their limits.
type Finding struct {
	Scenario string `json:"scenario"`
	File     string `json:"file,omitempty"`
	Claim    string `json:"claim"`
	Status   string `json:"status"`
	// Summary is the figures in one line: "0 of 6,652 acknowledged writes
	// lost (limit 0); writes stopped 2.76 s (limit 30 s)".
	Summary string   `json:"summary"`
	Figures []Figure `json:"figures"`
	// Why says, for a drill that did not pass, what broke first.
	Why      string   `json:"why,omitempty"`
	Controls []string `json:"controls"`
}

// Figure is a key figure of a step (declared in its spec), in words, with
// the limits the scenario's expectations hold it to.
type Figure struct {
	Step   string `json:"step"`
	Output string `json:"output"`
	// Text is the figure with its limits, as the findings show it.
	Text   string  `json:"text"`
	Phrase string  `json:"phrase"`
	Value  any     `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	Limits []Limit `json:"limits,omitempty"`
	// Status is the step's status: a figure of a failed step is marked.
	Status string `json:"status,omitempty"`
}

// Limit is an expectation comparing a figure with a value: the figure
// (left) Op Value.
type Limit struct {
	Expr  string `json:"expr"`
	Op    string `json:"op"`
	Value any    `json:"value"`
	Text  string `json:"text"`
	OK    bool   `json:"ok"`
}

// Bad reports whether the figure shows a fault: a limit it broke, or,
// without limits, the failure of its step.
func (f Figure) Bad() bool {
	if len(f.Limits) == 0 {
		return f.Status == StatusFailed || f.Status == StatusErrored
	}
	return !f.Met()
}

// Met reports whether the figure is within all its limits.
func (f Figure) Met() bool {
	for _, l := range f.Limits {
		if !l.OK {
			return false
		}
	}
	return true
}

var placeholder = regexp.MustCompile(`\{(with\.|=)?([A-Za-z_][A-Za-z0-9_]*)(?:\|([^{}]*))?\}`)

// NewFigure phrases figure f of step from the step's outputs and
// parameters; limits come from the step's expectations (their Text is
// filled here). It returns false when the figure does not apply: its
// output is not set, its When output is not true, it has no text for the
// value, or it is a negative duration (not measured).
func NewFigure(step string, f steps.Figure, outputs, params map[string]any, limits []Limit) (Figure, bool) {
	v, ok := outputs[f.Output]
	if !ok || v == nil || (f.When != "" && !truthy(outputs[f.When])) {
		return Figure{}, false
	}
	text := f.Text
	shown := v
	if b, isBool := v.(bool); isBool && !b {
		text = f.TextFalse
	}
	if n, isNum := number(v); isNum && n < 0 {
		switch {
		case f.TextNegative != "":
			text, shown = f.TextNegative, -n
		case f.Unit == "ms" || f.Unit == "s":
			return Figure{}, false
		}
	}
	if text == "" {
		return Figure{}, false
	}
	fig := Figure{Step: step, Output: f.Output, Value: v, Unit: f.Unit}
	fig.Phrase = phraseOf(text, shown, f, outputs, params)
	fig.Text = fig.Phrase
	return addLimits(fig, f, limits), true
}

// phraseOf fills a figure text's placeholders.
func phraseOf(text string, shown any, f steps.Figure, outputs, params map[string]any) string {
	return placeholder.ReplaceAllStringFunc(text, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		var x any
		switch {
		case sub[1] == "" && sub[2] == "value":
			return quantity(shown, f.Unit, f.Seconds)
		case sub[1] == "with.":
			x = params[sub[2]]
		default:
			x = outputs[sub[2]]
		}
		if sub[1] == "=" && x != nil {
			return valueText(x)
		}
		if !truthy(x) {
			hasDefault := strings.Contains(m, "|")
			if _, isNum := number(x); !isNum || hasDefault {
				if hasDefault {
					return sub[3]
				}
				return "—"
			}
		}
		return quantity(x, "", false)
	})
}

// addLimits gives a figure its limits, in words after it.
func addLimits(fig Figure, f steps.Figure, limits []Limit) Figure {
	var lt []string
	for _, l := range limits {
		l.Text = limitText(l, f)
		fig.Limits = append(fig.Limits, l)
		lt = append(lt, l.Text)
	}
	if len(lt) > 0 {
		fig.Text += " (" + strings.Join(lt, "; ") + ")"
	}
	return fig
}

// FigureOutputs lists the outputs a figure text reads ({NAME}, {=NAME};
// not {value} or {with.NAME}), for checking a scenario's finding: at load.
func FigureOutputs(text string) []string {
	var out []string
	for _, m := range placeholder.FindAllStringSubmatch(text, -1) {
		if m[1] != "with." && m[2] != "value" {
			out = append(out, m[2])
		}
	}
	return out
}

// StepFinding phrases a scenario's own words for a step (its finding:),
// with every limit the step's expectations set. It returns false for a
// step that set no output: it did not get to measure anything.
func StepFinding(step, text string, outputs, params map[string]any, limits []Limit) (Figure, bool) {
	if len(outputs) == 0 {
		return Figure{}, false
	}
	f := steps.Figure{Text: text}
	phrase := phraseOf(text, nil, f, outputs, params)
	return addLimits(Figure{Step: step, Phrase: phrase, Text: phrase}, f, limits), true
}

// truthy: true, a non-zero number, a non-empty string or collection.
func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case []any:
		return len(t) > 0
	case []string:
		return len(t) > 0
	case map[string]any:
		return len(t) > 0
	}
	if n, ok := number(v); ok {
		return n != 0
	}
	return true
}

// limitText says a limit in words: "limit 30 s", "at least 2".
func limitText(l Limit, f steps.Figure) string {
	val := quantity(l.Value, f.Unit, f.Seconds)
	if _, isNum := number(l.Value); !isNum {
		val = quantity(l.Value, "", false)
	}
	switch n, _ := number(l.Value); {
	case l.Op == "==" && n != 0:
		return "expected " + val
	case l.Op == "==", l.Op == "<=", l.Op == "<":
		return "limit " + val
	case l.Op == ">=":
		return "at least " + val
	case l.Op == ">":
		return "more than " + val
	default:
		return "must not be " + val
	}
}

// quantity formats a value for reading: thousands separated counts, a
// few significant digits, its unit, milliseconds as seconds on request.
func quantity(v any, unit string, seconds bool) string {
	switch t := v.(type) {
	case string:
		return t
	case bool:
		if t {
			return "yes"
		}
		return "no"
	}
	n, ok := number(v)
	if !ok {
		return valueText(v)
	}
	if unit == "ms" && seconds {
		n, unit = n/1000, "s"
	}
	s := readableNumber(n)
	if unit != "" {
		s += " " + unit
	}
	return s
}

// readableNumber: 6,652 · 2.76 · 0.27 · 12.5 · 1,000.
func readableNumber(n float64) string {
	if math.IsNaN(n) || math.IsInf(n, 0) {
		return strconv.FormatFloat(n, 'f', -1, 64)
	}
	a := math.Abs(n)
	var s string
	switch {
	case a >= 100 || n == math.Trunc(n):
		return steps.Thousands(int64(math.Round(n)))
	case a >= 10:
		s = strconv.FormatFloat(n, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(n, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(n, 'g', 2, 64)
		if strings.ContainsRune(s, 'e') {
			s = strconv.FormatFloat(n, 'f', -1, 64)
		}
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// findings builds one finding per scenario from its steps' figures.
func findings(run *Run) []Finding {
	out := make([]Finding, 0, len(run.Scenarios))
	for _, sc := range run.Scenarios {
		f := Finding{Scenario: sc.Name, File: sc.File, Claim: claim(sc), Status: sc.Status,
			Controls: sc.Controls, Figures: []Figure{}}
		if f.Controls == nil {
			f.Controls = []string{}
		}
		seen := map[string]int{}
		for _, st := range sc.Steps {
			for _, fig := range st.Figures {
				fig.Status = st.Status
				// Two steps measuring the same thing (dns.watch and
				// db.verify both time the DNS switch) give one figure,
				// with every limit set on it.
				if i, dup := seen[fig.Phrase]; dup && fig.Phrase != "" {
					f.Figures[i] = withLimits(f.Figures[i], fig)
					continue
				}
				seen[fig.Phrase] = len(f.Figures)
				f.Figures = append(f.Figures, fig)
			}
		}
		// The figures held to a limit lead, in step order; then the rest.
		sort.SliceStable(f.Figures, func(i, j int) bool {
			return len(f.Figures[i].Limits) > 0 && len(f.Figures[j].Limits) == 0
		})
		texts := make([]string, len(f.Figures))
		for i, fig := range f.Figures {
			texts[i] = fig.Text
		}
		f.Summary = strings.Join(texts, "; ")
		if sc.Status != StatusPassed {
			f.Why = why(sc)
		}
		out = append(out, f)
	}
	return out
}

// withLimits adds the limits of b, a figure with the same phrase, to a.
func withLimits(a, b Figure) Figure {
	if b.Status == StatusFailed || b.Status == StatusErrored {
		a.Status = b.Status
	}
	for _, l := range b.Limits {
		dup := false
		for _, have := range a.Limits {
			dup = dup || have.Text == l.Text
		}
		if !dup {
			a.Limits = append(a.Limits, l)
		}
	}
	if len(a.Limits) > 0 {
		texts := make([]string, len(a.Limits))
		for i, l := range a.Limits {
			texts[i] = l.Text
		}
		a.Text = a.Phrase + " (" + strings.Join(texts, "; ") + ")"
	}
	return a
}

func claim(sc *Scenario) string {
	if d := strings.Join(strings.Fields(sc.Description), " "); d != "" {
		return d
	}
	return sc.Name
}

// why is the first failing step's message, else the scenario's error.
func why(sc *Scenario) string {
	for _, st := range sc.Steps {
		if st.Status == StatusFailed || st.Status == StatusErrored {
			return st.ID + ": " + failureMessage(st)
		}
	}
	return sc.Error
}
