package host

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

func init() { Register("ssh", sshTransport{}) }

// Errors of the ssh transport, for errors.Is.
var (
	// ErrHostKey: the host's key is unknown or does not match known_hosts.
	ErrHostKey = errors.New("host key verification failed")
	// ErrAuth: the host refused every key offered.
	ErrAuth = errors.New("authentication refused")
	// ErrConnLost: the connection dropped while a command ran.
	ErrConnLost = errors.New("connection lost")
)

// maxSessions is OpenSSH's default MaxSessions: more concurrent commands
// on one connection wait for a free session instead of being refused. One
// of them is kept for kills (killSessions), so a cancelled command is
// still killed while every other session is busy.
const (
	maxSessions  = 10
	killSessions = 1
)

type sshTransport struct{}

func (sshTransport) Check(Ref) error { return nil }

func (sshTransport) Open(ctx context.Context, r Ref, p *Pool) (Host, error) {
	cfg, err := p.sshConfig()
	if err != nil {
		return nil, err
	}
	s, err := resolveSSH(cfg, r)
	if err != nil {
		return nil, err
	}
	h := newSSH(r, s, nil)
	if len(s.proxyJump) > 0 {
		if h.via, err = p.openJumps(ctx, s.proxyJump); err != nil {
			return nil, fmt.Errorf("%s: ProxyJump: %w", r, err)
		}
	}
	if _, err := h.Client(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// openJumps opens a ProxyJump chain the way ssh -J does: the first hop
// with its own config (its own ProxyJump included), each later hop through
// the one before it.
func (p *Pool) openJumps(ctx context.Context, hops []string) (*SSH, error) {
	cfg, err := p.sshConfig()
	if err != nil {
		return nil, err
	}
	var prev *SSH
	for i, hop := range hops {
		r, err := parseSSH("ssh://" + strings.TrimPrefix(hop, "ssh://"))
		if err != nil {
			return nil, fmt.Errorf("hop %q: %w", hop, err)
		}
		if i == 0 {
			h, err := p.OpenRef(ctx, r)
			if err != nil {
				return nil, err
			}
			prev = h.(*SSH)
			continue
		}
		via := prev
		h, err := p.open(ctx, r.String()+" via "+via.String(), func() (Host, error) {
			s, err := resolveSSH(cfg, r)
			if err != nil {
				return nil, err
			}
			s.proxyJump = nil
			j := newSSH(r, s, via)
			if _, err := j.Client(ctx); err != nil {
				return nil, err
			}
			return j, nil
		})
		if err != nil {
			return nil, err
		}
		prev = h.(*SSH)
	}
	return prev, nil
}

// SSH is a host reached over SSH: one connection, opened on first use and
// shared by every command, file and tunnel (each its own channel), opened
// again once when it dropped. Steps that need more than the Host interface
// (port forwards) use Client, Dial and Listen.
type SSH struct {
	ref      Ref
	set      sshSettings
	via      *SSH          // the ProxyJump hop this host is reached through
	sessions chan struct{} // counts open session channels for commands
	kills    chan struct{} // the session slots kept for kills

	rmu      sync.Mutex
	idle     []*runner // command runners waiting for a command
	nrunners int       // runners open, idle or busy
	noRunner bool      // the runner cannot start here: sessions only

	mu     sync.Mutex
	client *ssh.Client
	closed bool
	// hostKey is the type and SHA256 fingerprint of the key the host
	// proved, for the report; set under mu while connecting.
	hostKey string
}

func (h *SSH) String() string { return h.ref.String() }

// Addr is the host:port the connection goes to, after ssh_config.
func (h *SSH) Addr() string { return net.JoinHostPort(h.set.hostName, strconv.Itoa(h.set.port)) }

// Client returns the live connection, connecting when there is none (or
// the last one dropped).
func (h *SSH) Client(ctx context.Context) (*ssh.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("%s: %w", h, net.ErrClosed)
	}
	if h.client != nil {
		return h.client, nil
	}
	c, err := h.connect(ctx)
	if err != nil {
		return nil, err
	}
	h.client = c
	go h.watch(c)
	return c, nil
}

// watch forgets c once it ends, so the next use reconnects, and sends
// keepalives when ServerAliveInterval asks for them.
func (h *SSH) watch(c *ssh.Client) {
	done := make(chan struct{})
	if iv := h.set.aliveInterval; iv > 0 {
		go func() {
			t := time.NewTicker(iv)
			defer t.Stop()
			missed := 0
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				reply := make(chan error, 1)
				go func() {
					_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
					reply <- err
				}()
				select {
				case err := <-reply:
					if err == nil {
						missed = 0
						continue
					}
				case <-time.After(iv):
				}
				if missed++; missed >= h.set.aliveCountMax {
					_ = c.Close()
					return
				}
			}
		}()
	}
	_ = c.Wait()
	close(done)
	h.drop(c)
}

func (h *SSH) drop(c *ssh.Client) {
	h.mu.Lock()
	if h.client == c {
		h.client = nil
	}
	h.mu.Unlock()
	_ = c.Close()
}

// Close closes the connection; the host cannot be used afterwards.
func (h *SSH) Close() error {
	h.mu.Lock()
	c := h.client
	h.client, h.closed = nil, true
	h.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

func (h *SSH) connect(ctx context.Context) (*ssh.Client, error) {
	s := h.set
	addr := h.Addr()
	cc, err := h.clientConfig()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, s.connectTimeout)
	defer cancel()
	var conn net.Conn
	if h.via != nil {
		conn, err = h.via.Dial(dctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: connect to %s through %s: %w", h, addr, h.via, err)
		}
	} else {
		var d net.Dialer
		conn, err = d.DialContext(dctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: connect to %s: %w", h, addr, err)
		}
	}
	// The handshake is bounded by ConnectTimeout and ctx too; a channel
	// through a jump host has no deadlines, so closing is the bound.
	stop := context.AfterFunc(dctx, func() { _ = conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	if !stop() && err == nil {
		err = dctx.Err()
	}
	if err != nil {
		_ = conn.Close()
		return nil, h.explain(addr, err, dctx)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// explain turns handshake errors into what a user acts on.
func (h *SSH) explain(addr string, err error, ctx context.Context) error {
	var ke *hostKeyError
	switch {
	case errors.As(err, &ke):
		return ke
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("%s: %w for user %q at %s (keys tried: %s): %v", h, ErrAuth, h.set.user, addr, h.keyNames(), err)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: connect to %s: no SSH handshake within ConnectTimeout %s: %w", h, addr, h.set.connectTimeout, ctx.Err())
	}
	return fmt.Errorf("%s: ssh handshake with %s: %w", h, addr, err)
}

func (h *SSH) keyNames() string {
	var n []string
	if os.Getenv("SSH_AUTH_SOCK") != "" {
		n = append(n, "ssh-agent")
	}
	for _, f := range h.set.identityFiles {
		if _, err := os.Stat(f); err == nil {
			n = append(n, f)
		}
	}
	if len(n) == 0 {
		return "none found: set IdentityFile or load a key into ssh-agent"
	}
	return strings.Join(n, ", ")
}

func (h *SSH) clientConfig() (*ssh.ClientConfig, error) {
	cb, algos, err := h.hostKeyCheck()
	if err != nil {
		return nil, err
	}
	return &ssh.ClientConfig{
		User:              h.set.user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeysCallback(h.signers)},
		HostKeyCallback:   cb,
		HostKeyAlgorithms: algos,
		Timeout:           h.set.connectTimeout,
	}, nil
}

// signers are the keys offered, as ssh(1) offers them: the agent's first,
// then the IdentityFile keys; with IdentitiesOnly, agent keys only when
// they are one of the IdentityFile keys.
func (h *SSH) signers() ([]ssh.Signer, error) {
	var files []ssh.Signer
	wanted := map[string]bool{}
	for _, f := range h.set.identityFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if sg, err := ssh.ParsePrivateKey(b); err == nil {
			files = append(files, sg)
			wanted[string(sg.PublicKey().Marshal())] = true
			continue
		}
		// An encrypted key may still be in the agent: its .pub says which.
		if pb, err := os.ReadFile(f + ".pub"); err == nil {
			if pk, _, _, _, err := ssh.ParseAuthorizedKey(pb); err == nil {
				wanted[string(pk.Marshal())] = true
			}
		}
	}
	var out []ssh.Signer
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			ag, err := agent.NewClient(conn).Signers()
			_ = conn.Close()
			if err == nil {
				for _, sg := range ag {
					if !h.set.identitiesOnly || wanted[string(sg.PublicKey().Marshal())] {
						out = append(out, agentSigner{sg, sock})
					}
				}
			}
		}
	}
	return append(out, files...), nil
}

// agentSigner signs through a fresh agent connection: the one that listed
// the keys is closed once the list is read.
type agentSigner struct {
	ssh.Signer
	sock string
}

func (a agentSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	conn, err := net.Dial("unix", a.sock)
	if err != nil {
		return nil, fmt.Errorf("ssh-agent: %w", err)
	}
	defer conn.Close()
	return agent.NewClient(conn).Sign(a.PublicKey(), data)
}

// hostKeyError names the host and says "host key", as users grep for.
type hostKeyError struct {
	host, addr, msg string
}

func (e *hostKeyError) Error() string {
	return fmt.Sprintf("%s (%s): %s: %s", e.host, e.addr, ErrHostKey, e.msg)
}

func (e *hostKeyError) Unwrap() error { return ErrHostKey }

// hostKeyCheck verifies the server's key against the known_hosts files;
// the algorithms offered are those known_hosts has keys of, so a host
// known by its ed25519 key is not asked for its RSA key.
func (h *SSH) hostKeyCheck() (ssh.HostKeyCallback, []string, error) {
	var files []string
	for _, f := range h.set.knownHosts {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
	known, err := knownhosts.New(files...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: known_hosts: %w", h, err)
	}
	hostport := h.Addr()
	algos := knownAlgorithms(known, hostport)
	acceptNew := h.set.strict == "accept-new" || h.set.strict == "no" || h.set.strict == "off"
	cb := func(_ string, remote net.Addr, key ssh.PublicKey) error {
		err := known(hostport, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			h.hostKey = key.Type() + " " + ssh.FingerprintSHA256(key)
			return nil
		case errors.As(err, &re):
			return &hostKeyError{h.String(), hostport, fmt.Sprintf("the %s key is revoked (%s)", key.Type(), re.Revoked.String())}
		case errors.As(err, &ke) && len(ke.Want) > 0:
			var where []string
			for _, w := range ke.Want {
				where = append(where, fmt.Sprintf("%s:%d", w.Filename, w.Line))
			}
			return &hostKeyError{h.String(), hostport, fmt.Sprintf("the %s key offered (%s) does not match the one known_hosts pins (%s): refusing; if the host was reinstalled, replace that line",
				key.Type(), ssh.FingerprintSHA256(key), strings.Join(where, ", "))}
		case errors.As(err, &ke):
			if acceptNew && len(h.set.knownHosts) > 0 {
				h.hostKey = key.Type() + " " + ssh.FingerprintSHA256(key) + " (accepted new)"
				return appendKnownHost(h.set.knownHosts[0], hostport, key)
			}
			return &hostKeyError{h.String(), hostport, fmt.Sprintf("no %s key for it in known_hosts (%s); add the host's key (ssh-keyscan, checked out of band) or set StrictHostKeyChecking accept-new for it",
				key.Type(), strings.Join(h.set.knownHosts, ", "))}
		}
		return &hostKeyError{h.String(), hostport, err.Error()}
	}
	return cb, algos, nil
}

func appendKnownHost(path, hostport string, key ssh.PublicKey) error {
	if err := os.MkdirAll(dirOf(path), 0o700); err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	_, err = fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}

// knownAlgorithms asks known_hosts which key types it holds for hostport,
// by presenting a throwaway key: the mismatch lists the known ones.
func knownAlgorithms(known ssh.HostKeyCallback, hostport string) []string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(known(hostport, &net.TCPAddr{}, probe), &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algos = append(algos, x)
			}
		}
	}
	for _, w := range ke.Want {
		switch t := w.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

// session opens a session channel, reconnecting once when the connection
// turns out to be gone.
func (h *SSH) session(ctx context.Context) (*ssh.Session, error) {
	return h.sessionIn(ctx, h.sessions)
}

// killSession is a session in a slot kept for kills; release it with
// <-h.kills.
func (h *SSH) killSession(ctx context.Context) (*ssh.Session, error) {
	return h.sessionIn(ctx, h.kills)
}

func (h *SSH) sessionIn(ctx context.Context, slots chan struct{}) (*ssh.Session, error) {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c, err := h.Client(ctx)
	if err != nil {
		<-slots
		return nil, err
	}
	s, err := c.NewSession()
	retryUntil := time.Now().Add(5 * time.Second)
	for reconnected := false; err != nil; {
		var oc *ssh.OpenChannelError
		switch {
		case errors.As(err, &oc) && time.Now().Before(retryUntil):
			// sshd still counts a session this side has just closed: its
			// MaxSessions is reached for a moment ("open failed").
			select {
			case <-ctx.Done():
				<-slots
				return nil, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		case !reconnected && isConnGone(err):
			h.drop(c)
			reconnected = true
			if c, err = h.Client(ctx); err != nil {
				<-slots
				return nil, err
			}
		default:
			<-slots
			return nil, fmt.Errorf("%s: open a session: %w", h, err)
		}
		s, err = c.NewSession()
	}
	if err != nil {
		<-slots
		return nil, fmt.Errorf("%s: open a session: %w", h, err)
	}
	return s, nil
}

// Run runs c on the host. A command without stdin goes to one of the
// host's command runners (sshrunner.go); one with stdin, or one arriving
// while every runner is busy, gets a session of its own. Either way the
// command has a process group that is killed on ctx's end, from a second
// session, and a deadline is also enforced on the host by coreutils
// timeout, so a dropped connection cannot leave it running past it. Env
// travels on stdin, never on a command line.
func (h *SSH) Run(ctx context.Context, c Command) (Result, error) {
	if len(c.Args) == 0 {
		return Result{}, errors.New("empty command")
	}
	if err := checkCommand(c); err != nil {
		return Result{}, fmt.Errorf("%s: %w", h, err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err // an idle runner would start it regardless
	}
	if len(c.Stdin) == 0 {
		// Twice: an idle runner may have died just before it was taken.
		for range 2 {
			r := h.takeRunner(ctx)
			if r == nil {
				break
			}
			res, retry, err := h.runOn(ctx, r, c, withDeadline(ctx, c.Args))
			if !retry {
				return res, err
			}
		}
	}
	return h.runSession(ctx, c)
}

// runSession runs c in a session of its own.
func (h *SSH) runSession(ctx context.Context, c Command) (Result, error) {
	id := newCommandID()
	line, stdin := remoteCommand(ctx, c, h.ref.Sudo, id)
	s, err := h.session(ctx)
	if err != nil {
		return Result{}, err
	}
	defer func() { <-h.sessions }()
	defer s.Close()
	var out, errb bytes.Buffer
	pid := newPidWriter(&errb, id)
	s.Stdin, s.Stdout, s.Stderr = bytes.NewReader(stdin), &out, pid
	if err := s.Start(line); err != nil {
		return Result{}, fmt.Errorf("%s: start %q: %w", h, c.Args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
		pid.flush() // Wait has let every copy of the output end
	case <-ctx.Done():
		h.kill(s, pid, id, done)
		return Result{Stdout: out.String(), Stderr: errb.String()}, ctx.Err()
	}
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &ee) && ee.Signal() == "":
		res.ExitCode = ee.ExitStatus()
		return res, nil
	case errors.As(err, &ee) && signalNumbers[ee.Signal()] > 0:
		// The command is the session's process: report its death as a
		// shell would (and a runner does), 128 + the signal's number.
		res.ExitCode = 128 + signalNumbers[ee.Signal()]
		return res, nil
	case errors.As(err, &ee):
		return res, fmt.Errorf("%s: %q killed by SIG%s", h, c.Args[0], ee.Signal())
	case errors.As(err, &missing), errors.Is(err, io.EOF):
		return res, fmt.Errorf("%s: %q: %w (no exit status: sshd or the host went away)", h, c.Args[0], ErrConnLost)
	}
	return res, fmt.Errorf("%s: %q: %w", h, c.Args[0], err)
}

// signalNumbers are the signals whose numbers are the same on every
// POSIX host (those XSI fixes, and SEGV and PIPE, alike on Linux and the
// BSDs), by the names SSH reports them with.
var signalNumbers = map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "ABRT": 6, "KILL": 9, "SEGV": 11, "PIPE": 13, "ALRM": 14, "TERM": 15}

// The wrapper a command in a session of its own runs in on the host; $1..
// are the command. sshd makes each session's process a session leader,
// so the login shell's pid is the process group's id: it goes on stderr
// after the command's id (pidWriter), so a cancelled command is killed
// from a second session, and the command replaces the shell (stdin,
// process group and all).
const remoteExec = `echo "$` + commandIDVar + ` $$" >&2
exec "$@"`

// remoteWrapper is the wrapper under sudo, whose child is no group leader:
// the command gets a group of its own (setsid), stdin passed on by an
// explicit redirection (an asynchronous list would get /dev/null). A
// TERM, INT or HUP to the wrapper kills it too.
const remoteWrapper = `exec 3<&0
setsid "$@" <&3 3<&- &
p=$!
exec 3<&-
echo "$` + commandIDVar + ` $p" >&2
trap 'kill -KILL -"$p" 2>/dev/null; exit 143' TERM INT HUP
wait "$p"`

// pidWait bounds the wait for a cancelled command's pid report. It comes
// within milliseconds on a quiet host, but can take seconds under load,
// and giving up early leaves the command running.
var pidWait = 10 * time.Second

// losePidReports makes tests act as though no pid report came back.
var losePidReports bool

// commandIDVar is in the environment of every command started on a host
// over SSH, a random id per command, which its children inherit: a
// cancelled command whose process id never came back is still found (in
// /proc) and killed.
const commandIDVar = "OPSDRILL_COMMAND_ID"

func newCommandID() string { return randomHex(8) }

// randomHex is n random bytes in hex (crypto/rand never fails on Linux;
// Go 1.24's Read panics rather than return an error).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newSSH is a host reached over SSH, not yet connected: one slot fewer
// than sshd's MaxSessions for commands, the rest kept for kills.
func newSSH(r Ref, s sshSettings, via *SSH) *SSH {
	return &SSH{ref: r, set: s, via: via, sessions: make(chan struct{}, maxSessions-killSessions), kills: make(chan struct{}, killSessions)}
}

// killByIDCommand SIGKILLs every process whose environment holds id
// (Linux /proc, read by GNU or BusyBox grep -z), in two rounds for a
// child forked between them. It finds nothing on a host without /proc.
func killByIDCommand(sudo bool, id string) string {
	script := "for r in 1 2; do for f in $(grep -lzx '" + commandIDVar + "=" + id + "' /proc/[0-9]*/environ 2>/dev/null); do " +
		`p=${f#/proc/}; p=${p%/environ}; [ "$p" -gt 1 ] 2>/dev/null && kill -KILL "$p" 2>/dev/null; done; done; true`
	if sudo {
		return joinCommand([]string{"sh", "-c", script}, true)
	}
	return script
}

// kill stops a cancelled command: a signal to the session, and a kill of
// its process group from a second session, which works for every user.
// sshd delivers a signal with killpg, which finds no group while the
// session's process is still starting (and refuses it for a root login,
// which has no privilege separation), so the signal is repeated until the
// pid report is in, and the kill waits for that report as long as the
// session lives; without one, the command's processes are found by id.
func (h *SSH) kill(s *ssh.Session, pid *pidWriter, id string, done <-chan error) {
	_ = s.Signal(ssh.SIGTERM)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(pidWait)
	ended := false
wait:
	for {
		select {
		case <-pid.got:
			break wait
		case <-done:
			// The session ended; a report written before it is in.
			ended = true
			select {
			case <-pid.got:
				break wait
			default:
				return
			}
		case <-tick.C:
			_ = s.Signal(ssh.SIGTERM)
		case <-giveUp:
			break wait
		}
	}
	line := killByIDCommand(h.ref.Sudo, id)
	select {
	case <-pid.got:
		line = killCommand(h.ref.Sudo, pid.pid)
	default:
	}
	h.runKill(line)
	if !ended {
		select {
		case <-done:
		case <-time.After(3 * time.Second):
		}
	}
}

// runKill runs a kill command line in a session kept for kills.
func (h *SSH) runKill(line string) {
	kctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ks, err := h.killSession(kctx)
	if err != nil {
		return
	}
	_ = ks.Run(line)
	_ = ks.Close()
	<-h.kills
}

// killCommand is the command line that SIGKILLs process groups on the
// host, each kill repeated once, errors ignored (a group that is gone).
// It is always the shell's builtin kill: procps' /usr/bin/kill (Debian
// 12) was seen to take "kill -KILL -PGID" for kill -1, every process it
// may signal, which under sudo is the whole host; so sudo runs sh -c.
func killCommand(sudo bool, groups ...int) string {
	var b strings.Builder
	for range 2 {
		for _, g := range groups {
			if g < 2 {
				continue // -1 is every process, -0 our own group
			}
			b.WriteString("kill -KILL -" + strconv.Itoa(g) + " 2>/dev/null; ")
		}
	}
	b.WriteString("true")
	if sudo {
		return joinCommand([]string{"sh", "-c", b.String()}, true)
	}
	return b.String()
}

// pidWriter takes the wrapper's pid report, the stderr line "ID PID"
// (the command's id, then its process group), and passes the rest on.
// The report need not be the first line: a login shell's rc file (bash
// reads ~/.bashrc under sshd) or sudo ("unable to resolve host") may
// write before the wrapper runs, and their lines are passed on as they
// are.
type pidWriter struct {
	w    io.Writer
	mark []byte // "ID "
	line []byte // an incomplete line before the report
	pid  int
	got  chan struct{}
	done bool // the report is in: everything is passed on
}

func newPidWriter(w io.Writer, id string) *pidWriter {
	return &pidWriter{w: w, mark: []byte(id + " "), got: make(chan struct{})}
}

func (p *pidWriter) Write(b []byte) (int, error) {
	n := len(b)
	for !p.done && len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.line = append(p.line, b...)
			return n, nil
		}
		line := append(p.line, b[:i]...)
		b = b[i+1:]
		p.line = nil
		if rest, ok := bytes.CutPrefix(line, p.mark); ok {
			if id, err := strconv.Atoi(string(rest)); err == nil && id > 1 {
				p.done = true
				if !losePidReports {
					p.pid = id
					close(p.got)
				}
				continue
			}
		}
		if _, err := p.w.Write(append(line, '\n')); err != nil {
			return 0, err
		}
	}
	if len(b) > 0 {
		if _, err := p.w.Write(b); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// flush passes on an incomplete line held while waiting for the report
// (a session that ended without one).
func (p *pidWriter) flush() {
	if len(p.line) > 0 {
		_, _ = p.w.Write(p.line)
		p.line = nil
	}
}

// remoteEnv reads KEY=value pairs from the first stdin line (a byte count)
// and the block after it, before the command's own stdin.
const remoteEnv = `IFS= read -r n || exit 125
eval "$(head -c "$n")"
`

// checkCommand rejects what no POSIX shell can pass on: env names that
// are not names, NUL bytes (which end a C string).
func checkCommand(c Command) error {
	for _, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !validEnvName(k) {
			return fmt.Errorf("env %q: use NAME=value", k)
		}
		if strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("env %s: a NUL byte cannot be passed", k)
		}
	}
	for i, a := range c.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument %d of %q: a NUL byte cannot be passed", i, c.Args[0])
		}
	}
	return nil
}

// withDeadline puts args under coreutils timeout when ctx has a deadline.
func withDeadline(ctx context.Context, args []string) []string {
	dl, ok := ctx.Deadline()
	if !ok {
		return args
	}
	secs := math.Ceil(time.Until(dl).Seconds())
	if secs < 1 {
		secs = 1
	}
	return append([]string{"timeout", "-s", "KILL", strconv.Itoa(int(secs))}, args...)
}

func remoteCommand(ctx context.Context, c Command, sudo bool, id string) (string, []byte) {
	script := remoteExec
	if sudo {
		script = remoteWrapper
	}
	script = commandIDVar + "=" + id + "; export " + commandIDVar + "\n" + script
	stdin := c.Stdin
	if len(c.Env) > 0 {
		var env strings.Builder
		for _, kv := range c.Env {
			k, v, _ := strings.Cut(kv, "=")
			env.WriteString("export " + k + "=" + shellQuote(v) + "\n")
		}
		pre := strconv.Itoa(env.Len()) + "\n" + env.String()
		stdin = append([]byte(pre), c.Stdin...)
		script = remoteEnv + script
	}
	args := withDeadline(ctx, c.Args)
	if sudo {
		return joinCommand(append([]string{"sh", "-c", script, "sh"}, args...), true), stdin
	}
	// The login shell (POSIX: sh, bash, dash, ksh, zsh) runs the wrapper
	// itself, one exec fewer than `sh -c` under it.
	return "set -- " + joinCommand(args, false) + "\n" + script, stdin
}

func joinCommand(words []string, sudo bool) string {
	if sudo {
		words = append([]string{"sudo", "-n", "--"}, words...)
	}
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(w))
	}
	return b.String()
}

func validEnvName(k string) bool {
	if k == "" || (k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for _, r := range k {
		if r != '_' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// shellQuote quotes s for a POSIX shell: the remote side of SSH always
// parses the command line with the login shell.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ':' || r == '=' || r == ',' || r == '@' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// WriteFile writes path on the host through a temporary file renamed
// over it; the data travels on stdin.
func (h *SSH) WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error {
	res, err := h.Run(ctx, WriteFileCommand(path, data, perm))
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: write %s: exit %d: %s", h, path, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	return nil
}

// WriteFileCommand is the shell command transports without a file API use
// to write path: mkdir -p, a temporary file beside it, chmod, rename.
func WriteFileCommand(path string, data []byte, perm fs.FileMode) Command {
	return Command{
		Args: []string{"sh", "-ec", `mkdir -p "$(dirname "$1")"; t=$(mktemp "$1.XXXXXX"); trap 'rm -f "$t"' EXIT; cat >"$t"; chmod "$2" "$t"; mv -f "$t" "$1"; trap - EXIT`,
			"sh", path, strconv.FormatUint(uint64(perm.Perm()), 8)},
		Stdin: data,
	}
}

// Dial opens a direct-tcpip channel: the host resolves address (private
// DNS names answer there) and connects to it.
func (h *SSH) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := h.Client(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := c.DialContext(ctx, network, address)
	if err != nil && ctx.Err() == nil && isConnGone(err) {
		h.drop(c)
		if c, err = h.Client(ctx); err == nil {
			conn, err = c.DialContext(ctx, network, address)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s from there: %w", h, address, err)
	}
	return withDeadlines(conn), nil
}

// Listen asks the host to listen on addr and forward connections back
// (ssh -R); each accepted connection is a channel of this connection.
func (h *SSH) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	c, err := h.Client(ctx)
	if err != nil {
		return nil, err
	}
	ln, err := c.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s there: %w", h, addr, err)
	}
	return ln, nil
}

// isConnGone tells a dead connection from a refused channel: an
// OpenChannelError is the server answering.
func isConnGone(err error) bool {
	var oc *ssh.OpenChannelError
	return !errors.As(err, &oc)
}

// withDeadlines gives a channel connection deadlines: an SSH channel has
// none (SetDeadline fails), and clients such as database drivers set them
// on every read and write. The channel is copied to one end of a net.Pipe,
// whose deadlines time out the way a TCP socket's do; closing either side
// closes both.
func withDeadlines(ch net.Conn) net.Conn {
	mine, theirs := net.Pipe()
	go func() {
		_, _ = io.Copy(ch, theirs)
		_ = ch.Close()
	}()
	go func() {
		_, _ = io.Copy(theirs, ch)
		_ = theirs.Close()
	}()
	return &pipedConn{Conn: mine, laddr: ch.LocalAddr(), raddr: ch.RemoteAddr()}
}

type pipedConn struct {
	net.Conn
	laddr, raddr net.Addr
}

func (c *pipedConn) LocalAddr() net.Addr  { return c.laddr }
func (c *pipedConn) RemoteAddr() net.Addr { return c.raddr }
