package main

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWaiversTurnAFailureGreenUntilTheyExpire(t *testing.T) {
	dir := t.TempDir()
	future := time.Now().UTC().AddDate(0, 1, 0).Format("2006-01-02")
	past := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02")
	write := func(name, expires string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte("waivers:\n  - scenario: failing\n    step: closed\n    justification: port 1 is closed on purpose in this test\n    expires: "+expires+"\n"), 0o644))
		return p
	}
	out := filepath.Join(dir, "out")
	r := opsdrill(t, "run", "--report-dir", out, "--waivers", write("ok.yaml", future), "testdata/fail.yaml")
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "waiver failing/closed (until "+future+"): applied")
	run := readReport(t, out)
	assert.Equal(t, "waived", run.Scenarios[0].Steps[0].Status)
	assert.Equal(t, "port 1 is closed on purpose in this test", run.Scenarios[0].Steps[0].Waiver.Justification)

	// Rendering the journal again gives the same verdict.
	require.Equal(t, 0, opsdrill(t, "report", "render", out).code)
	assert.Equal(t, "passed", readReport(t, out).Status)

	r = opsdrill(t, "run", "--report-dir", out, "--waivers", write("old.yaml", past), "testdata/fail.yaml")
	assert.Equal(t, 1, r.code, "an expired waiver excuses nothing")
	assert.Contains(t, r.stdout, "expired")

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("waivers:\n  - scenario: failing\n    step: closed\n    expires: soon\n"), 0o644))
	r = opsdrill(t, "run", "--report-dir", out, "--waivers", bad, "testdata/fail.yaml")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, bad+":4:14: waivers[0].expires: expected a date YYYY-MM-DD")
	assert.Contains(t, r.stderr, bad+":2:5: waivers[0]: justification is required")
}

func TestSignedManifestAndVerify(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "drill")
	require.Equal(t, 0, opsdrill(t, "report", "keygen", prefix).code)
	info, err := os.Stat(prefix + ".key")
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	assert.Equal(t, 2, opsdrill(t, "report", "keygen", prefix).code, "never overwrites a key")

	out := filepath.Join(dir, "out")
	require.Equal(t, 0, opsdrill(t, "run", "--report-dir", out, "--sign-key", prefix+".key", "testdata/pass.yaml").code)
	r := opsdrill(t, "report", "verify", "--pub", prefix+".pub", out)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "signature valid")

	html := filepath.Join(out, "report.html")
	data, err := os.ReadFile(html)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(html, []byte(strings.Replace(string(data), "PASSED", "FAILED", 1)), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(out, "extra.txt"), []byte("x"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(out, "junit.xml")))
	r = opsdrill(t, "report", "verify", "--pub", prefix+".pub", out)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "changed: report.html")
	assert.Contains(t, r.stdout, "added: extra.txt")
	assert.Contains(t, r.stdout, "removed: junit.xml")
	assert.Equal(t, 2, opsdrill(t, "report", "verify", t.TempDir()).code, "no manifest is bad input")
}

func TestSummaryAppendsAndTrend(t *testing.T) {
	dir := t.TempDir()
	summary := filepath.Join(dir, "summary.md")
	require.NoError(t, os.WriteFile(summary, []byte("# CI job\n"), 0o644))
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	opsdrill(t, "run", "--report-dir", a, "--summary", summary, "testdata/pass.yaml")
	opsdrill(t, "run", "--report-dir", b, "--summary", summary, "testdata/pass.yaml", "testdata/fail.yaml")
	md, err := os.ReadFile(summary)
	require.NoError(t, err)
	text := string(md)
	assert.True(t, strings.HasPrefix(text, "# CI job\n"), "appends, never truncates")
	assert.Contains(t, text, "## ✅ opsdrill: PASSED")
	assert.Contains(t, text, "## ❌ opsdrill: FAILED")
	assert.Contains(t, text, "127.0.0.1:1 is not open (refused)")

	trend := filepath.Join(dir, "trend.html")
	r := opsdrill(t, "report", "trend", "-o", trend, a, b)
	require.Equal(t, 0, r.code, r.stderr)
	page, err := os.ReadFile(trend)
	require.NoError(t, err)
	assert.Contains(t, string(page), "passing")
	assert.Contains(t, string(page), "failing")
}

// TestNoSecretInAnyFormat runs a scenario whose secret reaches stdout raw
// and base64-encoded, then scans every file of the report folder (journal,
// JSON, JUnit, HTML, PDF text, manifest), the console and the Markdown
// summary for the secret in every encoding.
func TestNoSecretInAnyFormat(t *testing.T) {
	const secret = "s3cr3t-T0ken/with+chars"
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	summary := filepath.Join(dir, "summary.md")
	cmd := exec.Command(binary, "run", "--report-dir", out, "--summary", summary, "testdata/secret.yaml")
	cmd.Env = append(os.Environ(), "DRILL_TOKEN="+secret, "NO_COLOR=1")
	console, _ := cmd.CombinedOutput()
	texts := map[string]string{"console": string(console)}
	if _, err := exec.LookPath("chromium"); err == nil || os.Getenv("CI") != "" {
		r := opsdrill(t, "report", "pdf", out)
		require.Equal(t, 0, r.code, r.stderr)
		pdf, err := exec.Command("pdftotext", filepath.Join(out, "report.pdf"), "-").Output()
		require.NoError(t, err)
		texts["report.pdf (text)"] = string(pdf)
	}
	md, err := os.ReadFile(summary)
	require.NoError(t, err)
	texts["summary.md"] = string(md)
	require.NoError(t, filepath.Walk(out, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			texts[p] = string(b)
		}
		return err
	}))
	forms := map[string]string{
		"raw":              secret,
		"base64":           base64.StdEncoding.EncodeToString([]byte(secret)),
		"base64 of a line": base64.StdEncoding.EncodeToString([]byte(secret + "\n")),
		"base64url":        base64.RawURLEncoding.EncodeToString([]byte(secret)),
		"hex":              hex.EncodeToString([]byte(secret)),
		"url":              url.QueryEscape(secret),
	}
	assert.Greater(t, len(texts), 6)
	for name, text := range texts {
		for form, v := range forms {
			assert.NotContains(t, text, v, "%s holds the %s form of the secret", name, form)
		}
	}
	assert.Contains(t, texts[filepath.Join(out, "report.html")], "token=***")
}
