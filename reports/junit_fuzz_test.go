package reports

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// junitRun puts s everywhere a command's words can reach junit.xml.
func junitRun(s string) *Run {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &Run{
		Version: 1, Tool: "opsdrill", Started: t0, Finished: t0.Add(time.Second), Status: StatusFailed, Host: s,
		Scenarios: []*Scenario{{
			Name: s, File: s + ".yaml", Status: StatusFailed, Tags: []string{s}, Controls: []string{s}, Error: s,
			Steps: []*Step{
				{ID: s, Uses: "exec", Status: StatusFailed, Error: s, Logs: []string{s, "]]>" + s},
					Outputs:      map[string]any{"stdout": s, s: 1},
					Expectations: []Expectation{{Expr: s, Values: map[string]string{s: s}, Error: s}}},
				{ID: "e", Uses: "exec", Status: StatusErrored, Error: "]]>" + s + "]]>"},
				{ID: "s", Uses: "exec", Status: StatusSkipped, SkipReason: s},
				{ID: "w", Uses: "exec", Status: StatusWaived, WaivedStatus: s, Waiver: &Waiver{Justification: s, Expires: s}},
			},
		}},
	}
}

// parseXML reads the whole document with a strict XML parser, returning
// the first error.
func parseXML(data []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func xmllintSchema(t *testing.T, data []byte) {
	t.Helper()
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("xmllint (libxml2-utils) is required in CI")
		}
		return
	}
	cmd := exec.Command(xmllint, "--noout", "--schema", "testdata/junit.xsd", "-")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, data)
}

// FuzzJUnit: whatever a command prints, junit.xml stays well-formed (a
// strict XML parser reads it) and valid against the JUnit schema.
func FuzzJUnit(f *testing.F) {
	for _, seed := range []string{
		"plain", "\x1b[31mred\x1b[0m", "\x01\x0b\x07bell", "\xff\xfe bad utf-8 \xc3", "]]>", "<&>\"'",
		"\x00nul", "\ufffe\uffff", "tab\tcr\rnl\n", "\x1b]0;title\x07", "\x1b[", "emoji 😀", "\xed\xa0\x80 surrogate",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var buf bytes.Buffer
		require.NoError(t, WriteJUnit(&buf, junitRun(s)))
		require.NoError(t, parseXML(buf.Bytes()), "%q\n%s", s, buf.String())
		xmllintSchema(t, buf.Bytes())
	})
}

func TestJUnitEscapesWhatXMLCannotHold(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"\x1b[31mFAIL\x1b[0m", "FAIL"},
		{"a\x01b", `a\x01b`},
		{"v\x0bt", `v\x0bt`},
		{"bell\x07", `bell\x07`},
		{"bad \xff byte", "bad \ufffd byte"},
		{"keep\ttab\nnl", "keep\ttab\nnl"},
		{"\x1b]0;title\x07text", "text"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, WriteJUnit(&buf, junitRun(tc.in)))
			require.NoError(t, parseXML(buf.Bytes()))
			var doc junitSuites
			require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc))
			st := doc.Suites[0].Cases[0]
			assert.Equal(t, tc.want, st.Failure.Message, "attribute")
			assert.Contains(t, st.Failure.Body, tc.want, "CDATA")
			assert.Contains(t, st.SystemOut, tc.want, "text")
			assert.Equal(t, tc.want, doc.Suites[0].Name)
		})
	}
}

func TestReadJSONOfAnOlderReportWithAnAttemptCount(t *testing.T) {
	old := `{"version": 1, "tool": "opsdrill", "status": "passed", "scenarios": [{"name": "s", "file": "s.yaml", "status": "passed",
	  "steps": [{"id": "a", "uses": "exec", "status": "passed", "attempts": 2, "outputs": {}}]}]}`
	run, err := ReadJSON(strings.NewReader(old))
	require.NoError(t, err)
	st := run.Scenarios[0].Steps[0]
	assert.Equal(t, 2, st.AttemptCount())
	assert.Equal(t, 2, st.Attempts[1].Attempt)
}
