package reports

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteMarkdown writes a short summary for CI job pages (GitHub's
// $GITHUB_STEP_SUMMARY, GitLab's job summary): the verdict, the findings
// (each drill's claim, verdict and key figures against their limits), a
// table of scenarios, every failing step with its failing expectation,
// and waivers.
func WriteMarkdown(w io.Writer, run *Run) error {
	c := run.ScenarioCounts()
	var b strings.Builder
	fmt.Fprintf(&b, "## %s opsdrill: %s\n\n", statusIcon(run.Status), strings.ToUpper(run.Status))
	fmt.Fprintf(&b, "%d scenarios: %d passed, %d failed, %d errored, %d skipped", c.Total, c.Passed, c.Failed, c.Errored, c.Skipped)
	if !run.Started.IsZero() {
		fmt.Fprintf(&b, " · %s · run `%s`", FormatDuration(run.Finished.Sub(run.Started)), run.RunID)
	}
	if len(run.Findings) > 0 {
		b.WriteString("\n\n**Findings**\n\n| | Drill | Claim | Key figures |\n|---|---|---|---|\n")
		for _, f := range run.Findings {
			figs := make([]string, 0, len(f.Figures))
			for _, fig := range f.Figures {
				mark := ""
				if fig.Bad() {
					mark = "❌ "
				}
				figs = append(figs, mark+mdCell(fig.Text))
			}
			if f.Why != "" {
				figs = append(figs, "**why:** "+mdCell(f.Why))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", statusIcon(f.Status), mdCell(f.Scenario), mdCell(f.Claim), strings.Join(figs, "<br>"))
		}
	}
	b.WriteString("\n\n| | Scenario | Steps passed | Time |\n|---|---|---|---|\n")
	for _, sc := range run.Scenarios {
		sn := sc.StepCounts()
		waived := ""
		if sn.Waived > 0 {
			waived = fmt.Sprintf(" (%d waived)", sn.Waived)
		}
		fmt.Fprintf(&b, "| %s | %s | %d/%d%s | %s |\n", statusIcon(sc.Status), mdCell(sc.Name), sn.Passed, sn.Total, waived,
			FormatDuration(time.Duration(sc.DurationMS)*time.Millisecond))
	}
	var failing []string
	for _, sc := range run.Scenarios {
		for _, st := range sc.Steps {
			if st.Status == StatusFailed || st.Status == StatusErrored {
				failing = append(failing, fmt.Sprintf("- **%s** › `%s` (%s): %s", mdText(sc.Name), st.ID, st.Uses, mdText(failureMessage(st))))
			}
		}
	}
	if len(failing) > 0 {
		b.WriteString("\n**Failures**\n\n" + strings.Join(failing, "\n") + "\n")
	}
	if len(run.Waivers) > 0 {
		b.WriteString("\n**Waivers**\n\n")
		for _, wv := range run.Waivers {
			fmt.Fprintf(&b, "- %s `%s/%s` until %s: %s\n", strings.ToUpper(wv.State), wv.Scenario, wv.Step, wv.Expires, mdText(wv.Justification))
		}
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func statusIcon(s string) string {
	switch s {
	case StatusPassed:
		return "✅"
	case StatusSkipped:
		return "⏭️"
	case StatusInterrupted:
		return "⏹️"
	default:
		return "❌"
	}
}

// mdCell escapes text for a table cell.
func mdCell(s string) string {
	return strings.ReplaceAll(mdText(s), "|", `\|`)
}

// mdText keeps text on one line and stops it from opening HTML.
func mdText(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "<", "&lt;")
	return s
}
