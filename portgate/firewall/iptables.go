package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// IPTablesConfig tunes the iptables backend.
type IPTablesConfig struct {
	// Chain is the filter-table chain portgate owns, jumped to first
	// thing from INPUT. Default "PORTGATE".
	Chain string `yaml:"chain"`
	// IPv6 lets leases be granted to IPv6 addresses (default true). The
	// guard is installed in ip6tables either way: with ipv6: false a
	// guarded port is closed over IPv6, never open. Without ip6tables on a
	// host with IPv6, portgate refuses to start.
	IPv6 *bool `yaml:"ipv6"`
	// KernelExpiry adds `-m time --datestop` to each lease rule, so the
	// kernel stops matching it at the lease end even while portgate is
	// down (default true; needs the xt_time match).
	KernelExpiry *bool `yaml:"kernel_expiry"`
	// Path is the iptables binary (default: found in PATH); ip6tables is
	// looked for next to it.
	Path string `yaml:"path"`
}

// Comment tags. iptables prints comments without quotes when they have no
// spaces, which keeps `iptables -S` lines simple to read back.
const (
	tagJump  = "portgate:jump"
	tagGuard = "portgate:guard"
	tagLease = "portgate:lease:until="
)

// IPTables is the iptables backend.
type IPTables struct {
	chain  string
	v4, v6 *iptables.IPTables
	// leases6: IPv6 leases are granted (v6 then also holds them); v6 is
	// nil only on a host without IPv6.
	leases6 bool
	kexp    bool
	keep    bool
	now     func() time.Time
	// installed maps each lease key to the rule spec portgate added, so
	// the hot path never lists the chain.
	installed map[ruleKey][]string
	// sessions, with close_established, ends a deleted rule's sessions.
	sessions *sessions
	// forwards are the ports DNAT'ed to hosts behind the gate; their
	// leases live in the FORWARD guard chain.
	forwards []Forward
}

// Suffixes of the chains the forward mode adds: CHAIN-NAT in the nat
// table (jumped to from PREROUTING), CHAIN-FWD in the filter table
// (jumped to first from FORWARD).
const (
	natSuffix = "-NAT"
	fwdSuffix = "-FWD"
	// MaxForwardChain is the longest firewall.iptables.chain the forward
	// mode allows: iptables chain names have at most 28 characters.
	MaxForwardChain = 28 - len(natSuffix)
	tagForward      = "portgate:forward"
)

type ruleKey struct {
	ip    netip.Addr
	proto string
	port  uint16
}

// hasIPv6 reports whether the kernel has IPv6 (it lists its addresses).
var hasIPv6 = func() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// NewIPTables locates iptables (and ip6tables).
func NewIPTables(c IPTablesConfig, keepEstablished bool, now func() time.Time) (*IPTables, error) {
	if c.Chain == "" {
		c.Chain = "PORTGATE"
	}
	if !validChain(c.Chain) {
		return nil, fmt.Errorf("firewall.iptables.chain: %q: use A-Z, a-z, 0-9, '_' and '-', at most 28 characters", c.Chain)
	}
	v4, err := newIPT(iptables.ProtocolIPv4, c.Path)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	b := &IPTables{
		chain:     c.Chain,
		v4:        v4,
		kexp:      c.KernelExpiry == nil || *c.KernelExpiry,
		keep:      keepEstablished,
		now:       now,
		installed: map[ruleKey][]string{},
	}
	b.leases6 = c.IPv6 == nil || *c.IPv6
	if hasIPv6() {
		path6 := ""
		if c.Path != "" {
			path6 = filepath.Join(filepath.Dir(c.Path), "ip6tables")
		}
		if b.v6, err = newIPT(iptables.ProtocolIPv6, path6); err != nil {
			return nil, fmt.Errorf("ip6tables: needed to guard the ports over IPv6 (whatever firewall.iptables.ipv6 says; without it IPv6 would reach them unguarded): %w", err)
		}
	} else {
		b.leases6 = false
	}
	return b, nil
}

// newIPT runs iptables (or ip6tables) at path, or found in PATH, waiting
// up to 5 s for the xtables lock.
func newIPT(proto iptables.Protocol, path string) (*iptables.IPTables, error) {
	if path == "" {
		return iptables.New(iptables.IPFamily(proto), iptables.Timeout(5))
	}
	return iptables.New(iptables.IPFamily(proto), iptables.Timeout(5), iptables.Path(path))
}

// Name implements Backend.
func (b *IPTables) Name() string { return "iptables" }

func (b *IPTables) families() []*iptables.IPTables {
	if b.v6 == nil {
		return []*iptables.IPTables{b.v4}
	}
	return []*iptables.IPTables{b.v4, b.v6}
}

func (b *IPTables) family(ip netip.Addr) (*iptables.IPTables, error) {
	if ip.Unmap().Is4() {
		return b.v4, nil
	}
	if !b.leases6 {
		return nil, fmt.Errorf("iptables: %s is IPv6 and firewall.iptables.ipv6 is false (or the host has no IPv6)", ip)
	}
	return b.v6, nil
}

// Init creates the chain when missing, replaces portgate's guard rules at
// its end and puts the jump first in INPUT. Lease rules stay.
func (b *IPTables) Init(ports []Port) error {
	for _, ipt := range b.families() {
		ok, err := ipt.ChainExists("filter", b.chain)
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		if !ok {
			if err := ipt.NewChain("filter", b.chain); err != nil {
				return fmt.Errorf("iptables: create chain %s: %w", b.chain, err)
			}
		}
		lines, err := ipt.List("filter", b.chain)
		if err != nil {
			return fmt.Errorf("iptables: list %s: %w", b.chain, err)
		}
		for _, l := range lines {
			spec, ok := ruleSpec(l, b.chain)
			if ok && hasComment(spec, tagGuard) {
				if err := deleteRule(ipt, b.chain, spec); err != nil {
					return fmt.Errorf("iptables: remove old guard rule: %w", err)
				}
			}
		}
		guards := [][]string{{"-i", "lo", "-m", "comment", "--comment", tagGuard, "-j", "RETURN"}}
		for _, p := range ports {
			dport := []string{"-p", p.Proto, "-m", p.Proto, "--dport", strconv.Itoa(int(p.Num))}
			if b.keep {
				guards = append(guards, append(append([]string{}, dport...),
					"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-m", "comment", "--comment", tagGuard, "-j", "RETURN"))
			}
			guards = append(guards, append(append([]string{}, dport...), "-m", "comment", "--comment", tagGuard, "-j", "DROP"))
		}
		for _, g := range guards {
			if err := ipt.Append("filter", b.chain, g...); err != nil {
				return fmt.Errorf("iptables: guard rule: %w", err)
			}
		}
		jump := []string{"-m", "comment", "--comment", tagJump, "-j", b.chain}
		if err := ipt.InsertUnique("filter", "INPUT", 1, jump...); err != nil {
			return fmt.Errorf("iptables: jump from INPUT: %w", err)
		}
	}
	return b.initForward()
}

// initForward sets up the forward mode in iptables (IPv4: forwards go to
// IPv4 hosts):
//
//	nat CHAIN-NAT (from PREROUTING): -p P --dport N -j DNAT --to-destination A:M
//	filter CHAIN-FWD (first from FORWARD), for DNAT'ed flows in their
//	  original direction by their original destination port:
//	  -s LEASE ... -j ACCEPT                 (one per lease, inserted first)
//	  ... --ctstate RELATED,ESTABLISHED -j RETURN   (keep_established)
//	  ... -j DROP
//
// Without forwards, the chains and jumps of an earlier configuration go.
func (b *IPTables) initForward() error {
	ipt := b.v4
	nat, fwd := b.chain+natSuffix, b.chain+fwdSuffix
	natJump := []string{"-m", "comment", "--comment", tagJump, "-j", nat}
	fwdJump := []string{"-m", "comment", "--comment", tagJump, "-j", fwd}
	if len(b.forwards) == 0 {
		for _, c := range []struct{ table, from, chain string }{{"nat", "PREROUTING", nat}, {"filter", "FORWARD", fwd}} {
			ok, err := ipt.ChainExists(c.table, c.chain)
			if err != nil {
				return fmt.Errorf("iptables: %w", err)
			}
			if !ok {
				continue
			}
			if err := deleteRuleIn(ipt, c.table, c.from, []string{"-m", "comment", "--comment", tagJump, "-j", c.chain}); err != nil {
				return fmt.Errorf("iptables: remove jump to %s: %w", c.chain, err)
			}
			if err := ipt.ClearAndDeleteChain(c.table, c.chain); err != nil {
				return fmt.Errorf("iptables: remove chain %s: %w", c.chain, err)
			}
		}
		return nil
	}
	if err := ipt.ClearChain("nat", nat); err != nil {
		return fmt.Errorf("iptables: chain %s: %w", nat, err)
	}
	for _, f := range b.forwards {
		rule := []string{"-p", f.Port.Proto, "-m", f.Port.Proto, "--dport", strconv.Itoa(int(f.Port.Num)),
			"-m", "comment", "--comment", tagForward, "-j", "DNAT", "--to-destination", f.To.String()}
		if err := ipt.Append("nat", nat, rule...); err != nil {
			return fmt.Errorf("iptables: DNAT %s to %s: %w", f.Port, f.To, err)
		}
	}
	if err := ipt.InsertUnique("nat", "PREROUTING", 1, natJump...); err != nil {
		return fmt.Errorf("iptables: jump from PREROUTING: %w", err)
	}
	ok, err := ipt.ChainExists("filter", fwd)
	if err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	if !ok {
		if err := ipt.NewChain("filter", fwd); err != nil {
			return fmt.Errorf("iptables: create chain %s: %w", fwd, err)
		}
	}
	lines, err := ipt.List("filter", fwd)
	if err != nil {
		return fmt.Errorf("iptables: list %s: %w", fwd, err)
	}
	for _, l := range lines {
		if spec, ok := ruleSpec(l, fwd); ok && hasComment(spec, tagGuard) {
			if err := deleteRule(ipt, fwd, spec); err != nil {
				return fmt.Errorf("iptables: remove old guard rule: %w", err)
			}
		}
	}
	for _, f := range b.forwards {
		match := append([]string{"-p", f.Port.Proto}, dnatOrig(f.Port.Proto, f.Port.Num)...)
		if b.keep {
			if err := ipt.Append("filter", fwd, append(append([]string{}, match...),
				"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-m", "comment", "--comment", tagGuard, "-j", "RETURN")...); err != nil {
				return fmt.Errorf("iptables: forward guard rule: %w", err)
			}
		}
		if err := ipt.Append("filter", fwd, append(append([]string{}, match...), "-m", "comment", "--comment", tagGuard, "-j", "DROP")...); err != nil {
			return fmt.Errorf("iptables: forward guard rule: %w", err)
		}
	}
	if err := ipt.InsertUnique("filter", "FORWARD", 1, fwdJump...); err != nil {
		return fmt.Errorf("iptables: jump from FORWARD: %w", err)
	}
	return nil
}

// leaseSpec is the rule letting ip reach port until until.
func (b *IPTables) leaseSpec(ip netip.Addr, proto string, port uint16, until time.Time) []string {
	ip = ip.Unmap()
	end := ceilUnix(until)
	proto = Proto(proto)
	spec := []string{"-s", netip.PrefixFrom(ip, ip.BitLen()).String(), "-p", proto, "-m", proto, "--dport", strconv.Itoa(int(port))}
	if b.forwarded(ip, proto, port) {
		spec = append([]string{"-s", netip.PrefixFrom(ip, ip.BitLen()).String(), "-p", proto}, dnatOrig(proto, port)...)
	}
	if b.kexp {
		// xt_time matches while now (whole seconds) <= datestop, so the
		// last matching second is the one before the lease end.
		spec = append(spec, "-m", "time", "--datestop", time.Unix(end-1, 0).UTC().Format("2006-01-02T15:04:05"))
	}
	return append(spec, "-m", "comment", "--comment", tagLease+strconv.FormatInt(end, 10), "-j", "ACCEPT")
}

func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// forwarded reports whether (ip, proto, port) is leased on the FORWARD
// guard: an IPv4 lease of a forwarded port.
func (b *IPTables) forwarded(ip netip.Addr, proto string, port uint16) bool {
	if !ip.Unmap().Is4() {
		return false
	}
	for _, f := range b.forwards {
		if f.Port == (Port{Proto: Proto(proto), Num: port}) {
			return true
		}
	}
	return false
}

// chainFor is the chain holding the lease rule of (ip, proto, port).
func (b *IPTables) chainFor(ip netip.Addr, proto string, port uint16) string {
	if b.forwarded(ip, proto, port) {
		return b.chain + fwdSuffix
	}
	return b.chain
}

// leaseChains are the chains lease rules live in, in family ipt.
func (b *IPTables) leaseChains(ipt *iptables.IPTables) []string {
	if len(b.forwards) > 0 && ipt == b.v4 {
		return []string{b.chain, b.chain + fwdSuffix}
	}
	return []string{b.chain}
}

// dnatOrig matches a DNAT'ed flow in its original direction whose
// original destination port (the gate's) is port.
func dnatOrig(proto string, port uint16) []string {
	return []string{"-m", "conntrack", "--ctstate", "DNAT", "--ctdir", "ORIGINAL",
		"--ctproto", Proto(proto), "--ctorigdstport", strconv.Itoa(int(port))}
}

// Set implements Backend: the new rule goes in first, then the old one
// for the same key is deleted, so there is no gap.
func (b *IPTables) Set(r Rule) error {
	if !r.Until.After(b.now()) {
		return b.Delete(r.IP, r.Proto, r.Port)
	}
	ipt, err := b.family(r.IP)
	if err != nil {
		return err
	}
	k := ruleKey{r.IP.Unmap(), Proto(r.Proto), r.Port}
	spec := b.leaseSpec(r.IP, r.Proto, r.Port, r.Until)
	old, had := b.installed[k]
	if had && slices.Equal(old, spec) {
		return nil
	}
	chain := b.chainFor(r.IP, r.Proto, r.Port)
	if err := ipt.Insert("filter", chain, 1, spec...); err != nil {
		return fmt.Errorf("iptables: add %s: %w", r, err)
	}
	b.installed[k] = spec
	if had {
		if err := deleteRule(ipt, chain, old); err != nil {
			return fmt.Errorf("iptables: replace %s: %w", r, err)
		}
	}
	return nil
}

// Delete implements Backend: every lease rule of the key found in the
// chain goes explicitly, never left to its xt_time end: the one portgate
// installed, and any re-added by hand with another end or none. A missing
// rule is not an error.
func (b *IPTables) Delete(ip netip.Addr, proto string, port uint16) error {
	k := ruleKey{ip.Unmap(), Proto(proto), port}
	ipt := b.v4
	if !k.ip.Is4() {
		ipt = b.v6
	}
	if ipt == nil {
		return nil // no IPv6 on this host: no IPv6 rule either
	}
	if err := b.deleteListed(ipt, k); err != nil {
		return err
	}
	delete(b.installed, k)
	_, err := b.sessions.end(ip, proto, port)
	return err
}

// deleteListed deletes every lease rule of k found in the lease chains.
func (b *IPTables) deleteListed(ipt *iptables.IPTables, k ruleKey) error {
	for _, chain := range b.leaseChains(ipt) {
		lines, err := ipt.List("filter", chain)
		var ie *iptables.Error
		if errors.As(err, &ie) && ie.IsNotExist() {
			continue
		}
		if err != nil {
			return fmt.Errorf("iptables: list %s: %w", chain, err)
		}
		for _, l := range lines {
			spec, ok := ruleSpec(l, chain)
			if !ok {
				continue
			}
			if r, ok := parseLease(spec); ok && r.IP == k.ip && r.Proto == k.proto && r.Port == k.port {
				if err := deleteRule(ipt, chain, spec); err != nil {
					return fmt.Errorf("iptables: delete %s: %w", r, err)
				}
			}
		}
	}
	return nil
}

// List implements Backend. It also rebuilds the index of installed rules,
// so rules found in the chain (from an earlier run) can be deleted.
func (b *IPTables) List() ([]Rule, error) {
	var out []Rule
	b.installed = map[ruleKey][]string{}
	type extra struct {
		ipt   *iptables.IPTables
		chain string
		spec  []string
	}
	var dups []extra
	for _, ipt := range b.families() {
		for _, chain := range b.leaseChains(ipt) {
			lines, err := ipt.List("filter", chain)
			var ie *iptables.Error
			if errors.As(err, &ie) && ie.IsNotExist() {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("iptables: list %s: %w", chain, err)
			}
			for _, l := range lines {
				spec, ok := ruleSpec(l, chain)
				if !ok {
					continue
				}
				r, ok := parseLease(spec)
				if !ok {
					continue
				}
				k := ruleKey{r.IP, r.Proto, r.Port}
				if _, seen := b.installed[k]; seen || chain != b.chainFor(r.IP, r.Proto, r.Port) {
					// Two rules for one key (a crash between insert and
					// delete): keep the first listed, the newest. A rule in
					// the other chain (forward: changed since) goes too: the
					// daemon sets a live lease's rule again where it belongs.
					dups = append(dups, extra{ipt, chain, spec})
					continue
				}
				b.installed[k] = spec
				out = append(out, r)
			}
		}
	}
	for _, d := range dups {
		if err := deleteRule(d.ipt, d.chain, d.spec); err != nil {
			return nil, fmt.Errorf("iptables: remove duplicate lease rule: %w", err)
		}
	}
	return out, nil
}

// deleteRule deletes one rule; a rule that is not there is not an error.
// One `iptables -D` rather than go-iptables' DeleteIfExists (-C, then -D):
// with a long chain each call costs tens of milliseconds.
func deleteRule(ipt *iptables.IPTables, chain string, spec []string) error {
	return deleteRuleIn(ipt, "filter", chain, spec)
}

// deleteRuleIn is deleteRule in another table.
func deleteRuleIn(ipt *iptables.IPTables, table, chain string, spec []string) error {
	err := ipt.Delete(table, chain, spec...)
	var ie *iptables.Error
	if errors.As(err, &ie) && ie.IsNotExist() {
		return nil
	}
	return err
}

// ruleSpec turns an `iptables -S` line of chain into the arguments that
// follow `-A CHAIN`, honouring double quotes.
func ruleSpec(line, chain string) ([]string, bool) {
	f := splitQuoted(line)
	if len(f) < 3 || f[0] != "-A" || f[1] != chain {
		return nil, false
	}
	return f[2:], true
}

func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			quoted = !quoted
			in = true
		case !quoted && (c == ' ' || c == '\t'):
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

func hasComment(spec []string, tag string) bool {
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "--comment" && spec[i+1] == tag {
			return true
		}
	}
	return false
}

// parseLease reads a lease rule back: source, destination port and the end
// recorded in its comment.
func parseLease(spec []string) (Rule, bool) {
	var r Rule
	var until string
	for i := 0; i+1 < len(spec); i++ {
		switch spec[i] {
		case "-s":
			p, err := netip.ParsePrefix(spec[i+1])
			if err != nil || p.Bits() != p.Addr().BitLen() {
				return Rule{}, false
			}
			r.IP = p.Addr()
		case "-p":
			if spec[i+1] != TCP && spec[i+1] != UDP {
				return Rule{}, false
			}
			r.Proto = spec[i+1]
		case "--dport", "--ctorigdstport":
			n, err := strconv.ParseUint(spec[i+1], 10, 16)
			if err != nil || n == 0 {
				return Rule{}, false
			}
			r.Port = uint16(n)
		case "--comment":
			if !strings.HasPrefix(spec[i+1], tagLease) {
				return Rule{}, false
			}
			until = strings.TrimPrefix(spec[i+1], tagLease)
		}
	}
	sec, err := strconv.ParseInt(until, 10, 64)
	if err != nil || !r.IP.IsValid() || r.Port == 0 || r.Proto == "" {
		return Rule{}, false
	}
	r.Until = time.Unix(sec, 0)
	return r, true
}

func validChain(s string) bool {
	if s == "" || len(s) > 28 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' {
			return false
		}
	}
	return true
}
