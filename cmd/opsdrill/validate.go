package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/runner"
)

func init() { subcommands = append(subcommands, newValidateCmd) }

func newValidateCmd() *cobra.Command {
	var varsFiles []string
	var sshConfig string
	cmd := &cobra.Command{
		Use:   "validate [--vars FILE]... PATH...",
		Short: "Check scenarios without running anything",
		Long: `Validate loads scenarios and reports every problem at once, one per line
as file:line:col: message, then exits 2. It checks YAML, step names, every
with: field and its type, expressions and the names they read (vars,
secrets, steps and their outputs), and the order of background steps.`,
		Example: `  opsdrill validate scenarios/
  opsdrill validate --vars scenarios/targets/lab.yaml scenarios/rds-multi-az-failover.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := useSSHConfig(sshConfig); err != nil {
				return err
			}
			// Step files given by name are checked as step files.
			var paths []string
			var probs runner.Problems
			stepFiles := 0
			for _, p := range args {
				if !runner.IsStepFile(p) {
					paths = append(paths, p)
					continue
				}
				stepFiles++
				if _, err := runner.LoadStepFile(p); err != nil {
					probs = appendProblems(probs, err)
				}
			}
			n := 0
			if len(paths) > 0 {
				scenarios, _, err := loadInput(paths, varsFiles, nil)
				if err != nil {
					var ee *exitError
					if errors.As(err, &ee) {
						if ps, ok := ee.err.(runner.Problems); ok {
							probs = append(probs, ps...)
						} else {
							return err
						}
					}
				}
				n = len(scenarios)
			}
			if len(probs) > 0 {
				return &exitError{code: exitBadInput, err: probs}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d scenario(s) valid\n", n)
			if stepFiles > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "ok: %d step file(s) valid\n", stepFiles)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&varsFiles, "vars", nil, "vars file whose names scenarios may read")
	addSSHConfigFlag(cmd, &sshConfig)
	return cmd
}
