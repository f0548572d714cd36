package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/runner/reaper"
)

// cgroup2Root is where the cgroup v2 hierarchy is mounted ("" when not).
func cgroup2Root(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return fields[4]
			}
		}
	}
	return ""
}

// needCgroups skips where this test, and so the opsdrill it starts, cannot
// make a cgroup (not root, a read-only cgroupfs): the environment token is
// then the only method, tested on its own below.
func needCgroups(t *testing.T) {
	t.Helper()
	root := cgroup2Root(t)
	if root == "" {
		t.Skip("cgroup2 is not mounted")
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	own := ""
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			own = filepath.Join(root, p)
		}
	}
	probe := filepath.Join(own, fmt.Sprintf("opsdrill-test-probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		t.Skipf("cgroup v2 not writable here: %v", err)
	}
	require.NoError(t, syscall.Rmdir(probe))
}

// runCgroupsOf lists the run cgroups opsdrill process pid made that still
// exist, anywhere in the hierarchy.
func runCgroupsOf(t *testing.T, pid int) []string {
	t.Helper()
	root := cgroup2Root(t)
	if root == "" {
		return nil
	}
	prefix := fmt.Sprintf("opsdrill-run-%d-", pid)
	var out []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), prefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// sleepingArg lists the live processes running `sleep arg`, whatever
// their environment (arg is unique to the test).
func sleepingArg(arg string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || string(cmdline) != "sleep\x00"+arg+"\x00" {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				continue
			}
		}
		out = append(out, pid)
	}
	return out
}

// journalReaper reads the method a run recorded in its journal's first
// event.
func journalReaper(t *testing.T, dir string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "journal.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	require.NoError(t, err)
	for _, m := range []string{reaper.MethodCgroup, reaper.MethodEnv} {
		if strings.Contains(line, `"reaper":"`+m+`"`) {
			return m
		}
	}
	return ""
}

// After SIGKILL of opsdrill, no child survives, not even one started with
// a wiped environment (env -i) nor one that then left for a session of its
// own through a double fork: they were born in the run's cgroup, which the
// watchdog kills and removes. The environment token alone cannot find
// them: with OPSDRILL_REAPER=environment they escape (which is what the
// cgroup is for), while a child carrying the token is still killed.
func TestKilledRunLeavesNoChildWithAWipedEnvironment(t *testing.T) {
	for _, method := range []string{reaper.MethodCgroup, reaper.MethodEnv} {
		t.Run(method, func(t *testing.T) {
			if method == reaper.MethodCgroup {
				needCgroups(t)
			}
			dir := t.TempDir()
			arg := fmt.Sprintf("300.%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
			marker := "OPSDRILL_TEST_MARK=" + filepath.Base(dir)
			started := filepath.Join(dir, "started")
			scenario := filepath.Join(dir, "wiped.yaml")
			require.NoError(t, os.WriteFile(scenario, []byte(`steps:
  - id: wiped
    uses: exec
    background: true
    with: { command: [env, -i, sh, -c, "sleep `+arg+`; echo done"] }
  - id: wiped_session
    uses: exec
    background: true
    with: { command: [env, -i, sh, -c, "(setsid sleep `+arg+` &); exec sleep `+arg+`"] }
  - id: marked
    uses: exec
    with: { shell: sh, script: "touch `+started+`; exec sleep 300" }
`), 0o644))
			out := filepath.Join(dir, "out")
			cmd := exec.Command(binary, "run", "--report-dir", out, scenario)
			cmd.Env = append(os.Environ(), "NO_COLOR=1", marker)
			if method == reaper.MethodEnv {
				cmd.Env = append(cmd.Env, reaper.EnvMethod+"="+reaper.MethodEnv)
			}
			require.NoError(t, cmd.Start())
			t.Cleanup(func() {
				for _, pid := range sleepingArg(arg) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			require.Eventually(t, func() bool {
				_, err := os.Stat(started)
				return err == nil && len(sleepingArg(arg)) == 3 && len(sleepers(t, "300", marker)) == 1
			}, 20*time.Second, 20*time.Millisecond, "three sleeps with a wiped environment and one marked, running")
			assert.Equal(t, method, journalReaper(t, out))
			if method == reaper.MethodCgroup {
				assert.Len(t, runCgroupsOf(t, cmd.Process.Pid), 1, "the run has its cgroup")
			}

			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			_ = cmd.Wait()
			assert.Eventually(t, func() bool { return len(sleepers(t, "300", marker)) == 0 }, 10*time.Second, 20*time.Millisecond,
				"the child carrying the token is killed either way")
			if method == reaper.MethodEnv {
				assert.Len(t, sleepingArg(arg), 3, "without a cgroup, children that wiped their environment escape")
				assert.Empty(t, runCgroupsOf(t, cmd.Process.Pid))
				return
			}
			assert.Eventually(t, func() bool { return len(sleepingArg(arg)) == 0 }, 10*time.Second, 20*time.Millisecond,
				"no child survives opsdrill, whatever its environment or session")
			assert.Eventually(t, func() bool { return len(runCgroupsOf(t, cmd.Process.Pid)) == 0 }, 10*time.Second, 20*time.Millisecond,
				"the killed run's cgroup is removed")
		})
	}
}

// A normal run ends with its cgroup removed and says in its reports what
// protected it; where cgroups cannot be written (here, cgroupfs mounted
// read-only in a mount namespace of its own, as in an unprivileged
// container) it falls back to the environment token and says so.
func TestRunSaysWhatProtectedItAndLeavesNoCgroup(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	cmd := exec.Command(binary, "run", "--report-dir", dir, "testdata/pass.yaml")
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	outb, err := cmd.CombinedOutput()
	require.NoError(t, err, string(outb))
	assert.Empty(t, runCgroupsOf(t, cmd.Process.Pid), "no cgroup left after a normal run")
	run := readReport(t, dir)
	assert.Equal(t, reaper.MethodCgroup, run.Reaper)
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	assert.Contains(t, string(html), "killed with the run's cgroup")

	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	root := cgroup2Root(t)
	ro := t.TempDir()
	cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -o remount,bind,ro "$1" && exec "$2" run --report-dir "$3" testdata/pass.yaml`, "sh", root, binary, ro)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	outb, err = cmd.CombinedOutput()
	require.NoError(t, err, string(outb))
	assert.Equal(t, reaper.MethodEnv, readReport(t, ro).Reaper, "a read-only cgroupfs: the environment token")
	html, err = os.ReadFile(filepath.Join(ro, "report.html"))
	require.NoError(t, err)
	assert.Contains(t, string(html), "killed by the run's environment token")
}
