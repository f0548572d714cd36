package reaper

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The watchdog Start launches is this test binary: it runs Watch, as
// `opsdrill __reap` does.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == Subcommand {
		cgroup := ""
		if len(os.Args) == 4 {
			cgroup = os.Args[3]
		}
		if err := Watch(os.NewFile(3, "run"), os.Args[2], cgroup); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// needCgroup skips where cgroup v2 cannot be written here (not root, a
// read-only cgroupfs): the environment token is then all there is, and
// its own tests cover it.
func needCgroup(t *testing.T) {
	t.Helper()
	cg, err := newRunCgroup("probe0123456789abcdef")
	if err != nil {
		t.Skipf("cgroup v2 not writable here: %v", err)
	}
	cg.remove()
}

// escapees starts, with an empty environment (no token), a shell that
// runs `sleep arg` itself, one in a session of its own and one orphaned by
// a double fork, optionally born in the cgroup dir; it returns the shell
// once all three sleep.
func escapees(t *testing.T, arg, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("env", "-i", "/bin/sh", "-c", fmt.Sprintf("setsid sleep %s & (sleep %s &); exec sleep %s", arg, arg, arg))
	if dir != "" {
		fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
		require.NoError(t, err)
		defer syscall.Close(fd)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		for _, pid := range sleeping(arg) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	require.Eventually(t, func() bool { return len(sleeping(arg)) == 3 }, 10*time.Second, 10*time.Millisecond, "three sleeps running")
	return cmd
}

func uniqueArg() string {
	return fmt.Sprintf("300.%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
}

// sleeping lists the live processes running `sleep arg`.
func sleeping(arg string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || zombie(pid) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) == 2 && filepath.Base(args[0]) == "sleep" && args[1] == arg {
			out = append(out, pid)
		}
	}
	return out
}

// Killing the run's cgroup takes every process in it, whatever its
// environment, session or parent, and removes the cgroup, with a cgroup a
// step made inside it; so does freezing and killing, for kernels without
// cgroup.kill.
func TestKillCgroupTakesEveryProcessInIt(t *testing.T) {
	needCgroup(t)
	for name, kill := range map[string]func(string) error{
		"cgroup.kill": killCgroup,
		"freeze":      func(dir string) error { return freezeAndKill(dir) },
	} {
		t.Run(name, func(t *testing.T) {
			cg, err := newRunCgroup("test0123456789abcdef")
			require.NoError(t, err)
			defer cg.remove()
			arg := uniqueArg()
			escapees(t, arg, cg.dir)
			inner := filepath.Join(cg.dir, "step")
			require.NoError(t, os.Mkdir(inner, 0o755))
			innerArg := uniqueArg() + "1"
			escapees(t, innerArg, inner)
			outside := uniqueArg() + "2"
			escapees(t, outside, "")

			require.NoError(t, kill(cg.dir))
			assert.Empty(t, sleeping(arg), "no process of the cgroup survives")
			assert.Empty(t, sleeping(innerArg), "nor of a cgroup below it")
			assert.Len(t, sleeping(outside), 3, "a process outside the cgroup is left alone")
			require.NoError(t, removeCgroup(cg.dir))
			assert.NoDirExists(t, cg.dir)
		})
	}
}

// A run protected by a cgroup: Start moves the process into the run's
// cgroup, so a child with a wiped environment is born there; Close kills
// it, returns the process to where it was and removes the cgroup.
func TestStartAndCloseWithACgroup(t *testing.T) {
	needCgroup(t)
	before, err := ownCgroup()
	require.NoError(t, err)
	self, err := os.Executable()
	require.NoError(t, err)
	r, err := Start(self)
	require.NoError(t, err)
	require.Equal(t, MethodCgroup, r.Method(), r.Detail())
	inside, err := ownCgroup()
	require.NoError(t, err)
	assert.Equal(t, r.cg.dir, inside)
	assert.Equal(t, before, filepath.Dir(inside), "the run's cgroup is a child of the one it started in")
	assert.True(t, strings.HasPrefix(filepath.Base(inside), fmt.Sprintf("%s%d-", cgroupPrefix, os.Getpid())))
	assert.NotContains(t, procs(t, inside), r.cmd.Process.Pid, "the watchdog stays outside the cgroup")

	arg := uniqueArg()
	escapees(t, arg, "")
	require.NoError(t, r.Close(10*time.Second))
	assert.Empty(t, sleeping(arg), "no child survives the run, token or not")
	after, err := ownCgroup()
	require.NoError(t, err)
	assert.Equal(t, before, after, "the process is back where it started")
	assert.NoDirExists(t, inside, "no cgroup is left behind")
}

// The fallback: with OPSDRILL_REAPER=environment, or where cgroups cannot
// be written, the token alone protects the run, and a child that wiped
// its environment is beyond it (its parent's process group kill is its
// only end).
func TestStartWithTheEnvironmentTokenOnly(t *testing.T) {
	t.Setenv(EnvMethod, MethodEnv)
	before, err := ownCgroup()
	if err != nil {
		before = ""
	}
	self, err := os.Executable()
	require.NoError(t, err)
	r, err := Start(self)
	require.NoError(t, err)
	assert.Equal(t, MethodEnv, r.Method())
	assert.Equal(t, "environment token (no cgroup: OPSDRILL_REAPER=environment)", r.Detail())
	if before != "" {
		now, err := ownCgroup()
		require.NoError(t, err)
		assert.Equal(t, before, now, "the process did not move")
	}
	marked := exec.Command("sleep", "60")
	marked.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	require.NoError(t, marked.Start())
	arg := uniqueArg()
	escapees(t, arg, "")
	done := make(chan error, 1)
	go func() { done <- marked.Wait() }()
	require.NoError(t, r.Close(10*time.Second))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a child carrying the token survived")
	}
	assert.Len(t, sleeping(arg), 3, "children without the token are beyond the fallback")
}

func procs(t *testing.T, dir string) []int {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	require.NoError(t, err)
	var out []int
	for _, f := range strings.Fields(string(data)) {
		var pid int
		_, _ = fmt.Sscan(f, &pid)
		out = append(out, pid)
	}
	return out
}
