// Package hostexec runs a command where a step says it should run: on this
// machine, or inside a lab host. Steps that act "from" somewhere (probe a
// port from a client, list scanners on a host, ping through a tunnel) take
// a `host:` parameter and hand it here, so the same scenario runs locally,
// in the lab (`host: lab:client2` in the lab's vars) or on another target.
//
// Host references:
//
//	""  or "local"    this machine (os/exec, no shell)
//	"lab:NAME"        the running lab host NAME (docker exec)
//	"lab:LABID/NAME"  the same, when several labs run at once
package hostexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/opsdrill/opsdrill/lab"
)

// Result is how a command ended.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Validate checks a host reference without contacting anything.
func Validate(host string) error {
	switch {
	case IsLocal(host):
		return nil
	case strings.HasPrefix(host, "lab:") && len(host) > len("lab:"):
		return nil
	}
	return fmt.Errorf("host: %q is not a host reference; use local or lab:NAME", host)
}

// IsLocal reports whether host means this machine.
func IsLocal(host string) bool { return host == "" || host == "local" }

// Run runs argv on host with optional stdin. The error is for failing to
// run it at all; a non-zero exit is in Result.ExitCode.
func Run(ctx context.Context, host string, argv []string, stdin []byte) (Result, error) {
	if len(argv) == 0 {
		return Result{}, errors.New("empty command")
	}
	if err := Validate(host); err != nil {
		return Result{}, err
	}
	if IsLocal(host) {
		return runLocal(ctx, argv, stdin)
	}
	h, err := lab.FindHost(ctx, strings.TrimPrefix(host, "lab:"))
	if err != nil {
		return Result{}, err
	}
	r, err := h.ExecCommand(ctx, lab.Command{Args: argv, Stdin: stdin})
	if err != nil {
		return Result{}, err
	}
	return Result{Stdout: r.Stdout, Stderr: r.Stderr, ExitCode: r.ExitCode}, nil
}

func runLocal(ctx context.Context, argv []string, stdin []byte) (Result, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		return res, nil
	default:
		return res, err
	}
}

// LookPath reports whether program exists on host.
func LookPath(ctx context.Context, host, program string) error {
	if IsLocal(host) {
		_, err := exec.LookPath(program)
		return err
	}
	res, err := Run(ctx, host, []string{"sh", "-c", `command -v "$0"`, program}, nil)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: not found on %s", program, host)
	}
	return nil
}
