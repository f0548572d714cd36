package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/runner"
)

func init() {
	subcommands = append(subcommands, func() *cobra.Command {
		return &cobra.Command{
			Use:   "schema",
			Short: "Print the JSON Schema of scenario files",
			Long: `Schema prints a JSON Schema (draft 2020-12) of scenario files, including
every registered step's with: parameters. Point your editor at it, e.g. with
yaml-language-server:

  # yaml-language-server: $schema=./opsdrill.schema.json`,
			Example: "  opsdrill schema > opsdrill.schema.json",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(runner.Schema())
			},
		}
	})
}
