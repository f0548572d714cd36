package reports

import (
	"bytes"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"mime"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

//go:embed assets/report.html.tmpl assets/report.css assets/report.js
var assets embed.FS

// maxInlineImage bounds an image embedded into report.html.
const maxInlineImage = 2 << 20

// htmlFuncs are the functions report.html's template calls.
var htmlFuncs = template.FuncMap{
	"dur":  durText,
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"value": valueHTML,
	"inc":   func(i int) int { return i + 1 },
	"upper": strings.ToUpper,
}

var htmlTmpl = template.Must(template.New("report.html.tmpl").Funcs(htmlFuncs).ParseFS(assets, "assets/report.html.tmpl"))

// HTMLOptions configure WriteHTML.
type HTMLOptions struct {
	// Dir is the report folder; images shown inline are read from it.
	Dir string
}

// htmlView is what the template reads.
type htmlView struct {
	Run       *Run
	Title     string
	Verdict   string
	Scenarios Counts
	Steps     Counts
	Items     []htmlScenario
	Waivers   []Waiver
	CSS       template.CSS
	JS        template.JS
	Generated time.Time
	Findings  []htmlFinding
	Controls  []htmlControl
	// Unmapped are the drills that name no control.
	Unmapped []htmlRef
	// Period is when the run started and finished, in words.
	Period string
}

// htmlFinding is a finding as the template reads it: plain fields, no
// embedded struct (html/template looks every field up by name, and a
// lookup through an embedded struct walks it each time).
type htmlFinding struct {
	Scenario, Claim, Status, Why string
	Figures                      []Figure
	Index                        int
}

// htmlControl is a control with the drills that evidence it.
type htmlControl struct {
	Control string
	Drills  []htmlRef
	Status  string // the worst verdict among them
}

type htmlRef struct {
	Index  int
	Name   string
	Status string
}

// htmlScenario is a scenario as the template reads it (plain fields, as
// htmlFinding); its steps are rendered rows, one piece per chunk.
type htmlScenario struct {
	Name, Status, File, SHA256, Description, Error string
	Git                                            *GitRef
	Tags, Controls                                 []string
	DurationMS                                     int64
	Index                                          int
	Counts                                         Counts
	Vars                                           []htmlOutput
	Chunks                                         []template.HTML
}

// chunkRows is how many steps one table of a scenario holds. Each chunk is
// laid out only when it scrolls into view (content-visibility), which is
// what lets a 10,000-step report open quickly.
const chunkRows = 200

// htmlOutput is one output as the report shows it; Repeated names the
// evidence table that already shows it in full.
type htmlOutput struct {
	Name     string
	Value    template.HTML
	Repeated string
}

// WriteHTML renders report.html: one self-contained file (styles, script,
// charts and images inline; no request of any kind), readable with
// JavaScript off and printable.
func WriteHTML(w io.Writer, run *Run, o HTMLOptions) error {
	css, err := assets.ReadFile("assets/report.css")
	if err != nil {
		return err
	}
	js, err := assets.ReadFile("assets/report.js")
	if err != nil {
		return err
	}
	v := htmlView{
		Run: run, Verdict: strings.ToUpper(run.Status), Scenarios: run.ScenarioCounts(),
		CSS: template.CSS(css), JS: template.JS(js), Waivers: run.Waivers, Generated: time.Now(),
	}
	v.Title = "opsdrill report — " + v.Verdict
	if len(run.Scenarios) == 1 {
		v.Title = run.Scenarios[0].Name + " — " + v.Verdict
	}
	v.Period = period(run)
	fs := run.Findings
	if fs == nil {
		fs = findings(run)
	}
	for i, f := range fs {
		v.Findings = append(v.Findings, htmlFinding{Scenario: f.Scenario, Claim: f.Claim, Status: f.Status, Why: f.Why, Figures: f.Figures, Index: i})
	}
	v.Controls, v.Unmapped = controlIndex(run)
	rows := make([]htmlRow, 0, chunkRows)
	var b strings.Builder
	for i, sc := range run.Scenarios {
		item := htmlScenario{
			Name: sc.Name, Status: sc.Status, File: sc.File, SHA256: sc.SHA256, Description: sc.Description, Error: sc.Error,
			Git: sc.Git, Tags: sc.Tags, Controls: sc.Controls, DurationMS: sc.DurationMS,
			Index: i, Counts: sc.StepCounts(), Vars: flatten(sc.Vars),
		}
		addCounts(&v.Steps, item.Counts)
		for start := 0; start < len(sc.Steps); start += chunkRows {
			rows = rows[:0]
			for _, st := range sc.Steps[start:min(start+chunkRows, len(sc.Steps))] {
				row := htmlRow{st: st, Failing: st.Status == StatusFailed || st.Status == StatusErrored}
				row.Outputs, row.Tables = outputsHTML(st)
				for _, ev := range st.Evidence {
					row.Evidence = append(row.Evidence, renderEvidence(ev, o.Dir))
				}
				row.Detail = len(row.Evidence) > 0 || len(st.Logs) > 0 || len(row.Tables) > 0
				rows = append(rows, row)
			}
			b.Reset()
			writeStepRows(&b, i, rows)
			item.Chunks = append(item.Chunks, template.HTML(b.String()))
		}
		v.Items = append(v.Items, item)
	}
	var buf bytes.Buffer
	if err := htmlTmpl.Execute(&buf, v); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// outputsHTML renders a step's outputs, sorted by name: values, and
// tables of records apart; records an evidence table already shows are
// named, not repeated.
func outputsHTML(st *Step) (values, tables []htmlOutput) {
	if len(st.Outputs) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(st.Outputs))
	for k := range st.Outputs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := st.Outputs[k]
		o := htmlOutput{Name: k}
		if title, dup := repeats(v, st.Evidence); dup {
			o.Repeated = title
		} else if rows, cols, ok := records(v); ok {
			o.Value = recordTable(rows, cols)
			tables = append(tables, o)
			o = htmlOutput{Name: k, Repeated: "output " + k}
		} else {
			o.Value = valueHTML(v)
		}
		values = append(values, o)
	}
	return values, tables
}

// controlIndex lists each control with the drills that evidence it, in
// the order controls first appear, and the drills that name none.
func controlIndex(run *Run) ([]htmlControl, []htmlRef) {
	var out []htmlControl
	at := map[string]int{}
	var unmapped []htmlRef
	for i, sc := range run.Scenarios {
		ref := htmlRef{Index: i, Name: sc.Name, Status: sc.Status}
		if len(sc.Controls) == 0 {
			unmapped = append(unmapped, ref)
		}
		for _, c := range sc.Controls {
			j, ok := at[c]
			if !ok {
				j = len(out)
				at[c] = j
				out = append(out, htmlControl{Control: c, Status: StatusPassed})
			}
			out[j].Drills = append(out[j].Drills, ref)
			if sc.Status != StatusPassed && out[j].Status == StatusPassed {
				out[j].Status = sc.Status
			}
		}
	}
	return out, unmapped
}

// period says when a run happened: "2026-11-21 10:00:00 – 10:04:12 UTC (4m12s)".
func period(run *Run) string {
	if run.Started.IsZero() {
		return ""
	}
	start, end := run.Started.UTC(), run.Finished.UTC()
	layout := "15:04:05 UTC"
	if end.Format("2006-01-02") != start.Format("2006-01-02") {
		layout = "2006-01-02 15:04:05 UTC"
	}
	return fmt.Sprintf("%s – %s (%s)", start.Format("2006-01-02 15:04:05"), end.Format(layout), FormatDuration(end.Sub(start)))
}

func addCounts(into *Counts, c Counts) {
	into.Total += c.Total
	into.Passed += c.Passed
	into.Failed += c.Failed
	into.Errored += c.Errored
	into.Skipped += c.Skipped
	into.Waived += c.Waived
}

// flatten renders vars, sorted by name.
func flatten(m map[string]any) []htmlOutput {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]htmlOutput, 0, len(keys))
	for _, k := range keys {
		out = append(out, htmlOutput{Name: k, Value: valueHTML(m[k])})
	}
	return out
}

func valueText(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return "—"
	case float64:
		return fmtNum(t)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// renderEvidence turns one evidence item into markup.
func renderEvidence(ev steps.Evidence, dir string) template.HTML {
	var b strings.Builder
	title := template.HTMLEscapeString(ev.Title)
	fmt.Fprintf(&b, `<figure class="evidence ev-%s">`, template.HTMLEscapeString(ev.Kind))
	if title != "" {
		fmt.Fprintf(&b, `<figcaption>%s</figcaption>`, title)
	}
	switch ev.Kind {
	case "table":
		if ev.Table != nil {
			b.WriteString(`<div class="scroll"><table class="data"><thead><tr>`)
			for _, c := range ev.Table.Columns {
				fmt.Fprintf(&b, `<th scope="col">%s</th>`, template.HTMLEscapeString(c))
			}
			b.WriteString(`</tr></thead><tbody>`)
			for _, row := range ev.Table.Rows {
				b.WriteString(`<tr>`)
				for _, c := range row {
					fmt.Fprintf(&b, `<td>%s</td>`, template.HTMLEscapeString(c))
				}
				b.WriteString(`</tr>`)
			}
			b.WriteString(`</tbody></table></div>`)
		}
	case "series":
		b.WriteString(renderChart(ev))
		b.WriteString(chartData(ev))
	case "log":
		fmt.Fprintf(&b, `<pre class="log">%s</pre>`, template.HTMLEscapeString(ev.Text))
	case "image":
		b.WriteString(renderImage(ev, dir))
	default:
		if ev.Text != "" {
			fmt.Fprintf(&b, `<pre class="log">%s</pre>`, template.HTMLEscapeString(ev.Text))
		}
		if ev.Path != "" {
			fmt.Fprintf(&b, `<p>File in the report folder: <code>%s</code></p>`, template.HTMLEscapeString(ev.Path))
		}
	}
	b.WriteString(`</figure>`)
	return template.HTML(b.String())
}

// renderImage inlines an image the scenario opted in to show, as a data
// URI so the report stays one file. Images not opted in (a TOTP QR code
// holds the key) are only named.
func renderImage(ev steps.Evidence, dir string) string {
	name := template.HTMLEscapeString(ev.Path)
	if !ev.Show || ev.Path == "" || dir == "" {
		return fmt.Sprintf(`<p class="muted">Image kept out of the report (not opted in): <code>%s</code></p>`, name)
	}
	clean := filepath.Clean(filepath.FromSlash(ev.Path))
	if filepath.IsAbs(clean) || strings.HasPrefix(clean, "..") {
		return fmt.Sprintf(`<p class="muted">Image outside the report folder not shown: <code>%s</code></p>`, name)
	}
	data, err := os.ReadFile(filepath.Join(dir, clean))
	if err != nil || len(data) > maxInlineImage {
		return fmt.Sprintf(`<p class="muted">Image not available: <code>%s</code></p>`, name)
	}
	mt := ev.MediaType
	if mt == "" {
		mt = mime.TypeByExtension(filepath.Ext(clean))
	}
	if !strings.HasPrefix(mt, "image/") {
		mt = "image/png"
	}
	return fmt.Sprintf(`<img src="data:%s;base64,%s" alt="%s">`, template.HTMLEscapeString(mt),
		base64.StdEncoding.EncodeToString(data), template.HTMLEscapeString(ev.Title))
}
