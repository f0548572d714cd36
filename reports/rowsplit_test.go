package reports_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/reports/browser"
	"github.com/opsdrill/opsdrill/steps"
)

// rowSplitRun is a run whose evidence is a long table of rows of uneven
// height (some cells wrap over several lines), so that printing it must
// break pages between rows many times.
func rowSplitRun(t *testing.T, rows int) *reports.Run {
	t.Helper()
	var table [][]string
	for i := range rows {
		note := "short"
		if i%3 == 0 {
			note = strings.Repeat(fmt.Sprintf("wrapped text of row %d ", i), 12)
		}
		// The tall cell ends the row at its bottom; the others sit at its top.
		table = append(table, []string{fmt.Sprintf("ROWBEGIN%03d", i), note + fmt.Sprintf(" ROWTAIL%03d", i), fmt.Sprintf("ROWEND%03d", i)})
	}
	at := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	b := reports.NewBuilder()
	b.Emit(&reports.Event{Type: reports.EventRunStart, Time: at, Run: &reports.RunInfo{RunID: "20261201T020000Z-1-1", Host: "ci", User: "root"}})
	si := reports.StepInfo{ID: "flood", Uses: "db.flood", Phase: reports.PhaseMain}
	b.Emit(&reports.Event{Type: reports.EventScenarioStart, Time: at, ScenarioInfo: &reports.ScenarioInfo{Name: "long-table",
		File: "scenarios/long-table.yaml", Description: "A drill whose evidence table spans pages.", Steps: []reports.StepInfo{si}}})
	b.Emit(&reports.Event{Type: reports.EventStepStart, Time: at, Step: &si})
	end := at.Add(time.Minute)
	b.Emit(&reports.Event{Type: reports.EventStepEnd, Time: end, Step: &si, Result: &reports.StepResult{Status: reports.StatusPassed, DurationMS: 60000,
		Evidence: []steps.Evidence{steps.TableEvidence("Writers", []string{"first", "note", "last"}, table)}}})
	b.Emit(&reports.Event{Type: reports.EventScenarioEnd, Time: end, Status: reports.StatusPassed})
	b.Emit(&reports.Event{Type: reports.EventRunEnd, Time: end, Status: reports.StatusPassed})
	return b.Run(end)
}

// TestPDFNeverSplitsATableRow prints a report with a table spanning many
// pages and reads each page back: every row's first cell, last cell and
// the end of its tallest cell are on the same page, and the rows run in
// order across the pages.
func TestPDFNeverSplitsATableRow(t *testing.T) {
	needChromium(t)
	pdftotext := needTool(t, "pdftotext", "poppler-utils")
	const rows = 240
	dir := t.TempDir()
	var buf bytes.Buffer
	require.NoError(t, reports.WriteHTML(&buf, rowSplitRun(t, rows), reports.HTMLOptions{Dir: dir}))
	path := filepath.Join(dir, "report.html")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	pdf := filepath.Join(dir, "report.pdf")
	require.NoError(t, browser.PrintPDF(context.Background(), path, pdf, "20261201T020000Z-1-1"))
	out, err := exec.Command(pdftotext, pdf, "-").Output()
	require.NoError(t, err)
	pages := strings.Split(strings.TrimSuffix(string(out), "\f"), "\f")

	pageOf := func(marker string) []int {
		var at []int
		for i, p := range pages {
			if strings.Contains(p, marker) {
				at = append(at, i+1)
			}
		}
		return at
	}
	spanned := map[int]bool{}
	last := 0
	for i := range rows {
		begin, tail, end := pageOf(fmt.Sprintf("ROWBEGIN%03d", i)), pageOf(fmt.Sprintf("ROWTAIL%03d", i)), pageOf(fmt.Sprintf("ROWEND%03d", i))
		require.Len(t, begin, 1, "row %d's first cell is printed once", i)
		require.Len(t, tail, 1, "row %d's tall cell is printed once", i)
		require.Len(t, end, 1, "row %d's last cell is printed once", i)
		assert.Equal(t, begin[0], tail[0], "row %d starts on page %d and ends on page %d", i, begin[0], tail[0])
		assert.Equal(t, begin[0], end[0], "row %d's first and last cells are on pages %d and %d", i, begin[0], end[0])
		assert.GreaterOrEqual(t, begin[0], last, "row %d comes after row %d", i, i-1)
		last = begin[0]
		spanned[begin[0]] = true
	}
	assert.GreaterOrEqual(t, len(spanned), 4, "the table spans several pages, so page breaks fell between its rows")
}
