package main

import (
	"fmt"

	"github.com/spf13/cobra"
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
			scenarios, _, err := loadInput(args, varsFiles, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d scenario(s) valid\n", len(scenarios))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&varsFiles, "vars", nil, "vars file whose names scenarios may read")
	addSSHConfigFlag(cmd, &sshConfig)
	return cmd
}
