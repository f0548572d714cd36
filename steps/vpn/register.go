package vpn

import "github.com/opsdrill/opsdrill/steps"

func init() {
	for _, s := range specs {
		steps.Register(s)
	}
}

var configOutputs = []steps.Output{
	{Name: "config_file", Type: "string", Doc: "path of the rendered swanctl.conf (it holds the pre-shared key)"},
	{Name: "connection", Type: "string", Doc: "connection name in swanctl.conf"},
	{Name: "children", Type: "list", Doc: "CHILD_SA names: <name>-inside and <name>-vpc (IKEv1), <name> (IKEv2)"},
	{Name: "vpn_connection_id", Type: "string", Doc: "vpn-... from the file, for aws.vpn_status"},
	{Name: "gateway_id", Type: "string", Doc: "the virtual private (or transit) gateway id"},
	{Name: "customer_gateway", Type: "string", Doc: "the customer gateway id"},
	{Name: "tunnel", Type: "int", Doc: "the tunnel configured"},
	{Name: "cgw_outside_ip", Type: "string", Doc: "customer gateway outside address (its IKE identity)"},
	{Name: "vgw_outside_ip", Type: "string", Doc: "AWS endpoint of the tunnel (its IKE identity, and its address in aws.vpn_status)"},
	{Name: "remote_address", Type: "string", Doc: "address the gateway sends IKE to: vgw_outside_ip unless remote_address was given"},
	{Name: "cgw_inside_ip", Type: "string", Doc: "customer gateway inside address, without prefix length"},
	{Name: "vgw_inside_ip", Type: "string", Doc: "virtual private gateway inside address: the first address to ping"},
	{Name: "inside_cidr", Type: "string", Doc: "the tunnel's inside /30"},
	{Name: "vpc_cidr", Type: "string", Doc: "the VPC CIDR routed through the tunnel"},
	{Name: "psk", Type: "string", Doc: "the tunnel's pre-shared key", Secret: true},
	{Name: "ike_version", Type: "int", Doc: "1 or 2"},
	{Name: "ike_mode", Type: "string", Doc: "phase 1 mode: main or aggressive"},
	{Name: "ike_proposal", Type: "string", Doc: "IKE proposal in strongSwan keywords, e.g. aes128-sha1-modp1024"},
	{Name: "ike_lifetime_s", Type: "int", Doc: "IKE SA lifetime, seconds"},
	{Name: "esp_proposal", Type: "string", Doc: "ESP proposal with its PFS group, e.g. aes128-sha1-modp1024"},
	{Name: "esp_lifetime_s", Type: "int", Doc: "IPsec SA lifetime, seconds"},
	{Name: "pfs_groups", Type: "list", Doc: "PFS Diffie-Hellman groups (empty: no PFS)"},
	{Name: "dpd_interval_s", Type: "int", Doc: "dead peer detection interval, seconds"},
	{Name: "dpd_retries", Type: "int", Doc: "dead peer detection retries"},
	{Name: "mtu", Type: "int", Doc: "recommended tunnel interface MTU (0: not given)"},
	{Name: "mss", Type: "int", Doc: "recommended TCP MSS (0: not given)"},
	{Name: "routing", Type: "string", Doc: "static or bgp, as the file describes the tunnel"},
	{Name: "up_commands", Type: "list", Doc: "commands giving the gateway its inside address and the VPC route, for tunnel.up"},
	{Name: "down_commands", Type: "list", Doc: "commands undoing up_commands, for tunnel.up and tunnel.down"},
}

var specs = []steps.Spec{
	{
		Name:    "vpn.config",
		Summary: "Parse an AWS Site-to-Site VPN Generic configuration and render swanctl.conf for one tunnel",
		Doc: `Reads the "Generic" configuration text the VPC console offers for an AWS
Site-to-Site VPN connection: the VPN, gateway and customer gateway ids, and
for both tunnels the outside and inside addresses, the pre-shared key, the
IKE and IPsec parameters, DPD, the recommended MTU and MSS and the routing.
A bad or incomplete file fails with every problem listed as file:line.

It then renders a strongSwan swanctl.conf for the chosen tunnel with static
routing: the file's IKE version, phase 1 mode, proposals, lifetimes and DPD
(DPD retries become the IKEv1 dpd_timeout), the outside addresses as IKE
identities, the inside /30 as local and the VPC CIDR as remote traffic
selector. IKEv1 negotiates one selector pair per CHILD_SA, so an IKEv1
tunnel gets two children, <name>-inside (inside /30 to inside /30, for the
VGW inside address) and <name>-vpc; IKEv2 gets one with both. up_commands
add the CGW inside address and the VPC route via the VGW inside address, as
the runbook does with ip and route; down_commands undo them.

The file is written with mode 0600 to output, or to a private temporary
file that is removed after the scenario; it is never put in the report
folder, which gets the file with its secret masked. Both tunnels' keys are
secrets; psk is a secret output.`,
		New:     newConfig,
		Outputs: configOutputs,
		Figures: configFigures,
		Examples: []steps.Example{{
			Title: "Tunnel #1 of the downloaded configuration, VPC 172.28.0.0/16",
			YAML: `- id: config
  uses: vpn.config
  with:
    file: aws-vpn-generic.txt
    tunnel: 1
    vpc_cidr: 172.28.0.0/16
  expect:
    - outputs.ike_proposal == "aes128-sha1-modp1024"
    - outputs.dpd_interval_s == 10`,
		}},
	},
	{
		Name:    "tunnel.up",
		Summary: "Load a swanctl.conf into charon, bring its CHILD_SAs up and wait until they are installed",
		Doc: `Drives strongSwan's charon with swanctl, its VICI client, on the gateway:
this machine (a real customer gateway) or a lab host (host: lab:cgw). socket
selects charon's VICI socket when it is not at the default path.

config (vpn.config's config_file, read on this machine) is installed as
conf_dir/opsdrill-<connection>.conf, mode 0600, and swanctl --load-all loads
it with everything else the main swanctl.conf includes, so other
connections of the gateway are left alone. up_commands then run on the
gateway host (vpn.config's up_commands: the CGW inside address and the VPC
route), and every child of the connection (or those listed) is initiated
in turn, with the IKE log captured, until all are INSTALLED or timeout
passes.

The step fails when a CHILD_SA is not established, with the reason read
from charon's log: NO_PROPOSAL_CHOSEN for mismatched proposals, an
undecryptable reply or AUTHENTICATION_FAILED for a pre-shared key
mismatch, no answer from the peer, ... and the log lines that show it. It
reports the negotiated algorithms (charon's names and proposal keywords,
comparable with vpn.config's ike_proposal and esp_proposal), the SPIs, and
establish_ms, the time from the first initiate to every CHILD_SA installed.

tunnel.down's teardown is registered as an undo action before anything
changes, so the tunnel, its configuration and the down_commands are undone
after the scenario, whatever happens.`,
		New: newUp,
		Outputs: []steps.Output{
			{Name: "connection", Type: "string", Doc: "the connection"},
			{Name: "ike_state", Type: "string", Doc: "IKE_SA state, ESTABLISHED"},
			{Name: "ike_version", Type: "int", Doc: "1 or 2"},
			{Name: "ike_algorithms", Type: "string", Doc: "negotiated IKE algorithms, e.g. AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024"},
			{Name: "ike_proposal", Type: "string", Doc: "the same as a proposal, e.g. aes128-sha1-modp1024"},
			{Name: "ike_spi_initiator", Type: "string", Doc: "IKE SPI of the initiator"},
			{Name: "ike_spi_responder", Type: "string", Doc: "IKE SPI of the responder"},
			{Name: "local_host", Type: "string", Doc: "local IKE address"},
			{Name: "remote_host", Type: "string", Doc: "remote IKE address"},
			{Name: "local_id", Type: "string", Doc: "local IKE identity"},
			{Name: "remote_id", Type: "string", Doc: "remote IKE identity"},
			{Name: "nat", Type: "bool", Doc: "NAT detected: ESP is UDP-encapsulated"},
			{Name: "children", Type: "list", Doc: "installed CHILD_SAs: name, state, mode, protocol, spi_in, spi_out, encap, algorithms, esp_proposal, local_ts, remote_ts"},
			{Name: "installed", Type: "int", Doc: "number of installed CHILD_SAs"},
			{Name: "esp_algorithms", Type: "string", Doc: "negotiated ESP algorithms, e.g. ESP:AES_CBC-128/HMAC_SHA1_96/MODP_1024"},
			{Name: "esp_proposal", Type: "string", Doc: "the same as a proposal with the PFS group, e.g. aes128-sha1-modp1024"},
			{Name: "pfs_group", Type: "string", Doc: "PFS group of the CHILD_SAs, e.g. modp1024 (empty: none)"},
			{Name: "spi_in", Type: "list", Doc: "inbound ESP SPIs, one per CHILD_SA"},
			{Name: "spi_out", Type: "list", Doc: "outbound ESP SPIs, one per CHILD_SA"},
			{Name: "establish_ms", Type: "int", Doc: "from the first initiate to every CHILD_SA installed"},
			{Name: "up_ms", Type: "int", Doc: "the whole step: install, load, commands, establish"},
		},
		Figures: upFigures,
		Examples: []steps.Example{{
			Title: "Bring up what vpn.config rendered, on the lab's customer gateway",
			YAML: `- id: up
  uses: tunnel.up
  with:
    host: lab:cgw
    config: ${{ steps.config.outputs.config_file }}
    connection: ${{ steps.config.outputs.connection }}
    up_commands: ${{ steps.config.outputs.up_commands }}
    down_commands: ${{ steps.config.outputs.down_commands }}
  expect:
    - outputs.ike_proposal == steps.config.outputs.ike_proposal
    - outputs.esp_proposal == steps.config.outputs.esp_proposal`,
		}},
	},
	{
		Name:    "tunnel.down",
		Summary: "Terminate a connection's SAs, unload it and undo its host commands",
		Doc: `Terminates every IKE_SA of connection (and so its CHILD_SAs), removes the
file tunnel.up installed and reloads, which unloads the connection and its
secret, then runs down_commands (vpn.config's: VPC route and inside address
removed; one already gone is not an error). It does what tunnel.up's undo
action does, and either may run after the other.`,
		New: newDown,
		Outputs: []steps.Output{
			{Name: "terminated", Type: "bool", Doc: "an IKE_SA was up and was terminated"},
			{Name: "ike_sas", Type: "int", Doc: "IKE_SAs terminated"},
			{Name: "config_removed", Type: "bool", Doc: "tunnel.up's file was found and removed"},
		},
		Figures: downFigures,
		Examples: []steps.Example{{
			Title: "Tear the tunnel down at the end of a drill",
			YAML: `- uses: tunnel.down
  with:
    host: lab:cgw
    connection: ${{ steps.config.outputs.connection }}
    down_commands: ${{ steps.config.outputs.down_commands }}`,
		}},
	},
	{
		Name:    "tunnel.reach",
		Summary: "Ping an instance in the VPC through the tunnel and, when it does not answer, name the runbook's cause and fix",
		Doc: `Runs on the customer gateway (host), like the runbook's checks: ip route
get for the target, ping of the VGW inside address, ping of the target,
and, when the target does not answer ping, a TCP connection to tcp_port
(bash's /dev/tcp; connected or refused both prove replies come back).
From these it names the cause, in the order of the runbook's part 4: cgw_route when
traffic to the VPC does not go the tunnel's way (fix: route add -net VPC gw
VGW-inside, part 3); vgw_inside_unreachable when the VGW inside address does
not answer; security_group_icmp when TCP answers but ping does not (the
instance's security group must allow ICMP); route_propagation when nothing
comes back from the VPC (enable Route Propagation for the VGW in the VPC's
route table).

The step fails with the cause's fix when the target does not answer.`,
		New: newReach,
		Outputs: []steps.Output{
			{Name: "reachable", Type: "bool", Doc: "the target answered ping"},
			{Name: "route_via_tunnel", Type: "bool", Doc: "the gateway routes the target the tunnel's way"},
			{Name: "vgw_inside_reachable", Type: "bool", Doc: "the VGW inside address answered ping"},
			{Name: "tcp_answered", Type: "bool", Doc: "the target answered on tcp_port (probed only when ping got no reply)"},
			{Name: "cause", Type: "string", Doc: "empty, cgw_route, vgw_inside_unreachable, security_group_icmp or route_propagation"},
			{Name: "fix", Type: "string", Doc: "the runbook's fix for the cause"},
		},
		Examples: []steps.Example{{
			Title: "The runbook's EC2 instance, from the lab's customer gateway",
			YAML: `- uses: tunnel.reach
  with:
    host: lab:cgw
    target: 172.28.16.136
    vgw_inside_ip: ${{ steps.config.outputs.vgw_inside_ip }}
    vpc_cidr: ${{ steps.config.outputs.vpc_cidr }}
  expect: [ outputs.reachable ]`,
		}},
	},
}
