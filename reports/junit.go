package reports

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// The JUnit XML dialect Jenkins, GitLab and GitHub test reporters read:
// testsuites > testsuite (one per scenario) > testcase (one per step).
type junitSuites struct {
	XMLName   xml.Name     `xml:"testsuites"`
	Name      string       `xml:"name,attr"`
	Tests     int          `xml:"tests,attr"`
	Failures  int          `xml:"failures,attr"`
	Errors    int          `xml:"errors,attr"`
	Skipped   int          `xml:"skipped,attr"`
	Time      string       `xml:"time,attr"`
	Timestamp string       `xml:"timestamp,attr,omitempty"`
	Suites    []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	ID         int             `xml:"id,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Hostname   string          `xml:"hostname,attr,omitempty"`
	File       string          `xml:"file,attr,omitempty"`
	Properties *junitProps     `xml:"properties,omitempty"`
	Cases      []junitTestcase `xml:"testcase"`
	SystemErr  string          `xml:"system-err,omitempty"`
}

type junitProps struct {
	Props []junitProp `xml:"property"`
}

type junitProp struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitTestcase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

func seconds(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }

// WriteJUnit writes junit.xml.
func WriteJUnit(w io.Writer, run *Run) error {
	out := junitSuites{Name: "opsdrill", Time: seconds(run.Finished.Sub(run.Started).Milliseconds())}
	if !run.Started.IsZero() {
		out.Timestamp = run.Started.UTC().Format("2006-01-02T15:04:05")
	}
	for i, sc := range run.Scenarios {
		suite := junitSuite{
			Name: sc.Name, ID: i, Time: seconds(sc.DurationMS), Hostname: run.Host, File: sc.File,
		}
		if !sc.Started.IsZero() {
			suite.Timestamp = sc.Started.UTC().Format("2006-01-02T15:04:05")
		}
		var props []junitProp
		props = append(props, junitProp{"status", sc.Status})
		if sc.SHA256 != "" {
			props = append(props, junitProp{"sha256", sc.SHA256})
		}
		if len(sc.Tags) > 0 {
			props = append(props, junitProp{"tags", strings.Join(sc.Tags, ",")})
		}
		// One property per control, so CI dashboards can group by it.
		for _, c := range sc.Controls {
			props = append(props, junitProp{"control", c})
		}
		suite.Properties = &junitProps{Props: props}
		if sc.Error != "" {
			suite.SystemErr = sc.Error
		}
		for _, st := range sc.Steps {
			tc := junitTestcase{
				Name: stepName(st), Classname: sc.Name, Time: seconds(st.DurationMS), File: sc.File,
				SystemOut: stepText(st),
			}
			switch st.Status {
			case StatusPassed:
			case StatusFailed:
				suite.Failures++
				tc.Failure = &junitProblem{Message: failureMessage(st), Type: "failure", Body: failureBody(st)}
			case StatusSkipped:
				suite.Skipped++
				tc.Skipped = &junitSkipped{Message: st.SkipReason}
			case StatusWaived:
				// A waived failure is reported, not counted: CI stays green
				// until the waiver expires.
				suite.Skipped++
				tc.Skipped = &junitSkipped{Message: waivedText(st)}
			default:
				suite.Errors++
				tc.Error = &junitProblem{Message: failureMessage(st), Type: "error", Body: failureBody(st)}
			}
			suite.Tests++
			suite.Cases = append(suite.Cases, tc)
		}
		out.Tests += suite.Tests
		out.Failures += suite.Failures
		out.Errors += suite.Errors
		out.Skipped += suite.Skipped
		out.Suites = append(out.Suites, suite)
	}
	cleanXMLStrings(reflect.ValueOf(&out))
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func waivedText(st *Step) string {
	if st.Waiver == nil {
		return "waived"
	}
	return fmt.Sprintf("waived until %s: %s (was %s: %s)", st.Waiver.Expires, st.Waiver.Justification, st.WaivedStatus, failureMessage(st))
}

func stepName(st *Step) string {
	name := st.ID
	if l := PhaseLabel(st.Phase); l != "" {
		name = l + ": " + name
	}
	return name + " (" + st.Uses + ")"
}

// failureMessage is the one line a CI summary shows: the step's own error
// (it says what the check found), else the first failing expectation with
// its values.
func failureMessage(st *Step) string {
	if st.Error != "" {
		return st.Error
	}
	for _, e := range st.Expectations {
		if !e.OK {
			return "expected " + ExpectationText(e)
		}
	}
	return st.Status
}

// ExpectationText renders an expectation with the values of its names,
// e.g. `outputs.lost == 0 (outputs.lost = 3)`.
func ExpectationText(e Expectation) string {
	var b strings.Builder
	b.WriteString(e.Expr)
	if len(e.Values) > 0 {
		names := make([]string, 0, len(e.Values))
		for n := range e.Values {
			names = append(names, n)
		}
		sort.Strings(names)
		b.WriteString(" (")
		for i, n := range names {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(n + " = " + e.Values[n])
		}
		b.WriteString(")")
	}
	if e.Error != "" {
		b.WriteString(": " + e.Error)
	}
	return b.String()
}

func failureBody(st *Step) string {
	var b strings.Builder
	if st.Error != "" {
		b.WriteString(st.Error + "\n")
	}
	for _, e := range st.Expectations {
		mark := "ok  "
		if !e.OK {
			mark = "FAIL"
		}
		b.WriteString(mark + " " + ExpectationText(e) + "\n")
	}
	return b.String()
}

func stepText(st *Step) string {
	var b strings.Builder
	if len(st.Outputs) > 0 {
		js, err := json.MarshalIndent(st.Outputs, "", "  ")
		if err == nil {
			b.WriteString("outputs: ")
			b.Write(js)
			b.WriteString("\n")
		}
	}
	for _, l := range st.Logs {
		b.WriteString(l + "\n")
	}
	return b.String()
}
