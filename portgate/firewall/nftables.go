package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// NFTablesConfig tunes the nftables backend.
type NFTablesConfig struct {
	// Table is the inet table portgate owns. Default "portgate".
	Table string `yaml:"table"`
	// Priority of portgate's input chain; it must run before the host's
	// own filter chains (priority 0) so they see the mark. Default -5.
	Priority *int `yaml:"priority"`
	// Mark is OR-ed into the packet mark of connections a lease lets in,
	// so a default-deny host firewall can accept them with
	// `meta mark & MARK == MARK accept`. 0 disables marking. Default
	// 0x7067.
	Mark *uint32 `yaml:"mark"`
}

// DefaultMark is the packet mark leases set unless configured otherwise.
const DefaultMark uint32 = 0x7067

// ruleTag is the comment on every rule portgate installs.
const ruleTag = "portgate"

// Registers of the concatenations: addr . l4proto . port for leases and
// l4proto . port for the guarded ports, each field in 32-bit registers.
const (
	chainName  = "input"
	set4Name   = "lease4"
	set6Name   = "lease6"
	portsName  = "ports"
	regSaddr   = 1                 // NFT_REG_1: 16 bytes, addresses
	regProto4  = unix.NFT_REG32_01 // right after a 4-byte address
	regDport4  = unix.NFT_REG32_02
	regProto6  = unix.NFT_REG32_04 // right after a 16-byte address
	regDport6  = unix.NFT_REG32_05
	regPortP   = unix.NFT_REG32_00 // the guarded-ports key: l4proto ...
	regPortN   = unix.NFT_REG32_01 // ... then the port
	elemPrefix = "portgate until=" // element comment, readable in `nft list`
)

// protoNum maps a protocol to its IP protocol number.
func protoNum(p string) byte {
	if Proto(p) == UDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func protoName(n byte) (string, bool) {
	switch n {
	case unix.IPPROTO_TCP:
		return TCP, true
	case unix.IPPROTO_UDP:
		return UDP, true
	}
	return "", false
}

// NFTables is the nftables backend.
type NFTables struct {
	conn  *nftables.Conn
	table *nftables.Table
	chain *nftables.Chain
	set4  *nftables.Set
	set6  *nftables.Set
	ports *nftables.Set
	prio  int
	mark  uint32
	keep  bool
	now   func() time.Time
	// sessions, with close_established, ends a deleted rule's sessions.
	sessions *sessions
	// forwards are the ports DNAT'ed to hosts behind the gate.
	forwards []Forward
}

// NewNFTables opens a netlink connection in the network namespace of the
// calling thread.
func NewNFTables(c NFTablesConfig, keepEstablished bool, now func() time.Time) (*NFTables, error) {
	if c.Table == "" {
		c.Table = "portgate"
	}
	if !validObjName(c.Table) {
		return nil, fmt.Errorf("firewall.nftables.table: %q: use letters, digits, '_' and '-', at most 32", c.Table)
	}
	prio := -5
	if c.Priority != nil {
		prio = *c.Priority
	}
	mark := DefaultMark
	if c.Mark != nil {
		mark = *c.Mark
	}
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: open netlink: %w", err)
	}
	t := &nftables.Table{Name: c.Table, Family: nftables.TableFamilyINet}
	n := &NFTables{
		conn:  conn,
		table: t,
		chain: &nftables.Chain{
			Name: chainName, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(prio)),
			Policy: policyRef(nftables.ChainPolicyAccept),
		},
		set4: &nftables.Set{Table: t, Name: set4Name, HasTimeout: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)},
		set6: &nftables.Set{Table: t, Name: set6Name, HasTimeout: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)},
		ports: &nftables.Set{Table: t, Name: portsName, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)},
		prio: prio,
		mark: mark,
		keep: keepEstablished,
		now:  now,
	}
	return n, nil
}

func policyRef(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

// Name implements Backend.
func (n *NFTables) Name() string { return "nftables" }

// Close releases the netlink connection.
func (n *NFTables) Close() error { return errors.Join(n.conn.CloseLasting(), n.sessions.close()) }

// Init creates the table, sets and chain when missing, sets the guarded
// ports and rewrites the chain's rules, in one atomic batch. Lease
// elements already in the sets stay.
func (n *NFTables) Init(ports []Port) error {
	c := n.conn
	n.migrate()
	c.AddTable(n.table)
	for _, s := range []*nftables.Set{n.set4, n.set6, n.ports} {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("nftables: set %s: %w", s.Name, err)
		}
	}
	c.FlushSet(n.ports)
	if len(ports) > 0 {
		elems := make([]nftables.SetElement, len(ports))
		for i, p := range ports {
			elems[i] = nftables.SetElement{Key: []byte{protoNum(p.Proto), 0, 0, 0, byte(p.Num >> 8), byte(p.Num), 0, 0}}
		}
		if err := c.SetAddElements(n.ports, elems); err != nil {
			return fmt.Errorf("nftables: guarded ports: %w", err)
		}
	}
	c.AddChain(n.chain)
	c.FlushChain(n.chain)
	for _, exprs := range n.ruleExprs() {
		c.AddRule(&nftables.Rule{Table: n.table, Chain: n.chain, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, ruleTag)})
	}
	n.forwardRules(n.forwards)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: set up table inet %s (if its chain exists with another priority, delete the table: nft delete table inet %s): %w", n.table.Name, n.table.Name, err)
	}
	return nil
}

// migrate deletes a table of an earlier portgate whose sets have no
// protocol in their keys (TCP only): it cannot be changed in place. Its
// lease elements are lost with it; the daemon reinstalls live leases from
// its state right after Init.
func (n *NFTables) migrate() {
	s, err := n.conn.GetSetByName(n.table, portsName)
	if err != nil || s.Concatenation {
		return
	}
	n.conn.DelTable(n.table)
	_ = n.conn.Flush()
}

// ruleExprs is the chain, in order:
//
//	meta iiftype loopback accept
//	ip saddr . meta l4proto . th dport @lease4 meta mark set mark | MARK accept
//	ip6 saddr . meta l4proto . th dport @lease6 meta mark set mark | MARK accept
//	meta l4proto . th dport @ports ct state established,related accept   (keep_established)
//	meta l4proto . th dport @ports drop
func (n *NFTables) ruleExprs() [][]expr.Any {
	// th dport is the destination port of TCP and UDP alike; the sets'
	// keys hold the protocol, so nothing else ever matches.
	guarded := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regPortP},
		&expr.Payload{DestRegister: regPortN, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: regPortP, SetName: n.ports.Name, SetID: n.ports.ID},
	}
	lease := func(family byte, addrOff, addrLen, protoReg, portReg uint32, set *nftables.Set) []expr.Any {
		e := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		}
		e = append(e,
			&expr.Payload{DestRegister: regSaddr, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: addrLen},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
			&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: regSaddr, SetName: set.Name, SetID: set.ID},
		)
		if n.mark != 0 {
			e = append(e,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(^n.mark), Xor: binaryutil.NativeEndian.PutUint32(n.mark)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
			)
		}
		return append(e, &expr.Verdict{Kind: expr.VerdictAccept})
	}
	rules := [][]expr.Any{
		{
			&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_LOOPBACK)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
		lease(unix.NFPROTO_IPV4, 12, 4, regProto4, regDport4, n.set4),
		lease(unix.NFPROTO_IPV6, 8, 16, regProto6, regDport6, n.set6),
	}
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
	return rules
}

// Set implements Backend: whatever element the set holds for the key (a
// live one, one the kernel has timed out but not yet reaped, one added
// behind portgate's back without a timeout, or none) is replaced by one
// whose timeout is exactly the time left until r.Until.
func (n *NFTables) Set(r Rule) error {
	left := r.Until.Sub(n.now())
	if left <= 0 {
		return n.Delete(r.IP, r.Proto, r.Port)
	}
	set, key := n.setFor(r.IP, r.Proto, r.Port)
	// Round up to the millisecond: never end before the lease does.
	ms := (left + time.Millisecond - 1) / time.Millisecond * time.Millisecond
	elem := nftables.SetElement{Key: key, Timeout: ms, Comment: elemPrefix + strconv.FormatInt(r.Until.Unix(), 10)}
	if err := n.replace(set, key, &elem); err != nil {
		return fmt.Errorf("nftables: add %s: %w", r, err)
	}
	return nil
}

// replace removes the element for key, whatever state it is in, and adds
// elem when not nil, in one atomic batch that cannot fail for a missing
// element: the key is first added (a no-op when it is there, as an add
// without NLM_F_EXCL is), so the delete always finds it. A failed batch
// would also cost an RCU grace period (about 10 ms) in the kernel.
func (n *NFTables) replace(set *nftables.Set, key []byte, elem *nftables.SetElement) error {
	c := n.conn
	placeholder := []nftables.SetElement{{Key: key, Timeout: time.Second}}
	if err := c.SetAddElements(set, placeholder); err != nil {
		return err
	}
	if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
		return err
	}
	if elem != nil {
		if err := c.SetAddElements(set, []nftables.SetElement{*elem}); err != nil {
			return err
		}
	}
	return c.Flush()
}

// Delete implements Backend: the element goes explicitly, never left to
// its timeout (one re-added without a timeout, or a wall clock stepped
// past the lease end, would outlive the lease); a missing element is not
// an error.
func (n *NFTables) Delete(ip netip.Addr, proto string, port uint16) error {
	set, key := n.setFor(ip, proto, port)
	if err := n.replace(set, key, nil); err != nil {
		return fmt.Errorf("nftables: delete %s %s/%d: %w", ip, Proto(proto), port, err)
	}
	_, err := n.sessions.end(ip, proto, port)
	return err
}

// List implements Backend: the elements of both lease sets, with their end
// computed from the time the kernel says they have left (zero for an
// element without a timeout, which never ends by itself).
func (n *NFTables) List() ([]Rule, error) {
	var out []Rule
	now := n.now()
	for _, set := range []*nftables.Set{n.set4, n.set6} {
		elems, err := n.conn.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("nftables: list set %s: %w", set.Name, err)
		}
		for _, e := range elems {
			ip, proto, port, ok := decodeKey(e.Key)
			if !ok {
				continue
			}
			r := Rule{IP: ip, Proto: proto, Port: port}
			if e.Expires > 0 {
				r.Until = now.Add(e.Expires)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// setFor returns the lease set for ip and the element key: the address,
// the protocol number, then the port in network order, each padded to 4
// bytes (concatenations are register-aligned).
func (n *NFTables) setFor(ip netip.Addr, proto string, port uint16) (*nftables.Set, []byte) {
	ip = ip.Unmap()
	key := ip.AsSlice()
	key = append(key, protoNum(proto), 0, 0, 0, byte(port>>8), byte(port), 0, 0)
	if ip.Is4() {
		return n.set4, key
	}
	return n.set6, key
}

func decodeKey(k []byte) (netip.Addr, string, uint16, bool) {
	var ip netip.Addr
	switch len(k) {
	case 12:
		ip = netip.AddrFrom4([4]byte(k[:4]))
	case 24:
		ip = netip.AddrFrom16([16]byte(k[:16]))
	default:
		return netip.Addr{}, "", 0, false
	}
	off := len(k) - 8
	proto, ok := protoName(k[off])
	return ip, proto, uint16(k[off+4])<<8 | uint16(k[off+5]), ok
}

func validObjName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' {
			return false
		}
	}
	return true
}
