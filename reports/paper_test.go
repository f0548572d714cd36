package reports_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/reports/browser"
)

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must have %s (%s)", name, pkg)
		}
		t.Skipf("%s not installed (%s)", name, pkg)
	}
	return p
}

func writeAuditReport(t *testing.T) (dir, path string) {
	dir = t.TempDir()
	var buf bytes.Buffer
	require.NoError(t, reports.WriteHTML(&buf, reports.AuditRun(t), reports.HTMLOptions{Dir: dir}))
	path = filepath.Join(dir, "report.html")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	return dir, path
}

// TestAuditReportLooksRight opens the report at desktop and phone widths
// and saves what a reviewer must look at: the top, a failed drill and the
// controls section. It also checks what can be measured of the looks: the
// findings come before the evidence, the failed figure is marked, and
// nothing is wider than a phone's screen.
func TestAuditReportLooksRight(t *testing.T) {
	needChromium(t)
	_, path := writeAuditReport(t)
	u, err := browser.FileURL(path)
	require.NoError(t, err)
	bctx, cancel, err := browser.New(context.Background())
	require.NoError(t, err)
	defer cancel()
	for _, vp := range []struct {
		name string
		w, h int64
	}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
		t.Run(vp.name, func(t *testing.T) {
			ctx, cancelT := context.WithTimeout(bctx, 60*time.Second)
			defer cancelT()
			var top, failed, controls []byte
			var findingsFirst, overflow bool
			var badFigure string
			require.NoError(t, chromedp.Run(ctx,
				chromedp.EmulateViewport(vp.w, vp.h),
				chromedp.Navigate(u),
				chromedp.WaitReady("#main"),
				chromedp.Evaluate(`document.getElementById('findings').getBoundingClientRect().top < document.getElementById('sc-0').getBoundingClientRect().top`, &findingsFirst),
				chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow),
				chromedp.Text(`#finding-1 .figs li.bad`, &badFigure),
				chromedp.CaptureScreenshot(&top),
				chromedp.Evaluate(`document.getElementById('sc-1').scrollIntoView({block: 'start'}); true`, nil),
				chromedp.Sleep(100*time.Millisecond),
				chromedp.CaptureScreenshot(&failed),
				chromedp.Evaluate(`document.getElementById('controls').scrollIntoView({block: 'start'}); true`, nil),
				chromedp.Sleep(100*time.Millisecond),
				chromedp.CaptureScreenshot(&controls),
			))
			assert.True(t, findingsFirst, "findings come before the evidence")
			assert.False(t, overflow, "the page is no wider than the screen")
			assert.Equal(t, "RTT 61.4 ms (limit 50 ms)", strings.TrimSpace(badFigure))
			dir := artifactDir(t)
			for name, png := range map[string][]byte{"top": top, "failed-drill": failed, "controls": controls} {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "report-"+vp.name+"-"+name+".png"), png, 0o644))
			}
		})
	}
}

// TestPDFIsAPaper prints the report and reads it back: a cover with the
// verdict, run, period and signer, a table of contents whose page numbers
// are right, the findings on page 2, a bounded page count; the first
// three pages are saved as PNG for review.
func TestPDFIsAPaper(t *testing.T) {
	needChromium(t)
	pdftotext := needTool(t, "pdftotext", "poppler-utils")
	pdftoppm := needTool(t, "pdftoppm", "poppler-utils")
	dir, path := writeAuditReport(t)
	pdf := filepath.Join(dir, "report.pdf")
	require.NoError(t, browser.PrintPDF(context.Background(), path, pdf, "20261121T020000Z-4242-1"))
	out, err := exec.Command(pdftotext, pdf, "-").Output()
	require.NoError(t, err)
	pages := strings.Split(strings.TrimSuffix(string(out), "\f"), "\f")
	assert.GreaterOrEqual(t, len(pages), 4, "cover, findings, who/what/where, evidence")
	assert.LessOrEqual(t, len(pages), 14, "four drills fit in a few pages")
	flat := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	cover, second := flat(pages[0]), flat(pages[1])
	for _, want := range []string{"FAILED", "20261121T020000Z-4242-1", "2026-11-21 02:00:00 – 02:01:04 UTC", "ed25519 SHA256:q3Zx1Jd0cO7yC4mJ2W1zR8tP5nL6kV9bH3gF0sD2aE4", "Contents"} {
		assert.Contains(t, cover, want, "cover")
	}
	for _, want := range []string{"1 Findings", "0 of 6,652 acknowledged writes lost (limit 0)", "writes stopped 2.76 s (limit 30 s)",
		"DNS moved 3.61 s after the trigger (limit 30 s)", "RTT 61.4 ms (limit 50 ms)", "gate:22 closed from lab:pgclient2 (timeout)"} {
		assert.Contains(t, second, want, "findings on page 2")
	}
	assert.NotContains(t, second, "Who, what, where 3", "page 2 is the findings, not the contents")
	// The contents name the page each section starts on.
	toc := regexp.MustCompile(`(?s)1 Findings\s+(\d+)`).FindStringSubmatch(pages[0])
	require.NotNil(t, toc, "contents with page numbers:\n%s", pages[0])
	assert.Equal(t, "2", toc[1])
	m := regexp.MustCompile(`4\.2 aws-vpn-tunnel\s+(\d+)`).FindStringSubmatch(pages[0])
	require.NotNil(t, m, "scenario entries with page numbers:\n%s", pages[0])
	var at int
	for i, p := range pages[1:] {
		if strings.Contains(flat(p), "4.2 aws-vpn-tunnel") {
			at = i + 2
			break
		}
	}
	assert.Equal(t, m[1], strconv.Itoa(at), "the page number of 4.2 is where it starts")

	data, err := os.ReadFile(pdf)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(artifactDir(t), "report.pdf"), data, 0o644))
	prefix := filepath.Join(artifactDir(t), "report-pdf-page")
	require.NoError(t, exec.Command(pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "3", pdf, prefix).Run())
	shots, _ := filepath.Glob(prefix + "-*.png")
	assert.Len(t, shots, 3)
}
