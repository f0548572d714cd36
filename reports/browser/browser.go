// Package browser drives headless Chromium (Debian's chromium package)
// through chromedp, to print report.html to PDF and to check the report the
// way an auditor's browser shows it.
package browser

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
	tctx, cancelT := context.WithTimeout(bctx, 2*time.Minute)
	defer cancelT()
	header := `<div style="font:8px sans-serif;width:100%;padding:0 12mm;display:flex;justify-content:space-between;color:#555">` +
		`<span>opsdrill report · run ` + html.EscapeString(runID) + `</span>` +
		`<span>page <span class="pageNumber"></span>/<span class="totalPages"></span></span></div>`
	var pdf []byte
	err = chromedp.Run(tctx,
		chromedp.Navigate(u),
		chromedp.WaitReady("body"),
		chromedp.ActionFunc(func(ctx context.Context) error {
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
		}),
	)
	if err != nil {
		return fmt.Errorf("print %s: %w", htmlPath, err)
	}
	return os.WriteFile(pdfPath, pdf, 0o644)
}
