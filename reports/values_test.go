package reports

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

func TestValuesReadAsTables(t *testing.T) {
	writers := map[string]any{
		"R1-cycle2": map[string]any{"acknowledged": 12.0, "lost": 0.0},
		"R1-cycle1": map[string]any{"acknowledged": 10.0, "lost": 1.0},
	}
	children := []any{
		map[string]any{"state": "INSTALLED", "name": "aws-1-inside", "spi_in": "c1a2"},
		map[string]any{"state": "INSTALLED", "name": "aws-1-vpc", "spi_in": "c9d8"},
	}
	long := strings.Repeat("a line of a rendered config\n", 10)
	cases := []struct {
		name  string
		value any
		want  []string
		not   []string
	}{
		{"map of records", writers, []string{`<table class="data records">`, `<th scope="col">acknowledged</th>`,
			`<th scope="row">R1-cycle1</th><td>10</td><td>1</td>`}, []string{"{"}},
		{"list of records, naming keys first", children, []string{`<thead><tr><th scope="col">name</th><th scope="col">state</th><th scope="col">spi_in</th>`,
			`<td>aws-1-vpc</td><td>INSTALLED</td><td>c9d8</td>`}, []string{`"name"`}},
		{"map of scalars", map[string]any{"hostname": "db-b", "server_id": 2.0}, []string{`<table class="data kvtable">`, `<th scope="row">server_id</th><td>2</td>`}, nil},
		{"list of scalars", []any{"a", "b"}, []string{"a, b"}, []string{"["}},
		{"empty list", []any{}, []string{"none"}, nil},
		{"long text folded", long, []string{`<details class="fold"><summary><code>a line of a rendered config</code>… <span class="muted">(280 characters, 11 lines)</span></summary>`}, nil},
		{"short text as it is", "aes128-sha1-modp1024", []string{"aes128-sha1-modp1024"}, []string{"<details"}},
		{"escaped", "<b>x</b>", []string{"&lt;b&gt;x&lt;/b&gt;"}, []string{"<b>"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := string(valueHTML(tc.value))
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			for _, n := range tc.not {
				assert.NotContains(t, out, n)
			}
		})
	}
}

func TestOutputsNotShownTwice(t *testing.T) {
	children := []any{
		map[string]any{"name": "aws-1-inside", "state": "INSTALLED", "spi_in": "c1a2b3c4", "spi_out": "d5e6f7a8"},
		map[string]any{"name": "aws-1-vpc", "state": "INSTALLED", "spi_in": "c9d8e7f6", "spi_out": "a1b2c3d4"},
	}
	sa := steps.TableEvidence("Security associations", []string{"SA", "state", "SPIs (in / out)"}, [][]string{
		{"aws-1-inside", "INSTALLED", "c1a2b3c4 / d5e6f7a8"}, {"aws-1-vpc", "INSTALLED", "c9d8e7f6 / a1b2c3d4"}})
	other := steps.TableEvidence("Something else", []string{"a"}, [][]string{{"x"}, {"y"}})
	values, tables := outputsHTML(&Step{Outputs: map[string]any{"children": children, "n": 2.0}, Evidence: []steps.Evidence{other, sa}})
	require.Len(t, values, 2)
	assert.Equal(t, "Security associations", values[0].Repeated, "the records an evidence table shows are named, not repeated")
	assert.Empty(t, tables)

	// The fault: the evidence shows other records; the output is a table.
	sa.Table.Rows[1] = []string{"aws-1-other", "DELETING", "00000000 / 11111111"}
	sa.Table.Rows[0] = []string{"aws-1-x", "DELETING", "22222222 / 33333333"}
	values, tables = outputsHTML(&Step{Outputs: map[string]any{"children": children}, Evidence: []steps.Evidence{sa}})
	require.Len(t, tables, 1)
	assert.Contains(t, string(tables[0].Value), "c9d8e7f6")
	assert.Equal(t, "output children", values[0].Repeated)
}

func TestChartHasItsNumbers(t *testing.T) {
	ev := steps.Evidence{Kind: "series", Title: "acks", Series: []steps.Series{
		{Name: "acknowledged", XUnit: "s", YUnit: "writes", Points: []float64{0, 330, 1, 0, 2, 310}},
		{Name: "failed", Points: []float64{1, 12}},
	}, Marks: []steps.Mark{{X: 0.8, Label: "failover triggered"}}}
	out := chartData(ev)
	for _, w := range []string{`<th scope="col">s</th><th scope="col">acknowledged (writes)</th><th scope="col">failed</th>`,
		`<tr><th scope="row">1</th><td class="num">0</td><td class="num">12</td></tr>`,
		`<tr><th scope="row">2</th><td class="num">310</td><td></td></tr>`,
		`Marked: failover triggered at 0.8 s`, `(3 rows)`} {
		assert.Contains(t, out, w)
	}
	assert.Empty(t, chartData(steps.Evidence{Kind: "series"}), "no points, no table")
}

// TestAuditHTMLOrder: the report opens with the findings, then the
// controls, then who/what/where, then the evidence.
func TestAuditHTMLOrder(t *testing.T) {
	out := renderHTML(t, AuditRun(t), "")
	at := func(s string) int {
		i := strings.Index(out, s)
		require.GreaterOrEqual(t, i, 0, "missing %q", s)
		return i
	}
	assert.Less(t, at(`id="findings-h">1 Findings`), at(`id="controls-h">2 Controls`))
	assert.Less(t, at(`id="controls-h">2 Controls`), at(`id="run-h">3 Who, what, where`))
	assert.Less(t, at(`id="run-h">3 Who, what, where`), at(`id="sc-0-h">`))
	for _, w := range []string{
		`<li class="bad">RTT 61.4 ms (limit 50 ms)</li>`,
		`<li class="ok">0 of 6,652 acknowledged writes lost (limit 0)</li>`,
		`<tr class="control st-failed"><th scope="row"><code>SOC2:CC6.7</code></th>`,
		`Not mapped to any control: <a href="#sc-3">epson-scanner</a>.`,
		`SHA256:Tb6W2yF1vS4r0mV8c1oKk8yq0C1QJbq3pW1n9mJ5cAs`,
		`<code>scenarios/targets/lab.yaml</code>`,
		`root <span class="muted">(uid 0)</span>`,
		`<span class="git-clean">clean</span>`,
		`in the table “Security associations” below`,
		`<figcaption>output writers</figcaption>`,
	} {
		assert.Contains(t, out, w)
	}
}
