// Package browser drives headless Chromium (Debian's chromium package)
// through chromedp, to print report.html to PDF and to check the report the
// way an auditor's browser shows it.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// ErrNoChromium means no Chromium binary was found.
var ErrNoChromium = errors.New("no Chromium found: install Debian's chromium package (apt-get install chromium) or set OPSDRILL_CHROMIUM")

// Path finds the Chromium binary: $OPSDRILL_CHROMIUM, then the usual names.
func Path() (string, error) {
	if p := os.Getenv("OPSDRILL_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// New starts a headless Chromium and returns a browser context; cancel
// stops it. JavaScript can be turned off for a check of the no-script view.
func New(ctx context.Context) (context.Context, context.CancelFunc, error) {
	bin, err := Path()
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-gpu", true),
		// Root in containers and CI cannot use the sandbox.
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	if err := chromedp.Run(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		return nil, nil, fmt.Errorf("start chromium %s: %w", bin, err)
	}
	return bctx, func() { cancelBrowser(); cancelAlloc() }, nil
}

// FileURL returns the file:// URL of path.
func FileURL(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: abs}).String(), nil
}

// PrintPDF prints htmlPath to pdfPath on A4 with a header naming the run
// and a page x/y footer. Backgrounds are printed so status colours show.
// Every folded value and chart table is opened first. When pdftotext
// (poppler-utils) is installed, the report is printed twice: the first
// print tells on which page each section starts, and the table of
// contents is given those page numbers for the second.
func PrintPDF(ctx context.Context, htmlPath, pdfPath, runID string) error {
	bctx, cancel, err := New(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	u, err := FileURL(htmlPath)
	if err != nil {
		return err
	}
	tctx, cancelT := context.WithTimeout(bctx, 3*time.Minute)
	defer cancelT()
	var targets map[string]string
	err = chromedp.Run(tctx,
		chromedp.Navigate(u),
		chromedp.WaitReady("body"),
		chromedp.Evaluate(openAllJS, nil),
		chromedp.Evaluate(tocTargetsJS, &targets),
	)
	if err != nil {
		return fmt.Errorf("print %s: %w", htmlPath, err)
	}
	pdf, err := printPage(tctx, runID)
	if err != nil {
		return fmt.Errorf("print %s: %w", htmlPath, err)
	}
	if pages, err := pageTexts(ctx, pdf); err == nil && len(targets) > 0 {
		numbers := pageNumbers(pages, targets)
		if len(numbers) > 0 {
			if err := chromedp.Run(tctx, chromedp.Evaluate(setPagesJS(numbers), nil)); err != nil {
				return fmt.Errorf("print %s: %w", htmlPath, err)
			}
			if pdf, err = printPage(tctx, runID); err != nil {
				return fmt.Errorf("print %s: %w", htmlPath, err)
			}
		}
	}
	return os.WriteFile(pdfPath, pdf, 0o644)
}

// openAllJS opens every folded value, chart table and evidence block, so
// the paper shows everything the screen folds.
const openAllJS = `document.querySelectorAll("details").forEach(function (d) { d.open = true; }); true`

// tocTargetsJS maps each table-of-contents page slot to the text of the
// heading it points to.
const tocTargetsJS = `(function () {
  var out = {};
  document.querySelectorAll(".pg[data-for]").forEach(function (p) {
    var id = p.getAttribute("data-for"), el = document.getElementById(id);
    if (!el) return;
    var h = el.matches("h1,h2,h3") ? el : el.querySelector("h2");
    if (h) out[id] = h.textContent;
  });
  return out;
})()`

func setPagesJS(numbers map[string]int) string {
	b, _ := json.Marshal(numbers)
	return `(function (n) {
  document.querySelectorAll(".pg[data-for]").forEach(function (p) {
    var v = n[p.getAttribute("data-for")];
    if (v) p.textContent = String(v);
  });
  return true;
})(` + string(b) + `)`
}

func printPage(ctx context.Context, runID string) ([]byte, error) {
	header := `<div style="font:8px sans-serif;width:100%;padding:0 12mm;display:flex;justify-content:space-between;color:#555">` +
		`<span>opsdrill report · run ` + html.EscapeString(runID) + `</span>` +
		`<span>page <span class="pageNumber"></span>/<span class="totalPages"></span></span></div>`
	var pdf []byte
	err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		pdf, _, err = page.PrintToPDF().
			WithPrintBackground(true).
			WithDisplayHeaderFooter(true).
			WithHeaderTemplate(header).
			WithFooterTemplate(`<div style="font:8px sans-serif;width:100%;text-align:center;color:#555">page <span class="pageNumber"></span> of <span class="totalPages"></span></div>`).
			WithMarginTop(0.6).WithMarginBottom(0.6).WithMarginLeft(0.4).WithMarginRight(0.4).
			WithPaperWidth(8.27).WithPaperHeight(11.69).
			Do(ctx)
		return err
	}))
	return pdf, err
}

// pageTexts reads a PDF's text page by page with pdftotext.
func pageTexts(ctx context.Context, pdf []byte) ([]string, error) {
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp("", "opsdrill-*.pdf")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(pdf); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bin, f.Name(), "-").Output()
	if err != nil {
		return nil, fmt.Errorf("pdftotext: %w", err)
	}
	return strings.Split(string(out), "\f"), nil
}

// pageNumbers finds, for each heading, the first page after the table of
// contents that shows it.
func pageNumbers(pages []string, targets map[string]string) map[string]int {
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	flat := make([]string, len(pages))
	toc := 0
	for i, p := range pages {
		flat[i] = norm(p)
		if toc == 0 && strings.Contains(flat[i], "Contents") {
			toc = i + 1
		}
	}
	out := map[string]int{}
	for id, heading := range targets {
		h := norm(heading)
		for i := toc; i < len(flat); i++ {
			if h != "" && strings.Contains(flat[i], h) {
				out[id] = i + 1
				break
			}
		}
	}
	return out
}
