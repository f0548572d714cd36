package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

func openRunnerHost(t *testing.T) (*sshtest.Server, *Pool, *SSH) {
	t.Helper()
	s := sshtest.Start(t)
	cfg := s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})
	p, h := openSSH(t, cfg, "ssh://box")
	return s, p, h.(*SSH)
}

// Commands without stdin go through the host's runner: output bytes come
// back exactly, whatever they are.
func TestSSHRunnerOutput(t *testing.T) { forEachRunnerShell(t, testSSHRunnerOutput) }

func testSSHRunnerOutput(t *testing.T) {
	_, _, h := openRunnerHost(t)
	ctx := context.Background()
	bin := make([]byte, 1<<20)
	_, err := rand.Read(bin)
	require.NoError(t, err)
	for i := range 256 {
		bin[i] = byte(i)
	}
	binFile := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.WriteFile(binFile, bin, 0o600))
	large := bytes.Repeat([]byte("0123456789abcdef\n"), 5<<20/17)
	largeFile := filepath.Join(t.TempDir(), "large")
	require.NoError(t, os.WriteFile(largeFile, large, 0o600))
	// What a report looks like, with a marker of the same shape.
	fake := "\n" + hex.EncodeToString(make([]byte, 16)) + " e0\n"

	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want Result
	}{
		{name: "trailing newline", args: []string{"echo", "hi"}, want: Result{Stdout: "hi\n"}},
		{name: "no trailing newline", args: []string{"printf", "%s", "hi"}, want: Result{Stdout: "hi"}},
		{name: "only newlines", args: []string{"printf", `\n\n`}, want: Result{Stdout: "\n\n"}},
		{name: "no output", args: []string{"true"}, want: Result{}},
		{name: "stderr apart", args: []string{"sh", "-c", "printf out; printf 'err\n' >&2; printf more"}, want: Result{Stdout: "outmore", Stderr: "err\n"}},
		{name: "exit status", args: []string{"sh", "-c", "echo no >&2; exit 7"}, want: Result{Stderr: "no\n", ExitCode: 7}},
		{name: "not found", args: []string{"no-such-program-here"}, want: Result{ExitCode: 127}},
		{name: "killed by a signal", args: []string{"sh", "-c", "kill -KILL $$"}, want: Result{ExitCode: 137}},
		{name: "binary", args: []string{"cat", binFile}, want: Result{Stdout: string(bin)}},
		{name: "large", args: []string{"cat", largeFile}, want: Result{Stdout: string(large)}},
		{name: "large on stderr too", args: []string{"sh", "-c", `cat "$1"; cat "$1" >&2`, "sh", largeFile}, want: Result{Stdout: string(large), Stderr: string(large)}},
		{name: "marker-like output", args: []string{"printf", "%s", fake + fake[1:] + fake[:20]}, want: Result{Stdout: fake + fake[1:] + fake[:20]}},
		{name: "marker-like on stderr", args: []string{"sh", "-c", `printf '%s' "$1" >&2`, "sh", fake}, want: Result{Stderr: fake}},
		{name: "newlines and quotes in arguments", args: []string{"printf", "%s|", "a\nb", "it's", "", " $HOME `x` \\"}, want: Result{Stdout: "a\nb|it's|| $HOME `x` \\|"}},
		{name: "the program, not a shell builtin", args: []string{"echo", `a\nb`}, want: Result{Stdout: "a\\nb\n"}},
		{name: "env", args: []string{"sh", "-c", `printf '%s|%s' "$A" "$B"`}, env: []string{"A=x 'y'\nz", "B="}, want: Result{Stdout: "x 'y'\nz|"}},
		{name: "env not kept for the next command", args: []string{"sh", "-c", `printf '%s' "${A-unset}"`}, want: Result{Stdout: "unset"}},
		{name: "stdin is empty", args: []string{"cat"}, want: Result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := h.Run(ctx, Command{Args: tc.args, Env: tc.env})
			require.NoError(t, err)
			if tc.name == "not found" {
				assert.Contains(t, res.Stderr, "no-such-program-here")
				res.Stderr = ""
			}
			assert.Equal(t, len(tc.want.Stdout), len(res.Stdout))
			assert.True(t, tc.want == res, "got %.200q", res)
		})
	}
	// All of it went through one runner process.
	a, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "echo $PPID"}})
	require.NoError(t, err)
	b, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "echo $PPID"}})
	require.NoError(t, err)
	assert.Equal(t, a.Stdout, b.Stdout, "one runner for sequential commands")
	ps, err := exec.Command("ps", "-o", "args=", "-p", strings.TrimSpace(a.Stdout)).Output()
	require.NoError(t, err)
	assert.Contains(t, string(ps), " -c IFS= read -r m", "the runner: bash where the host has it, else sh")
}

// Concurrent commands share one connection; up to maxRunners runners,
// the rest in sessions of their own.
func TestSSHRunnerConcurrent(t *testing.T) { forEachRunnerShell(t, testSSHRunnerConcurrent) }

func testSSHRunnerConcurrent(t *testing.T) {
	s, _, h := openRunnerHost(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			want := strings.Repeat("x", i*1000)
			r, err := h.Run(ctx, Command{Args: []string{"sh", "-c", `printf %s "$1"; printf %s "$1" >&2; exit "$2"`, "sh", want, itoa(i % 5)}})
			if assert.NoError(t, err) {
				// A session of its own runs the login shell, whose rc
				// files may talk on stderr first.
				assert.True(t, r.Stdout == want && strings.HasSuffix(r.Stderr, want) && r.ExitCode == i%5,
					"command %d: exit %d, stdout %d bytes %.40q, stderr %d bytes %.40q, stderr without x: %q", i, r.ExitCode, len(r.Stdout), r.Stdout, len(r.Stderr), r.Stderr, strings.ReplaceAll(r.Stderr, "x", ""))
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, s.Accepted(t))
	h.rmu.Lock()
	defer h.rmu.Unlock()
	assert.LessOrEqual(t, h.nrunners, maxRunners)
	assert.Equal(t, h.nrunners, len(h.idle), "every runner back, idle")
	assert.Equal(t, h.nrunners, len(h.sessions), "a session slot held by each runner, none leaked")
}

// A command that leaves a process behind holding its output: its runner
// serves no other command, so what that process prints later never shows
// up as the next command's output. The process itself goes on, as after
// a session.
func TestSSHRunnerRetiredByLeftovers(t *testing.T) {
	forEachRunnerShell(t, testSSHRunnerRetiredByLeftovers)
}

func testSSHRunnerRetiredByLeftovers(t *testing.T) {
	_, _, h := openRunnerHost(t)
	ctx := context.Background()
	runnerOf := func(args ...string) (pid string, out string) {
		t.Helper()
		r, err := h.Run(ctx, Command{Args: args})
		require.NoError(t, err)
		require.Equal(t, 0, r.ExitCode, r.Stderr)
		first, rest, _ := strings.Cut(r.Stdout, "\n")
		return first, rest
	}
	// The command's parent is the runner that exec'd it.
	clean1, _ := runnerOf("sh", "-c", "echo $PPID")
	clean2, _ := runnerOf("sh", "-c", "echo $PPID")
	require.Equal(t, clean1, clean2, "an idle runner serves the next command")

	dir := t.TempDir()
	done := filepath.Join(dir, "stray-done")
	left, _ := runnerOf("sh", "-c", `echo $PPID; (sleep 0.5; touch "$1"; echo STRAY) &`, "sh", done)
	require.Equal(t, clean1, left)
	require.Eventually(t, func() bool { _, err := os.Stat(done); return err == nil }, 10*time.Second, 20*time.Millisecond,
		"the left-behind process goes on")
	time.Sleep(200 * time.Millisecond) // its STRAY is written (or refused) by now
	next, out := runnerOf("sh", "-c", "echo $PPID; echo mine")
	assert.NotEqual(t, left, next, "the runner whose command left a process behind was retired")
	assert.Equal(t, "mine\n", out, "nothing the left-behind process printed")
	h.rmu.Lock()
	defer h.rmu.Unlock()
	assert.Equal(t, h.nrunners, len(h.sessions), "the retired runner's session slot is free again")
}

// A command that kills its runner: an error that says so, and the next
// command gets a new runner.
func TestSSHRunnerKilledByItsCommand(t *testing.T) {
	_, _, h := openRunnerHost(t)
	ctx := context.Background()
	before, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "echo $PPID"}})
	require.NoError(t, err)
	_, err = h.Run(ctx, Command{Args: []string{"sh", "-c", "kill -KILL $PPID; sleep 5"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ssh://box")
	assert.Contains(t, err.Error(), "runner on the host was killed by SIGKILL")
	_, err = h.Run(ctx, Command{Args: []string{"sh", "-c", "exit 0 & kill -TERM $PPID"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "killed by SIGTERM")
	after, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "echo $PPID"}})
	require.NoError(t, err)
	assert.NotEqual(t, before.Stdout, after.Stdout, "a new runner")
	h.rmu.Lock()
	assert.Equal(t, 1, h.nrunners)
	assert.Equal(t, 1, len(h.sessions), "the dead runners' session slots are free")
	h.rmu.Unlock()
}

// A cancelled command is gone from the host, grandchildren too, through
// a runner and in a session of its own (stdin), and the host runs the
// next command.
func TestSSHRunnerCancel(t *testing.T) { forEachRunnerShell(t, testSSHRunnerCancel) }

func testSSHRunnerCancel(t *testing.T) {
	_, _, h := openRunnerHost(t)
	for _, tc := range []struct {
		name     string
		marker   string
		stdin    []byte
		deadline bool
	}{
		{name: "runner, cancel", marker: "3111"},
		{name: "runner, deadline", marker: "3112", deadline: true},
		{name: "session, cancel", marker: "3113", stdin: []byte("x")},
		{name: "session, deadline", marker: "3114", stdin: []byte("x"), deadline: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			if tc.deadline {
				ctx, cancel = context.WithTimeout(context.Background(), 1500*time.Millisecond)
			} else {
				time.AfterFunc(time.Second, cancel)
			}
			defer cancel()
			start := time.Now()
			res, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "echo started; sleep " + tc.marker + " & sleep " + tc.marker}, Stdin: tc.stdin})
			require.ErrorIs(t, err, ctx.Err())
			assert.Equal(t, "started\n", res.Stdout, "the output up to the cancel")
			assert.Less(t, time.Since(start), 6*time.Second)
			assert.Eventually(t, func() bool {
				out, _ := exec.Command("pgrep", "-f", "^sleep "+tc.marker).Output()
				return strings.TrimSpace(string(out)) == ""
			}, 5*time.Second, 50*time.Millisecond, "no sleep left on the host")
			res, err = h.Run(context.Background(), Command{Args: []string{"echo", "next"}})
			require.NoError(t, err)
			assert.Equal(t, "next\n", res.Stdout)
		})
	}
	// A context that is already done starts nothing.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	mark := filepath.Join(t.TempDir(), "ran")
	_, err := h.Run(done, Command{Args: []string{"touch", mark}})
	require.ErrorIs(t, err, context.Canceled)
	assert.NoFileExists(t, mark)
	h.rmu.Lock()
	defer h.rmu.Unlock()
	assert.Equal(t, h.nrunners, len(h.sessions), "no session slot leaked")
}

func TestRequestIsOneLine(t *testing.T) {
	line := request([]string{"printf", "a\nb", "c'\nd"}, []string{"K=x\ny"}, "0123456789abcdef")
	assert.Equal(t, 1, strings.Count(line, "\n"))
	assert.True(t, strings.HasSuffix(line, "\n"))
	assert.Equal(t, `( export OPSDRILL_COMMAND_ID=0123456789abcdef; export K='x'"$n"'y'; exec $S printf 'a'"$n"'b' 'c'\'''"$n"'d' ) </dev/null 2>&4 4>&- & r`+"\n", line)
}

func TestSSHRejectsNUL(t *testing.T) {
	for _, c := range []Command{
		{Args: []string{"echo", "a\x00b"}},
		{Args: []string{"true"}, Env: []string{"K=a\x00b"}},
		{Args: []string{"true"}, Env: []string{"1K=x"}},
	} {
		err := checkCommand(c)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "a\x00b")
	}
}

func TestKillCommand(t *testing.T) {
	assert.Equal(t, "kill -KILL -42 2>/dev/null; kill -KILL -7 2>/dev/null; kill -KILL -42 2>/dev/null; kill -KILL -7 2>/dev/null; true", killCommand(false, 42, 7))
	assert.Equal(t, "true", killCommand(false, 1, 0, -3), "never every process, never our own group")
	assert.Equal(t, `sudo -n -- sh -c 'kill -KILL -42 2>/dev/null; kill -KILL -42 2>/dev/null; true'`, killCommand(true, 42),
		"the shell's builtin kill under sudo, not /usr/bin/kill")
}

// A host where the runner cannot start (here: no sudo for ?sudo=true)
// runs commands in sessions of their own, which report it as before.
func TestSSHRunnerCannotStart(t *testing.T) {
	if _, err := exec.LookPath("sudo"); err == nil {
		t.Skip("sudo is installed here: the runner would start")
	}
	s := sshtest.Start(t)
	cfg := s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})
	_, hh := openSSH(t, cfg, "ssh://box?sudo=true")
	h := hh.(*SSH)
	for range 2 {
		res, err := h.Run(context.Background(), Command{Args: []string{"true"}})
		require.NoError(t, err)
		assert.Equal(t, 127, res.ExitCode)
		assert.Contains(t, res.Stderr, "sudo")
	}
	h.rmu.Lock()
	defer h.rmu.Unlock()
	assert.True(t, h.noRunner)
	assert.Equal(t, 0, h.nrunners)
	assert.Equal(t, 0, len(h.sessions))
}

// A command cancelled before its pid report has come back is still
// killed: with setsid it is in a group of its own, which killing the
// runner's group does not reach.
func TestSSHRunnerCancelAtOnce(t *testing.T) {
	_, _, h := openRunnerHost(t)
	for i := range 60 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Duration(i)*250*time.Microsecond, cancel)
		_, err := h.Run(ctx, Command{Args: []string{"sleep", "3121"}})
		cancel()
		require.Error(t, err)
	}
	assert.Eventually(t, func() bool {
		out, _ := exec.Command("pgrep", "-f", "^sleep 3121").Output()
		return strings.TrimSpace(string(out)) == ""
	}, 5*time.Second, 50*time.Millisecond, "no sleep left on the host")
}

// A command cancelled while every session slot is busy is still killed:
// kills have a session slot of their own (sshd allows MaxSessions, 10).
func TestSSHKillWhileSessionsFull(t *testing.T) {
	_, _, h := openRunnerHost(t)
	n := cap(h.sessions)
	require.Equal(t, maxSessions-killSessions, n)
	running := func(marker string) bool {
		out, _ := exec.Command("pgrep", "-f", "^sleep "+marker).Output()
		return strings.TrimSpace(string(out)) != ""
	}
	type cmd struct {
		marker string
		cancel context.CancelFunc
		done   chan error
	}
	cmds := make([]cmd, n)
	for i := range cmds {
		ctx, cancel := context.WithCancel(context.Background())
		c := cmd{marker: strconv.Itoa(3401 + i), cancel: cancel, done: make(chan error, 1)}
		cmds[i] = c
		// Half with stdin (sessions of their own), half through runners;
		// a grandchild in each, which only the group kill ends.
		var stdin []byte
		if i%2 == 1 {
			stdin = []byte("x")
		}
		go func() {
			_, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "sleep " + c.marker + " & sleep " + c.marker}, Stdin: stdin})
			c.done <- err
			close(c.done)
		}()
	}
	defer func() {
		// Every command is killed before the host goes, also when the
		// test fails (a later run would find their sleeps).
		for _, c := range cmds {
			c.cancel()
		}
		for _, c := range cmds {
			select {
			case <-c.done:
			case <-time.After(15 * time.Second):
			}
		}
	}()
	for _, c := range cmds {
		require.Eventually(t, func() bool { return running(c.marker) }, 10*time.Second, 20*time.Millisecond, "sleep %s started", c.marker)
	}
	require.Equal(t, n, len(h.sessions), "every command slot is taken")
	for i, c := range cmds {
		start := time.Now()
		c.cancel()
		select {
		case err := <-c.done:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(6 * time.Second):
			t.Fatalf("command %d did not return after its cancel", i)
		}
		assert.Less(t, time.Since(start), 5*time.Second)
		assert.Eventually(t, func() bool { return !running(c.marker) }, 3*time.Second, 20*time.Millisecond, "sleep %s left on the host", c.marker)
	}
	assert.Equal(t, 0, len(h.kills), "no kill slot leaked")
}

// A cancelled command whose pid report never came back is still killed,
// found by the id in its environment (and its children's).
func TestSSHKillWithoutPidReport(t *testing.T) {
	_, _, h := openRunnerHost(t)
	losePidReports, pidWait = true, time.Second
	t.Cleanup(func() { losePidReports, pidWait = false, 10*time.Second })
	for _, tc := range []struct {
		name   string
		marker string
		stdin  []byte
	}{
		{name: "runner", marker: "3511"},
		{name: "session", marker: "3512", stdin: []byte("x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(time.Second, cancel)
			defer cancel()
			// Two levels of children, one in a session of its own.
			_, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "setsid sleep " + tc.marker + " & sleep " + tc.marker + " & sleep " + tc.marker}, Stdin: tc.stdin})
			require.ErrorIs(t, err, context.Canceled)
			assert.Eventually(t, func() bool {
				out, _ := exec.Command("pgrep", "-f", "^sleep "+tc.marker+"$").Output()
				return strings.TrimSpace(string(out)) == ""
			}, 5*time.Second, 50*time.Millisecond, "no sleep left on the host")
		})
	}
}

// killByIDCommand kills the processes with the id in their environment,
// and no other.
func TestKillByIDCommand(t *testing.T) {
	start := func(id string) *exec.Cmd {
		c := exec.Command("sh", "-c", "sleep 3521 & exec sleep 3521")
		c.Env = append(os.Environ(), commandIDVar+"="+id)
		require.NoError(t, c.Start())
		return c
	}
	mine, other := start("00112233aabbccdd"), start("ffeeddcc00112233")
	t.Cleanup(func() {
		_ = exec.Command("sh", "-c", killByIDCommand(false, "ffeeddcc00112233")).Run()
		_ = other.Wait()
	})
	time.Sleep(200 * time.Millisecond)
	out, err := exec.Command("sh", "-c", killByIDCommand(false, "00112233aabbccdd")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	err = mine.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "killed", ee.ProcessState.String()[len("signal: "):])
	assert.NoError(t, other.Process.Signal(syscall.Signal(0)), "the other id's command lives on")
	out, _ = exec.Command("pgrep", "-c", "-f", "^sleep 3521$").Output()
	assert.Equal(t, "2", strings.TrimSpace(string(out)), "the other command and its child are left, the first command's child is gone")
}

// The pid report is found after whatever the login shell's rc file or
// sudo wrote first, which is passed on, in any chunking.
func TestPidWriter(t *testing.T) {
	const id = "0011223344556677"
	stream := "sudo: unable to resolve host box\n4711\n" + id + " 4712\nthe command's own\nstderr"
	for _, size := range []int{1, 3, 7, len(stream)} {
		var out bytes.Buffer
		p := newPidWriter(&out, id)
		for b := []byte(stream); len(b) > 0; {
			k := min(size, len(b))
			n, err := p.Write(b[:k])
			require.NoError(t, err)
			require.Equal(t, k, n)
			b = b[k:]
		}
		p.flush()
		select {
		case <-p.got:
		default:
			t.Fatalf("chunks of %d: no pid report taken", size)
		}
		assert.Equal(t, 4712, p.pid, "a bare number is no report")
		assert.Equal(t, "sudo: unable to resolve host box\n4711\nthe command's own\nstderr", out.String(), "chunks of %d", size)
	}
	// A session that ended without a report keeps every byte.
	var out bytes.Buffer
	p := newPidWriter(&out, id)
	_, _ = p.Write([]byte("sh: not found\nno newline"))
	p.flush()
	assert.Equal(t, "sh: not found\nno newline", out.String())
}

// A login shell that writes to stderr before running the command (bash
// reads $BASH_ENV; a ~/.bashrc does the same under sshd) does not hide
// the pid report: the cancelled command is still killed, and the rc
// file's line reaches the command's stderr.
func TestSSHKillAfterRcOutput(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "rc")
	require.NoError(t, os.WriteFile(rc, []byte("echo 'rc: noise on stderr' >&2\n"), 0o644))
	s := sshtest.StartWith(t, "SetEnv BASH_ENV="+rc)
	cfg := s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"box": ""})
	_, h := openSSH(t, cfg, "ssh://box")
	res, err := h.Run(context.Background(), Command{Args: []string{"sh", "-c", "echo out; echo err >&2"}, Stdin: []byte("x")})
	require.NoError(t, err)
	if !strings.Contains(res.Stderr, "rc: noise") {
		t.Skip("the login shell does not read BASH_ENV here (not bash)")
	}
	// (~/.bashrc's own bash children read BASH_ENV too: several lines.)
	assert.True(t, strings.HasPrefix(res.Stderr, "rc: noise on stderr\n") && strings.HasSuffix(res.Stderr, "\nerr\n"), "%q", res.Stderr)
	assert.NotRegexp(t, `(?m)^[0-9a-f]{16} [0-9]+$`, res.Stderr, "the pid report is not passed on")
	// Through a runner, what the rc file wrote before the runner started
	// is no command's output.
	for range 2 {
		res, err = h.Run(context.Background(), Command{Args: []string{"sh", "-c", "echo out; echo err >&2"}})
		require.NoError(t, err)
		assert.Equal(t, Result{Stdout: "out\n", Stderr: "err\n"}, res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	defer cancel()
	start := time.Now()
	_, err = h.Run(ctx, Command{Args: []string{"sh", "-c", "sleep 3531 & sleep 3531"}, Stdin: []byte("x")})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 4*time.Second, "killed through the pid report, not after pidWait")
	assert.Eventually(t, func() bool {
		out, _ := exec.Command("pgrep", "-f", "^sleep 3531$").Output()
		return strings.TrimSpace(string(out)) == ""
	}, 5*time.Second, 50*time.Millisecond, "no sleep left on the host")
}

// forEachRunnerShell runs test with the runner in bash (job control gives
// each command its process group) and in the host's sh (dash here, with
// setsid), as on a host without bash.
func forEachRunnerShell(t *testing.T, test func(*testing.T)) {
	t.Run("bash", test)
	t.Run("sh", func(t *testing.T) {
		runnerLaunch = `exec sh -c "$0"`
		t.Cleanup(func() { runnerLaunch = runnerLauncher })
		test(t)
	})
}
