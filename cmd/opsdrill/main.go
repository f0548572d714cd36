// Command opsdrill runs ops drills described in YAML scenarios and writes
// audit-grade reports. See README.md for a tour.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/runner"
)

// Exit codes, as documented in README.md.
const (
	exitOK          = 0
	exitFailed      = 1
	exitBadInput    = 2
	exitInterrupted = 130
)

// exitError carries an exit code up to main without printing twice.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// subcommands lets each command file add itself from its own init.
var subcommands []func() *cobra.Command

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "opsdrill",
		Short: "Turn ops runbooks into repeatable drills with audit-grade evidence",
		Long: `opsdrill runs YAML scenarios that compose reusable steps (TOTP, port
opening, IPsec tunnels, database failover, scanners, ...) against real
infrastructure or the local lab, and writes console progress, report.json,
junit.xml and a self-contained HTML report.`,
		Example: `  opsdrill run --vars scenarios/targets/lab.yaml scenarios/
  opsdrill validate scenarios/
  opsdrill steps tcp.probe`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, sub := range subcommands {
		root.AddCommand(sub())
	}
	return root
}

func main() {
	os.Exit(execute(os.Args[1:]))
}

func execute(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		var probs runner.Problems
		switch {
		case errors.As(ee.err, &probs):
			// file:line:col: message, one per line, for editors and CI.
			fmt.Fprintln(os.Stderr, probs.Error())
		case ee.err != nil:
			fmt.Fprintln(os.Stderr, "opsdrill:", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors are usage errors: unknown flag, wrong arg count.
	fmt.Fprintln(os.Stderr, "opsdrill:", err)
	return exitBadInput
}
