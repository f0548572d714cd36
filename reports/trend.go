package reports

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
)

// TrendRun is one run in a trend, with the folder it came from.
type TrendRun struct {
	Dir string
	Run *Run
}

// maxTrendMetrics bounds the metrics drawn per scenario.
const maxTrendMetrics = 40

// TrendOptions narrow a trend.
type TrendOptions struct {
	// Controls keeps the scenarios that evidence one of these controls
	// (exact names or path.Match patterns such as ISO27001:A.8.*).
	Controls []string
}

// ErrNoControl is returned when no scenario of the runs evidences the
// controls asked for.
var ErrNoControl = errors.New("no scenario of these runs evidences the controls asked for")

// WriteTrend renders a small self-contained HTML page comparing runs (a
// nightly series): per scenario, the controls it evidences, the pass/fail
// history, and every numeric output (downtime, drift, RTT, ...) over time
// with a sparkline and its numbers.
func WriteTrend(w io.Writer, runs []TrendRun, o TrendOptions) error {
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Run.Started.Before(runs[j].Run.Started) })
	type cell struct{ Status, Title string }
	type metric struct {
		Name      string
		Last      string
		Min, Max  string
		Sparkline template.HTML
		Values    int
	}
	type row struct {
		Name     string
		Controls []string
		Cells    []cell
		Metrics  []metric
	}
	var names []string
	seen := map[string]bool{}
	controls := map[string][]string{}
	for _, r := range runs {
		for _, sc := range r.Run.Scenarios {
			for _, c := range sc.Controls {
				if !slices.Contains(controls[sc.Name], c) {
					controls[sc.Name] = append(controls[sc.Name], c)
				}
			}
		}
	}
	for _, r := range runs {
		for _, sc := range r.Run.Scenarios {
			if !seen[sc.Name] && evidences(controls[sc.Name], o.Controls) {
				seen[sc.Name] = true
				names = append(names, sc.Name)
			}
		}
	}
	if len(names) == 0 && len(o.Controls) > 0 {
		return fmt.Errorf("%w: %s", ErrNoControl, strings.Join(o.Controls, ", "))
	}
	var rows []row
	for _, name := range names {
		rw := row{Name: name, Controls: controls[name]}
		series := map[string][]float64{}
		var order []string
		for i, r := range runs {
			st := "absent"
			for _, sc := range r.Run.Scenarios {
				if sc.Name != name {
					continue
				}
				st = sc.Status
				for _, step := range sc.Steps {
					keys := make([]string, 0, len(step.Outputs))
					for k := range step.Outputs {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						v, ok := number(step.Outputs[k])
						if !ok {
							continue
						}
						key := step.ID + "." + k
						if _, known := series[key]; !known {
							order = append(order, key)
							series[key] = make([]float64, len(runs))
							for j := range series[key] {
								series[key][j] = math.NaN()
							}
						}
						series[key][i] = v
					}
				}
			}
			rw.Cells = append(rw.Cells, cell{Status: st, Title: r.Run.Started.UTC().Format("2006-01-02 15:04") + " " + st})
		}
		for _, key := range order {
			vals := series[key]
			m := metric{Name: key}
			lo, hi, last, n := math.Inf(1), math.Inf(-1), math.NaN(), 0
			var pts []float64
			for i, v := range vals {
				if math.IsNaN(v) {
					continue
				}
				n++
				lo, hi, last = math.Min(lo, v), math.Max(hi, v), v
				pts = append(pts, float64(i), v)
			}
			if n < 2 || lo == hi {
				continue // constant or single values are not a trend
			}
			m.Last, m.Min, m.Max, m.Values = fmtNum(last), fmtNum(lo), fmtNum(hi), n
			ev := steps.Evidence{Title: key, Series: []steps.Series{{Name: key, Points: pts, XUnit: "run"}}}
			m.Sparkline = template.HTML(renderChart(ev) + chartData(ev))
			rw.Metrics = append(rw.Metrics, m)
			if len(rw.Metrics) == maxTrendMetrics {
				break
			}
		}
		rows = append(rows, rw)
	}
	var headers []string
	for _, r := range runs {
		headers = append(headers, r.Run.Started.UTC().Format("01-02 15:04"))
	}
	css, err := assets.ReadFile("assets/report.css")
	if err != nil {
		return err
	}
	return trendTmpl.Execute(w, map[string]any{"Runs": runs, "Headers": headers, "Rows": rows, "CSS": template.CSS(css), "Controls": o.Controls})
}

// evidences reports whether a scenario mapped to have evidences one of
// the controls wanted (all of them when none is asked for).
func evidences(have, want []string) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		for _, h := range have {
			if ok, err := path.Match(w, h); h == w || (err == nil && ok) {
				return true
			}
		}
	}
	return false
}

func number(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case int32:
		return float64(t), true
	case uint:
		return float64(t), true
	case uint64:
		return float64(t), true
	case float32:
		return float64(t), true
	}
	return 0, false
}

var trendTmpl = template.Must(template.New("trend").Funcs(template.FuncMap{"upper": strings.ToUpper}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>opsdrill trend</title><style>{{.CSS}}
.trend td.cell{text-align:center;padding:2px}.trend .badge{min-width:0;padding:0 5px}</style></head>
<body><header role="banner" class="banner"><div class="wrap"><p class="tool">opsdrill trend</p><h1>{{len .Runs}} runs</h1>
{{if .Controls}}<p>Drills evidencing {{range $i, $c := .Controls}}{{if $i}}, {{end}}<code>{{$c}}</code>{{end}}</p>{{end}}</div></header>
<main class="wrap">
<section aria-labelledby="hist"><h2 id="hist">Pass/fail history</h2>
<div class="scroll"><table class="data trend"><thead><tr><th scope="col">Scenario</th>{{range .Headers}}<th scope="col">{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr><th scope="row">{{.Name}}{{if .Controls}}<br><small class="muted">{{range $i, $c := .Controls}}{{if $i}}, {{end}}{{$c}}{{end}}</small>{{end}}</th>{{range .Cells}}<td class="cell" title="{{.Title}}"><span class="badge st-{{.Status}}">{{upper .Status}}</span></td>{{end}}</tr>
{{end}}</tbody></table></div></section>
{{range .Rows}}{{if .Metrics}}<section aria-label="Metrics of {{.Name}}"><h2>{{.Name}}</h2>
<table class="data"><thead><tr><th scope="col">Metric</th><th scope="col">Last</th><th scope="col">Min</th><th scope="col">Max</th><th scope="col">Over time</th></tr></thead><tbody>
{{range .Metrics}}<tr><th scope="row"><code>{{.Name}}</code></th><td>{{.Last}}</td><td>{{.Min}}</td><td>{{.Max}}</td><td style="width:420px">{{.Sparkline}}</td></tr>{{end}}
</tbody></table></section>{{end}}{{end}}
<section aria-labelledby="src"><h2 id="src">Runs</h2><ol>{{range .Runs}}<li><code>{{.Dir}}</code>: {{.Run.RunID}} {{upper .Run.Status}}</li>{{end}}</ol></section>
</main></body></html>
`))
