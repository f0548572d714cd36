// Package vpn provides the IPsec VPN drill steps: the runbook "Use Amazon's
// AWS VPC, & Your VPN To Extend Your Server Infrastructure (using Static
// Routing)", which configures racoon and setkey from AWS's Generic VPN
// configuration, brings the tunnel up and pings through it, turned into a
// drill that drives racoon's successor, strongSwan.
//
//	vpn.config   parse the Generic file, render swanctl.conf for a tunnel
//	tunnel.up    load it into charon, initiate, wait for INSTALLED
//	tunnel.down  terminate, unload, undo the host commands
//	tunnel.reach ping the VPC through the tunnel; name the runbook's cause
//	             (cgw route, security group ICMP, Route Propagation)
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
// environment (lab/env_vpn.go) provides both gateways and a VPC host
// behind vgw, and can break them the runbook's ways (lab.VPNFaults).
//
// # Why swanctl, not VICI events (govici)
//
// github.com/strongswan/govici v0.8.0 is served and was tried: a VICI
// session subscribed to ike-updown and child-updown would timestamp each
// IKE_SA and CHILD_SA going up or down instead of reading swanctl's
// output, and tunnel.down could wait for the delete events. It is not used
// yet because the drill must run the same against the lab and a real
// gateway, and the lab transport (docker exec) cannot carry a stream to
// charon's unix socket: host.Host.Dial is unsupported there, and a
// socat bridge over exec is not offered by the lab's host interface. Over
// local and ssh:// hosts govici's WithDialContext would plug into
// host.Host.Dial("unix", socket) directly. What swanctl gives today is
// enough for the verdicts: swanctl --initiate streams charon's control log
// of the negotiation, from which the failure reason (NO_PROPOSAL_CHOSEN,
// a key mismatch, no answer) is read, and establish_ms runs from the first
// initiate until every CHILD_SA is INSTALLED (swanctl --initiate returns
// when charon has the CHILD_SA up; otherwise --list-sas is polled every
// 200 ms), so it includes swanctl's start-up and at worst one poll;
// child-updown events would make it exact to charon's own clock once the
// lab's transport can dial.
package vpn
