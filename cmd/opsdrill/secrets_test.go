package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pythonForms prints, as a tool written in Python would, a secret's repr,
// json.dumps and URL-quoted forms; it also writes them as JSON for the test.
const pythonForms = `
import json, sys, urllib.parse
s = open(sys.argv[1], encoding="utf-8").read()
forms = {"repr": repr(s)[1:-1], "json.dumps": json.dumps(s)[1:-1],
         "quote": urllib.parse.quote(s), "quote_plus": urllib.parse.quote_plus(s),
         "quote_safe_none": urllib.parse.quote(s, safe="")}
json.dump(forms, open(sys.argv[2], "w"))
for k, v in forms.items():
    print(k + ": " + v)
`

// goForms are the forms Go code prints a secret in.
func goForms(s string) map[string]string {
	js, _ := json.Marshal(s)
	u := &url.URL{Scheme: "mysql", User: url.UserPassword("admin", s), Host: "db:3306", Path: "/" + s, Fragment: s}
	pw := strings.TrimPrefix(url.UserPassword("admin", s).String(), "admin:")
	return map[string]string{
		"raw": s, "json": string(js[1 : len(js)-1]), "%q": strconv.Quote(s)[1 : len(strconv.Quote(s))-1],
		"%+q":                   strconv.QuoteToASCII(s)[1 : len(strconv.QuoteToASCII(s))-1],
		"URL.String() password": pw, "URL.String()": u.String(),
		"PathEscape": url.PathEscape(s), "QueryEscape": url.QueryEscape(s),
		"base64": base64.StdEncoding.EncodeToString([]byte(s)), "hex": hex.EncodeToString([]byte(s)),
	}
}

// randomSecret draws a secret from the characters that break escaping:
// quotes, slashes, + & = %, spaces, unicode, and sometimes newlines.
func randomSecret(r *rand.Rand) string {
	alphabet := []rune(`abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"'\/+&=%?#@:; <>é中😀`)
	n := 14 + r.IntN(20)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteRune(alphabet[r.IntN(len(alphabet))])
		if i > 0 && i%11 == 0 && r.IntN(2) == 0 {
			b.WriteString("\n")
		}
	}
	return strings.TrimSpace(b.String())
}

// A property of every output path: whatever the secret holds, no form of it
// reaches the console, journal.jsonl, report.json, junit.xml, report.html,
// artifacts or the --summary file — not raw, escaped (JSON, %q, Python
// repr), URL-encoded (Go and Python, URL.String()), base64 or hex, not cut
// by opsdrill (the stderr excerpt, the 1 MiB stdout cap, a decode error),
// and no line of a multi-line secret on its own.
func TestSecretsNeverLeakInAnyForm(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	r := rand.New(rand.NewPCG(12, 2026))
	secrets := []string{
		`Kq7"Zx/a+b&c=d%e f`,
		"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----",
		`quo'te"s\back/slash`,
		"unicodé-中文-😀-pass",
	}
	for range 4 {
		secrets = append(secrets, randomSecret(r))
	}
	for i, secret := range secrets {
		t.Run(fmt.Sprintf("secret%d", i), func(t *testing.T) {
			checkNoLeak(t, secret)
		})
	}
}

func checkNoLeak(t *testing.T, secret string) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	secretFile := write("secret.txt", secret)
	pyScript := write("forms.py", pythonForms)
	pyForms := filepath.Join(dir, "pyforms.json")
	forms := goForms(secret)
	var printed strings.Builder
	for name, f := range forms {
		printed.WriteString(name + ": " + f + "\n")
	}
	goFile := write("goforms.txt", printed.String())
	var lineText strings.Builder
	for _, l := range strings.Split(secret, "\n") {
		lineText.WriteString("line> " + l + " <\n")
	}
	linesFile := write("lines.txt", lineText.String())
	// The stderr excerpt keeps 200 bytes: the secret starts 10 before.
	stderrFile := write("stderr.txt", strings.Repeat("e", 190)+secret+"\n")
	// The stdout cap keeps 1 MiB: the secret starts 6 bytes before.
	stdoutFile := write("stdout.txt", strings.Repeat("o", 1<<20-6)+secret)
	scenario := write("leak.yaml", `name: leak
secrets:
  token: { env: DRILL_TOKEN }
steps:
  - id: python
    uses: exec
    with: { command: [python3, `+q(pyScript)+`, `+q(secretFile)+`, `+q(pyForms)+`] }
    expect: outputs.stdout == ""
    continue_on_error: true
  - id: go
    uses: exec
    with: { command: [cat, `+q(goFile)+`] }
    expect: outputs.stdout == "nothing"
    continue_on_error: true
  - id: lines
    uses: exec
    with: { command: [cat, `+q(linesFile)+`] }
    expect: outputs.stdout == "nothing"
    continue_on_error: true
  - id: excerpt
    uses: exec
    with: { command: [sh, -c, 'cat "$0" >&2; exit 3', `+q(stderrFile)+`] }
    continue_on_error: true
  - id: capped
    uses: exec
    with: { command: [cat, `+q(stdoutFile)+`] }
    continue_on_error: true
  - id: decode
    uses: exec
    with: { command: ["true"], exit_codes: ["${{ secrets.token }}"] }
    continue_on_error: true
  - id: duration
    uses: sleep
    with: { duration: "${{ secrets.token }}" }
    continue_on_error: true
  - id: compare
    uses: assert
    expect: secrets.token == "not it"
    continue_on_error: true
  - id: echo
    uses: exec
    with: { command: [printf, "%s", "${{ secrets.token }}"] }
    expect: outputs.stdout == "fails the run"
`)
	report := filepath.Join(dir, "out")
	summary := filepath.Join(dir, "summary.md")
	cmd := exec.Command(binary, "run", "--report-dir", report, "--summary", summary, scenario)
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "DRILL_TOKEN="+secret)
	console, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", console)
	require.Equal(t, 1, ee.ExitCode(), "%s", console)

	py := map[string]string{}
	b, err := os.ReadFile(pyForms)
	require.NoError(t, err, "the python step ran")
	require.NoError(t, json.Unmarshal(b, &py))
	for k, v := range py {
		forms["python "+k] = v
	}
	for i, l := range strings.Split(secret, "\n") {
		if len(strings.TrimSpace(l)) >= 8 {
			forms[fmt.Sprintf("line %d", i)] = strings.TrimSpace(l)
		}
	}
	outputs := map[string]string{"console": string(console)}
	require.NoError(t, filepath.WalkDir(report, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			outputs[strings.TrimPrefix(p, report+"/")] = string(b)
		}
		return err
	}))
	b, err = os.ReadFile(summary)
	require.NoError(t, err)
	outputs["--summary"] = string(b)
	for _, name := range []string{"journal.jsonl", "report.json", "junit.xml", "report.html", "--summary"} {
		require.Contains(t, outputs, name)
	}
	for out, text := range outputs {
		for name, f := range forms {
			if len(f) >= 3 {
				assert.NotContains(t, text, f, "%s leaks the %s form of %q", out, name, secret)
			}
		}
		// A piece of the secret beside a cut mark: opsdrill cut through it.
		for k := 2; k < len(secret); k++ {
			for _, mark := range []string{"…", "..."} {
				assert.NotContains(t, text, secret[:k]+mark, "%s leaks a cut prefix of %q", out, secret)
			}
		}
		// Any 8 characters of a line of the secret, whatever surrounds them.
		for _, l := range strings.Split(secret, "\n") {
			for i := 0; i+8 <= len(l); i++ {
				if w := l[i : i+8]; utf8Whole(w) {
					assert.NotContains(t, text, w, "%s leaks a piece of %q", out, secret)
				}
			}
		}
	}
	assert.Contains(t, outputs["report.json"], "***", "the secret was there to be redacted")
}

func q(s string) string { return strconv.Quote(s) }

func utf8Whole(s string) bool { return strings.ToValidUTF8(s, "") == s }
