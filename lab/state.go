package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultStateDir is where `opsdrill lab up` keeps the lab state.
const DefaultStateDir = ".lab"

const (
	stateFile = "state.json"
	lockFile  = "lock"
)

func defaultVarsFile(stateDir string) string { return filepath.Join(stateDir, "vars.yaml") }

// state is what a later process needs to find and drive a lab that `lab up`
// left running. It holds the vars, secrets included, so it is written 0600.
type state struct {
	ID      string   `json:"id"`
	Envs    []string `json:"envs"`
	Image   string   `json:"image"`
	Network string   `json:"network"`
	Subnet  string   `json:"subnet"`
	Gateway string   `json:"gateway"`
	// The private network, when the lab has one.
	PrivateNetwork string         `json:"private_network,omitempty"`
	PrivateSubnet  string         `json:"private_subnet,omitempty"`
	Created        time.Time      `json:"created"`
	VarsFile       string         `json:"vars_file,omitempty"`
	Seed           string         `json:"seed"`
	Hosts          []hostState    `json:"hosts"`
	Vars           map[string]any `json:"vars"`
}

type hostState struct {
	Name        string `json:"name"`
	Env         string `json:"env"`
	Container   string `json:"container"`
	ContainerID string `json:"container_id"`
	IP          string `json:"ip"`
	PrivateIP   string `json:"private_ip,omitempty"`
	Network     string `json:"network,omitempty"`
	Ports       []Port `json:"ports,omitempty"`
}

func (l *Lab) save() error {
	st := state{
		ID: l.ID, Envs: l.Envs, Image: l.Image, Network: l.Network,
		Subnet: l.Subnet.String(), Gateway: l.Gateway.String(), Created: l.Created,
		VarsFile: l.varsFile, Seed: string(l.seed), Vars: l.vars, PrivateNetwork: l.PrivateNetwork,
	}
	if l.PrivateSubnet.IsValid() {
		st.PrivateSubnet = l.PrivateSubnet.String()
	}
	for _, h := range l.hosts {
		hs := hostState{
			Name: h.Name, Env: h.Env, Container: h.Container, ContainerID: h.ContainerID,
			IP: h.IP.String(), Network: h.Network, Ports: h.Ports,
		}
		if h.PrivateIP.IsValid() {
			hs.PrivateIP = h.PrivateIP.String()
		}
		st.Hosts = append(st.Hosts, hs)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	return writeFileAtomic(filepath.Join(l.stateDir, stateFile), append(b, '\n'), 0o600)
}

func loadState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s); start one with `opsdrill lab up`", ErrNoLab, filepath.Join(dir, stateFile))
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read lab state %s: %w (remove it and run `opsdrill lab down`)", filepath.Join(dir, stateFile), err)
	}
	return &st, nil
}

// removeState deletes the state file if it belongs to lab id (any lab when
// id is empty).
func removeState(dir, id string) error {
	if id != "" {
		st, err := loadState(dir)
		if err != nil || st.ID != id {
			return nil
		}
	}
	return removeIfExists(filepath.Join(dir, stateFile))
}

// Open reattaches to the lab that `lab up` left running in stateDir, from
// any later process: `lab status`, `lab down`, or a step that kills a host.
// The error wraps ErrNoLab when there is none.
func Open(ctx context.Context, stateDir string) (*Lab, error) {
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("lab state folder: %w", err)
	}
	st, err := loadState(stateDir)
	if err != nil {
		return nil, err
	}
	eng, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	l := &Lab{
		ID: st.ID, Envs: st.Envs, Image: st.Image, Network: st.Network, Created: st.Created,
		vars: st.Vars, seed: []byte(st.Seed), stateDir: stateDir, varsFile: st.VarsFile, sshDir: stateDir,
		eng: eng, logf: func(string, ...any) {},
	}
	if l.Subnet, err = netip.ParsePrefix(st.Subnet); err != nil {
		return nil, fmt.Errorf("lab state: subnet: %w", err)
	}
	if l.Gateway, err = netip.ParseAddr(st.Gateway); err != nil {
		return nil, fmt.Errorf("lab state: gateway: %w", err)
	}
	if st.PrivateNetwork != "" {
		l.PrivateNetwork = st.PrivateNetwork
		if l.PrivateSubnet, err = netip.ParsePrefix(st.PrivateSubnet); err != nil {
			return nil, fmt.Errorf("lab state: private subnet: %w", err)
		}
	}
	for _, hs := range st.Hosts {
		ip, err := netip.ParseAddr(hs.IP)
		if err != nil {
			return nil, fmt.Errorf("lab state: host %s: %w", hs.Name, err)
		}
		h := &Host{Name: hs.Name, Env: hs.Env, Container: hs.Container, ContainerID: hs.ContainerID, IP: ip, Network: hs.Network, Ports: hs.Ports, lab: l}
		if hs.PrivateIP != "" {
			if h.PrivateIP, err = netip.ParseAddr(hs.PrivateIP); err != nil {
				return nil, fmt.Errorf("lab state: host %s: private address: %w", hs.Name, err)
			}
		}
		// Start commands and probes come from the code, not the state file.
		if e, ok := LookupEnv(hs.Env); ok {
			for _, spec := range e.Hosts {
				if spec.Name == hs.Name {
					h.spec = spec
				}
			}
		}
		l.hosts = append(l.hosts, h)
	}
	return l, nil
}

// HostStatus is one line of Status.
type HostStatus struct {
	Name      string `json:"name"`
	Env       string `json:"env"`
	IP        string `json:"ip"`
	Container string `json:"container"`
	State     string `json:"state"` // running, exited, missing, ...
}

// Status reports the state of every host of the lab.
func (l *Lab) Status(ctx context.Context) ([]HostStatus, error) {
	var out []HostStatus
	for _, h := range l.hosts {
		st, err := h.State(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, HostStatus{Name: h.Name, Env: h.Env, IP: h.IP.String(), Container: h.Container, State: st})
	}
	return out, nil
}

// VarsFile returns the path of the vars file Up wrote, if any.
func (l *Lab) VarsFile() string { return l.varsFile }

// refuseRunning returns ErrAlreadyRunning when the state folder describes a
// lab that still has containers. A state file whose containers are all gone
// (removed by hand, or the engine was reset) is stale and removed.
func (e *engine) refuseRunning(ctx context.Context, dir string, logf func(string, ...any)) error {
	st, err := loadState(dir)
	if errors.Is(err, ErrNoLab) {
		return nil
	}
	if err != nil {
		return err
	}
	res, err := e.resources(ctx, st.ID)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Kind == "container" {
			return fmt.Errorf("%w: lab %s (envs %v) is up since %s; use it, or run `opsdrill lab down` first",
				ErrAlreadyRunning, st.ID, st.Envs, st.Created.Local().Format(time.DateTime))
		}
	}
	logf("lab %s in %s has no containers left; forgetting it", st.ID, dir)
	return removeIfExists(filepath.Join(dir, stateFile))
}

// lockStateDir takes an exclusive lock on the state folder, so two `lab up`
// (or an up and a down) never interleave. The kernel drops the lock when the
// process dies, so a crash leaves no stale lock.
func lockStateDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab state folder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lab state folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another `opsdrill lab up` or `lab down` is working in %s; wait for it to finish", ErrAlreadyRunning, dir)
		}
		return nil, fmt.Errorf("lock lab state folder: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
