package reports

import (
	"html/template"
	"strconv"
	"strings"
	"time"
)

// The step rows are most of a large report.html (10,000 steps: 20,000
// table rows), so they are written here rather than by the template:
// html/template resolves every field by reflection and calls its
// escapers through reflect.Value.Call, which cost more than the rest of
// the report together. The markup and the escaping are html/template's
// own (TestStepRowsMatchTemplate renders the same rows both ways).

// htmlRow is one step as its rows show it: the values worked out once.
type htmlRow struct {
	st *Step
	// Outputs are shown in the result cell; Tables (records) full width
	// in the step's detail row.
	Outputs  []htmlOutput
	Tables   []htmlOutput
	Evidence []template.HTML
	Failing  bool
	Detail   bool
}

// writeStepRows appends the rows of one chunk of scenario sc's steps.
func writeStepRows(b *strings.Builder, sc int, rows []htmlRow) {
	for i := range rows {
		writeStepRow(b, sc, &rows[i])
	}
}

func writeStepRow(b *strings.Builder, sc int, r *htmlRow) {
	st := r.st
	b.WriteString("\n<tr class=\"step st-")
	escHTML(b, st.Status)
	if r.Failing {
		b.WriteString(" failing")
	}
	b.WriteString(`" id="sc-`)
	b.WriteString(strconv.Itoa(sc))
	b.WriteByte('-')
	escHTML(b, st.Phase)
	b.WriteByte('-')
	escHTML(b, st.ID)
	b.WriteString(`"><td class=b>`)
	escHTML(b, strings.ToUpper(st.Status))
	b.WriteString("<th scope=row>")
	if label := PhaseLabel(st.Phase); label != "" {
		b.WriteString("<span class=phase>")
		escHTML(b, label)
		b.WriteString("</span> ")
	}
	escHTML(b, st.ID)
	if st.Background {
		b.WriteString(" <span class=phase>bg</span>")
	}
	b.WriteString("<td class=u>")
	escHTML(b, st.Uses)
	b.WriteString("<td class=num>")
	escHTML(b, durText(st.DurationMS))
	if len(st.Attempts) > 1 {
		b.WriteString(" <span class=muted>×")
		b.WriteString(strconv.Itoa(len(st.Attempts)))
		b.WriteString("</span>")
	}
	b.WriteString("<td class=result>")
	if w := st.Waiver; w != nil {
		b.WriteString("<p class=waived><strong>Waived</strong> until ")
		escHTML(b, w.Expires)
		b.WriteString(" (was ")
		escHTML(b, st.WaivedStatus)
		b.WriteString("): ")
		escHTML(b, w.Justification)
		b.WriteString("</p>")
	}
	if st.Error != "" {
		b.WriteString("<p class=error>")
		escHTML(b, st.Error)
		b.WriteString("</p>")
	}
	if st.SkipReason != "" {
		b.WriteString("<p class=muted>")
		escHTML(b, st.SkipReason)
		b.WriteString("</p>")
	}
	if len(st.Figures) > 0 {
		b.WriteString("<ul class=figs>")
		for _, f := range st.Figures {
			if f.Met() {
				b.WriteString("<li class=ok>")
			} else {
				b.WriteString("<li class=bad>")
			}
			escHTML(b, f.Text)
		}
		b.WriteString("</ul>")
	}
	if len(st.Expectations) > 0 {
		b.WriteString("<ul class=expect>")
		for _, e := range st.Expectations {
			if e.OK {
				b.WriteString("<li class=ok>✓ <code>")
			} else {
				b.WriteString("<li class=bad>✗ failed: <code>")
			}
			escHTML(b, ExpectationText(e))
			b.WriteString("</code>")
		}
		b.WriteString("</ul>")
	}
	if len(r.Outputs) > 0 {
		b.WriteString("<dl class=outputs>")
		for _, o := range r.Outputs {
			b.WriteString("<dt>")
			escHTML(b, o.Name)
			b.WriteString("<dd>")
			if o.Repeated != "" {
				b.WriteString("<span class=muted>in the table “")
				escHTML(b, o.Repeated)
				b.WriteString("” below</span>")
			} else {
				b.WriteString(string(o.Value))
			}
		}
		b.WriteString("</dl>")
	}
	b.WriteString("\n</tr>")
	if !r.Detail {
		return
	}
	b.WriteString("\n<tr class=\"detail st-")
	escHTML(b, st.Status)
	if r.Failing {
		b.WriteString(" failing")
	}
	b.WriteString("\"><td colspan=\"5\">\n      <details open class=\"evidence-block\"><summary>Evidence and log of ")
	escHTML(b, st.ID)
	b.WriteString("</summary>")
	for _, t := range r.Tables {
		b.WriteString(`<figure class="evidence ev-output"><figcaption>output `)
		escHTML(b, t.Name)
		b.WriteString("</figcaption>")
		b.WriteString(string(t.Value))
		b.WriteString("</figure>")
	}
	for _, ev := range r.Evidence {
		b.WriteString(string(ev))
	}
	if len(st.Logs) > 0 {
		b.WriteString(`<pre class="log">`)
		for _, l := range st.Logs {
			escHTML(b, l)
			b.WriteByte('\n')
		}
		b.WriteString("</pre>")
	}
	b.WriteString("\n      </details>\n    </td></tr>")
}

// durText is a duration in milliseconds as the report shows it.
func durText(ms int64) string { return FormatDuration(time.Duration(ms) * time.Millisecond) }

// escHTML writes s escaped the way html/template escapes text and quoted
// attribute values: NUL becomes U+FFFD; " & ' + < > become references.
func escHTML(b *strings.Builder, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var repl string
		switch s[i] {
		case 0:
			repl = "\uFFFD"
		case '"':
			repl = "&#34;"
		case '&':
			repl = "&amp;"
		case '\'':
			repl = "&#39;"
		case '+':
			repl = "&#43;"
		case '<':
			repl = "&lt;"
		case '>':
			repl = "&gt;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(repl)
		last = i + 1
	}
	b.WriteString(s[last:])
}
