package lab_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps/vpn"
)

// TestVPNEnv checks the vpn environment: both gateways run charon, vgw
// serves tunnel #1 of the scenario's fixture, nothing for the tunnel can
// leave the lab while it is down, and the EC2 API stand-in answers the
// real SDK, also after vgw restarts.
func TestVPNEnv(t *testing.T) {
	l := labtest.Up(t, lab.VPNEnv)
	ctx := testCtx(t, 5*time.Minute)
	host := func(name string) *lab.Host {
		h, err := l.Host(name)
		require.NoError(t, err)
		return h
	}
	run := func(h *lab.Host, args ...string) lab.ExecResult {
		res, err := h.Exec(ctx, args...)
		require.NoError(t, err)
		return res
	}
	cgw, vgw := host("cgw"), host("vgw")

	vars := l.Vars()
	assert.Equal(t, "lab:"+l.ID+"/cgw", vars["vpn_cgw_host"])
	assert.Equal(t, cgw.IP.String(), vars["vpn_local_address"])
	assert.Equal(t, vgw.IP.String(), vars["vpn_remote_address"])
	assert.Equal(t, "http://"+vgw.Addr(lab.VPNEC2APIPort), vars["vpn_aws_endpoint"])
	assert.Equal(t, lab.VPNVPC, vars["vpn_vpc_cidr"])
	assert.Equal(t, lab.VPNEC2, vars["vpn_ec2_ip"])
	assert.Equal(t, lab.VPNRegion, vars["vpn_aws_region"])
	keyID, _ := vars["vpn_aws_access_key_id"].(string)
	assert.Regexp(t, `^AKIA[0-9A-F]{16}$`, keyID)
	secret, _ := vars["secrets"].(map[string]any)["vpn_aws_secret_access_key"].(string)
	assert.Len(t, secret, 24)

	for _, h := range []*lab.Host{cgw, vgw} {
		assert.NoError(t, run(h, "swanctl", "--stats").Err(), "%s: charon answers", h.Name)
		routes := run(h, "ip", "route").Stdout
		assert.Contains(t, routes, "unreachable 169.254.0.0/16 metric 4095", h.Name)
		assert.Contains(t, routes, "unreachable "+lab.VPNVPC+" metric 4095", h.Name)
		assert.Contains(t, run(h, "ip", "link", "show", "ipsec0").Stdout, "ipsec0", "%s: kernel-libipsec's TUN device", h.Name)
	}
	// The VPC's instance is a host of its own behind vgw: vgw routes the
	// VPC to it, and its route table sends the runbook's static prefix back
	// via vgw (the propagated route), with a guard under it.
	ec2h := host("ec2")
	assert.Contains(t, run(ec2h, "ip", "addr", "show", "dev", "lo").Stdout, "inet "+lab.VPNEC2+"/32", "the VPC host")
	assert.NotContains(t, run(vgw, "ip", "addr", "show", "dev", "lo").Stdout, lab.VPNEC2, "not an address of vgw")
	assert.Contains(t, run(vgw, "ip", "route").Stdout, lab.VPNVPC+" via "+ec2h.IP.String())
	ec2Routes := run(ec2h, "ip", "route").Stdout
	assert.Contains(t, ec2Routes, "169.254.0.0/16 via "+vgw.IP.String())
	assert.Contains(t, ec2Routes, "unreachable 169.254.0.0/16 metric 4095")
	assert.Equal(t, "1", strings.TrimSpace(run(vgw, "cat", "/proc/sys/net/ipv4/ip_forward").Stdout))

	// Each fault breaks and repairs cleanly (the drills' tests check what
	// the steps make of them).
	for name, f := range lab.VPNFaults {
		h := host(f.Host)
		assert.NoError(t, run(h, f.Break...).Err(), "%s: break", name)
		assert.NoError(t, run(h, f.Repair...).Err(), "%s: repair", name)
	}
	assert.Contains(t, run(ec2h, "ip", "route").Stdout, "169.254.0.0/16 via "+vgw.IP.String(), "propagation repaired")
	assert.NotContains(t, run(ec2h, "iptables", "-S", "INPUT").Stdout, "DROP", "ICMP rule removed")
	conf := run(vgw, "cat", "/etc/swanctl/conf.d/aws-vpc.conf").Stdout
	assert.Contains(t, conf, "\t\tproposals = aes128-sha1-modp1024\n", "vgw's proposal restored")
	assert.Contains(t, conf, "opsdrill_fixture_tunnel1_psk_k7Hq", "vgw's key restored")

	// vgw plays AWS for tunnel #1 of the fixture the scenario reads.
	f, err := os.Open("../scenarios/fixtures/aws-vpn-generic.txt")
	require.NoError(t, err)
	defer f.Close()
	g, err := vpn.ParseGeneric(f, "aws-vpn-generic.txt")
	require.NoError(t, err)
	t1, _ := g.Tunnel(1)
	conns := run(vgw, "swanctl", "--list-conns").Stdout
	assert.Contains(t, conns, lab.VPNVGWConn+": IKEv1, reauthentication every 28800s, dpd delay 10s")
	assert.Contains(t, conns, "id: "+t1.VGWOutside.String())
	assert.Contains(t, conns, "id: "+t1.CGWOutside.String())
	assert.Contains(t, conns, "local:  "+t1.Inside().String())
	assert.Contains(t, conns, "local:  "+lab.VPNVPC)
	assert.Empty(t, strings.TrimSpace(run(cgw, "swanctl", "--list-conns").Stdout), "cgw starts unconfigured")

	// With no tunnel, the VPC and the inside range are unreachable rather
	// than sent to the lab network's gateway.
	for _, addr := range []string{lab.VPNEC2, "169.254.21.45"} {
		res := run(cgw, "ping", "-c1", "-W1", addr)
		assert.NotEqual(t, 0, res.ExitCode)
		assert.Contains(t, res.Stdout+res.Stderr, "No route to host", addr)
	}

	describe := func(key, secret string) (*ec2.DescribeVpnConnectionsOutput, error) {
		client := ec2.New(ec2.Options{
			Region:       lab.VPNRegion,
			BaseEndpoint: awssdk.String(vars["vpn_aws_endpoint"].(string)),
			Credentials:  credentials.NewStaticCredentialsProvider(key, secret, ""),
		})
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return client.DescribeVpnConnections(cctx, &ec2.DescribeVpnConnectionsInput{VpnConnectionIds: []string{g.VPNConnectionID}})
	}
	out, err := describe(keyID, secret)
	require.NoError(t, err)
	require.Len(t, out.VpnConnections, 1)
	vc := out.VpnConnections[0]
	assert.Equal(t, types.VpnStateAvailable, vc.State)
	assert.Equal(t, g.CustomerGateway, awssdk.ToString(vc.CustomerGatewayId))
	assert.Equal(t, g.GatewayID, awssdk.ToString(vc.VpnGatewayId))
	require.Len(t, vc.VgwTelemetry, 2)
	for i, tn := range g.Tunnels {
		assert.Equal(t, tn.VGWOutside.String(), awssdk.ToString(vc.VgwTelemetry[i].OutsideIpAddress))
		assert.Equal(t, types.TelemetryStatusDown, vc.VgwTelemetry[i].Status)
	}

	_, err = describe("AKIA0000000000000000", secret)
	var ae smithy.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "AuthFailure", ae.ErrorCode())

	// A restarted vgw comes back as Up left it.
	require.NoError(t, vgw.Stop(ctx, 5*time.Second))
	require.NoError(t, vgw.Start(ctx))
	assert.Contains(t, run(vgw, "swanctl", "--list-conns").Stdout, lab.VPNVGWConn+":")
	assert.Contains(t, run(vgw, "ip", "route").Stdout, lab.VPNVPC+" via "+ec2h.IP.String(), "the VPC route is back")
	require.Eventually(t, func() bool { _, err := describe(keyID, secret); return err == nil }, 30*time.Second, 200*time.Millisecond)
}
