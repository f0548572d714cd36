// Package hostexec runs a command where a step says it should run, by host
// reference (see package host for the references and their transports).
// It is the short form of host.Open followed by Host.Run for steps that
// only run commands; steps that also write files or dial use package host.
//
// A command stops with its context, on the host too: locally its process
// group is killed, over ssh the remote process group is signalled and
// bounded by coreutils `timeout`, in a lab host a deadline becomes
// `timeout -s KILL` around the command.
package hostexec

import (
	"context"
	"os/exec"

	"github.com/opsdrill/opsdrill/steps/host"
)

// Result is how a command ended.
type Result = host.Result

// Command is what to run.
type Command = host.Command

// Validate checks a host reference without contacting anything.
func Validate(ref string) error { return host.Validate(ref) }

// IsLocal reports whether ref means this machine.
func IsLocal(ref string) bool { return host.IsLocal(ref) }

// Run runs argv on host with optional stdin. The error is for failing to
// run it at all; a non-zero exit is in Result.ExitCode.
func Run(ctx context.Context, ref string, argv []string, stdin []byte) (Result, error) {
	return RunCommand(ctx, ref, Command{Args: argv, Stdin: stdin})
}

// RunCommand runs c on the host ref names, through the context's pool.
func RunCommand(ctx context.Context, ref string, c Command) (Result, error) {
	h, err := host.Open(ctx, ref)
	if err != nil {
		return Result{}, err
	}
	return h.Run(ctx, c)
}

// LookPath reports whether program exists on the host ref names.
func LookPath(ctx context.Context, ref, program string) error {
	if IsLocal(ref) {
		_, err := exec.LookPath(program)
		return err
	}
	h, err := host.Open(ctx, ref)
	if err != nil {
		return err
	}
	return host.LookPath(ctx, h, program)
}
