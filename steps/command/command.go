// Package command provides the exec step: run a program and check how it
// ended. Commands run from an argv list, never through a shell, unless the
// scenario asks for one explicitly with `shell:` and a `script:`.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
)

// maxCapture bounds how much of stdout and stderr is kept as output.
const maxCapture = 1 << 20

func init() {
	steps.Register(steps.Spec{
		Name:    "exec",
		Summary: "Run a command and capture stdout, stderr and exit code",
		Doc: "Runs `command` (an argv list; no shell) or, with an explicit `shell:`, a `script:`. " +
			"The step fails when the exit code is not in `exit_codes` (default [0]). " +
			"On timeout or cancellation the whole process group is killed, on a remote host too. " +
			"Relative `dir` is taken from the scenario's folder; with a remote `host:` it must be absolute. " +
			"`host:` runs it elsewhere: ssh://[user@]name (through --ssh-config), lab:NAME; env and stdin travel " +
			"out of sight of ps there.",
		New: func() steps.Step { return &Exec{ExitCodes: []int{0}} },
		Outputs: []steps.Output{
			{Name: "stdout", Type: "string", Doc: "standard output (first 1 MiB)"},
			{Name: "stderr", Type: "string", Doc: "standard error (first 1 MiB)"},
			{Name: "exit_code", Type: "int", Doc: "exit code; -1 when killed by a signal"},
			{Name: "duration_ms", Type: "int", Doc: "wall-clock run time"},
		},
		Figures: execFigures,
		Examples: []steps.Example{
			{Title: "Check a binary's version", YAML: "- uses: exec\n  with: { command: [oathtool, --version] }\n  expect: outputs.stdout contains \"oathtool\""},
			{Title: "A shell pipeline, explicitly", YAML: "- uses: exec\n  with:\n    shell: bash\n    script: set -o pipefail; lsusb | grep -i epson"},
			{Title: "On the customer gateway, as root", YAML: "- uses: exec\n  with:\n    host: ssh://ops@cgw?sudo=true\n    command: [ipsec, statusall]"},
		},
	})
}

// Exec runs a program.
type Exec struct {
	Command   []string          `yaml:"command" doc:"argv: program and arguments (no shell)"`
	Shell     string            `yaml:"shell" doc:"shell to run script with, e.g. sh or bash; required with script"`
	Script    string            `yaml:"script" doc:"script text for shell (-c)"`
	Env       map[string]string `yaml:"env" doc:"extra environment variables"`
	Dir       string            `yaml:"dir" doc:"working directory (relative to the scenario's folder)"`
	Stdin     string            `yaml:"stdin" doc:"text written to standard input"`
	Timeout   time.Duration     `yaml:"timeout" doc:"kill the process group after this long"`
	ExitCodes []int             `yaml:"exit_codes" doc:"exit codes that count as success"`
	Host      string            `yaml:"host" doc:"where to run it: local, ssh://[user@]name[:port][?sudo=true] or lab:NAME"`
}

// Validate checks that exactly one way of running is given.
func (e *Exec) Validate() error {
	switch {
	case len(e.Command) > 0 && (e.Script != "" || e.Shell != ""):
		return errors.New("give either command (argv) or shell + script, not both")
	case len(e.Command) == 0 && e.Script == "":
		return errors.New("command: missing; give an argv list such as [echo, hello]")
	case e.Script != "" && e.Shell == "":
		return errors.New("shell: required with script (opsdrill never picks a shell for you), e.g. shell: sh")
	case len(e.Command) > 0 && e.Command[0] == "":
		return errors.New("command: program name is empty")
	case e.Timeout < 0:
		return errors.New("timeout: must be positive")
	}
	if err := host.Validate(e.Host); err != nil {
		return err
	}
	if !host.IsLocal(e.Host) && e.Dir != "" && !path.IsAbs(e.Dir) {
		return fmt.Errorf("dir: %q must be absolute on host %s", e.Dir, e.Host)
	}
	return nil
}

// Run executes the command.
func (e *Exec) Run(ctx context.Context, env *steps.Env) error {
	argv := e.Command
	if e.Script != "" {
		argv = []string{e.Shell, "-c", e.Script}
	}
	if e.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.Timeout)
		defer cancel()
	}
	if !host.IsLocal(e.Host) {
		return e.runRemote(ctx, env, argv)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Kill the whole group: a shell's children must not outlive it.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	if e.Dir != "" {
		cmd.Dir = env.Path(e.Dir)
	} else {
		cmd.Dir = env.BaseDir
	}
	if len(e.Env) > 0 {
		keys := make([]string, 0, len(e.Env))
		for k := range e.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		cmd.Env = os.Environ()
		for _, k := range keys {
			cmd.Env = append(cmd.Env, k+"="+e.Env[k])
		}
	}
	if e.Stdin != "" {
		cmd.Stdin = strings.NewReader(e.Stdin)
	}
	stdout := &capped{max: maxCapture}
	stderr := &capped{max: maxCapture}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	err := cmd.Run()
	env.SetOutput("duration_ms", time.Since(start).Milliseconds())
	env.SetOutput("stdout", stdout.String())
	env.SetOutput("stderr", stderr.String())
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	env.SetOutput("exit_code", code)
	if err != nil {
		var exitErr *exec.ExitError
		switch {
		case ctx.Err() != nil:
			return e.stopped(ctx, argv)
		case !errors.As(err, &exitErr):
			return fmt.Errorf("%s: %w", argv[0], err)
		}
	}
	return e.judge(argv, code, stderr.String())
}

// runRemote runs argv on e.Host; the host's transport kills it there on
// timeout or cancellation.
func (e *Exec) runRemote(ctx context.Context, env *steps.Env, argv []string) error {
	h, err := host.Open(ctx, e.Host)
	if err != nil {
		return err
	}
	c := host.Command{Args: argv}
	if e.Dir != "" {
		c.Args = append([]string{"sh", "-c", `cd "$1" && shift && exec "$@"`, "sh", e.Dir}, argv...)
	}
	keys := make([]string, 0, len(e.Env))
	for k := range e.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.Env = append(c.Env, k+"="+e.Env[k])
	}
	if e.Stdin != "" {
		c.Stdin = []byte(e.Stdin)
	}
	start := time.Now()
	res, err := h.Run(ctx, c)
	env.SetOutput("duration_ms", time.Since(start).Milliseconds())
	stdout, stderr := &capped{max: maxCapture}, &capped{max: maxCapture}
	_, _ = stdout.Write([]byte(res.Stdout))
	_, _ = stderr.Write([]byte(res.Stderr))
	env.SetOutput("stdout", stdout.String())
	env.SetOutput("stderr", stderr.String())
	if err != nil {
		env.SetOutput("exit_code", -1)
		if ctx.Err() != nil {
			return e.stopped(ctx, argv)
		}
		return fmt.Errorf("%s on %s: %w", argv[0], e.Host, err)
	}
	env.SetOutput("exit_code", res.ExitCode)
	return e.judge(argv, res.ExitCode, res.Stderr)
}

// stopped is the verdict on a command its context ended: a timeout of its
// own fails the step, the run's cancellation is passed on.
func (e *Exec) stopped(ctx context.Context, argv []string) error {
	if e.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return steps.Failf("%s: killed after timeout of %s", argv[0], e.Timeout)
	}
	return ctx.Err()
}

func (e *Exec) judge(argv []string, code int, stderr string) error {
	if !slices.Contains(e.ExitCodes, code) {
		msg := fmt.Sprintf("%s exited with %d (expected %s)", argv[0], code, codesText(e.ExitCodes))
		if tail := lastLine(stderr); tail != "" {
			msg += ": " + tail
		}
		return steps.Failf("%s", msg)
	}
	return nil
}

func codesText(codes []int) string {
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprint(c)
	}
	return strings.Join(parts, " or ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// capped keeps the first max bytes written and notes truncation.
type capped struct {
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
			c.truncated = true
		} else {
			c.buf.Write(p)
		}
	} else if len(p) > 0 {
		c.truncated = true
	}
	return len(p), nil
}

func (c *capped) String() string {
	if c.truncated {
		// The mark right after the cut: a secret cut in two there is
		// masked by the runner's redactor (see redact.CutMarks).
		return c.buf.String() + "… (truncated at 1 MiB)"
	}
	return c.buf.String()
}
