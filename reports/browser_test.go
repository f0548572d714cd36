package reports_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/reports/browser"
)

// needChromium skips outside CI when Chromium is missing, and fails in CI.
func needChromium(t testing.TB) {
	t.Helper()
	if _, err := browser.Path(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must have Chromium: %v", err)
		}
		t.Skip(err)
	}
}

// artifactDir is where browser tests leave screenshots for people to look
// at: $OPSDRILL_TEST_ARTIFACTS, else test-artifacts/ in the repository.
func artifactDir(t testing.TB) string {
	dir := os.Getenv("OPSDRILL_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "test-artifacts")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

func writeEvidenceReport(t *testing.T) (dir, path string) {
	dir = t.TempDir()
	run := reports.EvidenceRun(t, dir)
	var buf bytes.Buffer
	require.NoError(t, reports.WriteHTML(&buf, run, reports.HTMLOptions{Dir: dir}))
	path = filepath.Join(dir, "report.html")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	return dir, path
}

// TestReportInChromium opens report.html in a real browser, with and
// without JavaScript: no console error, no request beyond the file itself
// (data: images are inline), the summary counts and the failing step
// visible, and a screenshot saved for people to look at.
func TestReportInChromium(t *testing.T) {
	needChromium(t)
	_, path := writeEvidenceReport(t)
	u, err := browser.FileURL(path)
	require.NoError(t, err)

	for _, js := range []bool{true, false} {
		name := map[bool]string{true: "javascript", false: "no-javascript"}[js]
		t.Run(name, func(t *testing.T) {
			bctx, cancel, err := browser.New(context.Background())
			require.NoError(t, err)
			defer cancel()
			ctx, cancelT := context.WithTimeout(bctx, 60*time.Second)
			defer cancelT()

			var mu sync.Mutex
			var problems, requests []string
			chromedp.ListenTarget(ctx, func(ev any) {
				mu.Lock()
				defer mu.Unlock()
				switch e := ev.(type) {
				case *runtime.EventConsoleAPICalled:
					if e.Type == runtime.APITypeError || e.Type == runtime.APITypeWarning {
						problems = append(problems, "console "+string(e.Type))
					}
				case *runtime.EventExceptionThrown:
					problems = append(problems, "exception: "+e.ExceptionDetails.Text)
				case *network.EventRequestWillBeSent:
					requests = append(requests, e.Request.URL)
				}
			})
			var failedCount, verdict, failingText string
			var failingVisible, filtersVisible bool
			var shot []byte
			require.NoError(t, chromedp.Run(ctx,
				network.Enable(),
				runtime.Enable(),
				emulation.SetScriptExecutionDisabled(!js),
				chromedp.EmulateViewport(1280, 900),
				chromedp.Navigate(u),
				chromedp.WaitReady("#main"),
				chromedp.Text("#count-failed", &failedCount),
				chromedp.Text("#verdict", &verdict),
				chromedp.Text(`tr.failing th`, &failingText),
				chromedp.Evaluate(`(function(){var r=document.querySelector('tr.failing').getBoundingClientRect();return r.width>0&&r.height>0})()`, &failingVisible),
				chromedp.Evaluate(`!document.getElementById('filters').hidden`, &filtersVisible),
				chromedp.FullScreenshot(&shot, 100),
			))
			// With scripts off, Evaluate still runs (it is the debugger, not
			// the page); the page's own script did not, so the filters stay
			// hidden.
			assert.Equal(t, js, filtersVisible, "the script ran only with JavaScript on")
			assert.Equal(t, "1", failedCount)
			assert.Equal(t, "FAILED", verdict)
			assert.Equal(t, "bad", strings.TrimSpace(failingText))
			assert.True(t, failingVisible, "the failing step is on screen")
			mu.Lock()
			defer mu.Unlock()
			assert.Empty(t, problems)
			for _, r := range requests {
				assert.True(t, strings.HasPrefix(r, "file://") || strings.HasPrefix(r, "data:"), "network request %s", r)
			}
			require.NoError(t, os.WriteFile(filepath.Join(artifactDir(t), "report-"+name+".png"), shot, 0o644))
		})
	}
}

// TestPDF prints the report and reads it back with pdftotext: header with
// the run id and page numbers on every page.
func TestPDF(t *testing.T) {
	needChromium(t)
	pdftotext, err := exec.LookPath("pdftotext")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must have pdftotext (poppler-utils)")
		}
		t.Skip("pdftotext not installed (poppler-utils)")
	}
	dir, path := writeEvidenceReport(t)
	pdf := filepath.Join(dir, "report.pdf")
	require.NoError(t, browser.PrintPDF(context.Background(), path, pdf, "r1"))
	out, err := exec.Command(pdftotext, "-layout", pdf, "-").Output()
	require.NoError(t, err)
	text := string(out)
	assert.Contains(t, text, "opsdrill report · run r1")
	assert.Contains(t, text, "page 1/")
	assert.Contains(t, text, "FAILED")
	assert.Contains(t, text, "failed: outputs.lost ==")
	assert.Contains(t, text, "(outputs.lost = 3)")
	data, err := os.ReadFile(pdf)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(data, []byte("%PDF-")))
}

// BenchmarkOpenInChromium measures the time from navigation to the load
// event for a 10,000-step report (target: under 2 s).
func BenchmarkOpenInChromium(b *testing.B) {
	needChromium(b)
	dir := b.TempDir()
	path := filepath.Join(dir, "report.html")
	var buf bytes.Buffer
	require.NoError(b, reports.WriteHTML(&buf, reports.BigRun(10000), reports.HTMLOptions{}))
	require.NoError(b, os.WriteFile(path, buf.Bytes(), 0o644))
	u, err := browser.FileURL(path)
	require.NoError(b, err)
	bctx, cancel, err := browser.New(context.Background())
	require.NoError(b, err)
	defer cancel()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var n int
		require.NoError(b, chromedp.Run(bctx, chromedp.Navigate(u), chromedp.Evaluate(`document.querySelectorAll('tr.step').length`, &n)))
		require.Equal(b, 10000, n)
	}
}
