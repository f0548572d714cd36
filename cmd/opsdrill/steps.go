package main

import (
	"fmt"
	"io"
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
		Use:   "steps [NAME]",
		Short: "List step types, or document one",
		Long: `Without NAME, steps lists every step type with its summary. With NAME, it
prints the step's documentation: parameters (type, default, required),
outputs (secret ones marked) and examples.`,
		Example: `  opsdrill steps
  opsdrill steps tcp.probe`,
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
			spec, ok := steps.Lookup(args[0])
			if !ok {
				return &exitError{code: exitBadInput, err: fmt.Errorf("unknown step %q; `opsdrill steps` lists them", args[0])}
			}
			printStepDoc(w, spec)
			return nil
		},
	}
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
