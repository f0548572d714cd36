package vpn

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parseSample parses one of testdata/aws-samples (see SOURCES.md there).
func parseSample(t *testing.T, name string) (*Generic, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "aws-samples", name))
	require.NoError(t, err)
	return ParseGeneric(strings.NewReader(string(b)), name)
}

// TestParseAWSSamples reads AWS's own documented Generic examples, static
// and BGP, both tunnels each, as the real downloads print them.
func TestParseAWSSamples(t *testing.T) {
	cases := []struct {
		file                           string
		routing                        string
		vgwOutside, cgwInside, nextHop [2]string
		vgwASN                         int
		psk                            [2]string
	}{
		{
			// AWS's BGP example prints one endpoint for both tunnels.
			file: "awsdocs-generic-bgp-ikev1.txt", routing: "bgp",
			vgwOutside: [2]string{"72.21.209.193", "72.21.209.193"},
			cgwInside:  [2]string{"169.254.255.2/30", "169.254.255.6/30"},
			vgwASN:     7224,
			psk:        [2]string{"plain-text-password1", "plain-text-password2"},
		},
		{
			file: "awsdocs-generic-static-ikev1.txt", routing: "static",
			vgwOutside: [2]string{"72.21.209.193", "72.21.209.225"},
			cgwInside:  [2]string{"169.254.255.74/30", "169.254.255.78/30"},
			nextHop:    [2]string{"169.254.255.73", "169.254.255.77"},
			psk:        [2]string{"PRE-SHARED-KEY-IN-PLAIN-TEXT", "PRE-SHARED-KEY-IN-PLAIN-TEXT"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			g, err := parseSample(t, tc.file)
			require.NoError(t, err)
			assert.Equal(t, "vpn-44a8938f", g.VPNConnectionID)
			assert.Equal(t, "vgw-8db04f81", g.GatewayID)
			require.Len(t, g.Tunnels, 2)
			for i, tn := range g.Tunnels {
				assert.Equal(t, i+1, tn.Number)
				assert.Equal(t, tc.routing, tn.Routing)
				assert.Equal(t, tc.vgwOutside[i], tn.VGWOutside.String())
				assert.Equal(t, tc.cgwInside[i], tn.CGWInside.String())
				assert.False(t, tn.CGWOutside.IsValid(), "YOUR_UPLINK_ADDRESS is no address")
				assert.NotZero(t, tn.CGWOutsidePlaceholder, "the placeholder's line is kept")
				assert.Equal(t, tc.psk[i], tn.PSK)
				assert.Equal(t, 1, tn.IKE.Version)
				assert.Equal(t, "main", tn.IKE.Mode)
				assert.Equal(t, []string{"aes-128-cbc"}, tn.IKE.Encryption)
				assert.Equal(t, []string{"sha1"}, tn.IKE.Integrity)
				assert.Equal(t, []int{2}, tn.IKE.DHGroups)
				assert.Equal(t, 28800*time.Second, tn.IKE.Lifetime)
				assert.Equal(t, []string{"hmac-sha1-96"}, tn.IPsec.Integrity)
				assert.Equal(t, []int{2}, tn.IPsec.PFSGroups)
				assert.Equal(t, 3600*time.Second, tn.IPsec.Lifetime)
				assert.Equal(t, 10*time.Second, tn.DPDInterval)
				assert.Equal(t, 3, tn.DPDRetries)
				assert.Equal(t, 1387, tn.MSS)
				assert.Equal(t, 1436, tn.MTU)
				assert.Equal(t, tc.vgwASN, tn.VGWASN)
				assert.Zero(t, tn.CGWASN, "YOUR_BGP_ASN is no ASN")
				if tc.nextHop[i] != "" {
					assert.Equal(t, tc.nextHop[i], tn.NextHop.String())
				}
			}
			// Both examples' keys break AWS's character rule: a warning
			// per tunnel, naming the line, never the key.
			require.Len(t, g.Warnings, 2)
			for _, w := range g.Warnings {
				assert.Contains(t, w.Error(), tc.file+":")
				assert.Contains(t, w.Msg, "Pre-Shared Key holds characters other than letters, digits")
				assert.NotContains(t, w.Error(), tc.psk[0])
			}
		})
	}
}

// TestParseDoubleColon: the BGP example's "- Customer Gateway:        : ip"
// line, with an address as the template fills it, is read as that address.
func TestParseDoubleColon(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "aws-samples", "awsdocs-generic-bgp-ikev1.txt"))
	require.NoError(t, err)
	text := strings.ReplaceAll(string(b), "- Customer Gateway:        : YOUR_UPLINK_ADDRESS", "- Customer Gateway:        : 198.51.100.7")
	text = strings.ReplaceAll(text, "YOUR_BGP_ASN", "65000")
	require.NotEqual(t, string(b), text)
	g, err := ParseGeneric(strings.NewReader(text), "bgp.txt")
	require.NoError(t, err)
	for _, tn := range g.Tunnels {
		assert.Equal(t, netip.MustParseAddr("198.51.100.7"), tn.CGWOutside)
		assert.Zero(t, tn.CGWOutsidePlaceholder)
		assert.Equal(t, 65000, tn.CGWASN)
	}
}

// TestParsePlaceholderElsewhere: a placeholder where a value is needed is
// an error naming the line.
func TestParsePlaceholderElsewhere(t *testing.T) {
	fx := readFixture(t)
	text := replaceLine(t, fx, "Virtual Private Gateway  ", 1, "  - Virtual Private Gateway  : YOUR_AWS_ENDPOINT")
	_, err := ParseGeneric(strings.NewReader(text), "aws.txt")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "YOUR_AWS_ENDPOINT is a placeholder of AWS's examples, not a value")
}

// TestParseRefusesOtherVendors: downloads for a device are refused, naming
// the format and the line, never quoting more than the command.
func TestParseRefusesOtherVendors(t *testing.T) {
	cases := []struct {
		file, vendor, cmd string
		line              int
	}{
		{"awsdocs-cisco-ios.txt", "Cisco (IOS or ASA)", "crypto isakmp", 37},
		{"awsdocs-juniper-junos.txt", "Juniper JunOS", "set security ike", 0},
		{"edgeos-vyatta-template.txt", "Vyatta", "set vpn ipsec", 6},
		{"openswan-download.txt", "strongSwan or Openswan (ipsec.conf)", "authby=", 2},
	}
	for _, tc := range cases {
		t.Run(tc.vendor, func(t *testing.T) {
			g, err := parseSample(t, tc.file)
			require.Error(t, err)
			assert.Nil(t, g)
			var pe ParseErrors
			require.True(t, errors.As(err, &pe))
			require.Len(t, pe, 1, "one clear error, not every missing field")
			assert.Contains(t, pe[0].Msg, "this is AWS's "+tc.vendor+" configuration download, not the Generic one")
			assert.Contains(t, pe[0].Msg, `choosing Vendor "Generic"`)
			assert.Contains(t, pe[0].Msg, tc.cmd)
			if tc.line != 0 {
				assert.Equal(t, tc.line, pe[0].Line)
			}
			assert.NotContains(t, err.Error(), "pre-shared-secret '", "only the command is quoted")
		})
	}
}

// TestConfigPlaceholderNeedsLocalAddress: vpn.config on AWS's example asks
// for local_address, then uses it as the customer gateway's identity.
func TestConfigPlaceholderNeedsLocalAddress(t *testing.T) {
	sample, err := filepath.Abs(filepath.Join("testdata", "aws-samples", "awsdocs-generic-static-ikev1.txt"))
	require.NoError(t, err)
	rec := &recorder{}
	c := fixtureConfig()
	c.File = sample
	err = c.Run(context.Background(), rec.env(t, "config"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), sample+":")
	assert.Contains(t, err.Error(), "Customer Gateway is a placeholder, not an address; set local_address")

	c = fixtureConfig()
	c.File, c.LocalAddress = sample, "192.0.2.77"
	env := rec.env(t, "config")
	require.NoError(t, c.Run(context.Background(), env))
	assert.Equal(t, "192.0.2.77", env.Outputs()["cgw_outside_ip"])
	assert.Equal(t, "72.21.209.193", env.Outputs()["vgw_outside_ip"])
	rec.runUndo(t)
}
