package vpn

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// Reach is tunnel.reach: from the customer gateway, prove an instance in
// the VPC answers through the tunnel, and when it does not, tell which of
// the runbook's troubleshooting causes it is (part 4): the gateway's route
// to the VPC, the instance's security group dropping ICMP, or the VPC's
// route table not sending replies back through the VGW (Route
// Propagation).
type Reach struct {
	Host        string        `yaml:"host" doc:"the customer gateway: local (default) or lab:NAME; the checks run there"`
	Target      string        `yaml:"target" required:"true" doc:"private address of an instance in the VPC (the runbook's EC2 instance)"`
	VGWInsideIP string        `yaml:"vgw_inside_ip" required:"true" doc:"the VGW inside address (vpn.config's vgw_inside_ip)"`
	VPCCIDR     string        `yaml:"vpc_cidr" required:"true" doc:"the VPC's CIDR (vpn.config's vpc_cidr), for the fix"`
	TCPPort     int           `yaml:"tcp_port" doc:"a TCP port the security group allows (the runbook's SSH), probed when ping gets no reply: any answer, even a refusal, proves the way back"`
	Count       int           `yaml:"count" doc:"echo requests per ping"`
	Timeout     time.Duration `yaml:"timeout" doc:"how long to wait for a reply to each probe"`
}

func newReach() steps.Step {
	return &Reach{TCPPort: 22, Count: 3, Timeout: 2 * time.Second}
}

// Validate checks the parameters.
func (r *Reach) Validate() error {
	if err := hostexec.Validate(r.Host); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"target", r.Target}, {"vgw_inside_ip", r.VGWInsideIP}} {
		if a, err := netip.ParseAddr(f.v); err != nil || !a.Is4() {
			return fmt.Errorf("%s: want an IPv4 address, got %q", f.name, f.v)
		}
	}
	p, err := netip.ParsePrefix(r.VPCCIDR)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("vpc_cidr: want an IPv4 CIDR such as 172.28.0.0/16, got %q", r.VPCCIDR)
	}
	if !p.Contains(netip.MustParseAddr(r.Target)) {
		return fmt.Errorf("target: %s is not in vpc_cidr %s", r.Target, p)
	}
	if r.TCPPort < 1 || r.TCPPort > 65535 {
		return fmt.Errorf("tcp_port: must be 1 to 65535, got %d", r.TCPPort)
	}
	if r.Count < 1 || r.Count > 100 {
		return fmt.Errorf("count: must be 1 to 100, got %d", r.Count)
	}
	if r.Timeout < 100*time.Millisecond || r.Timeout > time.Minute {
		return fmt.Errorf("timeout: must be 100ms to 1m, got %s", r.Timeout)
	}
	return nil
}

// The causes tunnel.reach names, with the runbook's fix for each.
const (
	causeNone             = ""
	causeTunnel           = "vgw_inside_unreachable"
	causeCGWRoute         = "cgw_route"
	causeSecurityGroup    = "security_group_icmp"
	causeRoutePropagation = "route_propagation"
)

// Run probes and diagnoses.
func (r *Reach) Run(ctx context.Context, env *steps.Env) error {
	var rows [][]string
	note := func(check, result string) { rows = append(rows, []string{check, result}) }
	defer func() {
		env.AddEvidence(steps.TableEvidence("VPC reachability through the tunnel", []string{"check", "result"}, rows))
	}()

	route, err := r.run(ctx, "ip", "route", "get", r.Target)
	if err != nil {
		return err
	}
	viaTunnel := r.routesViaTunnel(ctx, route)
	note("ip route get "+r.Target, firstLine(route))

	vgwOK, vgwOut, err := r.ping(ctx, r.VGWInsideIP)
	if err != nil {
		return err
	}
	note("ping VGW inside "+r.VGWInsideIP, vgwOut)
	targetOK, targetOut, err := r.ping(ctx, r.Target)
	if err != nil {
		return err
	}
	note("ping "+r.Target, targetOut)

	tcp := "not probed"
	tcpAnswered := false
	if !targetOK && viaTunnel && vgwOK {
		if tcpAnswered, tcp, err = r.tcpProbe(ctx); err != nil {
			return err
		}
		note(fmt.Sprintf("TCP %s:%d", r.Target, r.TCPPort), tcp)
	}

	cause, fix := causeNone, ""
	switch {
	case targetOK:
	case !viaTunnel:
		cause = causeCGWRoute
		fix = fmt.Sprintf("add the route on the customer gateway: route add -net %s gw %s (runbook part 3; ip route replace %s via %s), and keep it in /etc/rc.local or /etc/network/interfaces (part 4)",
			r.VPCCIDR, r.VGWInsideIP, r.VPCCIDR, r.VGWInsideIP)
	case !vgwOK:
		cause = causeTunnel
		fix = "the VGW inside address does not answer: bring the tunnel up (tunnel.up) and make sure you have done 'Route Propagation' for that VGW under Routing Tables -> Route Propagation (runbook part 4)"
	case tcpAnswered:
		cause = causeSecurityGroup
		fix = fmt.Sprintf("security group: allow ICMP: %s answers TCP port %d but not ping, so its firewall drops ICMP; add an inbound ICMP rule to the instance's security group (runbook part 4)", r.Target, r.TCPPort)
	default:
		cause = causeRoutePropagation
		fix = fmt.Sprintf("enable Route Propagation: %s answers neither ping nor TCP port %d through a tunnel that carries the VGW inside address, so the VPC's route table does not send replies back through the VGW; in the VPC console open the Route Table, tab Route Propagation, and tick Propagate for the VGW (runbook 1b and part 4)", r.Target, r.TCPPort)
	}
	env.SetOutput("route_via_tunnel", viaTunnel)
	env.SetOutput("vgw_inside_reachable", vgwOK)
	env.SetOutput("reachable", targetOK)
	env.SetOutput("tcp_answered", tcpAnswered)
	env.SetOutput("cause", cause)
	env.SetOutput("fix", fix)
	if targetOK {
		env.Logf("%s answers through the tunnel", r.Target)
		return nil
	}
	note("diagnosis", cause+": "+fix)
	return steps.Failf("%s does not answer through the tunnel: %s", r.Target, fix)
}

// run runs argv on the gateway; a non-zero exit is returned as output too.
func (r *Reach) run(ctx context.Context, argv ...string) (string, error) {
	res, err := hostexec.Run(ctx, r.Host, argv, nil)
	if err != nil {
		return "", fmt.Errorf("%s on %s: %w", argv[0], hostLabel(r.Host), err)
	}
	return strings.TrimSpace(res.Stdout + "\n" + res.Stderr), nil
}

var routeVia = regexp.MustCompile(`\bvia (\S+)`)
var routeDev = regexp.MustCompile(`\bdev (\S+)`)

// routesViaTunnel says whether traffic to the target goes the way the
// tunnel does: via the VGW inside address (the runbook's route, or kernel
// IPsec policies behind it), or out of the device that carries the VGW
// inside address (kernel-libipsec's TUN, charon's table 220 routes).
func (r *Reach) routesViaTunnel(ctx context.Context, route string) bool {
	if route == "" || strings.Contains(route, "unreachable") || strings.Contains(route, "prohibit") ||
		strings.Contains(route, "blackhole") || noRoute.MatchString(route) {
		return false
	}
	if m := routeVia.FindStringSubmatch(route); m != nil && m[1] == r.VGWInsideIP {
		return true
	}
	inside, err := r.run(ctx, "ip", "route", "get", r.VGWInsideIP)
	if err != nil {
		return false
	}
	a, b := routeDev.FindStringSubmatch(route), routeDev.FindStringSubmatch(inside)
	return a != nil && b != nil && a[1] == b[1] && routeVia.FindStringSubmatch(route) == nil
}

var noRoute = regexp.MustCompile(`No route to host|Network is unreachable`)

var pingReceived = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// ping runs the gateway's own ping and reports whether a reply came.
func (r *Reach) ping(ctx context.Context, addr string) (bool, string, error) {
	wait := strconv.Itoa(max(1, int(r.Timeout.Round(time.Second)/time.Second)))
	out, err := r.run(ctx, "ping", "-n", "-c", strconv.Itoa(r.Count), "-i", "0.2", "-W", wait, addr)
	if err != nil {
		return false, "", err
	}
	m := pingReceived.FindStringSubmatch(out)
	if m == nil && noRoute.MatchString(out) {
		// ping gives up before sending: the gateway has no route.
		return false, firstLine(out), nil
	}
	if m == nil {
		return false, "", fmt.Errorf("ping %s on %s: no summary line in its output: %s", addr, hostLabel(r.Host), firstLine(out))
	}
	received, _ := strconv.Atoi(m[2])
	return received > 0, m[0], nil
}

// tcpProbe opens a TCP connection from the gateway with bash's /dev/tcp:
// connected or refused both prove packets come back; a timeout does not.
func (r *Reach) tcpProbe(ctx context.Context) (bool, string, error) {
	secs := strconv.Itoa(max(1, int(r.Timeout.Round(time.Second)/time.Second)))
	script := fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", r.Target, r.TCPPort)
	res, err := hostexec.Run(ctx, r.Host, []string{"timeout", secs, "bash", "-c", script}, nil)
	if err != nil {
		return false, "", fmt.Errorf("TCP probe on %s: %w", hostLabel(r.Host), err)
	}
	switch {
	case res.ExitCode == 0:
		return true, "connected", nil
	case strings.Contains(res.Stderr, "Connection refused"):
		return true, "refused (a TCP reset came back)", nil
	case res.ExitCode == 124:
		return false, "no answer within " + secs + "s", nil
	}
	return false, fmt.Sprintf("no answer (exit %d: %s)", res.ExitCode, firstLine(res.Stderr)), nil
}

func hostLabel(ref string) string {
	if hostexec.IsLocal(ref) {
		return "this machine"
	}
	return ref
}

// firstLine is the first line of s, bounded for messages.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
