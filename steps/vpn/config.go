package vpn

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
)

// Config is vpn.config: read an AWS Generic VPN configuration and render
// the strongSwan configuration of one of its tunnels.
type Config struct {
	File          string `yaml:"file" doc:"the AWS Site-to-Site VPN Generic configuration text (relative to the scenario's folder)" required:"true"`
	Tunnel        int    `yaml:"tunnel" doc:"which tunnel to configure: 1 or 2"`
	VPCCIDR       string `yaml:"vpc_cidr" doc:"the VPC's CIDR, the remote traffic selector and the route through the tunnel, e.g. 172.28.0.0/16" required:"true"`
	Name          string `yaml:"name" doc:"connection name in swanctl.conf (default aws-tunnel-N)"`
	LocalAddress  string `yaml:"local_address" doc:"this gateway's own address when it is not the file's CGW outside address (behind NAT); default any"`
	RemoteAddress string `yaml:"remote_address" doc:"reach the VGW at this address instead of the file's outside address (a lab standing in for AWS)"`
	Interface     string `yaml:"interface" doc:"interface that gets the CGW inside address and the VPC route"`
	Output        string `yaml:"output" doc:"where to write swanctl.conf (mode 0600); default a private temporary file removed after the scenario"`
}

var connName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func newConfig() steps.Step { return &Config{Tunnel: 1, Interface: "eth0"} }

// Validate checks the parameters.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.File) == "" {
		return errors.New("file: required: the Generic configuration downloaded from the VPC console")
	}
	if c.Tunnel != 1 && c.Tunnel != 2 {
		return fmt.Errorf("tunnel: must be 1 or 2, got %d", c.Tunnel)
	}
	p, err := netip.ParsePrefix(c.VPCCIDR)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("vpc_cidr: expected an IPv4 CIDR such as 172.28.0.0/16, got %q", c.VPCCIDR)
	}
	if p != p.Masked() {
		return fmt.Errorf("vpc_cidr: %s has host bits set; the network is %s", p, p.Masked())
	}
	if c.Name != "" && !connName.MatchString(c.Name) {
		return fmt.Errorf("name: %q: use letters, digits, '.', '_' and '-' (at most 63)", c.Name)
	}
	for _, a := range []struct{ name, v string }{{"local_address", c.LocalAddress}, {"remote_address", c.RemoteAddress}} {
		if a.v == "" {
			continue
		}
		if ip, err := netip.ParseAddr(a.v); err != nil || !ip.Is4() {
			return fmt.Errorf("%s: expected an IPv4 address, got %q", a.name, a.v)
		}
	}
	if !ifaceName.MatchString(c.Interface) {
		return fmt.Errorf("interface: %q is not an interface name", c.Interface)
	}
	return nil
}

var ifaceName = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,15}$`)

// Run parses the file, renders the tunnel and publishes the result.
func (c *Config) Run(ctx context.Context, env *steps.Env) error {
	path := env.Path(c.File)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	g, err := ParseGeneric(f, c.File)
	f.Close()
	if err != nil {
		return err
	}
	for _, t := range g.Tunnels {
		env.Secret(t.PSK)
	}
	for _, w := range g.Warnings {
		env.Logf("warning: %s", w)
	}
	t, _ := g.Tunnel(c.Tunnel)
	if t.CGWOutsidePlaceholder != 0 {
		// AWS's examples print YOUR_UPLINK_ADDRESS; the gateway's own
		// address is then the IKE identity AWS knows it by.
		if c.LocalAddress == "" {
			return ParseError{File: c.File, Line: t.CGWOutsidePlaceholder,
				Msg: fmt.Sprintf("tunnel #%d: Outside IP Addresses: Customer Gateway is a placeholder, not an address; set local_address to the customer gateway's public address", t.Number)}
		}
		t.CGWOutside = netip.MustParseAddr(c.LocalAddress)
	}
	gw := RenderOptions{Name: c.Name, VPC: netip.MustParsePrefix(c.VPCCIDR), Interface: c.Interface}
	if gw.Name == "" {
		gw.Name = "aws-tunnel-" + strconv.Itoa(c.Tunnel)
	}
	if c.LocalAddress != "" {
		gw.LocalAddress = netip.MustParseAddr(c.LocalAddress)
	}
	if c.RemoteAddress != "" {
		gw.RemoteAddress = netip.MustParseAddr(c.RemoteAddress)
	}
	r, err := Render(g, t, gw, filepath.Base(c.File))
	if err != nil {
		return fmt.Errorf("tunnel #%d: %w", c.Tunnel, err)
	}
	out, err := c.write(env, r)
	if err != nil {
		return err
	}

	var names []string
	for _, ch := range r.Children {
		names = append(names, ch.Name)
	}
	remote := t.VGWOutside
	if gw.RemoteAddress.IsValid() {
		remote = gw.RemoteAddress
	}
	outputs := map[string]any{
		"config_file":       out,
		"connection":        r.Conn,
		"children":          names,
		"vpn_connection_id": g.VPNConnectionID,
		"gateway_id":        g.GatewayID,
		"customer_gateway":  g.CustomerGateway,
		"tunnel":            t.Number,
		"cgw_outside_ip":    t.CGWOutside.String(),
		"vgw_outside_ip":    t.VGWOutside.String(),
		"remote_address":    remote.String(),
		"cgw_inside_ip":     t.CGWInside.Addr().String(),
		"vgw_inside_ip":     t.VGWInside.Addr().String(),
		"inside_cidr":       t.Inside().String(),
		"vpc_cidr":          gw.VPC.String(),
		"psk":               t.PSK,
		"ike_version":       t.IKE.Version,
		"ike_mode":          t.IKE.Mode,
		"ike_proposal":      r.IKEProposal,
		"ike_lifetime_s":    int(t.IKE.Lifetime.Seconds()),
		"esp_proposal":      r.ESPProposal,
		"esp_lifetime_s":    int(t.IPsec.Lifetime.Seconds()),
		"pfs_groups":        intsAny(t.IPsec.PFSGroups),
		"dpd_interval_s":    int(t.DPDInterval.Seconds()),
		"dpd_retries":       t.DPDRetries,
		"mtu":               t.MTU,
		"mss":               t.MSS,
		"routing":           t.Routing,
		"up_commands":       r.UpCommands,
		"down_commands":     r.DownCommands,
	}
	for k, v := range outputs {
		env.SetOutput(k, v)
	}
	env.AddEvidence(tunnelTable(g))
	env.AddEvidence(redactedConf(r))
	env.Logf("tunnel #%d: %s (%s) -> %s, IKEv%d %s, ESP %s, VPC %s; swanctl.conf written",
		t.Number, t.CGWOutside, t.CGWInside, remote, t.IKE.Version, r.IKEProposal, r.ESPProposal, gw.VPC)
	return nil
}

// write stores swanctl.conf where asked, or in a private temporary folder
// removed by the scenario's undo stack: the file holds the pre-shared key,
// so it never goes to the report folder.
func (c *Config) write(env *steps.Env, r *Rendered) (string, error) {
	data := []byte(r.SwanctlConf)
	if c.Output != "" {
		out := env.Path(c.Output)
		if err := writePrivate(out, data); err != nil {
			return "", fmt.Errorf("output: %w", err)
		}
		return out, nil
	}
	dir, err := os.MkdirTemp("", "opsdrill-vpn-")
	if err != nil {
		return "", fmt.Errorf("temporary folder for swanctl.conf: %w", err)
	}
	env.Undo("remove rendered "+r.Conn+" swanctl.conf", func(context.Context) error { return os.RemoveAll(dir) })
	out := filepath.Join(dir, r.Conn+".conf")
	if err := writePrivate(out, data); err != nil {
		return "", err
	}
	return out, nil
}

func writePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func tunnelTable(g *Generic) steps.Evidence {
	rows := [][]string{}
	for _, t := range g.Tunnels {
		rows = append(rows, []string{
			strconv.Itoa(t.Number), t.CGWOutside.String(), t.VGWOutside.String(), t.CGWInside.String(), t.VGWInside.String(),
			fmt.Sprintf("IKEv%d %s", t.IKE.Version, proposals(t.IKE.Encryption, t.IKE.Integrity, t.IKE.DHGroups, ikeIntegrity, true)),
			proposals(t.IPsec.Encryption, t.IPsec.Integrity, t.IPsec.PFSGroups, espIntegrity, false),
			fmt.Sprintf("%s / %s", t.IKE.Lifetime, t.IPsec.Lifetime),
			fmt.Sprintf("%s x %d", t.DPDInterval, t.DPDRetries),
			fmt.Sprintf("%d / %d", t.MTU, t.MSS),
		})
	}
	return steps.TableEvidence("AWS VPN "+g.VPNConnectionID+" tunnels",
		[]string{"tunnel", "CGW outside", "VGW outside", "CGW inside", "VGW inside", "IKE", "ESP", "lifetimes IKE / ESP", "DPD", "MTU / MSS"}, rows)
}

var secretLine = regexp.MustCompile(`(?m)^(\s*secret\s*=\s*).*$`)

// redactedConf is the rendered file as evidence, its secret masked here
// already (the runner would mask it too).
func redactedConf(r *Rendered) steps.Evidence {
	return steps.Evidence{Kind: "log", Title: "swanctl.conf for " + r.Conn + " (secret masked)",
		Text: secretLine.ReplaceAllString(r.SwanctlConf, `${1}"***"`)}
}

func intsAny(v []int) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}
