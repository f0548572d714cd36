// Package host is how a step acts from somewhere: run a command, write a
// file, or open a TCP connection from a host a scenario names in `host:`
// (or `via:`). Steps see only the Host interface; which transport carries
// the work is decided by the reference's scheme, and transports join the
// registry from their own init, like database/sql drivers:
//
//	""  or "local"                      this machine (os/exec, no shell)
//	"ssh://[user@]name[:port]"          over SSH, name resolved through an
//	"ssh://ops@cgw?sudo=true"           OpenSSH client config; sudo runs
//	                                    commands as root (sudo -n)
//	"lab:NAME", "lab:LABID/NAME"        a running lab host (docker exec),
//	                                    registered by package lab
//
// The local and ssh transports are part of this package. The lab transport
// is registered by package lab, which steps never import: cmd/opsdrill and
// the tests that use lab hosts link it in.
//
// Hosts are opened through a Pool, which keeps one connection per host for
// a whole run and shares it between steps and background steps; Default is
// the process's pool, configured and closed by `opsdrill run`.
package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Command is what to run. Args are passed as they are, never through a
// shell on this side; Env and Stdin reach the process without appearing on
// any command line (where ps would show them).
type Command struct {
	Args  []string
	Env   []string // KEY=value added to the environment
	Stdin []byte
}

// Result is how a command ended.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Host is a place a step acts from.
type Host interface {
	// Run runs c and waits for it. The error is for failing to run it at
	// all, or for ctx ending (the process is then killed on the host); a
	// non-zero exit is in Result.ExitCode.
	Run(ctx context.Context, c Command) (Result, error)
	// WriteFile writes data to path on the host with mode perm, creating
	// the parent folder.
	WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error
	// Dial opens a connection from the host: the address is resolved and
	// connected to there.
	Dial(ctx context.Context, network, address string) (net.Conn, error)
	// String is the host reference, for messages.
	String() string
	// Close releases the host's connection.
	Close() error
}

// ErrUnsupported is returned by a transport for an operation it cannot do.
var ErrUnsupported = errors.New("not supported by this transport")

// Ref is a parsed host reference.
type Ref struct {
	Scheme string // local, ssh, lab, ...
	User   string // ssh: login user, empty for the config's
	Name   string // ssh: the name looked up in ssh_config; lab: NAME or LABID/NAME
	Port   int    // ssh: 0 for the config's
	Sudo   bool   // run commands as root through sudo -n
}

// String formats r as a reference Parse reads back.
func (r Ref) String() string {
	switch r.Scheme {
	case "local":
		return "local"
	case "ssh":
		s := "ssh://"
		if r.User != "" {
			s += r.User + "@"
		}
		s += r.Name
		if r.Port != 0 {
			s += ":" + strconv.Itoa(r.Port)
		}
		if r.Sudo {
			s += "?sudo=true"
		}
		return s
	}
	return r.Scheme + ":" + r.Name
}

// IsLocal reports whether ref means this machine.
func IsLocal(ref string) bool { return ref == "" || ref == "local" }

// Parse reads a host reference. It checks the syntax only; Validate also
// asks the scheme's transport.
func Parse(ref string) (Ref, error) {
	if IsLocal(ref) {
		return Ref{Scheme: "local"}, nil
	}
	if strings.HasPrefix(ref, "ssh://") {
		return parseSSH(ref)
	}
	scheme, rest, ok := strings.Cut(ref, ":")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/@ ") {
		return Ref{}, fmt.Errorf("host: %q is not a host reference; use local, ssh://[user@]name[:port] or lab:NAME", ref)
	}
	if rest == "" {
		return Ref{}, fmt.Errorf("host: %q: a name is missing after \"%s:\"", ref, scheme)
	}
	return Ref{Scheme: scheme, Name: rest}, nil
}

func parseSSH(ref string) (Ref, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return Ref{}, fmt.Errorf("host: %q: %w", ref, err)
	}
	r := Ref{Scheme: "ssh", Name: u.Hostname()}
	if r.Name == "" {
		return Ref{}, fmt.Errorf("host: %q: the host name is missing (ssh://[user@]name[:port])", ref)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return Ref{}, fmt.Errorf("host: %q: a password does not belong in a host reference; use a key or ssh-agent", redactPassword(u))
		}
		r.User = u.User.Username()
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Ref{}, fmt.Errorf("host: %q: port %q is not a TCP port", ref, p)
		}
		r.Port = n
	}
	if u.Path != "" && u.Path != "/" {
		return Ref{}, fmt.Errorf("host: %q: a host reference has no path (%q)", ref, u.Path)
	}
	for k, vs := range u.Query() {
		switch k {
		case "sudo":
			b, err := strconv.ParseBool(vs[len(vs)-1])
			if err != nil {
				return Ref{}, fmt.Errorf("host: %q: sudo=%q: use true or false", ref, vs[len(vs)-1])
			}
			r.Sudo = b
		default:
			return Ref{}, fmt.Errorf("host: %q: unknown option %q (known: sudo)", ref, k)
		}
	}
	return r, nil
}

func redactPassword(u *url.URL) string {
	c := *u
	c.User = url.UserPassword(u.User.Username(), "REDACTED")
	return c.String()
}

// Transport opens hosts of one scheme.
type Transport interface {
	// Check validates a reference without contacting anything.
	Check(r Ref) error
	// Open connects to the host. p is the pool opening it: a transport
	// that reaches hosts through other hosts (ssh ProxyJump) opens those
	// through p too, so they are shared.
	Open(ctx context.Context, r Ref, p *Pool) (Host, error)
}

var (
	regMu      sync.RWMutex
	transports = map[string]Transport{}
)

// Register makes a transport available under scheme. It panics on a
// duplicate, a programming error caught by any test linking both.
func Register(scheme string, t Transport) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := transports[scheme]; dup {
		panic("host: transport " + scheme + " registered twice")
	}
	transports[scheme] = t
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	var out []string
	for s := range transports {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func lookup(scheme string) (Transport, error) {
	regMu.RLock()
	t, ok := transports[scheme]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("no %s: transport in this program (have: %s)", scheme, strings.Join(Schemes(), ", "))
	}
	return t, nil
}

// Validate checks a host reference without contacting anything.
func Validate(ref string) error {
	r, err := Parse(ref)
	if err != nil {
		return err
	}
	t, err := lookup(r.Scheme)
	if err != nil {
		return fmt.Errorf("host: %q: %w", ref, err)
	}
	if err := t.Check(r); err != nil {
		return fmt.Errorf("host: %q: %w", ref, err)
	}
	return nil
}

// LookPath reports whether program exists on h.
func LookPath(ctx context.Context, h Host, program string) error {
	res, err := h.Run(ctx, Command{Args: []string{"sh", "-c", `command -v "$1"`, "sh", program}})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: not found on %s", program, h)
	}
	return nil
}
