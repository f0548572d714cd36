package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// A command runner is one long-lived session whose process is the host's
// own /bin/sh running runnerScript: a command without stdin is one line
// on the runner's stdin instead of a session of its own. A session costs
// sshd a fork and the login shell a start, on top of the command; through
// a runner the command costs one fork (and its exec). Nothing is
// installed on the host.
//
// The protocol: the first line on the runner's stdin is a random marker,
// known to this side and the runner's memory only (not on any command
// line, so a command cannot find and print it). Every later line is one
// request, shell code the runner evals: a subshell that exports the
// command's env and execs it in the background, then `r`, which reports
// the command's pid on stderr, waits for it (the shell's "Killed" notice
// of a signal death discarded) and reports its exit status on both
// streams. Each report is reportStart (RS) + marker + " " + a letter
// and a number + "\n", one write; it is stripped whole, so the command's
// own bytes come through exactly, trailing newline or not, also when the
// command writes while the runner reports. The runner's own stderr is
// /dev/null (bash's job notices); commands and reports use fd 4.
//
//	r<pgid>     once on each stream, first: the runner's process group
//	p<pid>      stderr: the command's pid (with setsid, its group too)
//	l<pgid>     stdout, before e: processes of the command's group
//	            outlived it
//	e<status>   stdout and stderr: the command ended, wait's status
//
// Where the host has setsid (util-linux, BusyBox), each command runs in a
// process group of its own, so the runner can tell when it left processes
// behind (`cmd &` without redirection keeps the runner's stdout). Such a
// runner is retired after the command instead of serving the next one,
// whose output those processes could otherwise write into; they go on
// running, as after a session whose command backgrounded them.
// A runner runs one command at a time; a host keeps up to maxRunners of
// them, made on first need and counted against the session semaphore.
// A cancelled command is killed with its own process group (setsid's or
// timeout's) and its runner's from a second session, and the runner is
// replaced; so is a runner that died or whose stream broke.
const runnerScript = `IFS= read -r m || exit 125
n='
'
S= J=
set -m 2>/dev/null
case $- in
*m*) J=1 ;;
*) command -v setsid >/dev/null 2>&1 && S=setsid ;;
esac
exec 4>&2 2>/dev/null
g=$(ps -o pgid= -p $$ 2>/dev/null)
printf '\036%s r%s\n' "$m" ${g:-$$}
printf '\036%s r%s\n' "$m" ${g:-$$} >&4
r() {
	p=$!
	printf '\036%s p%s\n' "$m" "$p" >&4
	wait "$p"
	s=$?
	[ -n "$S$J" ] && kill -0 -"$p" 2>/dev/null && printf '\036%s l%s\n' "$m" "$p"
	printf '\036%s e%s\n' "$m" "$s" >&4
	printf '\036%s e%s\n' "$m" "$s"
}
while IFS= read -r l; do eval "$l"; done`

// runnerLauncher runs runnerScript ($0) in bash where the host has it,
// else in the host's sh. bash keeps job control without a terminal (set
// -m), so each command gets a process group of its own from the shell,
// without exec'ing setsid (measured: 1.0 ms a command against 1.5 ms
// for dash and setsid).
const runnerLauncher = `command -v bash >/dev/null 2>&1 && exec bash --noprofile --norc -c "$0"; exec sh -c "$0"`

// reportStart begins every report: ASCII RS (\036), not a newline, so a
// report holds one newline, at its end, and bash's line-buffered printf
// writes it in one write(2) (it wrote "\n" first and the rest after, and
// a command writing to the same pipe meanwhile got between them). A pipe
// keeps a write of up to PIPE_BUF bytes whole.
const reportStart = "\x1e"

// runnerLaunch is runnerLauncher; tests set it to run the script in sh
// (dash, with setsid) where bash is installed too.
var runnerLaunch = runnerLauncher

// maxRunners bounds the runners per host; commands beyond them (and
// commands with stdin) get a session of their own, as before.
const maxRunners = 4

// errNoRunner: the runner's shell ended before it said hello (no POSIX
// sh, sudo asking for a password): the host's commands get sessions of
// their own, which report what went wrong as before.
var errNoRunner = errors.New("no command runner on this host")

type runner struct {
	s      *ssh.Session
	stdin  io.WriteCloser
	out    *frameReader
	errs   *frameReader
	pgid   int
	dead   chan struct{} // closed when the session ended
	waited error         // the session's end, once dead is closed
}

// startRunner opens a session, starts the runner in it and reads its
// process group. The session holds a slot of h.sessions until discard.
func (h *SSH) startRunner(ctx context.Context) (*runner, error) {
	s, err := h.session(ctx)
	if err != nil {
		return nil, err
	}
	r := &runner{s: s, dead: make(chan struct{})}
	fail := func(err error) (*runner, error) {
		_ = s.Close()
		<-h.sessions
		return nil, err
	}
	marker := randomHex(16)
	if r.stdin, err = s.StdinPipe(); err != nil {
		return fail(err)
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	stderr, err := s.StderrPipe()
	if err != nil {
		return fail(err)
	}
	r.out, r.errs = newFrameReader(stdout, marker), newFrameReader(stderr, marker)
	if err := s.Start("exec " + joinCommand([]string{"sh", "-c", runnerLaunch, runnerScript}, h.ref.Sudo)); err != nil {
		return fail(err)
	}
	go func() {
		r.waited = s.Wait()
		close(r.dead)
	}()
	if _, err := io.WriteString(r.stdin, marker+"\n"); err != nil {
		return fail(err)
	}
	type hello struct {
		pgid int
		err  error
	}
	got := make(chan hello, 1)
	go func() {
		// The hello on each stream: what the login shell's rc files wrote
		// before the runner started is not a command's output.
		kind, n, err := r.out.next(io.Discard)
		if err == nil && (kind != 'r' || n < 2) {
			err = fmt.Errorf("unexpected report %c%d", kind, n)
		}
		if err == nil {
			var k byte
			if k, _, err = r.errs.next(io.Discard); err == nil && k != 'r' {
				err = fmt.Errorf("unexpected report %c on stderr", k)
			}
		}
		got <- hello{n, err}
	}()
	select {
	case hl := <-got:
		if hl.err != nil {
			select {
			case <-r.dead:
				var ee *ssh.ExitError
				if errors.As(r.waited, &ee) {
					hl.err = fmt.Errorf("%w: %v", errNoRunner, ee)
				}
			case <-time.After(time.Second):
			}
			return fail(fmt.Errorf("%s: start the command runner: %w", h, hl.err))
		}
		r.pgid = hl.pgid
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	return r, nil
}

func (r *runner) alive() bool {
	select {
	case <-r.dead:
		return false
	default:
		return true
	}
}

// takeRunner returns an idle runner, or a new one while there are fewer
// than maxRunners; nil means: use a session of its own.
func (h *SSH) takeRunner(ctx context.Context) *runner {
	h.rmu.Lock()
	for len(h.idle) > 0 {
		r := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if r.alive() {
			h.rmu.Unlock()
			return r
		}
		h.nrunners--
		h.release(r)
	}
	if h.noRunner || h.nrunners >= maxRunners {
		h.rmu.Unlock()
		return nil
	}
	h.nrunners++
	h.rmu.Unlock()
	r, err := h.startRunner(ctx)
	if err != nil {
		h.rmu.Lock()
		h.nrunners--
		if errors.Is(err, errNoRunner) {
			h.noRunner = true
		}
		h.rmu.Unlock()
		return nil
	}
	return r
}

// putRunner gives r back after a command, or discards it.
func (h *SSH) putRunner(r *runner, keep bool) {
	h.rmu.Lock()
	defer h.rmu.Unlock()
	if keep && r.alive() {
		h.idle = append(h.idle, r)
		return
	}
	h.nrunners--
	h.release(r)
}

// release closes r's session and frees its session slot.
func (h *SSH) release(r *runner) {
	_ = r.s.Close()
	<-h.sessions
}

// request is the line that runs args through a runner: the env exported
// and the command exec'd in a background subshell (exec: always the
// program, never a shell builtin of the same name), through setsid where
// the host has it ($S). Newlines inside words become "$n", so a request
// stays one line.
func request(args, env []string, id string) string {
	var b strings.Builder
	b.WriteString("( export " + commandIDVar + "=" + id + "; ")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		b.WriteString("export " + k + "=" + oneLine(shellQuote(v)) + "; ")
	}
	b.WriteString("exec $S ")
	for i, w := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(oneLine(shellQuote(w)))
	}
	b.WriteString(" ) </dev/null 2>&4 4>&- & r\n")
	return b.String()
}

// oneLine replaces the newlines of a single-quoted word with the
// runner's $n.
func oneLine(quoted string) string {
	return strings.ReplaceAll(quoted, "\n", `'"$n"'`)
}

// runOn runs args through r. retry reports that the runner took nothing,
// so the command may go elsewhere.
func (h *SSH) runOn(ctx context.Context, r *runner, c Command, args []string) (res Result, retry bool, err error) {
	id := newCommandID()
	if _, err := io.WriteString(r.stdin, request(args, c.Env, id)); err != nil {
		h.putRunner(r, false)
		return Result{}, true, nil
	}
	var out, errb bytes.Buffer
	type end struct {
		status int
		err    error
	}
	outc, errc := make(chan end, 1), make(chan end, 1)
	pid := make(chan int, 1)
	left := false // read after outc: set before it is sent on
	go func() {
		_, n, err := r.out.nextEnd(&out, nil, &left)
		outc <- end{n, err}
	}()
	go func() {
		_, n, err := r.errs.nextEnd(&errb, pid, nil)
		errc <- end{n, err}
	}()
	var o, e end
	select {
	case o = <-outc:
		e = <-errc
	case <-ctx.Done():
		// The pid report may still be on its way, as in a session of
		// its own: a command in a group of its own (setsid) outlives a
		// kill of the runner's group alone. It precedes the end report.
		// It can take seconds under load: wait for it while the runner
		// lives (pidWait at most).
		cmdPid, got := 0, 0
		select {
		case cmdPid = <-pid:
		case <-errc:
			got++
			select {
			case cmdPid = <-pid:
			default:
			}
		case <-r.dead:
			select {
			case cmdPid = <-pid:
			default:
			}
		case <-time.After(pidWait):
		}
		if losePidReports {
			cmdPid = 0
		}
		h.killRunner(r, cmdPid, id)
		var res Result
		t := time.After(3 * time.Second)
		for got < 2 {
			select {
			case <-outc:
				got++
			case <-errc:
				got++
			case <-t:
				got = 3
			}
			if got == 2 {
				res = Result{Stdout: out.String(), Stderr: errb.String()}
			}
		}
		h.putRunner(r, false)
		return res, false, ctx.Err()
	}
	res = Result{Stdout: out.String(), Stderr: errb.String(), ExitCode: o.status}
	if o.err == nil && e.err == nil {
		// A runner whose command left processes behind may have them
		// write into its streams later: it serves no other command.
		h.putRunner(r, !left)
		return res, false, nil
	}
	// The runner's stream ended mid-command: the runner died (the
	// command killed it, say) or the connection went.
	_ = r.s.Close()
	select {
	case <-r.dead:
	case <-time.After(3 * time.Second):
	}
	h.putRunner(r, false)
	res.ExitCode = 0
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(r.waited, &ee) && ee.Signal() != "":
		return res, false, fmt.Errorf("%s: %q: its command runner on the host was killed by SIG%s", h, c.Args[0], ee.Signal())
	case errors.As(r.waited, &ee):
		return res, false, fmt.Errorf("%s: %q: its command runner on the host exited (status %d) before the command ended", h, c.Args[0], ee.ExitStatus())
	case r.waited == nil:
		return res, false, fmt.Errorf("%s: %q: its command runner on the host ended before the command did", h, c.Args[0])
	case errors.As(r.waited, &missing), errors.Is(r.waited, io.EOF):
		return res, false, fmt.Errorf("%s: %q: %w (no exit status: sshd or the host went away)", h, c.Args[0], ErrConnLost)
	}
	return res, false, fmt.Errorf("%s: %q: %w: %v", h, c.Args[0], ErrConnLost, r.waited)
}

// killRunner kills r's process group, and the command's own group when
// it has one (timeout makes one), from a second session; without the
// command's pid, its processes are found by id.
func (h *SSH) killRunner(r *runner, cmdPid int, id string) {
	groups := []int{r.pgid}
	if cmdPid > 1 {
		// Its own group first; the second round of kills catches a
		// group timeout made between the two.
		groups = []int{cmdPid, r.pgid}
	}
	line := killCommand(h.ref.Sudo, groups...)
	if cmdPid <= 1 {
		line += "; " + killByIDCommand(h.ref.Sudo, id)
	}
	h.runKill(line)
	_ = r.s.Close()
}

// frameReader reads one stream of a runner: a command's bytes up to the
// runner's next report.
type frameReader struct {
	r   io.Reader
	sep []byte // "\n" + marker + " "
	buf []byte // read and not yet handed on
	tmp []byte
}

func newFrameReader(r io.Reader, marker string) *frameReader {
	return &frameReader{r: r, sep: []byte(reportStart + marker + " "), tmp: make([]byte, 32<<10)}
}

// next copies the stream to w up to the next report and returns it.
func (f *frameReader) next(w io.Writer) (kind byte, n int, err error) {
	for {
		if i := bytes.Index(f.buf, f.sep); i >= 0 {
			if _, err := w.Write(f.buf[:i]); err != nil {
				return 0, 0, err
			}
			f.buf = f.buf[:copy(f.buf, f.buf[i:])]
			if j := bytes.IndexByte(f.buf[len(f.sep):], '\n'); j >= 0 {
				msg := string(f.buf[len(f.sep) : len(f.sep)+j])
				f.buf = f.buf[:copy(f.buf, f.buf[len(f.sep)+j+1:])]
				if len(msg) < 2 {
					return 0, 0, fmt.Errorf("bad report %q", msg)
				}
				n, err := strconv.Atoi(strings.TrimSpace(msg[1:]))
				if err != nil {
					return 0, 0, fmt.Errorf("bad report %q", msg)
				}
				return msg[0], n, nil
			}
			if len(f.buf) > len(f.sep)+64 {
				return 0, 0, errors.New("report too long")
			}
		} else {
			// A report may start only at an RS among the last
			// len(sep)-1 bytes: hand on everything before it.
			cut := len(f.buf)
			from := max(0, len(f.buf)-len(f.sep)+1)
			if j := bytes.IndexByte(f.buf[from:], f.sep[0]); j >= 0 {
				cut = from + j
			}
			if _, err := w.Write(f.buf[:cut]); err != nil {
				return 0, 0, err
			}
			f.buf = f.buf[:copy(f.buf, f.buf[cut:])]
		}
		m, err := f.r.Read(f.tmp)
		f.buf = append(f.buf, f.tmp[:m]...)
		if err != nil && m == 0 {
			// The stream ended without a report: what is held back is
			// the command's too.
			if _, werr := w.Write(f.buf); werr != nil {
				return 0, 0, werr
			}
			f.buf = f.buf[:0]
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, err
		}
	}
}

// nextEnd reads up to the command's end report, sending a pid report to
// pid and noting in left a report that the command left processes behind.
func (f *frameReader) nextEnd(w io.Writer, pid chan<- int, left *bool) (kind byte, n int, err error) {
	for {
		kind, n, err = f.next(w)
		if err != nil {
			return 0, 0, err
		}
		switch kind {
		case 'e':
			return kind, n, nil
		case 'p':
			if pid != nil {
				pid <- n
			}
		case 'l':
			if left != nil {
				*left = true
			}
		default:
			return 0, 0, fmt.Errorf("unexpected report %c%d", kind, n)
		}
	}
}
