package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

// Host is a running lab host: a container with a fixed name and address on
// the lab network.
type Host struct {
	Name        string     // hostname and DNS name on the lab network
	Env         string     // environment that declared it
	Container   string     // container name: opsdrill-<lab>-<host>
	ContainerID string     // container id
	IP          netip.Addr // fixed address on the host's network
	// PrivateIP is the address on the lab's private network of a host
	// that joins it besides the lab network (HostSpec.JoinsPrivate).
	PrivateIP netip.Addr
	Ports     []Port // published on 127.0.0.1
	// Network is the Docker network the host lives on: the lab network,
	// or the private network for a HostSpec.Private host.
	Network string

	spec HostSpec
	lab  *Lab
	// ops, when set, carries the host's operations instead of the
	// container engine (see hostOps).
	ops hostOps
}

// ExecResult is the outcome of a command run in a host.
type ExecResult struct {
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int
}

// Err returns nil when the command exited 0, else an error quoting the
// command, its exit code and the end of its stderr.
func (r ExecResult) Err() error {
	if r.ExitCode == 0 {
		return nil
	}
	msg := strings.TrimSpace(r.Stderr)
	if msg == "" {
		msg = strings.TrimSpace(r.Stdout)
	}
	if len(msg) > 400 {
		msg = "…" + msg[len(msg)-400:]
	}
	return fmt.Errorf("%q exited %d: %s", strings.Join(r.Args, " "), r.ExitCode, msg)
}

// Addr returns "ip:port" of a port on the lab network.
func (h *Host) Addr(port int) string {
	return netip.AddrPortFrom(h.IP, uint16(port)).String()
}

// HostAddr returns "127.0.0.1:port" where the host's container port is
// published, and false when it is not published.
func (h *Host) HostAddr(containerPort int) (string, bool) {
	for _, p := range h.Ports {
		if p.Container == containerPort {
			return "127.0.0.1:" + strconv.Itoa(p.Host), true
		}
	}
	return "", false
}

// Exec runs args in the host and returns its output and exit code. The error
// is only for failing to run it; check ExecResult.Err for the exit code.
func (h *Host) Exec(ctx context.Context, args ...string) (ExecResult, error) {
	return h.ExecCommand(ctx, Command{Args: args})
}

// ExecCommand runs c in the host. A detached command returns as soon as it
// started, with exit code 0; its output is discarded, so daemons should log
// to a file. Cancelling ctx stops waiting for the command (it may keep
// running in the host).
func (h *Host) ExecCommand(ctx context.Context, c Command) (ExecResult, error) {
	res := ExecResult{Args: c.Args}
	if len(c.Args) == 0 {
		return res, errors.New("exec: empty command")
	}
	if h.ops != nil {
		return h.ops.exec(ctx, c)
	}
	cli := h.lab.eng.cli
	attach := !c.Detach
	cr, err := cli.ExecCreate(ctx, h.ContainerID, client.ExecCreateOptions{
		Cmd:          c.Args,
		Env:          c.Env,
		AttachStdout: attach,
		AttachStderr: attach,
		AttachStdin:  attach && c.Stdin != nil,
	})
	if err != nil {
		return res, fmt.Errorf("host %s: exec %q: %w", h.Name, c.Args[0], err)
	}
	if c.Detach {
		if _, err := cli.ExecStart(ctx, cr.ID, client.ExecStartOptions{Detach: true}); err != nil {
			return res, fmt.Errorf("host %s: exec %q: %w", h.Name, c.Args[0], err)
		}
		return res, nil
	}
	att, err := cli.ExecAttach(ctx, cr.ID, client.ExecAttachOptions{})
	if err != nil {
		return res, fmt.Errorf("host %s: exec %q: %w", h.Name, c.Args[0], err)
	}
	defer att.Close()
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()
	if c.Stdin != nil {
		go func() {
			_, _ = att.Conn.Write(c.Stdin)
			_ = att.CloseWrite()
		}()
	}
	var stdout, stderr bytes.Buffer
	_, err = stdcopy.StdCopy(&stdout, &stderr, att.Reader)
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	if ctx.Err() != nil {
		return res, fmt.Errorf("host %s: exec %q: %w", h.Name, c.Args[0], ctx.Err())
	}
	if err != nil {
		return res, fmt.Errorf("host %s: exec %q: read output: %w", h.Name, c.Args[0], err)
	}
	// The stream ends a moment before the engine records the exit code.
	for {
		ins, err := cli.ExecInspect(ctx, cr.ID, client.ExecInspectOptions{})
		if err != nil {
			return res, fmt.Errorf("host %s: exec %q: %w", h.Name, c.Args[0], err)
		}
		if !ins.Running {
			res.ExitCode = ins.ExitCode
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("host %s: exec %q: %w", h.Name, c.Args[0], ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Kill stops the host abruptly with SIGKILL, like a power cut, and returns
// once the engine reports it stopped.
func (h *Host) Kill(ctx context.Context) error {
	if h.ops != nil {
		return h.noEngine("kill")
	}
	if _, err := h.lab.eng.cli.ContainerKill(ctx, h.ContainerID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return fmt.Errorf("kill host %s: %w", h.Name, err)
	}
	return h.waitStopped(ctx)
}

// Stop stops the host gracefully: its processes get SIGTERM and timeout to
// exit before SIGKILL.
func (h *Host) Stop(ctx context.Context, timeout time.Duration) error {
	if h.ops != nil {
		return h.ops.stop(ctx, timeout)
	}
	secs := int(timeout.Round(time.Second) / time.Second)
	if _, err := h.lab.eng.cli.ContainerStop(ctx, h.ContainerID, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("stop host %s: %w", h.Name, err)
	}
	return h.waitStopped(ctx)
}

// Start brings a stopped or killed host back as Up left it: the container is
// started with its address, its start commands run again and its readiness
// probe is awaited.
func (h *Host) Start(ctx context.Context) error {
	if h.ops != nil {
		return h.ops.start(ctx)
	}
	if _, err := h.lab.eng.cli.ContainerStart(ctx, h.ContainerID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start host %s: %w", h.Name, err)
	}
	return h.prepare(ctx)
}

// Disconnect cuts the host off the lab network; it keeps running.
func (h *Host) Disconnect(ctx context.Context) error {
	if h.ops != nil {
		return h.noEngine("disconnect")
	}
	_, err := h.lab.eng.cli.NetworkDisconnect(ctx, h.net(), client.NetworkDisconnectOptions{Container: h.ContainerID, Force: true})
	if err != nil {
		return fmt.Errorf("disconnect host %s from %s: %w", h.Name, h.net(), err)
	}
	return nil
}

// Reconnect attaches the host to the lab network again, with its address
// and name.
func (h *Host) Reconnect(ctx context.Context) error {
	if h.ops != nil {
		return h.noEngine("reconnect")
	}
	_, err := h.lab.eng.cli.NetworkConnect(ctx, h.net(), client.NetworkConnectOptions{
		Container:      h.ContainerID,
		EndpointConfig: h.endpoint(),
	})
	if err != nil {
		return fmt.Errorf("reconnect host %s to %s: %w", h.Name, h.net(), err)
	}
	return nil
}

// Connected reports whether the host is attached to the lab network (false
// after Disconnect).
func (h *Host) Connected(ctx context.Context) (bool, error) {
	if h.ops != nil {
		return false, h.noEngine("inspect")
	}
	ins, err := h.lab.eng.cli.ContainerInspect(ctx, h.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		return false, fmt.Errorf("inspect host %s: %w", h.Name, err)
	}
	ns := ins.Container.NetworkSettings
	if ns == nil {
		return false, nil
	}
	_, ok := ns.Networks[h.net()]
	return ok, nil
}

// State returns the container state: running, exited, ..., or "missing"
// when the container no longer exists.
func (h *Host) State(ctx context.Context) (string, error) {
	if h.ops != nil {
		return h.ops.state(ctx)
	}
	ins, err := h.lab.eng.cli.ContainerInspect(ctx, h.ContainerID, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return "missing", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect host %s: %w", h.Name, err)
	}
	return string(ins.Container.State.Status), nil
}

// Logs returns the last lines of the container's output (tail <= 0: all).
func (h *Host) Logs(ctx context.Context, tail int) (string, error) {
	if h.ops != nil {
		return "", h.noEngine("read the logs of")
	}
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true}
	if tail > 0 {
		opts.Tail = strconv.Itoa(tail)
	}
	rc, err := h.lab.eng.cli.ContainerLogs(ctx, h.ContainerID, opts)
	if err != nil {
		return "", fmt.Errorf("logs of host %s: %w", h.Name, err)
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := stdcopy.StdCopy(&b, &b, rc); err != nil {
		return b.String(), fmt.Errorf("logs of host %s: %w", h.Name, err)
	}
	return b.String(), nil
}

func (h *Host) waitStopped(ctx context.Context) error {
	for {
		st, err := h.State(ctx)
		if err != nil {
			return err
		}
		if st != string(container.StateRunning) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %s: waiting for it to stop: %w", h.Name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *Host) endpoint() *network.EndpointSettings {
	return &network.EndpointSettings{
		IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: h.IP},
		Aliases:    []string{h.Name},
	}
}

// net is the Docker network the host lives on.
func (h *Host) net() string {
	if h.Network != "" {
		return h.Network
	}
	return h.lab.Network
}

// joinPrivate attaches a JoinsPrivate host to the lab's private network,
// at its PrivateIP.
func (h *Host) joinPrivate(ctx context.Context) error {
	_, err := h.lab.eng.cli.NetworkConnect(ctx, h.lab.PrivateNetwork, client.NetworkConnectOptions{
		Container: h.ContainerID,
		EndpointConfig: &network.EndpointSettings{
			IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: h.PrivateIP},
			Aliases:    []string{h.Name},
		},
	})
	if err != nil {
		return fmt.Errorf("attach host %s to %s: %w", h.Name, h.lab.PrivateNetwork, err)
	}
	return nil
}

// create creates and starts the container through testcontainers. The image
// is known to be present, so testcontainers never pulls.
func (h *Host) create(ctx context.Context) error {
	l := h.lab
	labels := l.labels()
	labels[LabelEnv], labels[LabelHost] = h.Env, h.Name
	var files []testcontainers.ContainerFile
	for _, f := range h.spec.Files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		cf := testcontainers.ContainerFile{ContainerFilePath: f.Path, HostFilePath: f.HostPath, FileMode: mode}
		if f.Content != nil {
			cf.Reader = bytes.NewReader(f.Content)
		}
		files = append(files, cf)
	}
	var exposed []string
	bindings := network.PortMap{}
	for _, p := range h.Ports {
		port := network.MustParsePort(strconv.Itoa(p.Container) + "/tcp")
		exposed = append(exposed, port.String())
		bindings[port] = []network.PortBinding{{HostIP: netip.AddrFrom4([4]byte{127, 0, 0, 1}), HostPort: strconv.Itoa(p.Host)}}
	}
	req := testcontainers.ContainerRequest{
		Image:          l.Image,
		Name:           h.Container,
		Labels:         labels,
		Env:            h.spec.Env,
		Files:          files,
		ExposedPorts:   exposed,
		Networks:       []string{h.net()},
		NetworkAliases: map[string][]string{h.net(): {h.Name}},
		ConfigModifier: func(c *container.Config) { c.Hostname = h.Name },
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.NetworkMode = container.NetworkMode(h.net())
			hc.PortBindings = bindings
			hc.Sysctls = h.spec.Sysctls
			if h.spec.NetAdmin {
				hc.CapAdd = append(hc.CapAdd, "NET_ADMIN")
			}
			if h.spec.Tun {
				hc.Devices = append(hc.Devices, container.DeviceMapping{
					PathOnHost: "/dev/net/tun", PathInContainer: "/dev/net/tun", CgroupPermissions: "rwm",
				})
			}
		},
		EndpointSettingsModifier: func(eps map[string]*network.EndpointSettings) {
			ep := h.endpoint()
			if old := eps[h.net()]; old != nil {
				ep.NetworkID = old.NetworkID
			}
			eps[h.net()] = ep
		},
	}
	// The engine may complete a create whose request was cancelled, after
	// Up's cleanup listed the lab's containers; so the create and start are
	// not cancelled half-way (they take about a second), only waited for.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	c, err := testcontainers.GenericContainer(cctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req,
		Started:          true,
		Logger:           tclog.NewNoopLogger(),
	})
	if c != nil {
		h.ContainerID = c.GetContainerID()
	}
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, explainCreate(err))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	return nil
}

// prepare starts sshd, runs the start commands, then waits for readiness.
func (h *Host) prepare(ctx context.Context) error {
	if err := h.startSSH(ctx); err != nil {
		return err
	}
	return h.startServices(ctx)
}

// startServices runs the host's start commands and waits for its readiness
// probe: what prepare does after sshd, also on a host that kept running
// while its services were stopped.
func (h *Host) startServices(ctx context.Context) error {
	for _, c := range h.spec.Start {
		res, err := h.ExecCommand(ctx, c)
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			return fmt.Errorf("%w: host %s: start command: %w%s", ErrNotReady, h.Name, err, h.logTail(ctx))
		}
	}
	p := h.spec.Ready
	if p == nil {
		return nil
	}
	timeout, interval := p.Timeout, p.Interval
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	for {
		res, err := h.Exec(ctx, p.Cmd...)
		if err == nil && res.ExitCode == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("host %s: waiting for readiness: %w", h.Name, ctx.Err())
		}
		if time.Now().After(deadline) {
			last := err
			if last == nil {
				last = res.Err()
			}
			return fmt.Errorf("%w: host %s not ready after %s: probe %w%s", ErrNotReady, h.Name, timeout, last, h.logTail(ctx))
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

// logTail quotes the end of the container output for error messages: the
// container is removed right after a failed start.
func (h *Host) logTail(ctx context.Context) string {
	out, err := h.Logs(ctx, 20)
	if err != nil || strings.TrimSpace(out) == "" {
		return ""
	}
	return "\ncontainer output (last lines):\n" + out
}

// explainCreate adds what to do to the errors a container start typically
// hits.
func explainCreate(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "port is already allocated"), strings.Contains(msg, "address already in use"):
		return fmt.Errorf("%w: %w; free the port or `opsdrill lab down` an earlier lab", ErrPortInUse, err)
	case strings.Contains(msg, "/dev/net/tun"):
		return fmt.Errorf("%w (the machine needs the tun module: modprobe tun)", err)
	}
	return err
}
