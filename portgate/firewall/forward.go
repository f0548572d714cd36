package firewall

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"
)

// Forward is a guarded port that is not served by the gate but by a host
// behind it (the runbook's "RDP and other ports that are not on the same
// machine ... Port Forwarding based on iptables and NAT"): portgate DNATs
// Port to To and guards the FORWARD path, so only a lease's address gets
// through, marked like INPUT leases.
type Forward struct {
	Port Port           `yaml:"port"`
	To   netip.AddrPort `yaml:"to"`
}

// UnmarshalYAML reads {port: 3389[/udp], to: ADDRESS:PORT}, naming the
// line of a bad address.
func (f *Forward) UnmarshalYAML(n *yaml.Node) error {
	var raw struct {
		Port Port   `yaml:"port"`
		To   string `yaml:"to"`
	}
	if err := n.Decode(&raw); err != nil {
		return err
	}
	to, err := netip.ParseAddrPort(raw.To)
	if err != nil {
		return fmt.Errorf("line %d: forward to: %q is not ADDRESS:PORT (10.0.5.2:3389)", n.Line, raw.To)
	}
	*f = Forward{Port: raw.Port, To: to}
	return nil
}

const (
	forwardChain = "forward"
	dnatChain    = "prerouting"
	ctStatusDNAT = 1 << 5 // IPS_DST_NAT
)

// ValidateForwards checks the forwards against the guarded ports.
func ValidateForwards(fwd []Forward, ports []Port) error {
	seen := map[Port]bool{}
	for i, f := range fwd {
		switch {
		case !f.To.IsValid() || !f.To.Addr().Unmap().Is4() || f.To.Port() == 0:
			return fmt.Errorf("forward[%d].to: an IPv4 address and port (10.0.0.5:3389)", i)
		case seen[f.Port]:
			return fmt.Errorf("forward[%d].port: %s is forwarded twice", i, f.Port)
		}
		found := false
		for _, p := range ports {
			found = found || p == f.Port
		}
		if !found {
			return fmt.Errorf("forward[%d].port: %s is not in the allow-list (ports)", i, f.Port)
		}
		seen[f.Port] = true
	}
	return nil
}

// forwardRules adds, in the batch being built, the DNAT chain and the
// FORWARD guard:
//
//	prerouting (nat, dstnat - 5): meta l4proto P th dport N dnat ip to A:M
//	forward (filter, priority): for DNAT'ed flows, original direction,
//	  ip saddr . meta l4proto . ct original proto-dst @lease4  mark, accept
//	  (keep_established) ct state established,related accept
//	  meta l4proto . ct original proto-dst @ports               drop
func (n *NFTables) forwardRules(fwd []Forward) {
	c := n.conn
	fc := &nftables.Chain{Name: forwardChain, Table: n.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(n.prio)),
		Policy: policyRef(nftables.ChainPolicyAccept)}
	nc := &nftables.Chain{Name: dnatChain, Table: n.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 5),
		Policy: policyRef(nftables.ChainPolicyAccept)}
	if len(fwd) == 0 {
		// Chains of an earlier configuration go: nothing is forwarded.
		if chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet); err == nil {
			for _, ch := range chains {
				if ch.Table.Name == n.table.Name && (ch.Name == forwardChain || ch.Name == dnatChain) {
					c.DelChain(ch)
				}
			}
		}
		return
	}
	for _, ch := range []*nftables.Chain{fc, nc} {
		c.AddChain(ch)
		c.FlushChain(ch)
	}
	tag := userdata.AppendString(nil, userdata.TypeComment, ruleTag)
	for _, f := range fwd {
		to := f.To.Addr().Unmap().As4()
		c.AddRule(&nftables.Rule{Table: n.table, Chain: nc, UserData: tag, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNum(f.Port.Proto)}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(f.Port.Num)},
			&expr.Immediate{Register: 1, Data: to[:]},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(f.To.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		}})
	}
	// Only DNAT'ed flows in their original direction are guarded: other
	// forwarded traffic, and replies, are not portgate's business.
	dnatOriginal := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
	}
	lease := append(append([]expr.Any{}, dnatOriginal...),
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: regSaddr, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regProto4},
		&expr.Ct{Register: regDport4, Key: expr.CtKeyPROTODST, Direction: 0},
		&expr.Lookup{SourceRegister: regSaddr, SetName: n.set4.Name, SetID: n.set4.ID},
	)
	if n.mark != 0 {
		lease = append(lease,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(^n.mark), Xor: binaryutil.NativeEndian.PutUint32(n.mark)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		)
	}
	lease = append(lease, &expr.Verdict{Kind: expr.VerdictAccept})
	guarded := append(append([]expr.Any{}, dnatOriginal...),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regPortP},
		&expr.Ct{Register: regPortN, Key: expr.CtKeyPROTODST, Direction: 0},
		&expr.Lookup{SourceRegister: regPortP, SetName: n.ports.Name, SetID: n.ports.ID},
	)
	rules := [][]expr.Any{lease}
	if n.keep {
		rules = append(rules, append(append([]expr.Any{}, guarded...),
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		))
	}
	rules = append(rules, append(append([]expr.Any{}, guarded...), &expr.Verdict{Kind: expr.VerdictDrop}))
	for _, e := range rules {
		c.AddRule(&nftables.Rule{Table: n.table, Chain: fc, Exprs: e, UserData: tag})
	}
}
