package reports

import (
	"fmt"
	"html/template"
	"sort"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
)

// How values read in report.html: lists of records and maps of records
// become tables, maps of scalars small key/value tables, long text is
// folded behind its first line.
const (
	// foldChars and foldLines: text longer than this is folded.
	foldChars = 240
	foldLines = 4
	// previewChars is how much of a folded value its summary shows.
	previewChars = 120
	// maxTableColumns keeps a record table readable; wider records are
	// folded JSON.
	maxTableColumns = 14
)

// valueHTML renders one output or var value.
func valueHTML(v any) template.HTML {
	if rows, cols, ok := records(v); ok {
		return recordTable(rows, cols)
	}
	switch t := v.(type) {
	case map[string]any:
		if scalars(t) {
			return kvTable(t)
		}
	case []any:
		if len(t) == 0 {
			return `<span class="muted">none</span>`
		}
		if allScalar(t) {
			parts := make([]string, len(t))
			for i, x := range t {
				parts[i] = valueText(x)
			}
			return foldText(strings.Join(parts, ", "))
		}
	}
	return foldText(valueText(v))
}

// foldText escapes s, folding it behind a preview when it is long.
func foldText(s string) template.HTML {
	esc := template.HTMLEscapeString(s)
	if len(s) <= foldChars && strings.Count(s, "\n") < foldLines {
		return template.HTML(esc)
	}
	preview := s
	if i := strings.IndexByte(preview, '\n'); i >= 0 {
		preview = preview[:i]
	}
	if r := []rune(preview); len(r) > previewChars {
		preview = string(r[:previewChars])
	}
	return template.HTML(fmt.Sprintf(`<details class="fold"><summary><code>%s</code>… <span class="muted">(%d characters, %d lines)</span></summary><pre class="value">%s</pre></details>`,
		template.HTMLEscapeString(preview), len([]rune(s)), strings.Count(s, "\n")+1, esc))
}

func scalar(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return false
	}
	return true
}

func allScalar(l []any) bool {
	for _, x := range l {
		if !scalar(x) {
			return false
		}
	}
	return true
}

func scalars(m map[string]any) bool {
	for _, x := range m {
		if !scalar(x) {
			return false
		}
	}
	return true
}

// records recognises a list of maps, or a map of maps (writers by cycle),
// and returns its rows as text with the columns in a stable order: keys
// that name the record first, the rest sorted.
func records(v any) (rows [][]string, cols []string, ok bool) {
	var keys []string
	var items []map[string]any
	switch t := v.(type) {
	case []any:
		for _, x := range t {
			m, isMap := x.(map[string]any)
			if !isMap {
				return nil, nil, false
			}
			items = append(items, m)
		}
	case map[string]any:
		keys = make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			m, isMap := t[k].(map[string]any)
			if !isMap {
				return nil, nil, false
			}
			items = append(items, m)
		}
	default:
		return nil, nil, false
	}
	if len(items) == 0 {
		return nil, nil, false
	}
	seen := map[string]bool{}
	for _, m := range items {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	sort.SliceStable(cols, func(i, j int) bool {
		ri, rj := colRank(cols[i]), colRank(cols[j])
		if ri != rj {
			return ri < rj
		}
		return cols[i] < cols[j]
	})
	if len(cols) > maxTableColumns {
		return nil, nil, false
	}
	if keys != nil {
		cols = append([]string{""}, cols...)
	}
	for i, m := range items {
		var row []string
		if keys != nil {
			row = append(row, keys[i])
		}
		for _, c := range cols {
			if c == "" {
				continue
			}
			x, has := m[c]
			if !has {
				row = append(row, "")
				continue
			}
			row = append(row, valueText(x))
		}
		rows = append(rows, row)
	}
	return rows, cols, true
}

// colRank puts the columns that name a record first.
func colRank(c string) int {
	switch c {
	case "name", "id", "cycle", "host", "address", "outside_ip":
		return 0
	case "state", "status":
		return 1
	}
	return 2
}

func recordTable(rows [][]string, cols []string) template.HTML {
	var b strings.Builder
	b.WriteString(`<div class="scroll"><table class="data records"><thead><tr>`)
	for _, c := range cols {
		fmt.Fprintf(&b, `<th scope="col">%s</th>`, template.HTMLEscapeString(c))
	}
	b.WriteString(`</tr></thead><tbody>`)
	for _, r := range rows {
		b.WriteString(`<tr>`)
		for i, c := range r {
			if i == 0 && cols[0] == "" {
				fmt.Fprintf(&b, `<th scope="row">%s</th>`, template.HTMLEscapeString(c))
				continue
			}
			fmt.Fprintf(&b, `<td>%s</td>`, foldText(c))
		}
		b.WriteString(`</tr>`)
	}
	b.WriteString(`</tbody></table></div>`)
	return template.HTML(b.String())
}

func kvTable(m map[string]any) template.HTML {
	if len(m) == 0 {
		return `<span class="muted">none</span>`
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(`<table class="data kvtable"><tbody>`)
	for _, k := range keys {
		fmt.Fprintf(&b, `<tr><th scope="row">%s</th><td>%s</td></tr>`, template.HTMLEscapeString(k), foldText(valueText(m[k])))
	}
	b.WriteString(`</tbody></table>`)
	return template.HTML(b.String())
}

// repeats reports whether an evidence table of the step already shows the
// records of v: most of their cells (of three characters or more) appear
// in it.
func repeats(v any, evidence []steps.Evidence) (string, bool) {
	rows, cols, ok := records(v)
	if !ok {
		return "", false
	}
	for _, ev := range evidence {
		if ev.Kind != "table" || ev.Table == nil || len(ev.Table.Rows) < len(rows) {
			continue
		}
		var all strings.Builder
		for _, r := range ev.Table.Rows {
			all.WriteString(strings.Join(r, "\x00"))
			all.WriteByte('\x00')
		}
		text := all.String()
		cells, found := 0, 0
		for _, r := range rows {
			for i, c := range r {
				// Short values (0, 1, true) are found anywhere: they
				// prove nothing either way.
				if len(c) < 3 || c == "—" || (i == 0 && cols[0] == "") {
					continue
				}
				cells++
				if strings.Contains(text, c) {
					found++
				}
			}
		}
		if cells >= 2 && found*10 >= cells*6 {
			return ev.Title, true
		}
	}
	return "", false
}

// chartData is the table of a chart's numbers, for print and screen
// readers: one row per x, one column per series, then the marks.
func chartData(ev steps.Evidence) string {
	xs := map[float64]bool{}
	vals := make([]map[float64]float64, len(ev.Series))
	for i, s := range ev.Series {
		vals[i] = map[float64]float64{}
		for j := 0; j+1 < len(s.Points); j += 2 {
			xs[s.Points[j]] = true
			vals[i][s.Points[j]] = s.Points[j+1]
		}
	}
	if len(xs) == 0 {
		return ""
	}
	order := make([]float64, 0, len(xs))
	for x := range xs {
		order = append(order, x)
	}
	sort.Float64s(order)
	var b strings.Builder
	xunit := ""
	if len(ev.Series) > 0 {
		xunit = ev.Series[0].XUnit
	}
	fmt.Fprintf(&b, `<details class="chart-data"><summary>The numbers of this chart (%d rows)</summary><div class="scroll"><table class="data"><caption class="visually-hidden">%s</caption><thead><tr><th scope="col">%s</th>`,
		len(order), template.HTMLEscapeString(ev.Title), template.HTMLEscapeString(firstNonEmpty(xunit, "x")))
	for i, s := range ev.Series {
		name := firstNonEmpty(s.Name, fmt.Sprintf("series %d", i+1))
		if s.YUnit != "" {
			name += " (" + s.YUnit + ")"
		}
		fmt.Fprintf(&b, `<th scope="col">%s</th>`, template.HTMLEscapeString(name))
	}
	b.WriteString(`</tr></thead><tbody>`)
	for _, x := range order {
		fmt.Fprintf(&b, `<tr><th scope="row">%s</th>`, fmtNum(x))
		for i := range ev.Series {
			if y, ok := vals[i][x]; ok {
				fmt.Fprintf(&b, `<td class="num">%s</td>`, fmtNum(y))
			} else {
				b.WriteString(`<td></td>`)
			}
		}
		b.WriteString(`</tr>`)
	}
	b.WriteString(`</tbody></table></div>`)
	if len(ev.Marks) > 0 {
		b.WriteString(`<p class="marks">Marked: `)
		for i, m := range ev.Marks {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, `%s at %s%s`, template.HTMLEscapeString(m.Label), fmtNum(m.X), template.HTMLEscapeString(unitSuffix(xunit)))
		}
		b.WriteString(`</p>`)
	}
	b.WriteString(`</details>`)
	return b.String()
}

func unitSuffix(u string) string {
	if u == "" {
		return ""
	}
	return " " + u
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
