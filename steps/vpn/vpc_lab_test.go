package vpn_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/steps"
)

// breakLab puts the vpn environment in one of lab.VPNFaults and registers
// its repair.
func (d *drill) breakLab(t *testing.T, name string) {
	t.Helper()
	f, ok := lab.VPNFaults[name]
	require.True(t, ok, name)
	d.exec(f.Host, f.Break...)
	t.Cleanup(func() { d.exec(f.Host, f.Repair...) })
}

// reach runs tunnel.reach from cgw to the VPC's instance.
func (d *drill) reach(cfg map[string]any) (map[string]any, []steps.Evidence, error) {
	return d.step("tunnel.reach", map[string]any{
		"host": d.cgw, "target": lab.VPNEC2, "vgw_inside_ip": cfg["vgw_inside_ip"], "vpc_cidr": cfg["vpc_cidr"],
		"timeout": "1s", "count": 2,
	})
}

// testVPCFaults: with the tunnel up, each of the runbook's troubleshooting
// causes is made to happen in the lab and tunnel.reach names it with the
// runbook's fix; then AWS's side is made to differ from the file and
// tunnel.up says how.
func testVPCFaults(t *testing.T, d *drill) {
	t.Run("the VPC host answers through the tunnel", func(t *testing.T) {
		d.t = t
		defer d.cleanup()
		cfg := d.config(fixture)
		_, _, err := d.up(cfg)
		require.NoError(t, err)
		out, ev, err := d.reach(cfg)
		require.NoError(t, err)
		assert.Equal(t, true, out["reachable"])
		assert.Equal(t, true, out["route_via_tunnel"])
		assert.Equal(t, "", out["cause"])
		require.Len(t, ev, 1)
		// The instance is a host of its own: the reply comes from ec2's
		// stack, which vgw forwards to, not from vgw.
		assert.Contains(t, d.exec("vgw", "ip", "route", "get", lab.VPNEC2), "via ")
	})

	for _, tc := range []struct {
		fault, cause string
		fix          []string
	}{
		{"no-route-propagation", "route_propagation", []string{"enable Route Propagation", "Propagate for the VGW"}},
		{"icmp-blocked", "security_group_icmp", []string{"security group: allow ICMP", "answers TCP port 22 but not ping"}},
		{"cgw-no-vpc-route", "cgw_route", []string{"route add -net 172.28.0.0/16 gw 169.254.21.45"}},
	} {
		t.Run(tc.fault+" is named "+tc.cause, func(t *testing.T) {
			d.t = t
			defer d.cleanup()
			cfg := d.config(fixture)
			_, _, err := d.up(cfg)
			require.NoError(t, err)
			d.breakLab(t, tc.fault)
			out, ev, err := d.reach(cfg)
			require.Error(t, err)
			assert.True(t, steps.IsFailure(err), "%v", err)
			assert.Equal(t, false, out["reachable"])
			assert.Equal(t, tc.cause, out["cause"])
			for _, f := range tc.fix {
				assert.Contains(t, err.Error(), f)
				assert.Contains(t, out["fix"], f)
			}
			require.Len(t, ev, 1)
			assert.Equal(t, "VPC reachability through the tunnel", ev[0].Title)
		})
	}

	for _, tc := range []struct {
		fault string
		want  []string
	}{
		{"vgw-proposal", []string{"NO_PROPOSAL_CHOSEN", "refused for the IKE_SA (phase 1: IKE proposal)"}},
		{"vgw-psk", []string{"pre-shared key mismatch"}},
	} {
		t.Run("AWS's side differs from the file: "+tc.fault, func(t *testing.T) {
			d.t = t
			defer d.cleanup()
			d.breakLab(t, tc.fault)
			cfg := d.config(fixture)
			_, _, err := d.up(cfg)
			require.Error(t, err)
			t.Logf("tunnel.up: %v", err)
			assert.True(t, steps.IsFailure(err), "%v", err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "opsdrill_fixture_tunnel1_psk")
		})
	}
}
