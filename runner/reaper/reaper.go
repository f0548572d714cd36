// Package reaper makes sure no process a run starts outlives it: not when
// the run ends, not after SIGINT or SIGTERM, and not when opsdrill itself is
// killed with SIGKILL, which gives it no chance to clean up.
//
// Every process a step starts (exec, a shell and its children, a tool a
// step family runs) inherits the run's environment, and Start puts a token
// unique to the run there. A small watchdog, the same binary started with a
// hidden subcommand, holds the read end of a pipe whose write end only the
// run holds. When the run ends, however it ends, the kernel closes the
// write end; the watchdog then kills every process whose environment
// carries the token, until none is left, and exits. Unlike a process group,
// this also finds children that started a session or group of their own.
// A process started with an environment of its own (env -i, sudo's
// env_reset) does not carry the token; its direct parent's process group
// kill (the exec step's) still applies.
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
	"syscall"
	"time"
)

// EnvToken is the environment variable that marks a run's processes.
const EnvToken = "OPSDRILL_RUN_TOKEN"

// Subcommand is the hidden command line the watchdog runs with:
// `opsdrill __reap TOKEN`, the pipe on file descriptor 3.
const Subcommand = "__reap"

// Reaper is a running watchdog.
type Reaper struct {
	cmd   *exec.Cmd
	pipe  *os.File
	token string
}

// Start marks this process's future children with a new token and starts
// the watchdog from the executable self (os.Executable()).
func Start(self string) (*Reaper, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(b)
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, Subcommand, token)
	cmd.ExtraFiles = []*os.File{r}
	// Its own process group: a Ctrl-C at the terminal goes to the run,
	// not to the watchdog that must outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = withoutToken(os.Environ())
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("reaper: %w", err)
	}
	r.Close()
	if err := os.Setenv(EnvToken, token); err != nil {
		w.Close()
		return nil, err
	}
	return &Reaper{cmd: cmd, pipe: w, token: token}, nil
}

// Close ends the run's side: the watchdog kills what is left and exits;
// Close waits for it, up to timeout, so nothing of the run is running when
// it returns.
func (r *Reaper) Close(timeout time.Duration) error {
	os.Unsetenv(EnvToken)
	r.pipe.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return errors.New("reaper: still reaping")
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
// pipe (exit, crash or SIGKILL alike), then reaps.
func Watch(pipe io.Reader, token string) {
	_, _ = io.Copy(io.Discard, pipe)
	Reap(token)
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
