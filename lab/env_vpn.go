package lab

import (
	"context"
	"fmt"
	"strings"
)

// The vpn environment is the lab's stand-in for the runbook "Use Amazon's
// AWS VPC, & Your VPN To Extend Your Server Infrastructure (using Static
// Routing)": a customer gateway (cgw) and an AWS virtual private gateway
// (vgw), each running strongSwan's charon (charon-systemd) with the
// kernel-libipsec plugin, which does ESP in user space over a TUN device
// because the lab's kernel has no xfrm ESP.
//
// vgw plays AWS for tunnel #1 of scenarios/fixtures/aws-vpn-generic.txt,
// with the runbook's parameters: IKEv1 main mode, pre-shared key,
// aes128-sha1-modp1024 for 28800 s, ESP aes128-sha1 with PFS group 2
// (modp1024) for 3600 s, DPD every 10 s, 3 retries. Its IKE identity is the
// fixture's VGW outside address and it expects the fixture's CGW outside
// address as the peer's, as AWS does; the lab network addresses only carry
// the packets, as if both gateways sat behind NAT. vgw's settings are its
// own (the constants below), not read from the fixture, so a fault can make
// AWS's side differ from the file the drill parses (VPNFaults).
//
// Behind vgw lies the "VPC", VPNVPC, with a real host, ec2, as its "EC2
// instance" at VPNEC2: its own network stack, routes and firewall. vgw
// routes the VPC to ec2 (ip_forward on), and ec2's route table sends the
// runbook's static prefix, 169.254.0.0/16, back via vgw: that is the route
// AWS's "Route Propagation" puts in the VPC's route table. ec2's iptables
// INPUT chain plays the instance's security group. Without the propagated
// route a reply meets ec2's unreachable guard, so nothing leaves the lab.
// The VPC addresses ride the lab network between vgw and ec2 as routed
// (not NATed) traffic: the lab has one Docker network, and a second one
// would add nothing a route does not.
//
// vgw's inside address is on its loopback. Tunnel #2's endpoint does not
// exist in the lab, so that tunnel is always DOWN, as it is in the runbook,
// which configures one tunnel only.
//
// cgw starts with charon running and nothing configured: the drill renders
// its swanctl.conf (vpn.config) and brings the tunnel up (tunnel.up through
// swanctl inside cgw, `host: lab:cgw`).
//
// vgw also answers the EC2 Query API's DescribeVpnConnections on port
// VPNEC2APIPort, reporting tunnel #1 UP while charon has it installed, so
// aws.vpn_status runs unchanged against the lab with the endpoint, region
// and credentials from the lab's vars. The stand-in checks the access key id
// but cannot verify signatures.
//
// Both hosts have unreachable routes (metric 4095) for the link-local range
// and the VPC, so nothing meant for the tunnel leaves the lab when the
// tunnel is down, and arp_ignore=1, so the inside addresses never answer
// outside the tunnel.
const (
	// VPNEnv is the environment's name.
	VPNEnv = "vpn"
	// VPNVPC is the lab VPC's CIDR and VPNEC2 its one instance.
	VPNVPC = "172.28.0.0/16"
	VPNEC2 = "172.28.16.136"
	// VPNEC2APIPort is where vgw answers the EC2 Query API.
	VPNEC2APIPort = 4580
	// VPNRegion is the region the stand-in claims to be.
	VPNRegion = "us-east-1"
	// VPNVGWConn is vgw's connection name for tunnel #1.
	VPNVGWConn = "aws-tunnel-1"
)

// Tunnel #1 of scenarios/fixtures/aws-vpn-generic.txt, which vgw serves;
// the scenario test fails if the two ever disagree.
const (
	vpnConnectionID = "vpn-0a1b2c3d4e5f60718"
	vpnGatewayID    = "vgw-0f1e2d3c4b5a69788"
	vpnCustomerGWID = "cgw-0123456789abcdef0"
	vpnCGWOutside   = "192.0.2.10"
	vpnVGWOutside1  = "203.0.113.11"
	vpnVGWOutside2  = "198.51.100.12"
	vpnInside       = "169.254.21.44/30"
	vpnVGWInside    = "169.254.21.45"
	vpnPSK1         = "opsdrill_fixture_tunnel1_psk_k7Hq"
	vpnVPCRouter    = "172.28.0.1"
)

// VPNFault is a fault the vpn environment can be put in: Break makes it,
// Repair undoes it, both run on Host.
type VPNFault struct {
	Host   string
	Doc    string
	Break  []string
	Repair []string
}

// VPNFaults are the runbook's troubleshooting causes and an AWS side that
// differs from the downloaded file, as the lab can make them happen.
var VPNFaults = map[string]VPNFault{
	// The VPC's route table has no route back to the customer network
	// through the VGW: Route Propagation is off.
	"no-route-propagation": {Host: "ec2", Doc: "the VPC route table lacks the propagated route to 169.254.0.0/16 via vgw",
		Break:  []string{"sh", "-ec", "ip route del 169.254.0.0/16 via $(" + vpnResolve("vgw") + ")"},
		Repair: []string{"sh", "-ec", "ip route replace 169.254.0.0/16 via $(" + vpnResolve("vgw") + ")"}},
	// The instance's security group drops ping.
	"icmp-blocked": {Host: "ec2", Doc: "the instance's firewall (security group) drops ICMP echo requests",
		Break:  []string{"iptables", "-I", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"},
		Repair: []string{"iptables", "-D", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"}},
	// The customer gateway has no route to the VPC: neither the runbook's
	// `route add -net` (main table) nor charon's (table 220).
	"cgw-no-vpc-route": {Host: "cgw", Doc: "the customer gateway has no route to the VPC",
		Break:  []string{"sh", "-c", "ip route del " + VPNVPC + " table 220; ip route del " + VPNVPC + " via " + vpnVGWInside + "; true"},
		Repair: []string{"true"}},
	// AWS's side negotiates other algorithms than the file says.
	"vgw-proposal": {Host: "vgw", Doc: "vgw's IKE proposal is aes256-sha256-modp2048, not the file's aes128-sha1-modp1024",
		Break:  vpnVGWEdit(`s/^\(\s*\)proposals = aes128-sha1-modp1024$/\1proposals = aes256-sha256-modp2048/`),
		Repair: vpnVGWEdit(`s/^\(\s*\)proposals = aes256-sha256-modp2048$/\1proposals = aes128-sha1-modp1024/`)},
	// AWS's side holds another pre-shared key than the file.
	"vgw-psk": {Host: "vgw", Doc: "vgw's pre-shared key differs from the file's",
		Break:  vpnVGWEdit(`s/secret = "` + vpnPSK1 + `"/secret = "` + vpnOtherPSK + `"/`),
		Repair: vpnVGWEdit(`s/secret = "` + vpnOtherPSK + `"/secret = "` + vpnPSK1 + `"/`)},
}

// vpnOtherPSK is the key vgw holds under the vgw-psk fault.
const vpnOtherPSK = "lab_vgw_key_not_the_downloaded_one"

// vpnVGWEdit edits vgw's swanctl.conf with sed and reloads it; SAs already
// up keep their keys until they are renegotiated.
func vpnVGWEdit(sed string) []string {
	return []string{"sh", "-ec", "sed -i '" + sed + "' " + vpnSwanctlConf + "; swanctl --load-all >/dev/null"}
}

// vpnResolve prints a lab host's address, waiting for its name to resolve
// (hosts start in parallel).
func vpnResolve(name string) string {
	return "i=0; until a=$(getent ahostsv4 " + name + " | awk 'NR==1{print $1}') && [ -n \"$a\" ]; do i=$((i+1)); [ $i -le 300 ] || exit 1; sleep 0.2; done; echo $a"
}

const (
	vpnStrongswanConf = "/etc/strongswan.d/zz-opsdrill.conf"
	vpnSwanctlConf    = "/etc/swanctl/conf.d/aws-vpc.conf"
	vpnStandIn        = "/usr/local/sbin/opsdrill-ec2-api"
	vpnStandInEnv     = "/etc/opsdrill/ec2-api.env"
)

// strongswan.conf for both gateways: only the plugins a PSK tunnel needs,
// kernel-libipsec for ESP, retransmits short enough that a peer that never
// answers fails a drill in seconds rather than minutes, and a log file
// (charon-systemd logs to the journal, which containers lack).
const vpnCharonConf = `charon-systemd {
	load_modular = no
	load = random nonce aes sha1 sha2 md5 hmac gmp kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici updown
	plugins {
		kernel-libipsec {
			load = yes
		}
	}
	retransmit_tries = 2
	retransmit_timeout = 2.0
	retransmit_base = 1.4
	filelog {
		charon {
			path = /var/log/charon.log
			time_format = %F %T
			ike_name = yes
			default = 1
			flush_line = yes
		}
	}
}
swanctl {
	load = random nonce pem pkcs1 x509 pubkey
}
`

// vgw's side of tunnel #1: AWS's parameters, responder only, traffic
// selectors wide enough for what a customer gateway proposes (the inside
// /30 and the VPC).
var vpnVGWSwanctl = `connections {
	` + VPNVGWConn + ` {
		version = 1
		proposals = aes128-sha1-modp1024
		reauth_time = 28800s
		rekey_time = 0s
		dpd_delay = 10s
		dpd_timeout = 30s
		local {
			auth = psk
			id = ` + vpnVGWOutside1 + `
		}
		remote {
			auth = psk
			id = ` + vpnCGWOutside + `
		}
		children {
			inside {
				local_ts = ` + vpnInside + `
				remote_ts = ` + vpnInside + `
				esp_proposals = aes128-sha1-modp1024
				rekey_time = 3600s
				dpd_action = clear
			}
			vpc {
				local_ts = ` + VPNVPC + `
				remote_ts = ` + vpnInside + `
				esp_proposals = aes128-sha1-modp1024
				rekey_time = 3600s
				dpd_action = clear
			}
		}
	}
}
secrets {
	ike-tunnel-1 {
		id-vgw = ` + vpnVGWOutside1 + `
		id-cgw = ` + vpnCGWOutside + `
		secret = "` + vpnPSK1 + `"
	}
}
`

// vpnStandInScript answers the EC2 Query API on one connection (socat
// runs it per connection, the HTTP request on stdin): DescribeVpnConnections
// for the lab's VPN connection, tunnel #1 UP while vgw's charon has a
// CHILD_SA of it installed, tunnel #2 always DOWN. The status and the time
// it last changed are kept in /run/opsdrill-ec2.
var vpnStandInScript = `#!/bin/sh
set -u
rid=$(cat /proc/sys/kernel/random/uuid)
ACCESS_KEY_ID=
[ -r ` + vpnStandInEnv + ` ] && . ` + vpnStandInEnv + `

reply() {
	printf 'HTTP/1.1 %s\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
		"$1" "$(printf %s "$2" | wc -c)" "$2"
	exit 0
}
fail() {
	reply "$1" "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<Response><Errors><Error><Code>$2</Code><Message>$3</Message></Error></Errors><RequestID>$rid</RequestID></Response>"
}

IFS= read -r request || exit 0
len=0
auth=
while IFS= read -r line; do
	line=$(printf %s "$line" | tr -d '\r')
	[ -z "$line" ] && break
	case $(printf %s "$line" | tr 'A-Z' 'a-z') in
	content-length:*) len=$(printf %s "${line#*:}" | tr -dc 0-9) ;;
	authorization:*) auth=${line#*:} ;;
	esac
done
body=$(head -c "${len:-0}")
param() { printf %s "$body" | tr '&' '\n' | sed -n "s/^$1=//p"; }

[ -n "$ACCESS_KEY_ID" ] || fail "503 Service Unavailable" Unavailable "The lab's EC2 API is not set up yet."
case $auth in
*"Credential=$ACCESS_KEY_ID/"*) ;;
*) fail "401 Unauthorized" AuthFailure "AWS was not able to validate the provided access credentials" ;;
esac
action=$(param Action)
[ "$action" = DescribeVpnConnections ] || fail "400 Bad Request" InvalidAction "The action $action is not valid for this web service."
for id in $(param 'VpnConnectionId\.[0-9]*'); do
	[ "$id" = ` + vpnConnectionID + ` ] || fail "400 Bad Request" InvalidVpnConnectionID.NotFound "The vpnConnection ID '$id' does not exist"
done

mkdir -p /run/opsdrill-ec2
telemetry() {
	now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
	old=$(cat "/run/opsdrill-ec2/$1" 2>/dev/null || true)
	case $old in
	"$2 "*) since=${old#* } ;;
	*) since=$now; echo "$2 $now" >"/run/opsdrill-ec2/$1" ;;
	esac
	printf '<item><outsideIpAddress>%s</outsideIpAddress><status>%s</status><lastStatusChange>%s</lastStatusChange><statusMessage>%s</statusMessage><acceptedRouteCount>%s</acceptedRouteCount></item>' \
		"$1" "$2" "$since" "$3" "$4"
}
installed=$(swanctl --list-sas --ike ` + VPNVGWConn + ` 2>/dev/null | grep -c INSTALLED || true)
if [ "$installed" -gt 0 ]; then
	t1=$(telemetry ` + vpnVGWOutside1 + ` UP "IPSEC IS UP" "$installed")
else
	t1=$(telemetry ` + vpnVGWOutside1 + ` DOWN "IPSEC IS DOWN" 0)
fi
t2=$(telemetry ` + vpnVGWOutside2 + ` DOWN "IPSEC IS DOWN" 0)
reply "200 OK" "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<DescribeVpnConnectionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>$rid</requestId><vpnConnectionSet><item><vpnConnectionId>` + vpnConnectionID + `</vpnConnectionId><state>available</state><type>ipsec.1</type><customerGatewayId>` + vpnCustomerGWID + `</customerGatewayId><vpnGatewayId>` + vpnGatewayID + `</vpnGatewayId><category>VPN</category><options><staticRoutesOnly>true</staticRoutesOnly></options><routes><item><destinationCidrBlock>169.254.0.0/16</destinationCidrBlock><source>Static</source><state>available</state></item></routes><vgwTelemetry>$t1$t2</vgwTelemetry></item></vpnConnectionSet></DescribeVpnConnectionsResponse>"
`

// vpnGuards keeps tunnel traffic in the lab when the tunnel is down.
var vpnGuards = Command{Args: []string{"sh", "-ec",
	"ip route replace unreachable 169.254.0.0/16 metric 4095; ip route replace unreachable " + VPNVPC + " metric 4095"}}

var vpnCharon = Command{Args: []string{"charon-systemd"}, Detach: true}

// vpnWaitVICI waits for charon's VICI socket before swanctl talks to it.
const vpnWaitVICI = "i=0; until swanctl --stats >/dev/null 2>&1; do i=$((i+1)); [ $i -le 300 ] || exit 1; sleep 0.1; done"

func vpnGateway(name string, extra ...File) HostSpec {
	return HostSpec{
		Name:     name,
		NetAdmin: true,
		Tun:      true,
		Sysctls:  map[string]string{"net.ipv4.conf.all.arp_ignore": "1"},
		Files:    append([]File{{Path: vpnStrongswanConf, Content: []byte(vpnCharonConf)}}, extra...),
		Ready:    &Probe{Cmd: []string{"sh", "-c", vpnWaitVICI}},
	}
}

func init() {
	cgw := vpnGateway("cgw")
	cgw.Start = []Command{vpnGuards, vpnCharon}

	vgw := vpnGateway("vgw",
		File{Path: vpnSwanctlConf, Content: []byte(vpnVGWSwanctl), Mode: 0o600},
		File{Path: vpnStandIn, Content: []byte(vpnStandInScript), Mode: 0o755})
	vgw.Sysctls["net.ipv4.ip_forward"] = "1"
	vgw.Sysctls["net.ipv4.conf.all.rp_filter"] = "0"
	vgw.Start = []Command{
		vpnGuards,
		// 172.28.0.1, the VPC router's address in AWS, gives charon a
		// local address inside the vpc child's traffic selector, which
		// kernel-libipsec needs to install the route back to the tunnel.
		{Args: []string{"sh", "-ec", "ip addr replace " + vpnVGWInside + "/32 dev lo; ip addr replace " + vpnVPCRouter + "/32 dev lo; " +
			"ip route replace " + VPNVPC + " via $(" + vpnResolve("ec2") + ")"}},
		vpnCharon,
		{Args: []string{"sh", "-ec", vpnWaitVICI + "; swanctl --load-all >/dev/null"}},
		{Args: []string{"socat", fmt.Sprintf("TCP-LISTEN:%d,reuseaddr,fork", VPNEC2APIPort), "EXEC:" + vpnStandIn}, Detach: true},
	}
	vgw.Ready = &Probe{Cmd: []string{"sh", "-c", vpnWaitVICI + "; swanctl --list-conns 2>/dev/null | grep -q '^" + VPNVGWConn + ":'"}}

	// ec2: the VPC's instance. Its address is its own (on lo: the lab
	// kernel may lack the dummy driver); the unreachable guard keeps
	// replies in the lab when the propagated route is gone.
	ec2 := HostSpec{
		Name:     "ec2",
		NetAdmin: true,
		Sysctls:  map[string]string{"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"},
		Start: []Command{{Args: []string{"sh", "-ec",
			"ip addr replace " + VPNEC2 + "/32 dev lo; ip route replace unreachable 169.254.0.0/16 metric 4095; " +
				"ip route replace 169.254.0.0/16 via $(" + vpnResolve("vgw") + ")"}}},
		Ready: &Probe{Cmd: []string{"sh", "-c", "ip route show 169.254.0.0/16 | grep -q via"}},
	}

	RegisterEnv(Env{
		Name:  VPNEnv,
		Doc:   "IPsec customer gateway and AWS-like VPN gateway (strongSwan), with a VPC host behind it and an EC2 API stand-in",
		Hosts: []HostSpec{cgw, vgw, ec2},
		Setup: func(ctx context.Context, l *Lab) error {
			vgw, err := l.Host("vgw")
			if err != nil {
				return err
			}
			env := fmt.Sprintf("ACCESS_KEY_ID=%s\n", vpnAccessKeyID(l))
			res, err := vgw.ExecCommand(ctx, Command{
				Args:  []string{"sh", "-ec", "mkdir -p /etc/opsdrill; umask 077; cat >" + vpnStandInEnv},
				Stdin: []byte(env),
			})
			if err == nil {
				err = res.Err()
			}
			if err != nil {
				return fmt.Errorf("vgw: EC2 API stand-in credentials: %w", err)
			}
			return nil
		},
		Vars: func(l *Lab) (map[string]any, map[string]string) {
			vars := map[string]any{
				"vpn_cgw_host":          "lab:" + l.ID + "/cgw",
				"vpn_vpc_cidr":          VPNVPC,
				"vpn_ec2_ip":            VPNEC2,
				"vpn_aws_region":        VPNRegion,
				"vpn_aws_access_key_id": vpnAccessKeyID(l),
			}
			if cgw, err := l.Host("cgw"); err == nil {
				vars["vpn_local_address"] = cgw.IP.String()
			}
			if vgw, err := l.Host("vgw"); err == nil {
				vars["vpn_remote_address"] = vgw.IP.String()
				vars["vpn_aws_endpoint"] = fmt.Sprintf("http://%s", vgw.Addr(VPNEC2APIPort))
			}
			return vars, map[string]string{"vpn_aws_secret_access_key": l.Password("vpn-aws-secret-access-key")}
		},
	})
}

// vpnAccessKeyID is the lab's AWS access key id: the format of a real one,
// random per lab.
func vpnAccessKeyID(l *Lab) string {
	return "AKIA" + strings.ToUpper(l.Password("vpn-aws-access-key-id")[:16])
}
