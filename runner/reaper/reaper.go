// Package reaper makes sure no process a run starts outlives it: not when
// the run ends, not after SIGINT or SIGTERM, and not when opsdrill itself is
// killed with SIGKILL, which gives it no chance to clean up.
//
// A small watchdog, the same binary started with a hidden subcommand,
// holds the read end of a pipe whose write end only the run holds. When
// the run ends, however it ends, the kernel closes the write end; the
// watchdog then kills what the run left and exits. It finds those
// processes two ways:
//
//   - a cgroup (Linux, cgroup v2 writable, as root or with a delegated
//     cgroup): the run moves itself into a cgroup of its own, so every
//     process a step starts is born there and stays there, whatever it
//     does to its environment, session or parent (env -i, sudo's
//     env_reset, setsid, a double fork). The watchdog kills the whole
//     cgroup and removes it. A normal end returns the run to the cgroup it
//     came from and removes the run's cgroup too: none is left behind.
//   - an environment token, the fallback where cgroups cannot be written
//     (an unprivileged container's read-only cgroupfs, other systems), and
//     a second sweep otherwise: Start puts a token unique to the run in the
//     environment every child inherits, and the watchdog kills every
//     process carrying it, until none is left. A process started with an
//     environment of its own does not carry it; only its direct parent's
//     process group kill (the exec step's) then applies.
//
// OPSDRILL_REAPER=environment skips the cgroup.
package reaper

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
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
)

// EnvToken is the environment variable that marks a run's processes.
const EnvToken = "OPSDRILL_RUN_TOKEN"

// Subcommand is the hidden command line the watchdog runs with:
// `opsdrill __reap TOKEN [CGROUP]`, the pipe on file descriptor 3.
const Subcommand = "__reap"

// cgroupPrefix starts the name of every run cgroup: opsdrill-run-PID-TOKEN.
const cgroupPrefix = "opsdrill-run-"

// EnvMethod set to MethodEnv makes a run use the environment token alone.
const EnvMethod = "OPSDRILL_REAPER"

// The methods that protect a run, as Method reports them.
const (
	MethodCgroup = "cgroup"
	MethodEnv    = "environment"
)

// Reaper is a running watchdog.
type Reaper struct {
	cmd   *exec.Cmd
	pipe  *os.File
	token string
	cg    *runCgroup // nil: the environment token alone
	noCg  string     // why there is no cgroup
}

// Start starts the watchdog from the executable self (os.Executable()),
// then moves this process into a cgroup of the run's own where it can, and
// marks its future children with a new token.
func Start(self string) (*Reaper, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(b)
	var cg *runCgroup
	var err error
	noCg := EnvMethod + "=" + MethodEnv
	if os.Getenv(EnvMethod) != MethodEnv {
		if cg, err = newRunCgroup(token); err != nil {
			noCg = err.Error()
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		cg.remove()
		return nil, err
	}
	args := []string{Subcommand, token}
	if cg != nil {
		args = append(args, cg.dir)
	}
	// Started before the run enters its cgroup: the watchdog stays out.
	cmd := exec.Command(self, args...)
	cmd.ExtraFiles = []*os.File{r}
	// Its own process group: a Ctrl-C at the terminal goes to the run,
	// not to the watchdog that must outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = withoutToken(os.Environ())
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		cg.remove()
		return nil, fmt.Errorf("reaper: %w", err)
	}
	r.Close()
	if cg != nil {
		if err := cg.enter(); err != nil {
			noCg = err.Error()
			cg.remove()
			cg = nil
		}
	}
	if err := os.Setenv(EnvToken, token); err != nil {
		w.Close()
		return nil, err
	}
	return &Reaper{cmd: cmd, pipe: w, token: token, cg: cg, noCg: noCg}, nil
}

// Method says what protects the run: MethodCgroup or MethodEnv.
func (r *Reaper) Method() string {
	if r.cg != nil {
		return MethodCgroup
	}
	return MethodEnv
}

// Detail says in words how the run is protected, and why not by a cgroup
// when it is not.
func (r *Reaper) Detail() string {
	if r.cg != nil {
		return "cgroup " + r.cg.dir
	}
	return "environment token (no cgroup: " + r.noCg + ")"
}

// Close ends the run's side: what is left of the run is killed, its cgroup
// removed, and the watchdog exits; Close waits for it, up to timeout, so
// nothing of the run is running when it returns.
func (r *Reaper) Close(timeout time.Duration) error {
	os.Unsetenv(EnvToken)
	var cgErr error
	if r.cg != nil {
		if err := r.cg.leave(); err != nil {
			// Still inside: killing the cgroup now would kill this process
			// too. The watchdog does it once this process has exited.
			return fmt.Errorf("reaper: leave cgroup %s: %w; what is left in it is killed when opsdrill exits", r.cg.dir, err)
		}
		cgErr = killCgroup(r.cg.dir)
	}
	r.pipe.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		return errors.Join(cgErr, err)
	case <-time.After(timeout):
		return errors.Join(cgErr, errors.New("reaper: still reaping"))
	}
}

func withoutToken(env []string) []string {
	out := env[:0:0]
	prefix := EnvToken + "="
	for _, kv := range env {
		if len(kv) < len(prefix) || kv[:len(prefix)] != prefix {
			out = append(out, kv)
		}
	}
	return out
}

// Watch is the watchdog: it waits until the run closes its end of the
// pipe (exit, crash or SIGKILL alike), then kills the run's cgroup (when
// it has one) and every process carrying its token.
func Watch(pipe io.Reader, token, cgroup string) error {
	if cgroup != "" && !strings.HasPrefix(filepath.Base(cgroup), cgroupPrefix) {
		return fmt.Errorf("reaper: %s is not a run's cgroup", cgroup)
	}
	_, _ = io.Copy(io.Discard, pipe)
	var err error
	if cgroup != "" {
		err = killCgroup(cgroup)
	}
	Reap(token)
	return err
}

// Reap kills every process, but this one, whose environment carries token,
// again and again until none is left (a dying shell may still fork).
func Reap(token string) int {
	mark := []byte(EnvToken + "=" + token + "\x00")
	killed := 0
	for round := 0; round < 50; round++ {
		pids := marked(mark)
		if len(pids) == 0 {
			return killed
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return killed
}

// marked lists the live processes whose initial environment holds mark.
func marked(mark []byte) []int {
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, mark...)) {
			continue
		}
		if zombie(pid) {
			continue // already dead; its parent will collect it
		}
		out = append(out, pid)
	}
	return out
}

func zombie(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z'
}
