package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestControlsEndToEnd: controls are checked by validate with their
// position, carried into report.json, junit.xml, report.html, and trend
// keeps the drills that evidence the controls asked for.
func TestControlsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	gate := write("gate.yaml", "name: gate\ncontrols: [ISO27001:A.8.5, SOC2:CC6.1]\nsteps:\n  - uses: sleep\n    with: { duration: 1ms }\n")
	dr := write("dr.yaml", "name: dr\ncontrols: [ISO27001:A.5.30]\nsteps:\n  - uses: sleep\n    with: { duration: 1ms }\n")
	bad := write("bad.yaml", "name: bad\ncontrols:\n  - SOC2:CC6.1\n  - 11.4\nsteps:\n  - uses: sleep\n    with: { duration: 1ms }\n")

	r := opsdrill(t, "validate", bad)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stdout+r.stderr, "bad.yaml:4:5: controls[1]: expected a string, got the float 11.4; quote it")

	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, out := range []string{a, b} {
		r = opsdrill(t, "run", "--report-dir", out, gate, dr)
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
	}
	js, err := os.ReadFile(filepath.Join(a, "report.json"))
	require.NoError(t, err)
	assert.Contains(t, string(js), "\"controls\": [\n        \"ISO27001:A.8.5\",\n        \"SOC2:CC6.1\"\n      ]")
	junit, err := os.ReadFile(filepath.Join(a, "junit.xml"))
	require.NoError(t, err)
	assert.Contains(t, string(junit), `<property name="control" value="ISO27001:A.5.30"></property>`)
	html, err := os.ReadFile(filepath.Join(a, "report.html"))
	require.NoError(t, err)
	assert.Contains(t, string(html), `<tr class="control st-passed"><th scope="row"><code>SOC2:CC6.1</code></th>`)

	trend := filepath.Join(dir, "trend.html")
	r = opsdrill(t, "report", "trend", "--control", "ISO27001:A.5.*", "-o", trend, a, b)
	require.Equal(t, 0, r.code, r.stderr)
	page, err := os.ReadFile(trend)
	require.NoError(t, err)
	assert.Contains(t, string(page), `<th scope="row">dr<br>`)
	assert.NotContains(t, string(page), `<th scope="row">gate`, "gate evidences no A.5 control")

	r = opsdrill(t, "report", "trend", "--control", "PCI-DSS:11.4", "-o", trend, a, b)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "no scenario of these runs evidences the controls asked for: PCI-DSS:11.4")
	kept, err := os.ReadFile(trend)
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(kept), `<th scope="row">dr<br>`), "a refused trend leaves the earlier page alone")
}

// TestSignedPaper: report pdf --sign-key prints a cover that names the
// key's fingerprint, the one report verify names, and the findings on
// page 2.
func TestSignedPaper(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil && os.Getenv("CI") == "" {
		t.Skip("chromium not installed")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	key := filepath.Join(dir, "drill")
	require.Equal(t, 0, opsdrill(t, "report", "keygen", key).code)
	require.Equal(t, 0, opsdrill(t, "run", "--report-dir", out, "testdata/pass.yaml").code)
	r := opsdrill(t, "report", "pdf", "--sign-key", key+".key", out)
	require.Equal(t, 0, r.code, r.stderr)
	r = opsdrill(t, "report", "verify", "--pub", key+".pub", out)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	fp := regexp.MustCompile(`ed25519 SHA256:[A-Za-z0-9+/]+`).FindString(r.stdout)
	require.NotEmpty(t, fp, r.stdout)
	text, err := exec.Command("pdftotext", filepath.Join(out, "report.pdf"), "-").Output()
	require.NoError(t, err)
	pages := strings.Split(string(text), "\f")
	require.GreaterOrEqual(t, len(pages), 3)
	assert.Contains(t, strings.Join(strings.Fields(pages[0]), " "), "Signed by "+fp)
	assert.Contains(t, pages[1], "1 Findings")
	assert.Contains(t, pages[1], "passing")
}
