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
//
// A command stops with its context: locally its whole process group is
// killed; in a lab host, where an exec cannot be signalled from outside, a
// context deadline becomes coreutils `timeout -s KILL` around the command.
package hostexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opsdrill/opsdrill/lab"
)

// Result is how a command ended.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Command is what to run.
type Command struct {
	Args  []string
	Env   []string // KEY=value added to the environment
	Stdin []byte
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
	return RunCommand(ctx, host, Command{Args: argv, Stdin: stdin})
}

// RunCommand runs c on host.
func RunCommand(ctx context.Context, host string, c Command) (Result, error) {
	if len(c.Args) == 0 {
		return Result{}, errors.New("empty command")
	}
	if err := Validate(host); err != nil {
		return Result{}, err
	}
	if IsLocal(host) {
		return runLocal(ctx, c)
	}
	ref := strings.TrimPrefix(host, "lab:")
	h, err := findHost(ctx, ref)
	if err != nil {
		return Result{}, err
	}
	args := c.Args
	if dl, ok := ctx.Deadline(); ok {
		secs := math.Ceil(time.Until(dl).Seconds())
		if secs < 1 {
			secs = 1
		}
		args = append([]string{"timeout", "-s", "KILL", strconv.Itoa(int(secs))}, args...)
	}
	r, err := h.ExecCommand(ctx, lab.Command{Args: args, Env: c.Env, Stdin: c.Stdin})
	if err != nil {
		forget(ref)
		return Result{}, err
	}
	return Result{Stdout: r.Stdout, Stderr: r.Stderr, ExitCode: r.ExitCode}, nil
}

// Lab host lookups are cached briefly: a step that runs many commands in a
// host pays the engine query once. A failed command drops the entry, so a
// host restarted with a new container is found again.
const hostCacheTTL = 30 * time.Second

var (
	cacheMu sync.Mutex
	cache   = map[string]cachedHost{}
)

type cachedHost struct {
	h  *lab.Host
	at time.Time
}

func findHost(ctx context.Context, ref string) (*lab.Host, error) {
	cacheMu.Lock()
	c, ok := cache[ref]
	cacheMu.Unlock()
	if ok && time.Since(c.at) < hostCacheTTL {
		return c.h, nil
	}
	h, err := lab.FindHost(ctx, ref)
	if err != nil {
		return nil, err
	}
	cacheMu.Lock()
	cache[ref] = cachedHost{h: h, at: time.Now()}
	cacheMu.Unlock()
	return h, nil
}

func forget(ref string) {
	cacheMu.Lock()
	delete(cache, ref)
	cacheMu.Unlock()
}

func runLocal(ctx context.Context, c Command) (Result, error) {
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A child that keeps the output pipes open must not keep us waiting.
	cmd.WaitDelay = 2 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
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
