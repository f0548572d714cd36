package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsdrill/opsdrill/steps/host"
)

// The lab: transport: `host: lab:client1` (or lab:LABID/client1) runs a
// step's commands in a running lab host with docker exec. It is registered
// here, not in steps/, so steps never depend on the lab; programs that want
// lab hosts link this package.
func init() { host.Register("lab", transport{}) }

type transport struct{}

func (transport) Check(r host.Ref) error {
	labID, name, scoped := cutRef(r.Name)
	if name == "" || (scoped && labID == "") {
		return fmt.Errorf("lab: %q: use lab:NAME or lab:LABID/NAME", r.Name)
	}
	return nil
}

func cutRef(ref string) (labID, name string, scoped bool) {
	labID, name, scoped = strings.Cut(ref, "/")
	if !scoped {
		return "", ref, false
	}
	return labID, name, true
}

func (transport) Open(_ context.Context, r host.Ref, _ *host.Pool) (host.Host, error) {
	return &labHost{ref: r.Name}, nil
}

// labHost finds its container lazily and briefly caches it: a step that
// runs many commands pays the engine query once, and a lab brought down
// and up again under the same host names is found again.
type labHost struct {
	ref string

	mu sync.Mutex
	h  *Host
	at time.Time
}

const hostCacheTTL = 30 * time.Second

func (l *labHost) find(ctx context.Context) (*Host, error) {
	l.mu.Lock()
	h, at := l.h, l.at
	l.mu.Unlock()
	if h != nil && time.Since(at) < hostCacheTTL {
		return h, nil
	}
	h, err := FindHost(ctx, l.ref)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.h, l.at = h, time.Now()
	l.mu.Unlock()
	return h, nil
}

func (l *labHost) forget() {
	l.mu.Lock()
	l.h = nil
	l.mu.Unlock()
}

// Run runs c in the host. An exec cannot be signalled from outside, so a
// context deadline becomes coreutils `timeout -s KILL` around the command.
func (l *labHost) Run(ctx context.Context, c host.Command) (host.Result, error) {
	if len(c.Args) == 0 {
		return host.Result{}, errors.New("empty command")
	}
	h, err := l.find(ctx)
	if err != nil {
		return host.Result{}, err
	}
	args := c.Args
	if dl, ok := ctx.Deadline(); ok {
		secs := math.Ceil(time.Until(dl).Seconds())
		if secs < 1 {
			secs = 1
		}
		args = append([]string{"timeout", "-s", "KILL", strconv.Itoa(int(secs))}, args...)
	}
	r, err := h.ExecCommand(ctx, Command{Args: args, Env: c.Env, Stdin: c.Stdin})
	if err != nil {
		l.forget()
		return host.Result{}, err
	}
	return host.Result{Stdout: r.Stdout, Stderr: r.Stderr, ExitCode: r.ExitCode}, nil
}

// WriteFile writes path through a temporary file renamed over it.
func (l *labHost) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	res, err := l.Run(ctx, host.Command{
		Args: []string{"sh", "-ec", `mkdir -p "$1"; t=$(mktemp "$2.XXXXXX"); cat >"$t"; chmod "$3" "$t"; mv -f "$t" "$2"`,
			"sh", path.Dir(p), p, strconv.FormatUint(uint64(perm.Perm()), 8)},
		Stdin: data,
	})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("lab:%s: write %s: exit %d: %s", l.ref, p, res.ExitCode, res.Stderr)
	}
	return nil
}

// Dial is not offered by docker exec; reach lab hosts over ssh:// for it.
func (l *labHost) Dial(context.Context, string, string) (net.Conn, error) {
	return nil, fmt.Errorf("lab:%s: dial: %w (use the host's ssh:// reference from .lab/ssh_config)", l.ref, host.ErrUnsupported)
}

func (l *labHost) String() string { return "lab:" + l.ref }

// Close forgets the container; docker exec holds no connection.
func (l *labHost) Close() error {
	l.forget()
	return nil
}

// Identity of a lab host for the report: its container and address, once
// a step found it.
func (l *labHost) Identity() host.Identity {
	l.mu.Lock()
	h := l.h
	l.mu.Unlock()
	id := host.Identity{Transport: "lab"}
	if h != nil {
		id.Address = h.Container + " (" + h.IP.String() + ")"
	}
	return id
}
