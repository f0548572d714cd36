package reports

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// pngPixel is a 1×1 PNG.
var pngPixel = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")

// EvidenceRun is a run with every evidence type, a failure, a waiver and
// hostile text, for the renderer tests and the browser tests.
func EvidenceRun(t testing.TB, dir string) *Run {
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "artifacts"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "artifacts", "shown.png"), pngPixel, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "artifacts", "qr.png"), pngPixel, 0o600))
	run := build(sampleEvents())
	sc := run.Scenarios[0]
	ok := sc.Steps[0]
	ok.Outputs["html"] = `<script>alert("x")</script>`
	ok.Evidence = []steps.Evidence{
		steps.TableEvidence("per-writer results", []string{"writer", "acked", "lost"}, [][]string{{"1", "812", "0"}, {"2", "790", "<b>3</b>"}}),
		{Kind: "series", Title: "acks and errors per second", Series: []steps.Series{
			{Name: "acks", XUnit: "s", YUnit: "writes", Points: []float64{0, 120, 1, 130, 2, 0, 3, 0, 4, 110, 5, 125}},
			{Name: "errors", Points: []float64{0, 0, 1, 0, 2, 14, 3, 9, 4, 0, 5, 0}},
		}, Marks: []steps.Mark{{X: 1.8, Label: "failover"}, {X: 3.6, Label: "DNS switch"}}},
		{Kind: "series", Title: "TOTP accepted window", Chart: "bars", Series: []steps.Series{{Name: "accepted", XUnit: "steps", Points: []float64{-2, 0, -1, 1, 0, 1, 1, 1, 2, 0}}}},
		{Kind: "series", Title: "ping RTT", Series: []steps.Series{{Name: "rtt", XUnit: "packet", YUnit: "ms", Points: []float64{1, 0.41, 2, 0.38, 3, 0.52}}}},
		{Kind: "log", Title: "charon log", Text: "09:00:01 IKE_SA established\n09:00:02 CHILD_SA installed"},
		{Kind: "image", Title: "shown image", Path: "artifacts/shown.png", Show: true},
		{Kind: "image", Title: "TOTP QR code", Path: "artifacts/qr.png"},
	}
	run.Waivers = []Waiver{{Scenario: "other", Step: "*", Justification: "unused", Expires: "2030-01-01", State: WaiverUnused}}
	return run
}

func renderHTML(t *testing.T, run *Run, dir string) string {
	var buf bytes.Buffer
	require.NoError(t, WriteHTML(&buf, run, HTMLOptions{Dir: dir}))
	return buf.String()
}

func TestHTMLContent(t *testing.T) {
	dir := t.TempDir()
	out := renderHTML(t, EvidenceRun(t, dir), dir)
	for _, want := range []string{
		`<span class="verdict" id="verdict">FAILED</span>`,
		`<strong id="count-failed">1</strong> failed`,
		`<strong id="count-errored">1</strong> errored`,
		`id="sc-0-main-bad"><td class=b>FAILED`,
		`outputs.lost == 0 (outputs.lost = 3)`,
		`no route`,
		`skipped: step bad failed`,
		`<th scope="col">writer</th>`,
		`&lt;b&gt;3&lt;/b&gt;`,
		`<svg class="chart"`,
		`failover</text>`,
		`DNS switch</text>`,
		`<rect `, // bars of the TOTP window
		`IKE_SA established`,
		`src="data:image/png;base64,`,
		`Image kept out of the report (not opted in): <code>artifacts/qr.png</code>`,
		`<main id="main"`, `role="banner"`, `role="contentinfo"`, `aria-label="Scenarios"`,
		`&lt;script&gt;alert(`,
		`UNUSED`,
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, `<script>alert("x")</script>`, "outputs are escaped")
	assert.Equal(t, 1, strings.Count(out, "data:image/png;base64,"), "only the opted-in image is inlined")
}

// TestHTMLIsSelfContained: nothing in the page may make the browser fetch
// anything — no http(s) or protocol-relative URL in src/href/url(), no
// @import, and a CSP that forbids every fetch but inline data.
func TestHTMLIsSelfContained(t *testing.T) {
	dir := t.TempDir()
	out := renderHTML(t, EvidenceRun(t, dir), dir)
	refs := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?([^"'\s>]+)`).FindAllStringSubmatch(out, -1)
	for _, r := range refs {
		u := r[2]
		assert.True(t, strings.HasPrefix(u, "#") || strings.HasPrefix(u, "data:"), "external reference %q", u)
	}
	assert.NotRegexp(t, `(?i)url\(\s*['"]?(https?:|//)`, out)
	assert.NotContains(t, out, "@import")
	assert.Contains(t, out, `content="default-src 'none';`)
}

func TestHTMLWaivedStep(t *testing.T) {
	run := build(sampleEvents())
	run.Started = t0
	ApplyWaivers(run, []Waiver{{Scenario: "drill*", Step: "bad", Justification: "known flaky probe, OPS-42", Expires: "2026-12-31"}})
	out := renderHTML(t, run, "")
	assert.Contains(t, out, "<strong>Waived</strong> until 2026-12-31 (was failed): known flaky probe, OPS-42")
	assert.Contains(t, out, `<strong id="count-waived">1</strong>`)
}

func TestHTMLSize10kSteps(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteHTML(&buf, bigRun(10000), HTMLOptions{}))
	assert.Less(t, buf.Len(), 5<<20, "10,000 steps render under 5 MB")
}
