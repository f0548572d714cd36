package lab

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Env is a lab environment: a set of hosts and what scenarios need to know
// about them. Environments join the registry from their own file's init:
//
//	func init() {
//		lab.RegisterEnv(lab.Env{
//			Name:  "db",
//			Doc:   "MariaDB primary and replica behind a dnsmasq resolver",
//			Hosts: []lab.HostSpec{{Name: "db1", Start: ...}, {Name: "db2", ...}},
//			Setup: func(ctx context.Context, l *lab.Lab) error { ... },
//			Vars:  func(l *lab.Lab) (map[string]any, map[string]string) { ... },
//		})
//	}
type Env struct {
	// Name is what users type: `opsdrill lab up db`.
	Name string
	// Doc is a one-line description shown by `opsdrill lab up --help`.
	Doc string
	// Hosts are started in parallel. Host names are unique across a lab.
	Hosts []HostSpec
	// Setup runs once every host of the lab is ready, in the order the
	// environments were named (replication, users, zone files, ...).
	Setup func(ctx context.Context, l *Lab) error
	// Vars returns the environment's variables, merged at the top level of
	// the vars file, and its secrets, which go under the "secrets" key.
	// Both are computed once at Up and persisted with the lab's state.
	Vars func(l *Lab) (vars map[string]any, secrets map[string]string)
	// AWS returns the environment's AWS-compatible APIs as named profiles,
	// which Up writes to aws/credentials and aws/config in the state folder
	// for the aws CLI and the SDKs (AWS_SHARED_CREDENTIALS_FILE,
	// AWS_CONFIG_FILE).
	AWS func(l *Lab) []AWSProfile
}

// AWSProfile is an AWS-compatible API of the lab as a shared-configuration
// profile. The endpoint is not part of it (the aws CLI before 2.13 reads no
// endpoint_url from the configuration): give it with --endpoint-url.
type AWSProfile struct {
	Name            string
	Region          string
	AccessKeyID     string
	SecretAccessKey string
	// Endpoint is written as a comment, for the reader.
	Endpoint string
}

// HostSpec describes one host (container) of an environment.
type HostSpec struct {
	// Name is the host's fixed hostname and its DNS name on the lab network.
	Name string
	// NetAdmin grants CAP_NET_ADMIN: routes, iptables, nftables, IPsec.
	NetAdmin bool
	// Private puts the host on the lab's private network only: a second
	// bridge, on its own subnet, that no host of the lab network reaches
	// except those with JoinsPrivate (a private subnet behind a bastion).
	Private bool
	// JoinsPrivate attaches the host to the private network as well as to
	// the lab network (the bastion).
	JoinsPrivate bool
	// Tun exposes /dev/net/tun (strongSwan kernel-libipsec, VPN clients).
	Tun bool
	// Sysctls are namespaced kernel settings, e.g. net.ipv4.ip_forward=1.
	Sysctls map[string]string
	// Env holds environment variables of the container's processes.
	Env map[string]string
	// Files are copied in before the container starts.
	Files []File
	// Ports are published on 127.0.0.1 so the machine running opsdrill can
	// reach them without routing to the container network.
	Ports []Port
	// Start commands run in order once the container runs, and again when a
	// stopped or killed host is started. A non-zero exit fails the start.
	Start []Command
	// Ready, when set, is polled until it exits 0.
	Ready *Probe
}

// File is a file copied into a host. Exactly one of Content and HostPath is
// set.
type File struct {
	Path     string // absolute path in the container
	Content  []byte
	HostPath string
	Mode     int64 // default 0o644
}

// Port is a TCP port published on 127.0.0.1:Host.
type Port struct {
	Container int
	Host      int
}

// Command is a process run inside a host.
type Command struct {
	Args []string
	// Env adds KEY=value pairs to the process environment.
	Env []string
	// Stdin is fed to the process.
	Stdin []byte
	// Detach runs the process in the background (daemons that stay in the
	// foreground: mariadbd, charon-systemd, dnsmasq -k); the exit code is
	// not awaited.
	Detach bool
}

// Probe is a readiness check: Cmd is run every Interval until it exits 0 or
// Timeout passes.
type Probe struct {
	Cmd      []string
	Timeout  time.Duration // default 60s
	Interval time.Duration // default 250ms
}

var (
	envMu sync.RWMutex
	envs  = map[string]Env{}
)

// RegisterEnv adds an environment. It panics on a duplicate or malformed
// environment, a programming error caught by any test importing the package.
func RegisterEnv(e Env) {
	if err := e.validate(); err != nil {
		panic("lab: " + err.Error())
	}
	envMu.Lock()
	defer envMu.Unlock()
	if _, dup := envs[e.Name]; dup {
		panic("lab: duplicate environment " + e.Name)
	}
	envs[e.Name] = e
}

// Envs returns the registered environments sorted by name.
func Envs() []Env {
	envMu.RLock()
	defer envMu.RUnlock()
	out := make([]Env, 0, len(envs))
	for _, e := range envs {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LookupEnv returns the environment registered under name.
func LookupEnv(name string) (Env, bool) {
	envMu.RLock()
	defer envMu.RUnlock()
	e, ok := envs[name]
	return e, ok
}

// EnvNames returns the registered environment names, sorted.
func EnvNames() []string {
	var names []string
	for _, e := range Envs() {
		names = append(names, e.Name)
	}
	return names
}

func (e Env) validate() error {
	if !validName(e.Name) {
		return fmt.Errorf("environment name %q: use lower-case letters, digits and '-'", e.Name)
	}
	if len(e.Hosts) == 0 {
		return fmt.Errorf("environment %s has no hosts", e.Name)
	}
	seen := map[string]bool{}
	for _, h := range e.Hosts {
		if !validName(h.Name) {
			return fmt.Errorf("environment %s: host name %q: use lower-case letters, digits and '-'", e.Name, h.Name)
		}
		if seen[h.Name] {
			return fmt.Errorf("environment %s: duplicate host %s", e.Name, h.Name)
		}
		seen[h.Name] = true
		for _, f := range h.Files {
			if f.Path == "" || (f.Content == nil) == (f.HostPath == "") {
				return fmt.Errorf("environment %s: host %s: file %q needs a path and exactly one of Content and HostPath", e.Name, h.Name, f.Path)
			}
		}
		for _, p := range h.Ports {
			if p.Container <= 0 || p.Container > 65535 || p.Host <= 0 || p.Host > 65535 {
				return fmt.Errorf("environment %s: host %s: port %d->%d out of range", e.Name, h.Name, p.Host, p.Container)
			}
		}
		for _, c := range h.Start {
			if len(c.Args) == 0 {
				return fmt.Errorf("environment %s: host %s: empty start command", e.Name, h.Name)
			}
		}
		if h.Ready != nil && len(h.Ready.Cmd) == 0 {
			return fmt.Errorf("environment %s: host %s: readiness probe without a command", e.Name, h.Name)
		}
	}
	return nil
}

// resolveEnvs maps names to environments; no names means every registered
// environment. Host names must be unique across the chosen environments.
func resolveEnvs(names []string) ([]Env, error) {
	if len(names) == 0 {
		names = EnvNames()
	}
	var out []Env
	owner := map[string]string{}
	for _, n := range names {
		e, ok := LookupEnv(n)
		if !ok {
			return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownEnv, n, EnvNames())
		}
		if slices.ContainsFunc(out, func(o Env) bool { return o.Name == n }) {
			continue
		}
		for _, h := range e.Hosts {
			if prev, dup := owner[h.Name]; dup {
				return nil, fmt.Errorf("%w: host %s is declared by environments %s and %s", ErrConflict, h.Name, prev, n)
			}
			owner[h.Name] = n
		}
		out = append(out, e)
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 40 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}
