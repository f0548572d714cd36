package vpn

import (
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), got)
}

func TestRenderFixtureTunnel1(t *testing.T) {
	g, err := parse(t, readFixture(t))
	require.NoError(t, err)
	t1, _ := g.Tunnel(1)
	r, err := Render(g, t1, RenderOptions{Name: "aws-tunnel-1", VPC: netip.MustParsePrefix("172.28.0.0/16"), Interface: "eth0"}, "aws-vpn-generic.txt")
	require.NoError(t, err)
	golden(t, "tunnel1.swanctl.conf", r.SwanctlConf)

	assert.Equal(t, "aes128-sha1-modp1024", r.IKEProposal)
	assert.Equal(t, "aes128-sha1-modp1024", r.ESPProposal)
	assert.Equal(t, []Child{
		{Name: "aws-tunnel-1-inside", LocalTS: netip.MustParsePrefix("169.254.21.44/30"), RemoteTS: []netip.Prefix{netip.MustParsePrefix("169.254.21.44/30")}},
		{Name: "aws-tunnel-1-vpc", LocalTS: netip.MustParsePrefix("169.254.21.44/30"), RemoteTS: []netip.Prefix{netip.MustParsePrefix("172.28.0.0/16")}},
	}, r.Children)
	// The runbook's `ip a a 169.254.54.122/30 dev eth0` and
	// `route add -net 172.28.0.0/16 gw 169.254.54.121`, idempotent.
	assert.Equal(t, []string{
		"ip addr replace 169.254.21.46/30 dev eth0",
		"ip route replace 172.28.0.0/16 via 169.254.21.45 dev eth0",
	}, r.UpCommands)
	assert.Equal(t, []string{
		"ip route del 172.28.0.0/16 via 169.254.21.45 dev eth0",
		"ip addr del 169.254.21.46/30 dev eth0",
	}, r.DownCommands)
}

func TestRenderAddressesAndVersions(t *testing.T) {
	g, err := parse(t, readFixture(t))
	require.NoError(t, err)
	t2, _ := g.Tunnel(2)
	r, err := Render(g, t2, RenderOptions{
		Name: "corp-aws", VPC: netip.MustParsePrefix("10.50.0.0/16"), Interface: "ens3",
		LocalAddress: netip.MustParseAddr("10.1.1.1"), RemoteAddress: netip.MustParseAddr("10.2.2.2"),
	}, "x.txt")
	require.NoError(t, err)
	conf := r.SwanctlConf
	assert.Contains(t, conf, "local_addrs = 10.1.1.1\n")
	assert.Contains(t, conf, "remote_addrs = 10.2.2.2\n")
	assert.Contains(t, conf, "id = 192.0.2.10\n", "identities stay the file's outside addresses")
	assert.Contains(t, conf, "id = 198.51.100.12\n")
	assert.Contains(t, conf, `secret = "opsdrill_fixture_tunnel2_psk_Qm3v"`)
	assert.Contains(t, conf, "corp-aws-vpc {")
	assert.Contains(t, conf, "remote_ts = 10.50.0.0/16\n")
	assert.Contains(t, r.UpCommands[0], "dev ens3")

	b, err := os.ReadFile("testdata/generic-ikev2-bgp.txt")
	require.NoError(t, err)
	g, err = parse(t, string(b))
	require.NoError(t, err)
	v2, _ := g.Tunnel(1)
	r, err = Render(g, v2, RenderOptions{Name: "v2", VPC: netip.MustParsePrefix("10.60.0.0/16"), Interface: "eth0"}, "x.txt")
	require.NoError(t, err)
	golden(t, "ikev2.swanctl.conf", r.SwanctlConf)
	assert.Equal(t, "aes256-sha256-sha384-modp2048-ecp384,aes256gcm16-prfsha256-prfsha384-modp2048-ecp384", r.IKEProposal)
	assert.Equal(t, "aes256gcm16-modp2048", r.ESPProposal, "AEAD ESP has no integrity algorithm")
	require.Len(t, r.Children, 1, "IKEv2 carries both selectors in one CHILD_SA")
	assert.Equal(t, "v2", r.Children[0].Name)
	assert.Equal(t, "169.254.200.0/30,10.60.0.0/16", joinPrefixes(r.Children[0].RemoteTS))

	v2b, _ := g.Tunnel(2)
	r, err = Render(g, v2b, RenderOptions{Name: "v2b", VPC: netip.MustParsePrefix("10.60.0.0/16"), Interface: "eth0"}, "x.txt")
	require.NoError(t, err)
	assert.Equal(t, "aes128-sha256", r.ESPProposal, "no PFS group without PFS")
}

func TestRenderRefusesOverlap(t *testing.T) {
	g, err := parse(t, readFixture(t))
	require.NoError(t, err)
	t1, _ := g.Tunnel(1)
	_, err = Render(g, t1, RenderOptions{Name: "x", VPC: netip.MustParsePrefix("169.254.0.0/16"), Interface: "eth0"}, "x")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "VPC CIDR 169.254.0.0/16 overlaps the tunnel's inside network 169.254.21.44/30")
	_, err = Render(g, t1, RenderOptions{Name: "x", Interface: "eth0"}, "x")
	assert.Error(t, err)
}

func TestNegotiatedKeywords(t *testing.T) {
	tests := []struct {
		encr, size, integ, prf, dh string
		want                       string
	}{
		{"AES_CBC", "128", "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_1024", "aes128-sha1-modp1024"},
		{"AES_CBC", "256", "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "MODP_2048", "aes256-sha256-modp2048"},
		{"AES_GCM_16", "256", "", "PRF_HMAC_SHA2_384", "ECP_384", "aes256gcm16-prfsha384-ecp384"},
		{"AES_CBC", "128", "HMAC_SHA1_96", "", "", "aes128-sha1"},
		{"AES_CBC", "128", "HMAC_SHA1_96", "", "MODP_2048_256", "aes128-sha1-modp2048s256"},
		{"3DES_CBC", "", "HMAC_MD5_96", "", "MODP_1536", "3des-md5-modp1536"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, negotiatedProposal(tt.encr, tt.size, tt.integ, tt.prf, tt.dh))
	}
	// What vpn.config renders for the runbook is what tunnel.up reports.
	assert.Equal(t, proposals([]string{"aes-128-cbc"}, []string{"sha1"}, []int{2}, ikeIntegrity, true),
		negotiatedProposal("AES_CBC", "128", "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_1024"))
	assert.Equal(t, proposals([]string{"aes-128-cbc"}, []string{"hmac-sha1-96"}, []int{2}, espIntegrity, false),
		negotiatedProposal("AES_CBC", "128", "HMAC_SHA1_96", "", "MODP_1024"))
	assert.True(t, strings.Contains(groupList(), "2, 5, 14"))
}
