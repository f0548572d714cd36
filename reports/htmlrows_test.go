package reports

import (
	"html/template"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// stepRowsTmpl is the step rows as report.html's template wrote them
// before writeStepRows took over: the reference the fast rows must match
// byte for byte (markup, whitespace and html/template's escaping).
const stepRowsTmpl = `{{- range .Rows}}
<tr class="step st-{{.Status}}{{if .Failing}} failing{{end}}" id="sc-{{$.Index}}-{{.Phase}}-{{.ID}}"><td class=b>{{upper .Status}}<th scope=row>{{with phase .Phase}}<span class=phase>{{.}}</span> {{end}}{{.ID}}{{if .Background}} <span class=phase>bg</span>{{end}}<td class=u>{{.Uses}}<td class=num>{{dur .DurationMS}}{{if gt (len .Attempts) 1}} <span class=muted>×{{len .Attempts}}</span>{{end}}<td class=result>
{{- if .Waiver}}<p class=waived><strong>Waived</strong> until {{.Waiver.Expires}} (was {{.WaivedStatus}}): {{.Waiver.Justification}}</p>{{end}}
{{- if .Error}}<p class=error>{{.Error}}</p>{{end}}
{{- if .SkipReason}}<p class=muted>{{.SkipReason}}</p>{{end}}
{{- if .Figures}}<ul class=figs>{{range .Figures}}<li class={{if .Met}}ok{{else}}bad{{end}}>{{.Text}}{{end}}</ul>{{end}}
{{- if .Expectations}}<ul class=expect>{{range .Expectations}}<li class={{if .OK}}ok>✓ {{else}}bad>✗ failed: {{end}}<code>{{exp .}}</code>{{end}}</ul>{{end}}
{{- if .Outputs}}<dl class=outputs>{{range .Outputs}}<dt>{{.Name}}<dd>{{if .Repeated}}<span class=muted>in the table “{{.Repeated}}” below</span>{{else}}{{.Value}}{{end}}{{end}}</dl>{{end}}
</tr>
    {{- if .Detail}}
<tr class="detail st-{{.Status}}{{if .Failing}} failing{{end}}"><td colspan="5">
      <details open class="evidence-block"><summary>Evidence and log of {{.ID}}</summary>
      {{- range .Tables}}<figure class="evidence ev-output"><figcaption>output {{.Name}}</figcaption>{{.Value}}</figure>{{end}}
      {{- range .Evidence}}{{.}}{{end}}
      {{- if .Logs}}<pre class="log">{{range .Logs}}{{.}}
{{end}}</pre>{{end}}
      </details>
    </td></tr>
    {{- end}}
{{- end}}`

// refRow is htmlRow as the reference template reads it.
type refRow struct {
	*Step
	Outputs  []htmlOutput
	Tables   []htmlOutput
	Evidence []template.HTML
	Failing  bool
	Detail   bool
}

func TestStepRowsMatchTemplate(t *testing.T) {
	// The old row template's helpers, which the page template no longer calls.
	funcs := template.FuncMap{"phase": PhaseLabel, "exp": ExpectationText}
	ref := template.Must(template.New("rows").Funcs(htmlFuncs).Funcs(funcs).Parse(stepRowsTmpl))
	hostile := `a"b'c&d+e<f>g` + "\x00h\xffi “j”"
	table := steps.TableEvidence("t <1>", []string{"a"}, [][]string{{"x+y"}})
	for _, tc := range []struct {
		name string
		step Step
	}{
		{name: "plain passed", step: Step{ID: "s1", Uses: "exec", Phase: PhaseMain, Status: StatusPassed, DurationMS: 12}},
		{name: "hostile text everywhere", step: Step{
			ID: "loop[" + hostile + "]/inner", Uses: hostile, Phase: PhaseMain, Status: StatusFailed, DurationMS: 61500, Background: true,
			Attempts: Attempts{{Attempt: 1}, {Attempt: 2}, {Attempt: 3}}, Error: hostile, SkipReason: hostile,
			Waiver: &Waiver{Expires: "2030-01-01", Justification: hostile}, WaivedStatus: StatusFailed,
			Figures:      []Figure{{Text: hostile, Limits: []Limit{{OK: false}}}, {Text: "within", Limits: []Limit{{OK: true}}}},
			Expectations: []Expectation{{Expr: "a + b > 1", OK: true}, {Expr: hostile, Values: map[string]string{"x": hostile}, Error: hostile}},
			Logs:         []string{hostile, "", "second"},
			Outputs: map[string]any{
				"records": []any{map[string]any{"host": "<a>", "n": 1.0}, map[string]any{"host": "b+c", "n": 2.0}},
				"text":    hostile, "list": []any{"x", 2.0}, "map": map[string]any{"k": "v"}, "long": strings.Repeat("z\n", 40),
			},
			Evidence: []steps.Evidence{table, {Kind: "log", Title: hostile, Text: hostile}},
		}},
		{name: "steady state, errored, one attempt", step: Step{ID: "probe", Uses: "tcp.probe", Phase: PhaseSteadyAfter, Status: StatusErrored,
			Attempts: Attempts{{Attempt: 1}}, Error: "no route"}},
		{name: "cleanup with a log only", step: Step{ID: "undo", Uses: "undo", Phase: PhaseCleanup, Status: StatusPassed, Logs: []string{"removed"}}},
		{name: "output repeated by an evidence table", step: Step{ID: "q", Uses: "db.query", Phase: PhaseSteadyBefore, Status: StatusSkipped,
			Outputs: map[string]any{"rows": []any{map[string]any{"a": "x+y"}}}, Evidence: []steps.Evidence{table}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.step
			row := htmlRow{st: &st, Failing: st.Status == StatusFailed || st.Status == StatusErrored}
			row.Outputs, row.Tables = outputsHTML(&st)
			for _, ev := range st.Evidence {
				row.Evidence = append(row.Evidence, renderEvidence(ev, ""))
			}
			row.Detail = len(row.Evidence) > 0 || len(st.Logs) > 0 || len(row.Tables) > 0

			var want strings.Builder
			require.NoError(t, ref.Execute(&want, struct {
				Index int
				Rows  []refRow
			}{Index: 7, Rows: []refRow{{Step: &st, Outputs: row.Outputs, Tables: row.Tables, Evidence: row.Evidence, Failing: row.Failing, Detail: row.Detail}}}))
			var got strings.Builder
			writeStepRows(&got, 7, []htmlRow{row})
			assert.Equal(t, want.String(), got.String())
		})
	}
}
