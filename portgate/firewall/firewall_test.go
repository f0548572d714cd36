package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate/netnstest"
)

// Ports of the test gate: guarded is in the allow-list, free is not and
// must never be touched.
const (
	guarded = 7022
	free    = 7023
)

// closedWait is how long a probe waits before calling a port closed
// (rules DROP, so a closed port times out).
const closedWait = 700 * time.Millisecond

type backendCase struct {
	name string
	tool string
	// own lists the set-up rules portgate keeps (not the leases), to show
	// a restart does not duplicate them.
	own []string
	// foreign installs rules that are not portgate's; snapshot prints
	// them, to prove they are never changed.
	foreign  []string
	snapshot [][]string
}

var backendCases = []backendCase{
	{
		name: "nftables", tool: "nft", own: []string{"nft", "list", "chain", "inet", "portgate", "input"},
		foreign: []string{
			"nft add table inet foreign",
			"nft add chain inet foreign input { type filter hook input priority 10 ; policy accept ; }",
			"nft add rule inet foreign input tcp dport 7099 counter accept comment foreign",
		},
		snapshot: [][]string{{"nft", "-s", "list", "table", "inet", "foreign"}},
	},
	{
		name: "iptables", tool: "iptables", own: []string{"iptables", "-S", "PORTGATE"},
		foreign: []string{
			"iptables -N FOREIGN",
			"iptables -A FOREIGN -p tcp --dport 7099 -m comment --comment foreign -j ACCEPT",
			"iptables -A INPUT -p tcp --dport 7098 -m comment --comment foreign -j ACCEPT",
			"ip6tables -A INPUT -p tcp --dport 7098 -m comment --comment foreign -j ACCEPT",
		},
		snapshot: [][]string{{"iptables", "-S", "FOREIGN"}, {"iptables", "-S", "INPUT"}, {"ip6tables", "-S", "INPUT"}},
	},
}

func (c backendCase) snap(t *testing.T, g *netnstest.Gate) string {
	t.Helper()
	var b strings.Builder
	for _, args := range c.snapshot {
		for _, line := range strings.Split(g.Gate.MustRun(t, args...), "\n") {
			// The jump into portgate's chain is the one INPUT rule it owns.
			if !strings.Contains(line, tagJump) {
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}

// newBackend builds a backend inside the gate's namespace and sets it up.
func newBackend(t *testing.T, g *netnstest.Gate, name string, now func() time.Time) Backend {
	t.Helper()
	var b Backend
	require.NoError(t, g.Gate.Do(func() error {
		var err error
		if b, err = New(Config{Backend: name}, now); err != nil {
			return err
		}
		return b.Init([]Port{{Proto: TCP, Num: guarded}})
	}))
	return b
}

// in runs a backend call inside the gate's namespace (iptables forks
// there; nftables keeps the netlink socket it opened there).
func in(t *testing.T, g *netnstest.Gate, fn func() error) {
	t.Helper()
	require.NoError(t, g.Gate.Do(fn))
}

func addr(ip string, port int) string {
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

// TestBackendRules proves, against the real kernel, each thing a drill
// checks: closed by default, open for the lease's address only, closed
// again on delete, rules listed back with their end, a restart (Init
// again) keeping live rules, and foreign rules never touched.
func TestBackendRules(t *testing.T) {
	for _, c := range backendCases {
		t.Run(c.name, func(t *testing.T) {
			netnstest.RequireTool(t, c.tool)
			g := netnstest.NewGate(t)
			g.Serve(t, guarded)
			g.Serve(t, free)
			for _, cmd := range c.foreign {
				g.Gate.MustRun(t, strings.Fields(cmd)...)
			}
			before := c.snap(t, g)
			b := newBackend(t, g, c.name, time.Now)
			c1 := netip.MustParseAddr(g.C1IP)
			c16 := netip.MustParseAddr(g.C1IP6)

			// Closed by default, from both clients, v4 and v6; the port
			// outside the allow-list is left alone.
			assert.False(t, g.C1.Probe(addr(g.GateIP1, guarded), closedWait))
			assert.False(t, g.C2.Probe(addr(g.GateIP2, guarded), closedWait))
			assert.False(t, g.C1.Probe(addr(g.GateIP6_1, guarded), closedWait))
			assert.True(t, g.C1.Probe(addr(g.GateIP1, free), 5*time.Second))

			// A rule opens the port for its address only.
			until := time.Now().Add(time.Hour)
			in(t, g, func() error { return b.Set(Rule{IP: c1, Port: guarded, Until: until}) })
			in(t, g, func() error { return b.Set(Rule{IP: c16, Port: guarded, Until: until}) })
			assert.True(t, g.C1.Probe(addr(g.GateIP1, guarded), 5*time.Second), "open from the lease's address")
			assert.True(t, g.C1.Probe(addr(g.GateIP6_1, guarded), 5*time.Second), "open over IPv6 too")
			assert.False(t, g.C2.Probe(addr(g.GateIP2, guarded), closedWait), "still closed from another address")
			assert.False(t, g.C2.Probe(addr(g.GateIP6_2, guarded), closedWait))

			// Listed back with its end (to the second).
			var rules []Rule
			in(t, g, func() error { var err error; rules, err = b.List(); return err })
			require.Len(t, rules, 2)
			for _, r := range rules {
				assert.Equal(t, uint16(guarded), r.Port)
				assert.WithinDuration(t, until, r.Until, 1500*time.Millisecond)
			}

			// A restart: a new backend, Init again; the live rule stays and
			// nothing is duplicated.
			ownBefore := g.Gate.MustRun(t, c.own...)
			b = newBackend(t, g, c.name, time.Now)
			assert.Equal(t, strings.Count(ownBefore, "portgate"), strings.Count(g.Gate.MustRun(t, c.own...), "portgate"))
			in(t, g, func() error { var err error; rules, err = b.List(); return err })
			assert.Len(t, rules, 2)
			assert.True(t, g.C1.Probe(addr(g.GateIP1, guarded), 5*time.Second), "a restart keeps live rules")

			// Moving the end replaces the rule, never duplicates it.
			until = time.Now().Add(30 * time.Minute)
			in(t, g, func() error { return b.Set(Rule{IP: c1, Port: guarded, Until: until}) })
			in(t, g, func() error { var err error; rules, err = b.List(); return err })
			require.Len(t, rules, 2)
			for _, r := range rules {
				if r.IP == c1 {
					assert.WithinDuration(t, until, r.Until, 1500*time.Millisecond)
				}
			}

			// Delete closes it; deleting twice is fine.
			in(t, g, func() error { return b.Delete(c1, TCP, guarded) })
			in(t, g, func() error { return b.Delete(c1, TCP, guarded) })
			in(t, g, func() error { return b.Delete(c16, TCP, guarded) })
			assert.False(t, g.C1.Probe(addr(g.GateIP1, guarded), closedWait), "closed again")
			in(t, g, func() error { var err error; rules, err = b.List(); return err })
			assert.Empty(t, rules)

			assert.Equal(t, before, c.snap(t, g), "foreign rules are untouched")
			assert.True(t, g.C1.Probe(addr(g.GateIP1, free), 5*time.Second))
		})
	}
}

// TestKernelEndsRules proves a rule ends at its time with nobody deleting
// it: what keeps a lease on time while portgate is down.
func TestKernelEndsRules(t *testing.T) {
	for _, c := range backendCases {
		t.Run(c.name, func(t *testing.T) {
			netnstest.RequireTool(t, c.tool)
			g := netnstest.NewGate(t)
			g.Serve(t, guarded)
			b := newBackend(t, g, c.name, time.Now)
			// iptables' time match has whole-second resolution: end on a
			// second boundary so "on time" is well defined for both.
			until := time.Now().Add(3 * time.Second).Truncate(time.Second)
			in(t, g, func() error { return b.Set(Rule{IP: netip.MustParseAddr(g.C1IP), Port: guarded, Until: until}) })
			assert.True(t, g.C1.Probe(addr(g.GateIP1, guarded), 5*time.Second))
			time.Sleep(time.Until(until.Add(-800 * time.Millisecond)))
			if time.Until(until) > 300*time.Millisecond {
				assert.True(t, g.C1.Probe(addr(g.GateIP1, guarded), 200*time.Millisecond), "still open just before the end")
			}
			time.Sleep(time.Until(until))
			var closedAt time.Time
			for time.Since(until) < 5*time.Second {
				start := time.Now()
				if !g.C1.Probe(addr(g.GateIP1, guarded), 300*time.Millisecond) {
					closedAt = start
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			require.False(t, closedAt.IsZero(), "the rule never ended")
			t.Logf("%s: closed %s after the end", c.name, closedAt.Sub(until).Round(time.Millisecond))
			assert.Less(t, closedAt.Sub(until), 2*time.Second)
		})
	}
}

// TestDefaultDenyHostFirewall puts each backend behind the kind of host
// firewall the lab gate has: input policy drop. Leases still get in (nft:
// through the packet mark the host firewall accepts; iptables: portgate's
// ACCEPT in INPUT), other ports stay shut.
func TestDefaultDenyHostFirewall(t *testing.T) {
	host := map[string][]string{
		"nftables": {
			"nft add table inet labfw",
			"nft add chain inet labfw input { type filter hook input priority 0 ; policy drop ; }",
			"nft add rule inet labfw input ct state established,related accept",
			"nft add rule inet labfw input meta mark & 0x7067 == 0x7067 accept",
		},
		"iptables": {
			"iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
			"iptables -P INPUT DROP",
		},
	}
	for _, c := range backendCases {
		t.Run(c.name, func(t *testing.T) {
			netnstest.RequireTool(t, c.tool)
			g := netnstest.NewGate(t)
			g.Serve(t, guarded)
			g.Serve(t, free)
			for _, cmd := range host[c.name] {
				g.Gate.MustRun(t, strings.Fields(cmd)...)
			}
			b := newBackend(t, g, c.name, time.Now)
			assert.False(t, g.C1.Probe(addr(g.GateIP1, guarded), closedWait))
			in(t, g, func() error {
				return b.Set(Rule{IP: netip.MustParseAddr(g.C1IP), Port: guarded, Until: time.Now().Add(time.Hour)})
			})
			assert.True(t, g.C1.Probe(addr(g.GateIP1, guarded), 5*time.Second), "the lease gets through the host firewall")
			assert.False(t, g.C2.Probe(addr(g.GateIP2, guarded), closedWait))
			assert.False(t, g.C1.Probe(addr(g.GateIP1, free), closedWait), "the host firewall still denies the rest")
		})
	}
}

func TestIPTablesParsing(t *testing.T) {
	line := `-A PORTGATE -s 10.0.0.5/32 -p tcp -m tcp --dport 22 -m time --datestop 2026-05-01T12:00:00 -m comment --comment "portgate:lease:until=1777636801" -j ACCEPT`
	spec, ok := ruleSpec(line, "PORTGATE")
	require.True(t, ok)
	assert.Equal(t, "portgate:lease:until=1777636801", spec[len(spec)-3])
	r, ok := parseLease(spec)
	require.True(t, ok)
	assert.Equal(t, Rule{IP: netip.MustParseAddr("10.0.0.5"), Proto: TCP, Port: 22, Until: time.Unix(1777636801, 0)}, r)

	for _, l := range []string{
		`-A OTHER -s 10.0.0.5/32 -p tcp --dport 22 -m comment --comment portgate:lease:until=1 -j ACCEPT`,
		`-N PORTGATE`,
	} {
		_, ok := ruleSpec(l, "PORTGATE")
		assert.False(t, ok, l)
	}
	for _, l := range []string{
		`-A PORTGATE -s 10.0.0.0/24 -p tcp --dport 22 -m comment --comment portgate:lease:until=1 -j ACCEPT`,
		`-A PORTGATE -s 10.0.0.5/32 -p tcp --dport 22 -m comment --comment manual -j ACCEPT`,
		`-A PORTGATE -s 10.0.0.5/32 -p tcp --dport 22 -j ACCEPT`,
		`-A PORTGATE -p tcp --dport 22 -m comment --comment portgate:guard -j DROP`,
	} {
		spec, _ := ruleSpec(l, "PORTGATE")
		_, ok := parseLease(spec)
		assert.False(t, ok, "not a lease rule: %s", l)
	}
	assert.Equal(t, []string{"a", "b c", `d"e`, ""}, splitQuoted(`a "b c" "d\"e" ""`))
}

func TestNFTablesKeys(t *testing.T) {
	n := &NFTables{set4: nil}
	for _, s := range []string{"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"} {
		for _, proto := range []string{TCP, UDP} {
			_, key := n.setFor(netip.MustParseAddr(s), proto, 443)
			ip, gotProto, port, ok := decodeKey(key)
			require.True(t, ok)
			assert.Equal(t, netip.MustParseAddr(s).Unmap(), ip)
			assert.Equal(t, proto, gotProto)
			assert.Equal(t, uint16(443), port)
		}
	}
	_, _, _, ok := decodeKey([]byte{1, 2, 3})
	assert.False(t, ok)
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{Backend: "pf"}, nil)
	assert.ErrorContains(t, err, `firewall.backend: must be nftables or iptables, got "pf"`)
	_, err = NewNFTables(NFTablesConfig{Table: "bad name"}, true, time.Now)
	assert.ErrorContains(t, err, "firewall.nftables.table")
	_, err = NewIPTables(IPTablesConfig{Chain: "BAD CHAIN"}, true, time.Now)
	assert.ErrorContains(t, err, "firewall.iptables.chain")
}

// TestReopenAfterKernelExpiry: a rule the kernel ended (nobody deleted it)
// can be set again for the same address and port, with or without the
// reaper's delete in between.
func TestReopenAfterKernelExpiry(t *testing.T) {
	for _, c := range backendCases {
		for _, reaped := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reaped=%v", c.name, reaped), func(t *testing.T) {
				netnstest.RequireTool(t, c.tool)
				g := netnstest.NewGate(t)
				g.Serve(t, guarded)
				b := newBackend(t, g, c.name, time.Now)
				c1 := netip.MustParseAddr(g.C1IP)
				until := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
				in(t, g, func() error { return b.Set(Rule{IP: c1, Port: guarded, Until: until}) })
				time.Sleep(time.Until(until) + 300*time.Millisecond)
				assert.False(t, g.C1.Probe(addr(g.GateIP1, guarded), closedWait), "ended by the kernel")
				if reaped {
					in(t, g, func() error { return b.Delete(c1, TCP, guarded) })
				}
				in(t, g, func() error { return b.Set(Rule{IP: c1, Port: guarded, Until: time.Now().Add(time.Minute)}) })
				assert.True(t, g.C1.Probe(addr(g.GateIP1, guarded), 5*time.Second), "open again")
				var rules []Rule
				in(t, g, func() error { var err error; rules, err = b.List(); return err })
				assert.Len(t, rules, 1)
			})
		}
	}
}

// TestUDPLeases: a UDP port is guarded and leased like a TCP one, and the
// two never stand in for each other.
func TestUDPLeases(t *testing.T) {
	for _, c := range backendCases {
		t.Run(c.name, func(t *testing.T) {
			netnstest.RequireTool(t, c.tool)
			g := netnstest.NewGate(t)
			g.ServeUDP(t, guarded)
			g.Serve(t, guarded)
			var b Backend
			require.NoError(t, g.Gate.Do(func() error {
				var err error
				if b, err = New(Config{Backend: c.name}, time.Now); err != nil {
					return err
				}
				return b.Init([]Port{{Proto: UDP, Num: guarded}, {Proto: TCP, Num: guarded}})
			}))
			c1 := netip.MustParseAddr(g.C1IP)
			udp := addr(g.GateIP1, guarded)
			assert.False(t, g.C1.ProbeUDP(udp, closedWait), "UDP closed by default")
			in(t, g, func() error { return b.Set(Rule{IP: c1, Proto: UDP, Port: guarded, Until: time.Now().Add(time.Hour)}) })
			assert.True(t, g.C1.ProbeUDP(udp, 3*time.Second), "UDP open for the lease's address")
			assert.False(t, g.C2.ProbeUDP(addr(g.GateIP2, guarded), closedWait), "not for another")
			assert.False(t, g.C1.Probe(udp, closedWait), "a UDP lease does not open TCP")
			var rules []Rule
			in(t, g, func() error { var err error; rules, err = b.List(); return err })
			require.Len(t, rules, 1)
			assert.Equal(t, UDP, rules[0].Proto)
			in(t, g, func() error { return b.Delete(c1, UDP, guarded) })
			// The echo exchange above left a conntrack entry: a fresh source
			// port is a new flow.
			assert.False(t, g.C1.ProbeUDP(udp, closedWait), "closed again")
		})
	}
}

// TestIP6GuardWithoutIPv6Leases: with firewall.iptables.ipv6: false the
// guarded port is still closed over IPv6 (no lease can open it there).
func TestIP6GuardWithoutIPv6Leases(t *testing.T) {
	netnstest.RequireTool(t, "ip6tables")
	g := netnstest.NewGate(t)
	g.Serve(t, guarded)
	g.Serve(t, free)
	off := false
	var b Backend
	require.NoError(t, g.Gate.Do(func() error {
		var err error
		if b, err = New(Config{Backend: "iptables", IPTables: IPTablesConfig{IPv6: &off}}, time.Now); err != nil {
			return err
		}
		return b.Init([]Port{{Proto: TCP, Num: guarded}})
	}))
	assert.False(t, g.C1.Probe(addr(g.GateIP6_1, guarded), closedWait), "guarded over IPv6 too")
	assert.True(t, g.C1.Probe(addr(g.GateIP6_1, free), 3*time.Second), "other ports untouched")
	in(t, g, func() error {
		return b.Set(Rule{IP: netip.MustParseAddr(g.C1IP), Proto: TCP, Port: guarded, Until: time.Now().Add(time.Hour)})
	})
	assert.True(t, g.C1.Probe(addr(g.GateIP1, guarded), 3*time.Second))
	assert.False(t, g.C1.Probe(addr(g.GateIP6_1, guarded), closedWait))
	err := g.Gate.Do(func() error {
		return b.Set(Rule{IP: netip.MustParseAddr(g.C1IP6), Proto: TCP, Port: guarded, Until: time.Now().Add(time.Hour)})
	})
	assert.ErrorContains(t, err, "ipv6 is false")
	out := g.Gate.MustRun(t, "ip6tables", "-S", "PORTGATE")
	assert.Contains(t, out, `--dport 7022 -m comment --comment "portgate:guard" -j DROP`)
}

// TestCloseEstablished: with close_established a session opened during a
// lease ends with it (its conntrack entry goes, its packets are dropped);
// without, it goes on.
func TestCloseEstablished(t *testing.T) {
	const echo = 7030
	for _, c := range backendCases {
		for _, closeEst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/close_established=%v", c.name, closeEst), func(t *testing.T) {
				netnstest.RequireTool(t, c.tool)
				g := netnstest.NewGate(t)
				g.ServeEcho(t, echo)
				var b Backend
				require.NoError(t, g.Gate.Do(func() error {
					var err error
					if b, err = New(Config{Backend: c.name, CloseEstablished: closeEst}, time.Now); err != nil {
						return err
					}
					return b.Init([]Port{{Proto: TCP, Num: echo}})
				}))
				c1 := netip.MustParseAddr(g.C1IP)
				in(t, g, func() error { return b.Set(Rule{IP: c1, Proto: TCP, Port: echo, Until: time.Now().Add(time.Hour)}) })
				conn, err := g.C1.Dial(t.Context(), "tcp", addr(g.GateIP1, echo), 3*time.Second)
				require.NoError(t, err)
				defer conn.Close()
				roundTrip := func() bool {
					_ = conn.SetDeadline(time.Now().Add(time.Second))
					if _, err := conn.Write([]byte("x")); err != nil {
						return false
					}
					buf := make([]byte, 1)
					_, err := conn.Read(buf)
					return err == nil
				}
				require.True(t, roundTrip(), "the session works during the lease")
				in(t, g, func() error { return b.Delete(c1, TCP, echo) })
				assert.Equal(t, !closeEst, roundTrip(), "after the lease")
				flows := g.Gate.MustRun(t, "cat", "/proc/net/nf_conntrack")
				if closeEst {
					assert.NotContains(t, flows, fmt.Sprintf("src=%s dst=%s sport=%d dport=%d", g.C1IP, g.GateIP1, conn.LocalAddr().(*net.TCPAddr).Port, echo))
				}
			})
		}
	}
}

// forwardCase is a backend in forward mode and the gate's own default
// deny on FORWARD that lets portgate's leases through.
type forwardCase struct {
	name, tool       string
	hostDeny, noDeny [][]string
}

var forwardCases = []forwardCase{
	{
		name: "nftables", tool: "nft",
		// Accepting portgate's mark.
		hostDeny: [][]string{
			{"nft", "add", "table", "inet", "hostfw"},
			{"nft", "add chain inet hostfw forward { type filter hook forward priority 0 ; policy drop ; }"},
			{"nft", "add rule inet hostfw forward ct state established,related accept"},
			{"nft", "add rule inet hostfw forward meta mark & 0x7067 == 0x7067 accept"},
		},
		noDeny: [][]string{{"nft", "delete", "table", "inet", "hostfw"}},
	},
	{
		name: "iptables", tool: "iptables",
		// portgate's chain is jumped to first and accepts leases itself.
		hostDeny: [][]string{
			{"iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
			{"iptables", "-P", "FORWARD", "DROP"},
		},
		noDeny: [][]string{
			{"iptables", "-P", "FORWARD", "ACCEPT"},
			{"iptables", "-D", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		},
	},
}

// TestForward: a port served by a host behind the gate (the runbook's RDP
// on another machine) is DNAT'ed by the gate and guarded on FORWARD, on
// each backend: closed by default, open through the gate for the lease's
// address only, closed again when the lease goes; the host behind is never
// reached directly; and with the gate's own default deny removed,
// portgate's guard alone keeps it closed.
func TestForward(t *testing.T) {
	const rdp = 3389
	for _, fc := range forwardCases {
		t.Run(fc.name, func(t *testing.T) {
			netnstest.RequireTool(t, fc.tool)
			g := netnstest.NewGate(t)
			inner := netnstest.New(t, "inner")
			netnstest.Link(t, g.Gate, []string{"10.77.3.1/24"}, inner, []string{"10.77.3.2/24"})
			inner.MustRun(t, "ip", "route", "add", "default", "via", "10.77.3.1")
			g.Gate.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			for _, c := range []*netnstest.NS{g.C1, g.C2} {
				c.MustRun(t, "ip", "route", "add", "10.77.3.0/24", "via", gatewayOf(c, g))
			}
			l, err := inner.Listen("tcp", fmt.Sprintf(":%d", rdp))
			require.NoError(t, err)
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			for _, cmd := range fc.hostDeny {
				g.Gate.MustRun(t, cmd...)
			}

			fwd := []Forward{{Port: Port{Proto: TCP, Num: rdp}, To: netip.MustParseAddrPort("10.77.3.2:3389")}}
			var b Backend
			require.NoError(t, g.Gate.Do(func() error {
				var err error
				if b, err = New(Config{Backend: fc.name, Forward: fwd}, time.Now); err != nil {
					return err
				}
				return b.Init([]Port{{Proto: TCP, Num: rdp}})
			}))
			via1, via2 := addr(g.GateIP1, rdp), addr(g.GateIP2, rdp)
			assert.False(t, g.C1.Probe(via1, closedWait), "closed by default")
			assert.False(t, g.C1.Probe("10.77.3.2:3389", closedWait), "the host behind is not reached directly")
			c1 := netip.MustParseAddr(g.C1IP)
			in(t, g, func() error { return b.Set(Rule{IP: c1, Proto: TCP, Port: rdp, Until: time.Now().Add(time.Hour)}) })
			assert.True(t, g.C1.Probe(via1, 3*time.Second), "open through the gate for the lease's address")
			assert.False(t, g.C2.Probe(via2, closedWait), "not for another")
			assert.False(t, g.C1.Probe("10.77.3.2:3389", closedWait), "still not directly")
			var rules []Rule
			in(t, g, func() error { var err error; rules, err = b.List(); return err })
			require.Len(t, rules, 1, "the forwarded lease is listed back")
			assert.Equal(t, c1, rules[0].IP)
			assert.Equal(t, uint16(rdp), rules[0].Port)
			in(t, g, func() error { return b.Delete(c1, TCP, rdp) })
			assert.False(t, g.C1.Probe(via1, closedWait), "closed when the lease goes")
			in(t, g, func() error { var err error; rules, err = b.List(); return err })
			assert.Empty(t, rules)

			// Without the gate's own default deny, portgate's guard alone
			// keeps the forwarded port closed.
			for _, cmd := range fc.noDeny {
				g.Gate.MustRun(t, cmd...)
			}
			assert.False(t, g.C2.Probe(via2, closedWait), "guarded by portgate itself")
			in(t, g, func() error { return b.Set(Rule{IP: c1, Proto: TCP, Port: rdp, Until: time.Now().Add(time.Hour)}) })
			assert.True(t, g.C1.Probe(via1, 3*time.Second))
			assert.False(t, g.C2.Probe(via2, closedWait))

			// A restart (Init again) keeps the lease and duplicates nothing;
			// a configuration without forwards removes the forward mode.
			in(t, g, func() error { return b.Init([]Port{{Proto: TCP, Num: rdp}}) })
			assert.True(t, g.C1.Probe(via1, 3*time.Second), "the lease survives a restart")
			assert.False(t, g.C2.Probe(via2, closedWait))
			if fc.name == "iptables" {
				assert.Len(t, strings.Split(strings.TrimSpace(g.Gate.MustRun(t, "iptables", "-t", "nat", "-S", "PREROUTING")), "\n"), 2, "one jump")
				assert.Len(t, strings.Split(strings.TrimSpace(g.Gate.MustRun(t, "iptables", "-S", "FORWARD")), "\n"), 2, "one jump")
				var plain Backend
				require.NoError(t, g.Gate.Do(func() error {
					var err error
					if plain, err = New(Config{Backend: fc.name}, time.Now); err != nil {
						return err
					}
					return plain.Init([]Port{{Proto: TCP, Num: rdp}})
				}))
				assert.NotContains(t, g.Gate.MustRun(t, "iptables-save"), "PORTGATE-", "the forward chains are gone")
			}
		})
	}
	_, err := New(Config{Backend: "iptables", IPTables: IPTablesConfig{Chain: strings.Repeat("C", 25)},
		Forward: []Forward{{Port: Port{Proto: TCP, Num: rdp}, To: netip.MustParseAddrPort("10.77.3.2:3389")}}}, time.Now)
	assert.ErrorContains(t, err, "at most 24 characters with forward:")
}

// gatewayOf is the gate's address on c's link.
func gatewayOf(c *netnstest.NS, g *netnstest.Gate) string {
	if c == g.C1 {
		return g.GateIP1
	}
	return g.GateIP2
}
