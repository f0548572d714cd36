package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/runner/reaper"
)

func init() { subcommands = append(subcommands, newReapCmd) }

// newReapCmd is the watchdog `opsdrill run` starts (see runner/reaper):
// hidden, never typed by a user.
func newReapCmd() *cobra.Command {
	return &cobra.Command{
		Use:    reaper.Subcommand + " TOKEN",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reaper.Watch(os.NewFile(3, "run"), args[0])
			return nil
		},
	}
}
