package lab

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// SecretsKey is the top-level vars key holding credentials; the runner
// treats every value under it as a secret.
const SecretsKey = "secrets"

// Options configure Up. The zero value starts every registered environment
// without persisting anything.
type Options struct {
	// Envs are environment names; empty means all registered environments.
	Envs []string
	// ID names the lab (lower-case letters, digits, '-'); empty draws a
	// random one. Containers are named opsdrill-<id>-<host>.
	ID string
	// Image overrides the image reference (default: $OPSDRILL_LAB_IMAGE, or
	// the opsdrill-lab:<hash> image matching this binary's lab/image).
	Image string
	// Subnet of the lab network; the zero value picks a free /24 in
	// 10.213.0.0/16.
	Subnet netip.Prefix
	// StateDir, when set, makes the lab outlive the process: Up refuses to
	// start when a lab is already up there, and writes state.json (what
	// Open, Status and Down need) and the vars file. `opsdrill lab up` uses
	// ".lab".
	StateDir string
	// VarsFile is where Up writes the vars; default StateDir/vars.yaml, and
	// none when both are empty.
	VarsFile string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Lab is a running lab: one private network and its hosts.
type Lab struct {
	ID      string
	Envs    []string
	Image   string
	Network string // Docker network name
	Subnet  netip.Prefix
	Gateway netip.Addr
	// PrivateNetwork and PrivateSubnet are the lab's private network, when
	// one of its hosts lives there (HostSpec.Private): a second bridge
	// that only hosts joining it (HostSpec.JoinsPrivate) reach.
	PrivateNetwork string
	PrivateSubnet  netip.Prefix
	Created        time.Time

	hosts    []*Host
	vars     map[string]any
	seed     []byte
	stateDir string
	varsFile string
	sshDir   string  // where ssh_config, the key and known_hosts are
	sshTemp  bool    // sshDir is a temporary folder of this lab's own
	ssh      *labSSH // keys, while Up runs
	eng      *engine
	logf     func(format string, args ...any)
}

// Up starts the environments of opts on a new private network and returns
// once every host is ready and every environment is set up. On any failure,
// including cancellation of ctx, everything it created is removed before it
// returns. Errors wrap ErrNoDocker, ErrImageMissing, ErrPortInUse,
// ErrNotReady, ErrAlreadyRunning or ErrUnknownEnv where they apply.
func Up(ctx context.Context, opts Options) (l *Lab, err error) {
	start := time.Now()
	chosen, err := resolveEnvs(opts.Envs)
	if err != nil {
		return nil, err
	}
	id := opts.ID
	if id == "" {
		id = randomHex(3)
	} else if !validName(id) {
		return nil, fmt.Errorf("lab id %q: use lower-case letters, digits and '-'", id)
	}
	l = &Lab{
		ID:       id,
		Image:    imageRef(opts.Image),
		Network:  "opsdrill-" + id,
		Created:  time.Now().UTC().Truncate(time.Second),
		seed:     []byte(randomHex(16)),
		stateDir: opts.StateDir,
		varsFile: opts.VarsFile,
		logf:     opts.Logf,
	}
	if l.logf == nil {
		l.logf = func(string, ...any) {}
	}
	if l.stateDir != "" {
		if l.stateDir, err = filepath.Abs(l.stateDir); err != nil {
			return nil, fmt.Errorf("lab state folder: %w", err)
		}
		if l.varsFile == "" {
			l.varsFile = defaultVarsFile(l.stateDir)
		}
	}
	for _, e := range chosen {
		l.Envs = append(l.Envs, e.Name)
	}

	if l.stateDir != "" {
		unlock, err := lockStateDir(l.stateDir)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	l.eng, err = connect(ctx)
	if err != nil {
		return nil, err
	}
	if l.stateDir != "" {
		if err := l.eng.refuseRunning(ctx, l.stateDir, l.logf); err != nil {
			return nil, err
		}
	}
	if err := l.eng.checkImage(ctx, l.Image); err != nil {
		return nil, err
	}
	if err := checkPortsFree(chosen); err != nil {
		return nil, err
	}
	// The cleanup below removes by lab id: never let it reach another lab.
	if taken, err := l.eng.resources(ctx, l.ID); err != nil {
		return nil, err
	} else if len(taken) > 0 {
		return nil, fmt.Errorf("%w: lab id %s is in use (%s %s); choose another id or take that lab down",
			ErrAlreadyRunning, l.ID, taken[0].Kind, taken[0].Name)
	}

	defer func() {
		if err == nil {
			return
		}
		// Clean up with a context of its own: ctx may be what failed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, cerr := l.eng.removeLabelled(cctx, l.ID); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up lab %s: %w", l.ID, cerr))
		}
		if l.varsFile != "" {
			_ = removeIfExists(l.varsFile)
		}
		l.removeSSHDir()
		l = nil
	}()

	if err := l.prepareSSH(chosen); err != nil {
		return l, err
	}
	if l.stateDir != "" {
		l.sshDir = l.stateDir
	} else if l.sshDir, err = os.MkdirTemp("", "opsdrill-lab-"+l.ID+"-ssh-"); err != nil {
		return l, fmt.Errorf("lab ssh folder: %w", err)
	} else {
		l.sshTemp = true
	}
	l.logf("lab %s: network %s", l.ID, l.Network)
	if l.Subnet, l.Gateway, err = l.createNetwork(ctx, l.Network, opts.Subnet); err != nil {
		return l, err
	}
	if needsPrivate(chosen) {
		l.PrivateNetwork = l.Network + "-private"
		l.logf("lab %s: private network %s", l.ID, l.PrivateNetwork)
		if l.PrivateSubnet, _, err = l.createNetwork(ctx, l.PrivateNetwork, netip.Prefix{}); err != nil {
			return l, err
		}
	}
	if err := l.startHosts(ctx, chosen); err != nil {
		return l, err
	}
	for _, e := range chosen {
		if e.Setup == nil {
			continue
		}
		l.logf("lab %s: setting up %s", l.ID, e.Name)
		if err := e.Setup(ctx, l); err != nil {
			return l, fmt.Errorf("set up environment %s: %w", e.Name, err)
		}
	}
	if l.vars, err = l.buildVars(chosen); err != nil {
		return l, err
	}
	if l.varsFile != "" {
		if err := l.WriteVars(l.varsFile); err != nil {
			return l, err
		}
	}
	if err := l.writeSSH(); err != nil {
		return l, err
	}
	if err := l.writeSSHVars(); err != nil {
		return l, err
	}
	if err := l.writeAWS(chosen); err != nil {
		return l, err
	}
	// The state file comes last: once written, the lab is up for good.
	if l.stateDir != "" {
		if err := l.save(); err != nil {
			return l, err
		}
	}
	l.logf("lab %s: up in %s (%d hosts, envs %s)", l.ID, time.Since(start).Round(time.Millisecond),
		len(l.hosts), strings.Join(l.Envs, ","))
	return l, nil
}

// Hosts returns the lab's hosts in start order.
func (l *Lab) Hosts() []*Host { return slices.Clone(l.hosts) }

// Host returns the host named name. The error wraps ErrNoHost.
func (l *Lab) Host(name string) (*Host, error) {
	for _, h := range l.hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return nil, fmt.Errorf("%w %q in lab %s", ErrNoHost, name, l.ID)
}

// Vars returns what scenarios need to run against this lab: "lab" (id,
// network, subnet), "hosts" (per host: ip, container, published ports), the
// environments' own variables, and under SecretsKey their credentials.
func (l *Lab) Vars() map[string]any { return cloneMap(l.vars) }

// Password returns a password for name that is random per lab but stable for
// its lifetime, also from a later process (the seed is in the lab state).
// Environments use it for database and VPN credentials.
func (l *Lab) Password(name string) string {
	m := hmac.New(sha256.New, l.seed)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))[:24]
}

// Down removes the lab's containers and network, and its state and vars
// files. It is safe to call more than once.
func (l *Lab) Down(ctx context.Context) error {
	start := time.Now()
	if l.stateDir != "" {
		unlock, err := lockStateDir(l.stateDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	if _, err := l.eng.removeLabelled(ctx, l.ID); err != nil {
		return fmt.Errorf("lab %s down: %w", l.ID, err)
	}
	if l.stateDir != "" {
		if err := removeState(l.stateDir, l.ID); err != nil {
			return err
		}
	}
	if l.varsFile != "" {
		if err := removeIfExists(l.varsFile); err != nil {
			return err
		}
	}
	l.removeSSHDir()
	l.logf("lab %s: down in %s", l.ID, time.Since(start).Round(time.Millisecond))
	return nil
}

// DownAll removes the lab of stateDir and every lab left behind by a
// process that is gone: an in-process lab (such as `run --lab`) whose
// process crashed, or a lab whose state file was lost. It keeps labs of
// running processes (tests, a concurrent `run --lab`) and labs that other
// state folders still describe; Purge removes those too. The state and vars
// files in stateDir are removed. It returns what it removed.
func DownAll(ctx context.Context, stateDir string) ([]Resource, error) {
	return downWhere(ctx, stateDir, leftover(stateDir))
}

// Purge removes every container and network carrying the lab label, in use
// or not, and the state and vars files in stateDir when it is not empty.
func Purge(ctx context.Context, stateDir string) ([]Resource, error) {
	return downWhere(ctx, stateDir, func(Resource) bool { return true })
}

func downWhere(ctx context.Context, stateDir string, remove func(Resource) bool) ([]Resource, error) {
	var varsFile string
	if stateDir != "" {
		abs, err := filepath.Abs(stateDir)
		if err != nil {
			return nil, fmt.Errorf("lab state folder: %w", err)
		}
		stateDir = abs
		unlock, err := lockStateDir(stateDir)
		if err != nil {
			return nil, err
		}
		defer unlock()
		varsFile = defaultVarsFile(stateDir)
		if st, err := loadState(stateDir); err == nil && st.VarsFile != "" {
			varsFile = st.VarsFile
		}
	}
	e, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	all, err := e.resources(ctx, "")
	if err != nil {
		return nil, err
	}
	// Decide per lab, not per resource, so a lab goes away whole.
	labs := map[string]bool{}
	for _, r := range all {
		if remove(r) {
			labs[r.Lab] = true
		}
	}
	var removed []Resource
	for _, id := range slices.Sorted(maps.Keys(labs)) {
		rs, err := e.removeLabelled(ctx, id)
		removed = append(removed, rs...)
		if err != nil {
			return removed, err
		}
	}
	if stateDir != "" {
		if err := removeState(stateDir, ""); err != nil {
			return removed, err
		}
		if err := removeIfExists(varsFile); err != nil {
			return removed, err
		}
		if err := removeSSHFiles(stateDir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// leftover reports whether a lab resource may go in `lab down` of stateDir.
func leftover(stateDir string) func(Resource) bool {
	abs, _ := filepath.Abs(stateDir)
	described := map[string]bool{} // state folder -> describes its lab
	return func(r Resource) bool {
		switch {
		case stateDir != "" && r.StateDir == abs:
			return true
		case ownerAlive(r.Owner):
			return false
		case r.StateDir == "":
			return true // in-process lab whose process is gone
		}
		key := r.StateDir + "\x00" + r.Lab
		ok, seen := described[key]
		if !seen {
			st, err := loadState(r.StateDir)
			ok = err == nil && st.ID == r.Lab
			described[key] = ok
		}
		return !ok
	}
}

// owner names this process in LabelOwner.
func owner() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// ownerAlive reports whether the process named by a LabelOwner value still
// runs. A process on another machine counts as alive: it cannot be checked.
func ownerAlive(o string) bool {
	host, pidStr, ok := strings.Cut(o, ":")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return false
	}
	if me, _ := os.Hostname(); host != me {
		return true
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// labels are the labels of every resource of the lab.
func (l *Lab) labels() map[string]string {
	m := map[string]string{LabelLab: l.ID, LabelOwner: owner()}
	if l.stateDir != "" {
		m[LabelState] = l.stateDir
	}
	return m
}

// createNetwork creates the bridge network name on subnet, or on the first
// free /24 of 10.213.0.0/16 (starting at a place derived from the network's
// name, so parallel labs rarely race for the same one), and returns its
// subnet and gateway.
func (l *Lab) createNetwork(ctx context.Context, name string, subnet netip.Prefix) (netip.Prefix, netip.Addr, error) {
	candidates := []netip.Prefix{subnet}
	if !subnet.IsValid() {
		used, err := l.eng.usedSubnets(ctx)
		if err != nil {
			return netip.Prefix{}, netip.Addr{}, err
		}
		h := fnv.New32a()
		h.Write([]byte(l.ID))
		if name != l.Network {
			h.Write([]byte(name))
		}
		first := int(h.Sum32() % 256)
		candidates = nil
		for i := range 256 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte((first + i) % 256), 0}), 24)
			if !slices.ContainsFunc(used, p.Overlaps) {
				candidates = append(candidates, p)
			}
		}
	}
	if len(candidates) == 0 {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("create lab network %s: no free /24 in 10.213.0.0/16; choose a subnet with --subnet", name)
	}
	for _, p := range candidates {
		gw := p.Masked().Addr().Next()
		ipv6 := false
		// Not cancelled half-way, for the same reason as container creation.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		_, err := l.eng.cli.NetworkCreate(cctx, name, client.NetworkCreateOptions{
			Driver:     "bridge",
			EnableIPv6: &ipv6,
			IPAM:       &network.IPAM{Config: []network.IPAMConfig{{Subnet: p.Masked(), Gateway: gw}}},
			Labels:     l.labels(),
		})
		cancel()
		if err == nil {
			if err := ctx.Err(); err != nil {
				return netip.Prefix{}, netip.Addr{}, err
			}
			return p.Masked(), gw, nil
		}
		// Another lab may have taken the subnet since we listed them.
		if !strings.Contains(err.Error(), "overlaps") || subnet.IsValid() {
			return netip.Prefix{}, netip.Addr{}, fmt.Errorf("create lab network %s on %s: %w (choose another subnet with --subnet)", name, p, err)
		}
	}
	return netip.Prefix{}, netip.Addr{}, fmt.Errorf("create lab network %s: every free /24 of 10.213.0.0/16 was taken meanwhile; choose a subnet with --subnet", name)
}

// needsPrivate reports whether a host of chosen lives on, or joins, the
// private network.
func needsPrivate(chosen []Env) bool {
	for _, e := range chosen {
		for _, h := range e.Hosts {
			if h.Private || h.JoinsPrivate {
				return true
			}
		}
	}
	return false
}

// usedSubnets lists the subnets of existing Docker networks and of the
// machine's interfaces.
func (e *engine) usedSubnets(ctx context.Context) ([]netip.Prefix, error) {
	res, err := e.cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	var used []netip.Prefix
	for _, n := range res.Items {
		for _, c := range n.IPAM.Config {
			if c.Subnet.IsValid() {
				used = append(used, c.Subnet)
			}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				used = append(used, p.Masked())
			}
		}
	}
	return used, nil
}

// startHosts creates and starts every host in parallel and waits until all
// are ready.
func (l *Lab) startHosts(ctx context.Context, chosen []Env) error {
	// .1 is the gateway; hosts start at .10.
	first := func(p netip.Prefix) netip.Addr {
		ip := p.Addr()
		for range 10 {
			ip = ip.Next()
		}
		return ip
	}
	ip, private := first(l.Subnet), netip.Addr{}
	if l.PrivateSubnet.IsValid() {
		private = first(l.PrivateSubnet)
	}
	next := func(subnet netip.Prefix, a *netip.Addr) (netip.Addr, error) {
		if !subnet.Contains(*a) {
			return netip.Addr{}, fmt.Errorf("subnet %s too small for %d hosts", subnet, len(l.hosts)+1)
		}
		got := *a
		*a = a.Next()
		return got, nil
	}
	for _, e := range chosen {
		for _, spec := range e.Hosts {
			h := &Host{
				Name:      spec.Name,
				Env:       e.Name,
				Container: "opsdrill-" + l.ID + "-" + spec.Name,
				Ports:     spec.Ports,
				spec:      withFiles(spec, l.sshFiles(spec.Name)),
				lab:       l,
			}
			var err error
			switch {
			case spec.Private:
				h.Network = l.PrivateNetwork
				h.IP, err = next(l.PrivateSubnet, &private)
			case spec.JoinsPrivate:
				if h.IP, err = next(l.Subnet, &ip); err == nil {
					h.PrivateIP, err = next(l.PrivateSubnet, &private)
				}
			default:
				h.IP, err = next(l.Subnet, &ip)
			}
			if err != nil {
				return err
			}
			l.hosts = append(l.hosts, h)
		}
	}
	errs := make([]error, len(l.hosts))
	var wg sync.WaitGroup
	for i, h := range l.hosts {
		wg.Go(func() {
			t := time.Now()
			if err := h.create(ctx); err != nil {
				errs[i] = err
				return
			}
			if h.PrivateIP.IsValid() {
				if err := h.joinPrivate(ctx); err != nil {
					errs[i] = err
					return
				}
			}
			if err := h.prepare(ctx); err != nil {
				errs[i] = err
				return
			}
			l.logf("lab %s: host %s (%s) ready in %s", l.ID, h.Name, h.IP, time.Since(t).Round(time.Millisecond))
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkPortsFree fails when a port a host publishes is already bound on
// 127.0.0.1, with a message naming the host and the port, before anything
// is created.
func checkPortsFree(chosen []Env) error {
	owner := map[int]string{}
	for _, e := range chosen {
		for _, h := range e.Hosts {
			for _, p := range h.Ports {
				if prev, dup := owner[p.Host]; dup {
					return fmt.Errorf("%w: hosts %s and %s both publish 127.0.0.1:%d", ErrConflict, prev, h.Name, p.Host)
				}
				owner[p.Host] = h.Name
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Host)))
				if err != nil {
					return fmt.Errorf("%w: host %s (environment %s) publishes 127.0.0.1:%d, which is taken (%v); stop what listens there (ss -ltnp 'sport = :%d'), or `opsdrill lab down` if it is an earlier lab",
						ErrPortInUse, h.Name, e.Name, p.Host, err, p.Host)
				}
				ln.Close()
			}
		}
	}
	return nil
}

// buildVars assembles the vars: the lab's own, then each environment's.
func (l *Lab) buildVars(chosen []Env) (map[string]any, error) {
	hosts := map[string]any{}
	for _, h := range l.hosts {
		hv := map[string]any{"ip": h.IP.String(), "name": h.Name, "container": h.Container, "env": h.Env}
		if h.PrivateIP.IsValid() {
			hv["private_ip"] = h.PrivateIP.String()
		}
		if h.Network != "" {
			hv["network"] = h.Network
		}
		if len(h.Ports) > 0 {
			ports := map[string]any{}
			for _, p := range h.Ports {
				ports[strconv.Itoa(p.Container)] = "127.0.0.1:" + strconv.Itoa(p.Host)
			}
			hv["ports"] = ports
		}
		hosts[h.Name] = hv
	}
	labVars := map[string]any{
		"id":      l.ID,
		"network": l.Network,
		"subnet":  l.Subnet.String(),
		"gateway": l.Gateway.String(),
		"envs":    slices.Clone(l.Envs),
	}
	if l.PrivateNetwork != "" {
		labVars["private_network"] = l.PrivateNetwork
		labVars["private_subnet"] = l.PrivateSubnet.String()
	}
	vars := map[string]any{"lab": labVars, "hosts": hosts}
	secrets := map[string]any{}
	for _, e := range chosen {
		if e.Vars == nil {
			continue
		}
		ev, es := e.Vars(l)
		for k, v := range ev {
			if _, dup := vars[k]; dup || k == SecretsKey {
				return nil, fmt.Errorf("%w: environment %s sets var %q, already set", ErrConflict, e.Name, k)
			}
			vars[k] = v
		}
		for k, v := range es {
			if _, dup := secrets[k]; dup {
				return nil, fmt.Errorf("%w: environment %s sets secret %q, already set", ErrConflict, e.Name, k)
			}
			secrets[k] = v
		}
	}
	if len(secrets) > 0 {
		vars[SecretsKey] = secrets
	}
	// Give vars the shape they have after a trip through state.json, so a
	// lab returned by Up and one reopened by Open report equal vars.
	b, err := json.Marshal(vars)
	if err != nil {
		return nil, fmt.Errorf("encode lab vars: %w", err)
	}
	var norm map[string]any
	if err := json.Unmarshal(b, &norm); err != nil {
		return nil, fmt.Errorf("encode lab vars: %w", err)
	}
	return norm, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// cloneValue deep-copies the maps and slices of JSON-shaped vars.
func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

// withFiles returns spec with files added to its own.
func withFiles(spec HostSpec, files []File) HostSpec {
	spec.Files = append(slices.Clone(spec.Files), files...)
	return spec
}

// removeSSHDir removes the ssh files Up wrote, and the folder when it is a
// temporary one of the lab's own.
func (l *Lab) removeSSHDir() {
	if l.sshDir == "" {
		return
	}
	_ = removeSSHFiles(l.sshDir)
	if l.sshTemp {
		_ = os.Remove(l.sshDir)
	}
}
