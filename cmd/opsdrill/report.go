package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/runner"
)

func init() { subcommands = append(subcommands, newReportCmd) }

func newReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "report",
		Short:   "Work with report folders",
		Example: `  opsdrill report render out/`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "render DIR",
		Short: "Rebuild report.json and junit.xml from journal.jsonl",
		Long: `Render rebuilds the reports of a run from its journal alone. A run that was
killed (even with SIGKILL) leaves a journal; render turns it into reports
where unfinished steps and scenarios show as interrupted.`,
		Example: "  opsdrill report render out/",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			f, err := os.Open(filepath.Join(dir, runner.JournalFile))
			if err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			defer f.Close()
			run, err := reports.ReadJournal(f)
			if err != nil {
				return &exitError{code: exitBadInput, err: fmt.Errorf("%s: %w", f.Name(), err)}
			}
			if err := runner.WriteReports(dir, run); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rendered %s and %s (run %s)\n",
				filepath.Join(dir, runner.JSONFile), filepath.Join(dir, runner.JUnitFile), run.Status)
			return nil
		},
	})
	return cmd
}
