package reaper

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A run cgroup is a child of the cgroup opsdrill starts in, in the cgroup
// v2 hierarchy. opsdrill moves itself into it, so every process a step
// starts, from any step family or tool, is born inside and stays there
// whatever it does to its environment, session or parent: only a process
// with the rights to write cgroup.procs elsewhere can leave. Moving
// opsdrill rather than placing each child (CLONE_INTO_CGROUP) is what
// reaches every place a process is started, with no window in which a
// child could fork before it is placed. The cgroup holds no controllers
// and no child cgroups of ours, so cgroup v2's no-internal-processes rule
// does not apply to it; opsdrill's own cgroup keeps its other processes.

// runCgroup is a cgroup made for one run.
type runCgroup struct {
	dir    string // the run's cgroup
	parent string // the cgroup opsdrill started in, to return to
}

// ownCgroup finds the cgroup v2 directory this process is in.
func ownCgroup() (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	var path string
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			path, found = p, true
			break
		}
	}
	if !found {
		return "", errors.New("no cgroup v2 hierarchy (only cgroup v1)")
	}
	mount, root, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("cgroup %s is outside the mounted cgroup2 tree (%s)", path, root)
	}
	return filepath.Join(mount, rel), nil
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted (on
// /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid system) and
// which of its cgroups is that mount's root.
func cgroup2Mount() (mount, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && i >= 5 {
				return unescapeMount(fields[4]), unescapeMount(fields[3]), nil
			}
		}
	}
	return "", "", errors.New("cgroup2 is not mounted")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// newRunCgroup creates the run's cgroup below this process's own. It
// fails where the hierarchy cannot be written (an unprivileged container's
// read-only cgroupfs, a cgroup not delegated to this user).
func newRunCgroup(token string) (*runCgroup, error) {
	parent, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, fmt.Sprintf("%s%d-%s", cgroupPrefix, os.Getpid(), token[:12]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	return &runCgroup{dir: dir, parent: parent}, nil
}

// enter moves this process (every thread) into the run's cgroup; its
// children from now on are born there.
func (c *runCgroup) enter() error { return movePid(c.dir, os.Getpid()) }

// remove removes the cgroup, nil or not, when nothing is in it.
func (c *runCgroup) remove() {
	if c != nil {
		_ = removeCgroup(c.dir)
	}
}

// leave moves this process back to the cgroup it started in, so the run's
// cgroup can be emptied and removed while it lives on.
func (c *runCgroup) leave() error { return movePid(c.parent, os.Getpid()) }

func movePid(dir string, pid int) error {
	return writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid))
}

// killCgroup kills every process in the cgroup at dir and below, waits
// until none is left, and removes the cgroups. It uses cgroup.kill
// (Linux 5.14) and, without it, freezes the tree so nothing forks while
// each process is killed.
func killCgroup(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var err error
	if kerr := writeFile(filepath.Join(dir, "cgroup.kill"), "1"); kerr == nil {
		err = waitEmpty(dir, 10*time.Second)
	} else if errors.Is(kerr, os.ErrNotExist) {
		err = freezeAndKill(dir)
	} else {
		err = kerr
	}
	return errors.Join(err, removeCgroup(dir))
}

// freezeAndKill is the kill for kernels without cgroup.kill: a frozen
// process cannot fork, and SIGKILL still reaches it.
func freezeAndKill(dir string) error {
	if err := writeFile(filepath.Join(dir, "cgroup.freeze"), "1"); err != nil {
		return err
	}
	for round := 0; round < 100; round++ {
		pids := cgroupPids(dir)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = writeFile(filepath.Join(dir, "cgroup.freeze"), "0")
	return waitEmpty(dir, 10*time.Second)
}

// cgroupPids lists the processes in dir and its child cgroups.
func cgroupPids(dir string) []int {
	var out []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
		return nil
	})
	return out
}

// waitEmpty waits until no process is left in the cgroup tree at dir
// (cgroup.events says populated 0).
func waitEmpty(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ev, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return err
		}
		if bytes.Contains(ev, []byte("populated 0")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes still running after %s", dir, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// removeCgroup removes dir and any cgroup a step made below it, deepest
// first (a cgroup is removed with rmdir, once empty).
func removeCgroup(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}

func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
