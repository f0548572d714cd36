package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// target is the machine whose scanner is checked: this one, or a lab host
// reached through hostexec. The checks only see files and command results,
// so both kinds give the same verdicts.
type target interface {
	read(ctx context.Context, r request) (*snapshot, error)
	// lookPath returns an error wrapping exec.ErrNotFound when program is
	// not installed.
	lookPath(ctx context.Context, program string) error
	// run runs argv with extra environment variables; after timeout the
	// command and its children are killed and TimedOut is set.
	run(ctx context.Context, argv, env []string, timeout time.Duration) (cmdResult, error)
	String() string
}

type cmdResult struct {
	Stdout, Stderr string
	ExitCode       int
	TimedOut       bool
}

func newTarget(host string) target {
	if hostexec.IsLocal(host) {
		return localTarget{}
	}
	return remoteTarget{host: host}
}

// localTarget is this machine, read natively.
type localTarget struct{}

func (localTarget) String() string { return "this machine" }

func (localTarget) read(ctx context.Context, r request) (*snapshot, error) {
	s := newSnapshot()
	for _, d := range r.Dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			s.Dirs[d] = true
		}
	}
	for _, g := range r.Globs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		matches, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", g, err)
		}
		for _, m := range matches {
			if hiddenMatch(g, m) {
				continue
			}
			if b, ok := readSmallFile(m); ok {
				s.Files[m] = b
			}
		}
	}
	return s, nil
}

// hiddenMatch reports a match where a wildcard matched a dot file, which
// filepath.Glob allows and the shell (the remote reader) does not.
func hiddenMatch(pattern, match string) bool {
	pc, mc := strings.Split(pattern, "/"), strings.Split(match, "/")
	if len(pc) != len(mc) {
		return false
	}
	for i := range pc {
		if strings.ContainsAny(pc[i], `*?[`) && !strings.HasPrefix(pc[i], ".") && strings.HasPrefix(mc[i], ".") {
			return true
		}
	}
	return false
}

// readSmallFile reads a regular file (symlinks followed, as sysfs needs),
// up to maxFileBytes; unreadable files are skipped like the remote reader
// does.
func readSmallFile(p string) ([]byte, bool) {
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes))
	if err != nil {
		return nil, false
	}
	return b, true
}

func (localTarget) lookPath(_ context.Context, program string) error {
	_, err := exec.LookPath(program)
	return err
}

// killGrace is how long a killed command's output pipes may stay open
// (held by a child that escaped the process group) before Wait gives up.
const killGrace = 2 * time.Second

func (localTarget) run(ctx context.Context, argv, env []string, timeout time.Duration) (cmdResult, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A hung scanimage may have children (a backend's helper): kill the
	// whole process group, not just the process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killGrace
	err := cmd.Run()
	res := cmdResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case rctx.Err() != nil:
		res.TimedOut, res.ExitCode = true, -1
		return res, nil
	case err == nil:
		return res, nil
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		return res, nil
	default:
		return res, err
	}
}

// remoteTarget is a lab host: files are read with one sh script, commands
// run under coreutils timeout, which kills them in the host (cancelling a
// docker exec would only stop waiting for them).
type remoteTarget struct{ host string }

func (t remoteTarget) String() string { return t.host }

func (t remoteTarget) read(ctx context.Context, r request) (*snapshot, error) {
	argv := append([]string{"sh", "-c", dumpScript, "sh"}, dumpArgs(r)...)
	res, err := hostexec.Run(ctx, t.host, argv, nil)
	if err != nil {
		return nil, fmt.Errorf("read files on %s: %w", t.host, err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("read files on %s: sh exited %d: %s", t.host, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	s, err := parseDump(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("read files on %s: %w", t.host, err)
	}
	return s, nil
}

func (t remoteTarget) lookPath(ctx context.Context, program string) error {
	res, err := hostexec.Run(ctx, t.host, []string{"sh", "-c", `command -v "$1"`, "sh", program}, nil)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s on %s: %w", program, t.host, exec.ErrNotFound)
	}
	return nil
}

// Exit codes of coreutils timeout: the command timed out (124), or had to
// be killed after the grace period (128+9).
const (
	timeoutExit = 124
	killedExit  = 137
)

func (t remoteTarget) run(ctx context.Context, argv, env []string, timeout time.Duration) (cmdResult, error) {
	secs := strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)
	grace := strconv.Itoa(int(killGrace / time.Second))
	full := append(append([]string{"env"}, env...), "timeout", "-k", grace, secs)
	full = append(full, argv...)
	// The docker exec itself gets a deadline too, past the command's own.
	rctx, cancel := context.WithTimeout(ctx, timeout+killGrace+30*time.Second)
	defer cancel()
	res, err := hostexec.Run(rctx, t.host, full, nil)
	if err != nil {
		return cmdResult{}, fmt.Errorf("run %s on %s: %w", argv[0], t.host, err)
	}
	out := cmdResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}
	if res.ExitCode == timeoutExit || res.ExitCode == killedExit {
		out.TimedOut = true
	}
	return out, nil
}
