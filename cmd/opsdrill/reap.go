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
		Use:    reaper.Subcommand + " TOKEN [CGROUP]",
		Hidden: true,
		Args:   cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cgroup := ""
			if len(args) == 2 {
				cgroup = args[1]
			}
			return reaper.Watch(os.NewFile(3, "run"), args[0], cgroup)
		},
	}
}
