package main

import (
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/runner"
	"github.com/opsdrill/opsdrill/steps"
)

func init() { subcommands = append(subcommands, newStepsCmd) }

func newStepsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "steps [NAME | ./STEP-FILE.yaml]",
		Short: "List step types, or document one (or a step file)",
		Long: `Without NAME, steps lists every step type with its summary. With NAME, it
prints the step's documentation: parameters (type, default, required),
outputs (secret ones marked) and examples. With the path of a step file
(a step written in YAML, used as uses: ./path.yaml), it checks the file and
documents its inputs, steps and outputs.`,
		Example: `  opsdrill steps
  opsdrill steps tcp.probe
  opsdrill steps ./scenarios/lib/port-closed.yaml`,
		Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, s := range steps.All() {
				names = append(names, s.Name+"\t"+s.Summary)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			if len(args) == 0 {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				for _, s := range steps.All() {
					fmt.Fprintf(tw, "%s\t%s\n", s.Name, s.Summary)
				}
				return tw.Flush()
			}
			if isStepFilePath(args[0]) {
				sf, err := runner.LoadStepFile(args[0])
				if err != nil {
					return &exitError{code: exitBadInput, err: err}
				}
				printStepFileDoc(w, args[0], sf)
				return nil
			}
			spec, ok := steps.Lookup(args[0])
			if !ok {
				return &exitError{code: exitBadInput, err: fmt.Errorf("unknown step %q; `opsdrill steps` lists them", args[0])}
			}
			printStepDoc(w, spec)
			return nil
		},
	}
}

func isStepFilePath(arg string) bool {
	return strings.HasPrefix(arg, "./") || strings.HasPrefix(arg, "../") || strings.HasPrefix(arg, "/") ||
		strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")
}

// printStepFileDoc documents a step file the way printStepDoc documents a
// Go step.
func printStepFileDoc(w io.Writer, path string, sf *runner.StepFile) {
	fmt.Fprintf(w, "%s — %s (step file)\n\n", path, sf.Name)
	if sf.Description != "" {
		fmt.Fprintf(w, "%s\n\n", wrap(sf.Description, 78))
	}
	fmt.Fprintln(w, "Inputs (with:):")
	if len(sf.Inputs) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, in := range sf.Inputs {
		var notes []string
		if in.Required {
			notes = append(notes, "required")
		}
		if in.HasDefault {
			notes = append(notes, "default "+formatDefault(in.Default))
		}
		if in.Secret {
			notes = append(notes, "secret: redacted in every report")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", in.Name, in.Type, strings.Join(notes, ", "), in.Description)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nSteps (reported as ID/step):")
	for _, st := range sf.Steps {
		suffix := ""
		if st.ForEach != nil {
			suffix = " (for_each)"
		}
		fmt.Fprintf(w, "  %s\t%s%s\n", st.ID, st.Uses, suffix)
	}
	fmt.Fprintln(w, "\nOutputs (steps.ID.outputs.NAME):")
	if len(sf.Outputs) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, o := range sf.Outputs {
		desc := o.Description
		if o.Secret {
			desc = strings.TrimSpace("secret; " + desc)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", o.Name, o.Value.Raw, desc)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nUse (the path relative to the scenario file):\n  - id: ID\n    uses: ./%s\n    with:\n", filepath.ToSlash(filepath.Clean(path)))
	for _, in := range sf.Inputs {
		if in.Required {
			fmt.Fprintf(w, "      %s: ...\n", in.Name)
		}
	}
}

func formatDefault(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

func printStepDoc(w io.Writer, s steps.Spec) {
	fmt.Fprintf(w, "%s — %s\n\n", s.Name, s.Summary)
	if s.Doc != "" {
		fmt.Fprintf(w, "%s\n\n", wrap(s.Doc, 78))
	}
	defaults := reflect.ValueOf(s.New())
	for defaults.Kind() == reflect.Pointer {
		defaults = defaults.Elem()
	}
	fields := runner.Fields(reflect.TypeOf(s.New()))
	if len(fields) > 0 {
		fmt.Fprintln(w, "Parameters (with:):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, f := range fields {
			notes := []string{}
			if f.Required {
				notes = append(notes, "required")
			}
			if d := runner.FieldDefault(defaults, f); d != "" && !strings.Contains(f.Doc, "(default") {
				notes = append(notes, "default "+d)
			}
			extra := ""
			if len(notes) > 0 {
				extra = " (" + strings.Join(notes, ", ") + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s%s\n", f.Name, runner.TypeName(f.Type), f.Doc, extra)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if len(s.Outputs) > 0 {
		fmt.Fprintln(w, "Outputs (steps.<id>.outputs.NAME, or outputs.NAME in expect:):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, o := range s.Outputs {
			secret := ""
			if o.Secret {
				secret = " [secret: redacted in every report]"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s%s\n", o.Name, o.Type, o.Doc, secret)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if len(s.Figures) > 0 {
		fmt.Fprintln(w, "Key figures (the report's findings; an expect: comparing the output with a value is its limit):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, f := range s.Figures {
			words := f.Text
			if f.TextFalse != "" {
				words = strings.Trim(words+" | when false: "+f.TextFalse, " |")
			}
			fmt.Fprintf(tw, "  %s\t%s\n", f.Output, words)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	for _, ex := range s.Examples {
		fmt.Fprintf(w, "Example: %s\n", ex.Title)
		for _, line := range strings.Split(ex.YAML, "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
		fmt.Fprintln(w)
	}
}

func wrap(s string, width int) string {
	var out strings.Builder
	for pi, para := range strings.Split(s, "\n\n") {
		if pi > 0 {
			out.WriteString("\n\n")
		}
		col := 0
		for i, word := range strings.Fields(para) {
			if i > 0 {
				if col+1+len(word) > width {
					out.WriteString("\n")
					col = 0
				} else {
					out.WriteString(" ")
					col++
				}
			}
			out.WriteString(word)
			col += len(word)
		}
	}
	return out.String()
}
