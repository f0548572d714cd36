// Package vpn provides the IPsec VPN drill steps: the runbook "Use Amazon's
// AWS VPC, & Your VPN To Extend Your Server Infrastructure (using Static
// Routing)", which configures racoon and setkey from AWS's Generic VPN
// configuration, brings the tunnel up and pings through it, turned into a
// drill that drives racoon's successor, strongSwan.
//
//	vpn.config   parse the Generic file, render swanctl.conf for a tunnel
//	tunnel.up    load it into charon, initiate, wait for INSTALLED
//	tunnel.down  terminate, unload, undo the host commands
//
// vpn.config reads both tunnels of the file ([ParseGeneric]; every problem
// of a bad or partial file is reported with its line). The parser is
// checked against AWS's own documented Generic examples
// (testdata/aws-samples, sources in SOURCES.md there): the BGP example's
// "- Customer Gateway:        : ..." line with its second colon, the
// YOUR_UPLINK_ADDRESS and YOUR_BGP_ASN placeholders (vpn.config then needs
// local_address), keys outside AWS's character rule (a warning). A download
// for a device (Cisco, Juniper, Vyatta, strongSwan/Openswan, FortiGate,
// Palo Alto, MikroTik) is refused at its first device command, naming the
// format. vpn.config renders one tunnel with
// static routing ([Render]): the file's IKE version, mode, proposals,
// lifetimes and DPD, the outside addresses as IKE identities, the inside /30
// and the VPC CIDR as traffic selectors, plus the ip commands that give the
// gateway its inside address and the VPC route. The pre-shared keys are
// secrets: outputs, logs and the evidence never show them, and the rendered
// file (mode 0600) stays out of the report folder.
//
// tunnel.up and tunnel.down run swanctl, charon's VICI client, where the
// gateway is: on this machine, or in a lab host through steps/hostexec
// (host: lab:cgw), with socket naming charon's VICI socket when it is not
// at the default path. The connection's file is installed in swanctl's
// conf.d and loaded with swanctl --load-all, so the gateway's other
// connections are untouched. A negotiation that fails is reported with the
// reason charon logged (NO_PROPOSAL_CHOSEN for mismatched proposals, an
// undecryptable reply for a wrong pre-shared key, no answer from the
// peer, ...). The pings and the AWS side of the runbook are the net.ping
// (steps/ping) and aws.vpn_status (steps/aws) steps; the lab's vpn
// environment (lab/env_vpn.go) provides both gateways.
package vpn
