package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostOps carries a Host's operations where there is no container engine
// to ask: a program running inside the lab (the lab's RDS API service on
// db-dns) reaches the pair's database hosts over SSH and its own host
// directly. Stop and Start then act on the host's services, not on its
// container, and State says whether those serve.
type hostOps interface {
	exec(ctx context.Context, c Command) (ExecResult, error)
	state(ctx context.Context) (string, error)
	stop(ctx context.Context, timeout time.Duration) error
	start(ctx context.Context) error
}

// errNoEngine is what engine-only operations (kill, disconnect, logs)
// return on a host reached through hostOps.
var errNoEngine = errors.New("not possible from inside the lab: it needs the container engine")

func (h *Host) noEngine(what string) error {
	return fmt.Errorf("%s host %s: %w", what, h.Name, errNoEngine)
}

// ServicePair opens the mariadb-pair of lab labID from a program running
// in its resolver host, db-dns: the database hosts are reached over SSH
// as SSHUser (with sudo) with key, their host keys pinned by the
// known_hosts file knownHosts; the endpoint's files and the resolver's
// restart script are local. Stop shuts mariadbd down cleanly
// (mariadb-admin shutdown) and leaves its host running; Start starts
// mariadbd again; State is "running" while mariadbd answers.
func ServicePair(ctx context.Context, labID string, key []byte, knownHosts string) (*MariaDBPair, error) {
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	pinned, err := knownhosts.New(knownHosts)
	if err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	cfg := &ssh.ClientConfig{User: SSHUser, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: pinned, Timeout: 5 * time.Second}
	p := &MariaDBPair{LabID: labID, dns: &Host{Name: PairDNSHost, Env: PairEnv, spec: pairDNSSpec(), ops: localOps{}}}
	for i, n := range pairNodes {
		h := &Host{Name: n.host, Env: PairEnv, spec: pairHostSpec(n)}
		h.ops = &sshOps{h: h, cfg: cfg}
		p.nodes[i] = h
	}
	if err := p.loadAddrs(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// mariadbPing asks the local mariadbd whether it serves.
var mariadbPing = []string{"mariadb-admin", "--connect-timeout=2", "ping"}

// sshOps reaches a database host over one long-lived SSH connection,
// dialled again when the host's restart broke it.
type sshOps struct {
	h   *Host
	cfg *ssh.ClientConfig

	mu     sync.Mutex
	client *ssh.Client
}

func (s *sshOps) conn(ctx context.Context) (*ssh.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	addr := s.h.Addr(22)
	d := net.Dialer{Timeout: s.cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The handshake is bounded too: a host that stops answering in it
	// would hold s.mu, and every caller with it.
	deadline := time.Now().Add(s.cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, s.cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	s.client = ssh.NewClient(c, chans, reqs)
	return s.client, nil
}

// newSession opens a session on c within ctx. A host killed or cut off
// sends nothing back, not even a reset, so the channel open would wait
// for TCP to give up (minutes): on ctx's end the connection is dropped,
// which also ends the open.
func (s *sshOps) newSession(ctx context.Context, c *ssh.Client) (*ssh.Session, error) {
	type opened struct {
		sess *ssh.Session
		err  error
	}
	got := make(chan opened, 1)
	go func() {
		sess, err := c.NewSession()
		got <- opened{sess, err}
	}()
	select {
	case o := <-got:
		return o.sess, o.err
	case <-ctx.Done():
		s.drop(c)
		if o := <-got; o.err == nil {
			o.sess.Close()
		}
		return nil, ctx.Err()
	}
}

func (s *sshOps) drop(c *ssh.Client) {
	s.mu.Lock()
	if s.client == c {
		s.client = nil
	}
	s.mu.Unlock()
	c.Close()
}

func (s *sshOps) session(ctx context.Context) (*ssh.Client, *ssh.Session, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	sess, err := s.newSession(ctx, c)
	if err == nil || ctx.Err() != nil {
		return c, sess, err
	}
	// The connection died with the host's last restart: once more.
	s.drop(c)
	if c, err = s.conn(ctx); err != nil {
		return nil, nil, err
	}
	sess, err = s.newSession(ctx, c)
	return c, sess, err
}

// remoteLine is c as a command line for the ops user's shell: run as root
// through sudo, a detached command in a session of its own with its output
// discarded (the SSH session ends at once). c.Env never appears on it (ps
// on the host would show the values): envPrelude sends it on stdin, where
// a small shell loop exports it before exec'ing the command.
func remoteLine(c Command) string {
	words := []string{"sudo", "-n"}
	switch {
	case len(c.Env) > 0 && c.Detach:
		words = append(words, "sh", "-c", envLoader+`; setsid "$@" </dev/null >/dev/null 2>&1 &`, "sh")
	case len(c.Env) > 0:
		words = append(words, "sh", "-c", envLoader+`; exec "$@"`, "sh")
	case c.Detach:
		words = append(words, "setsid")
	}
	words = append(words, c.Args...)
	for i, w := range words {
		words[i] = shellQuote(w)
	}
	line := strings.Join(words, " ")
	if c.Detach && len(c.Env) == 0 {
		line += " </dev/null >/dev/null 2>&1 &"
	}
	return line
}

// envLoader reads KEY=value lines up to an empty one from stdin and exports
// them; what follows the empty line is left on stdin for the command (the
// shell's read takes one byte at a time from a pipe).
const envLoader = `while IFS= read -r kv && [ -n "$kv" ]; do export "$kv" || exit 125; done`

// envPrelude is what remoteLine's loader reads before c's own stdin.
func envPrelude(env []string) ([]byte, error) {
	var b bytes.Buffer
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(kv, "\n\x00") {
			return nil, fmt.Errorf("env entry %q: want KEY=value on one line", k)
		}
		b.WriteString(kv)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:@,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (s *sshOps) exec(ctx context.Context, c Command) (ExecResult, error) {
	res := ExecResult{Args: c.Args}
	if len(c.Args) == 0 {
		return res, errors.New("exec: empty command")
	}
	client, sess, err := s.session(ctx)
	if err != nil {
		return res, fmt.Errorf("host %s: ssh: %w", s.h.Name, err)
	}
	defer sess.Close()
	stdin := c.Stdin
	if len(c.Env) > 0 {
		prelude, err := envPrelude(c.Env)
		if err != nil {
			return res, fmt.Errorf("host %s: exec %q: %w", s.h.Name, c.Args[0], err)
		}
		stdin = append(prelude, c.Stdin...)
	}
	if stdin != nil {
		sess.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(remoteLine(c)) }()
	select {
	case <-ctx.Done():
		sess.Close()
		select {
		case <-done:
		case <-time.After(time.Second):
			// No answer to the close either: the host is gone.
			s.drop(client)
			<-done
		}
		return res, fmt.Errorf("host %s: exec %q: %w", s.h.Name, c.Args[0], ctx.Err())
	case err = <-done:
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		res.ExitCode = exit.ExitStatus()
		return res, nil
	}
	if err != nil {
		s.drop(client)
		return res, fmt.Errorf("host %s: exec %q over ssh: %w", s.h.Name, c.Args[0], err)
	}
	return res, nil
}

// state is "running" while mariadbd answers, "exited" when it does not,
// and "unreachable" when the host does not answer SSH (killed, cut off).
func (s *sshOps) state(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := s.exec(ctx, Command{Args: mariadbPing})
	switch {
	case err != nil:
		return "unreachable", nil
	case res.ExitCode != 0:
		return "exited", nil
	}
	return "running", nil
}

// stop shuts mariadbd down cleanly, as RDS stops an instance, and waits
// until its process is gone (a start right after must not find the data
// directory locked).
func (s *sshOps) stop(ctx context.Context, timeout time.Duration) error {
	res, err := s.exec(ctx, Command{Args: []string{"mariadb-admin", "--connect-timeout=5", "shutdown"}})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("shut down mariadbd on %s: %w", s.h.Name, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		res, err := s.exec(ctx, Command{Args: []string{"pgrep", "-x", "mariadbd"}})
		if err == nil && res.ExitCode == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("shut down mariadbd on %s: still running after %s", s.h.Name, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shut down mariadbd on %s: %w", s.h.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// start starts mariadbd again the way the host's start commands do, and
// waits for it to serve.
func (s *sshOps) start(ctx context.Context) error { return s.h.startServices(ctx) }

// localOps runs commands on the machine of the calling program.
type localOps struct{}

func (localOps) exec(ctx context.Context, c Command) (ExecResult, error) {
	res := ExecResult{Args: c.Args}
	if len(c.Args) == 0 {
		return res, errors.New("exec: empty command")
	}
	if c.Detach {
		// Not bound to ctx: it outlives the request that started it.
		cmd := exec.Command(c.Args[0], c.Args[1:]...)
		cmd.Env = append(os.Environ(), c.Env...)
		if err := cmd.Start(); err != nil {
			return res, err
		}
		go func() { _ = cmd.Wait() }()
		return res, nil
	}
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Env = append(os.Environ(), c.Env...)
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	var exit *exec.ExitError
	if errors.As(err, &exit) && ctx.Err() == nil {
		res.ExitCode = exit.ExitCode()
		return res, nil
	}
	return res, err
}

func (localOps) state(context.Context) (string, error) { return "running", nil }

func (localOps) stop(context.Context, time.Duration) error {
	return fmt.Errorf("stop this host: %w", errNoEngine)
}

func (localOps) start(context.Context) error {
	return fmt.Errorf("start this host: %w", errNoEngine)
}
