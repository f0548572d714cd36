package vpn

import (
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const fixture = "../../scenarios/fixtures/aws-vpn-generic.txt"

// fixture PSKs: they must never show up in an error or a report.
var fixturePSKs = []string{"opsdrill_fixture_tunnel1_psk_k7Hq", "opsdrill_fixture_tunnel2_psk_Qm3v"}

func readFixture(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(fixture)
	require.NoError(t, err)
	return string(b)
}

func parse(t testing.TB, text string) (*Generic, error) {
	t.Helper()
	return ParseGeneric(strings.NewReader(text), "aws.txt")
}

func TestParseFixture(t *testing.T) {
	g, err := parse(t, readFixture(t))
	require.NoError(t, err)
	assert.Equal(t, "vpn-0a1b2c3d4e5f60718", g.VPNConnectionID)
	assert.Equal(t, "vgw-0f1e2d3c4b5a69788", g.GatewayID)
	assert.Equal(t, "cgw-0123456789abcdef0", g.CustomerGateway)
	require.Len(t, g.Tunnels, 2)

	want := func(n int, vgw, cgwIn, vgwIn, psk string) Tunnel {
		return Tunnel{
			Number: n, CGWOutside: netip.MustParseAddr("192.0.2.10"), VGWOutside: netip.MustParseAddr(vgw),
			CGWInside: netip.MustParsePrefix(cgwIn), VGWInside: netip.MustParsePrefix(vgwIn), PSK: psk,
			IKE: IKE{Version: 1, AuthMethod: "psk", Encryption: []string{"aes-128-cbc"}, Integrity: []string{"sha1"},
				DHGroups: []int{2}, Lifetime: 8 * time.Hour, Mode: "main"},
			IPsec: IPsec{Protocol: "esp", Encryption: []string{"aes-128-cbc"}, Integrity: []string{"hmac-sha1-96"},
				PFSGroups: []int{2}, Lifetime: time.Hour, Mode: "tunnel"},
			DPDInterval: 10 * time.Second, DPDRetries: 3, MSS: 1379, MTU: 1436,
			Routing: "static", NextHop: netip.MustParsePrefix(vgwIn).Addr(),
		}
	}
	t1, t2 := g.Tunnels[0], g.Tunnels[1]
	t1.Line, t2.Line = 0, 0
	assert.Equal(t, want(1, "203.0.113.11", "169.254.21.46/30", "169.254.21.45/30", fixturePSKs[0]), t1)
	assert.Equal(t, want(2, "198.51.100.12", "169.254.117.134/30", "169.254.117.133/30", fixturePSKs[1]), t2)
	assert.Equal(t, netip.MustParsePrefix("169.254.21.44/30"), t1.Inside())

	got, ok := g.Tunnel(2)
	assert.True(t, ok)
	assert.Equal(t, 2, got.Number)
	_, ok = g.Tunnel(3)
	assert.False(t, ok)
}

func TestParseOtherLayouts(t *testing.T) {
	b, err := os.ReadFile("testdata/generic-older-layout.txt")
	require.NoError(t, err)
	g, err := parse(t, string(b))
	require.NoError(t, err)
	t1 := g.Tunnels[0]
	assert.Equal(t, 1, t1.IKE.Version, "IKEv1 when the file does not say")
	assert.Equal(t, []int{2}, t1.IKE.DHGroups, "older files give the phase 1 group as Perfect Forward Secrecy")
	assert.Equal(t, "esp", t1.IPsec.Protocol)
	assert.Equal(t, 0, t1.MTU)
	assert.Equal(t, 1387, t1.MSS)
	assert.Equal(t, "older_layout_key_number_two", g.Tunnels[1].PSK)
	assert.Equal(t, "static", g.Tunnels[1].Routing, "static when #4 is absent")

	b, err = os.ReadFile("testdata/generic-ikev2-bgp.txt")
	require.NoError(t, err)
	g, err = parse(t, string(b))
	require.NoError(t, err)
	assert.Equal(t, "tgw-0aaaabbbbccccdddd", g.GatewayID)
	t1 = g.Tunnels[0]
	assert.Equal(t, 2, t1.IKE.Version)
	assert.Equal(t, []string{"aes-256-cbc", "aes-256-gcm-16"}, t1.IKE.Encryption)
	assert.Equal(t, []string{"sha2-256", "sha2-384"}, t1.IKE.Integrity)
	assert.Equal(t, []int{14, 20}, t1.IKE.DHGroups)
	assert.Equal(t, "bgp", t1.Routing)
	assert.Equal(t, 65000, t1.CGWASN)
	assert.Equal(t, 64512, t1.VGWASN)
	assert.Equal(t, 1427, t1.MTU)
	assert.Empty(t, g.Tunnels[1].IPsec.PFSGroups, "Perfect Forward Secrecy: none")
}

// lineOf returns the 1-based number of the n-th line containing s.
func lineOf(t *testing.T, text, s string, n int) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			n--
			if n == 0 {
				return i + 1
			}
		}
	}
	t.Fatalf("%q not found", s)
	return 0
}

func replaceLine(t *testing.T, text, contains string, n int, with string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	lines[lineOf(t, text, contains, n)-1] = with
	return strings.Join(lines, "\n")
}

// TestParseErrors injects one fault per case into the fixture and checks
// the error names the line and the field.
func TestParseErrors(t *testing.T) {
	fx := readFixture(t)
	lastLine := len(strings.Split(strings.TrimRight(fx, "\n"), "\n"))
	tests := []struct {
		name  string
		text  func(t *testing.T) string
		line  func(t *testing.T) int
		want  string
		extra int // further errors expected
	}{
		{
			name: "a quote in a key",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "Pre-Shared Key  ", 1, `  - Pre-Shared Key : key"with_quote`)
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "Pre-Shared Key  ", 1) },
			want: "tunnel #1: Pre-Shared Key: holds a quote or a backslash, which swanctl.conf cannot carry",
		},
		{
			name: "key too short",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "Pre-Shared Key  ", 2, "  - Pre-Shared Key : short")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "Pre-Shared Key  ", 2) },
			want: "tunnel #2: Pre-Shared Key: must be 8 to 64 characters long, got 5",
		},
		{
			name: "missing key",
			text: func(t *testing.T) string { return replaceLine(t, fx, "Pre-Shared Key  ", 2, "") },
			line: func(*testing.T) int { return lastLine },
			want: "tunnel #2: missing Pre-Shared Key (section #1 Internet Key Exchange Configuration)",
		},
		{
			name: "bad outside address",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "Virtual Private Gateway             : 203", 1, "  - Virtual Private Gateway : 203.0.113.300")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "Virtual Private Gateway             : 203", 1) },
			want: `tunnel #1: Outside IP Addresses: Virtual Private Gateway: expected an IPv4 address, got "203.0.113.300"`,
		},
		{
			name: "inside address not a /30",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "169.254.21.46/30", 1, "  - Customer Gateway : 169.254.21.46/29")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "169.254.21.46/30", 1) },
			want: "tunnel #1: Inside IP Addresses: Customer Gateway: expected a /30, got /29",
		},
		{
			name: "inside addresses in different /30s",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "169.254.21.45/30", 1, "  - Virtual Private Gateway : 169.254.21.49/30")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "169.254.21.45/30", 1) },
			want: "tunnel #1: inside addresses 169.254.21.46/30 and 169.254.21.49/30 are not two addresses of one /30",
		},
		{
			name: "inside network address",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "169.254.21.45/30", 1, "  - Virtual Private Gateway : 169.254.21.44/30")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "169.254.21.45/30", 1) },
			want: "169.254.21.44 is the network or broadcast address of its /30",
		},
		{
			name: "unknown algorithm",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "aes-128-cbc", 3, "  - Encryption Algorithm : aes-999-cbc")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "aes-128-cbc", 3) },
			want: `tunnel #2: IKE Encryption Algorithm: unknown algorithm "aes-999-cbc"`,
		},
		{
			name: "unsupported group",
			text: func(t *testing.T) string { return replaceLine(t, fx, ": Group 2", 1, "  - Diffie-Hellman : Group 99") },
			line: func(t *testing.T) int { return lineOf(t, fx, ": Group 2", 1) },
			want: "tunnel #1: IKE Diffie-Hellman: unsupported Diffie-Hellman group 99",
		},
		{
			name: "lifetime not a number",
			text: func(t *testing.T) string { return replaceLine(t, fx, "3600 seconds", 1, "  - Lifetime : one hour") },
			line: func(t *testing.T) int { return lineOf(t, fx, "3600 seconds", 1) },
			want: `tunnel #1: IPSec Lifetime: expected a number of seconds, got "one hour"`,
		},
		{
			name: "empty value",
			text: func(t *testing.T) string { return replaceLine(t, fx, "DPD Retries", 1, "  - DPD Retries :") },
			line: func(t *testing.T) int { return lineOf(t, fx, "DPD Retries", 1) },
			want: "tunnel #1: DPD Retries: empty value",
		},
		{
			name: "value given twice",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "Phase 1 Negotiation Mode", 1, "  - Lifetime : 28800 seconds")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "Phase 1 Negotiation Mode", 1) },
			want: "tunnel #1: IKE Lifetime given twice (first on line",
		},
		{
			name: "aggressive is fine, but not a made-up mode",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "Phase 1 Negotiation Mode", 1, "  - Phase 1 Negotiation Mode : quick")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "Phase 1 Negotiation Mode", 1) },
			want: `tunnel #1: Phase 1 Negotiation Mode: expected main or aggressive, got "quick"`,
		},
		{
			name: "certificate authentication",
			text: func(t *testing.T) string {
				return replaceLine(t, fx, "Authentication Method", 1, "  - Authentication Method : Certificate")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "Authentication Method", 1) },
			want: `tunnel #1: Authentication Method: only Pre-Shared Key is supported, got "Certificate"`,
		},
		{
			name: "truncated after tunnel 1's IPsec section",
			text: func(t *testing.T) string {
				return strings.Join(strings.Split(fx, "\n")[:lineOf(t, fx, "#3: Tunnel Interface", 1)-1], "\n")
			},
			line: func(t *testing.T) int { return lineOf(t, fx, "Fragmentation ", 1) },
			want: "tunnel #1: missing Outside IP Addresses: Customer Gateway (section #3 Tunnel Interface Configuration); the tunnel's text runs from line 21 to here",
			// three more addresses missing, and tunnel #2
			extra: 4,
		},
		{
			name: "tunnels out of order",
			text: func(t *testing.T) string { return replaceLine(t, fx, "IPSec Tunnel #2", 1, "IPSec Tunnel #1") },
			line: func(t *testing.T) int { return lineOf(t, fx, "IPSec Tunnel #2", 1) },
			want: "tunnel #1: out of order after tunnel #1",
			// and only one tunnel #2... is none: the second #1 counts twice
			extra: -1,
		},
		{
			name: "no VPN connection id",
			text: func(t *testing.T) string { return replaceLine(t, fx, "Your VPN Connection ID", 1, "") },
			line: func(t *testing.T) int { return lineOf(t, fx, "IPSec Tunnel #1", 1) },
			want: `missing "Your VPN Connection ID" before the first tunnel`,
		},
		{
			name: "not a VPN configuration",
			text: func(*testing.T) string { return "[Interface]\nPrivateKey = x\n" },
			line: func(*testing.T) int { return 2 },
			want: `not an AWS VPN Generic configuration: no "IPSec Tunnel #1" heading`,
		},
		{
			name: "empty file",
			text: func(*testing.T) string { return "" },
			line: func(*testing.T) int { return 1 },
			want: "not an AWS VPN Generic configuration",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := parse(t, tt.text(t))
			require.Error(t, err)
			assert.Nil(t, g)
			var pe ParseErrors
			require.True(t, errors.As(err, &pe), "%T", err)
			line := tt.line(t)
			var hit *ParseError
			for i := range pe {
				if strings.Contains(pe[i].Msg, tt.want) {
					hit = &pe[i]
				}
			}
			require.NotNil(t, hit, "no error says %q in:\n%v", tt.want, err)
			assert.Equal(t, line, hit.Line, "line of %q", hit.Msg)
			assert.Equal(t, "aws.txt", hit.File)
			assert.Contains(t, err.Error(), "aws.txt:"+strconv.Itoa(line)+": ")
			if tt.extra >= 0 {
				assert.Len(t, pe, 1+tt.extra, "%v", err)
			}
			for _, psk := range fixturePSKs {
				assert.NotContains(t, err.Error(), psk, "an error quotes a pre-shared key")
			}
			for i := 1; i < len(pe); i++ {
				assert.LessOrEqual(t, pe[i-1].Line, pe[i].Line, "errors are in line order")
			}
		})
	}
}

// pskValues returns the values of the Pre-Shared Key lines of text that
// are long enough not to occur in an error by chance.
func pskValues(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		m := keyValue.FindStringSubmatch(strings.TrimRight(l, "\r"))
		if m != nil && norm(m[1]) == "pre-shared key" && len(strings.TrimSpace(m[2])) >= 8 {
			out = append(out, strings.TrimSpace(m[2]))
		}
	}
	return out
}

// FuzzParseGeneric feeds arbitrary text: the parser returns a result or
// errors, never panics, and no error quotes the value of a Pre-Shared Key line.
func FuzzParseGeneric(f *testing.F) {
	f.Add(readFixture(f))
	for _, p := range []string{"testdata/generic-older-layout.txt", "testdata/generic-ikev2-bgp.txt"} {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(string(b))
	}
	f.Add("IPSec Tunnel #1\n#1: x\n - Pre-Shared Key : ok_key_123\n#3:\nInside IP Addresses\n - Customer Gateway : 169.254.0.1/30\n")
	f.Fuzz(func(t *testing.T, text string) {
		g, err := ParseGeneric(strings.NewReader(text), "fuzz.txt")
		if err != nil {
			assert.Nil(t, g)
			for _, psk := range pskValues(text) {
				assert.NotContains(t, err.Error(), psk, "an error quotes a pre-shared key")
			}
			return
		}
		require.Len(t, g.Tunnels, 2)
		for _, tn := range g.Tunnels {
			assert.NotEmpty(t, tn.PSK)
			assert.True(t, tn.CGWInside.IsValid())
		}
	})
}
