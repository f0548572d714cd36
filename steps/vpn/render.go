package vpn

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"text/template"
	"time"
)

// RenderOptions is what rendering needs besides the Generic file: how this
// customer gateway reaches the tunnel's AWS endpoint and what lies behind it.
type RenderOptions struct {
	// Name of the connection in swanctl.conf; children are Name-inside
	// and Name-vpc (IKEv1) or Name (IKEv2).
	Name string
	// VPC is the remote traffic selector: the VPC's CIDR.
	VPC netip.Prefix
	// LocalAddress is this gateway's own address when it differs from the
	// CGW outside address in the file (behind NAT); invalid means any.
	LocalAddress netip.Addr
	// RemoteAddress reaches the VGW at another address than the file's
	// outside address (the lab); invalid means the file's.
	RemoteAddress netip.Addr
	// Interface carries the CGW inside address, as in the runbook.
	Interface string
}

// Child is one CHILD_SA of a rendered connection.
type Child struct {
	Name     string
	LocalTS  netip.Prefix
	RemoteTS []netip.Prefix
}

// Rendered is a strongSwan configuration for one tunnel, and the commands
// that give the host its inside address and its route to the VPC.
type Rendered struct {
	Conn         string
	Children     []Child
	IKEProposal  string
	ESPProposal  string
	SwanctlConf  string // holds the pre-shared key
	UpCommands   []string
	DownCommands []string
}

// children splits the traffic selectors the way the IKE version allows:
// IKEv1 negotiates one selector pair per CHILD_SA, so the inside /30 and the
// VPC get one each, as the runbook's two setkey policy pairs did; IKEv2
// carries both remote selectors in one CHILD_SA.
func children(t Tunnel, gw RenderOptions) []Child {
	inside := t.Inside()
	if t.IKE.Version == 2 {
		return []Child{{Name: gw.Name, LocalTS: inside, RemoteTS: []netip.Prefix{inside, gw.VPC}}}
	}
	return []Child{
		{Name: gw.Name + "-inside", LocalTS: inside, RemoteTS: []netip.Prefix{inside}},
		{Name: gw.Name + "-vpc", LocalTS: inside, RemoteTS: []netip.Prefix{gw.VPC}},
	}
}

// Render builds the swanctl.conf for tunnel t with static routing: IKE and
// ESP proposals, lifetimes and DPD from the file, the CGW and VGW outside
// addresses as IKE identities (as AWS expects), the inside /30 as local
// traffic selector and the VPC CIDR as remote one.
func Render(g *Generic, t Tunnel, gw RenderOptions, source string) (*Rendered, error) {
	if !gw.VPC.IsValid() {
		return nil, fmt.Errorf("a VPC CIDR is required")
	}
	if gw.VPC.Overlaps(t.Inside()) {
		return nil, fmt.Errorf("VPC CIDR %s overlaps the tunnel's inside network %s", gw.VPC, t.Inside())
	}
	r := &Rendered{
		Conn:        gw.Name,
		Children:    children(t, gw),
		IKEProposal: proposals(t.IKE.Encryption, t.IKE.Integrity, t.IKE.DHGroups, ikeIntegrity, true),
		ESPProposal: proposals(t.IPsec.Encryption, t.IPsec.Integrity, t.IPsec.PFSGroups, espIntegrity, false),
	}
	remote := t.VGWOutside
	if gw.RemoteAddress.IsValid() {
		remote = gw.RemoteAddress
	}
	data := map[string]any{
		"G": g, "T": t, "GW": gw, "R": r, "Source": source,
		"Remote": remote, "DPDTimeout": secs(t.DPDInterval * time.Duration(t.DPDRetries)),
		"IKELife": secs(t.IKE.Lifetime), "ESPLife": secs(t.IPsec.Lifetime), "DPD": secs(t.DPDInterval),
		"Inside": t.Inside(),
	}
	var b bytes.Buffer
	if err := confTemplate.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render swanctl.conf: %w", err)
	}
	r.SwanctlConf = b.String()

	dev := gw.Interface
	nextHop := t.VGWInside.Addr()
	r.UpCommands = []string{
		fmt.Sprintf("ip addr replace %s dev %s", t.CGWInside, dev),
		fmt.Sprintf("ip route replace %s via %s dev %s", gw.VPC, nextHop, dev),
	}
	r.DownCommands = []string{
		fmt.Sprintf("ip route del %s via %s dev %s", gw.VPC, nextHop, dev),
		fmt.Sprintf("ip addr del %s dev %s", t.CGWInside, dev),
	}
	return r, nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%ds", int(d/time.Second)) }

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// confTemplate is the swanctl.conf layout. IKEv1 reauthenticates rather
// than rekeys, so its IKE lifetime is reauth_time; DPD retries become the
// IKEv1 dpd_timeout. start_action is none: tunnel.up initiates. On DPD the
// gateway restarts the tunnel, as the runbook's keepalive cron intends.
var confTemplate = template.Must(template.New("swanctl.conf").Funcs(template.FuncMap{"join": joinPrefixes}).Parse(
	`# swanctl.conf for AWS VPN {{.G.VPNConnectionID}}, tunnel #{{.T.Number}} (static routing).
# Rendered by opsdrill vpn.config from {{.Source}}.
# CGW {{.T.CGWOutside}} (inside {{.T.CGWInside}}) <-> VGW {{.T.VGWOutside}} (inside {{.T.VGWInside}}), VPC {{.GW.VPC}}.
{{- if .T.MTU}}
# AWS recommends a tunnel MTU of {{.T.MTU}} bytes{{if .T.MSS}} and a TCP MSS of {{.T.MSS}} bytes{{end}}.
{{- end}}
# This file holds the tunnel's pre-shared key: keep it private (mode 0600).
connections {
	{{.R.Conn}} {
		version = {{.T.IKE.Version}}
{{- if eq .T.IKE.Version 1}}
		aggressive = {{if eq .T.IKE.Mode "aggressive"}}yes{{else}}no{{end}}
{{- end}}
{{- if .GW.LocalAddress.IsValid}}
		local_addrs = {{.GW.LocalAddress}}
{{- end}}
		remote_addrs = {{.Remote}}
		proposals = {{.R.IKEProposal}}
{{- if eq .T.IKE.Version 1}}
		reauth_time = {{.IKELife}}
		rekey_time = 0s
{{- else}}
		rekey_time = {{.IKELife}}
		mobike = no
{{- end}}
		dpd_delay = {{.DPD}}
{{- if eq .T.IKE.Version 1}}
		dpd_timeout = {{.DPDTimeout}}
{{- end}}
		fragmentation = yes
		local {
			auth = psk
			id = {{.T.CGWOutside}}
		}
		remote {
			auth = psk
			id = {{.T.VGWOutside}}
		}
		children {
{{- range .R.Children}}
			{{.Name}} {
				local_ts = {{.LocalTS}}
				remote_ts = {{join .RemoteTS}}
				esp_proposals = {{$.R.ESPProposal}}
				rekey_time = {{$.ESPLife}}
				mode = tunnel
				dpd_action = restart
				start_action = none
				close_action = none
			}
{{- end}}
		}
	}
}
secrets {
	ike-{{.R.Conn}} {
		id-cgw = {{.T.CGWOutside}}
		id-vgw = {{.T.VGWOutside}}
		secret = "{{.T.PSK}}"
	}
}
`))
