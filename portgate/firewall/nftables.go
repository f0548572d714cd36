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

const (
	chainName  = "input"
	set4Name   = "lease4"
	set6Name   = "lease6"
	portsName  = "ports"
	regSaddr   = 1                 // NFT_REG_1: 16 bytes, addresses
	regDport4  = unix.NFT_REG32_01 // right after a 4-byte address
	regDport6  = unix.NFT_REG32_04 // right after a 16-byte address
	elemPrefix = "portgate until=" // element comment, readable in `nft list`
)

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
	// installed is when each element portgate added ends. A failed
	// batch makes the kernel wait for an RCU grace period (about 10 ms),
	// so deletes are only sent for elements known to be there.
	installed map[setKey]time.Time
}

type setKey struct {
	ip   netip.Addr
	port uint16
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
			KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)},
		set6: &nftables.Set{Table: t, Name: set6Name, HasTimeout: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)},
		ports:     &nftables.Set{Table: t, Name: portsName, KeyType: nftables.TypeInetService},
		prio:      prio,
		mark:      mark,
		keep:      keepEstablished,
		now:       now,
		installed: map[setKey]time.Time{},
	}
	return n, nil
}

func policyRef(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

// Name implements Backend.
func (n *NFTables) Name() string { return "nftables" }

// Close releases the netlink connection.
func (n *NFTables) Close() error { return n.conn.CloseLasting() }

// Init creates the table, sets and chain when missing, sets the guarded
// ports and rewrites the chain's rules, in one atomic batch. Lease
// elements already in the sets stay.
func (n *NFTables) Init(ports []uint16) error {
	c := n.conn
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
			elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)}
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
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: set up table inet %s (if its chain exists with another priority, delete the table: nft delete table inet %s): %w", n.table.Name, n.table.Name, err)
	}
	return nil
}

// ruleExprs is the chain, in order:
//
//	meta iiftype loopback accept
//	ip saddr . tcp dport @lease4 meta mark set mark | MARK accept
//	ip6 saddr . tcp dport @lease6 meta mark set mark | MARK accept
//	tcp dport @ports ct state established,related accept   (keep_established)
//	tcp dport @ports drop
func (n *NFTables) ruleExprs() [][]expr.Any {
	tcp := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	guarded := append(append([]expr.Any{}, tcp...),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: n.ports.Name, SetID: n.ports.ID},
	)
	lease := func(proto byte, addrOff, addrLen, portReg uint32, set *nftables.Set) []expr.Any {
		e := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		}
		e = append(e, tcp...)
		e = append(e,
			&expr.Payload{DestRegister: regSaddr, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: addrLen},
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
		lease(unix.NFPROTO_IPV4, 12, 4, regDport4, n.set4),
		lease(unix.NFPROTO_IPV6, 8, 16, regDport6, n.set6),
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

// Set implements Backend: a live element is replaced (delete and add in
// one batch) so its timeout is exactly the time left until r.Until.
func (n *NFTables) Set(r Rule) error {
	now := n.now()
	left := r.Until.Sub(now)
	if left <= 0 {
		return n.Delete(r.IP, r.Port)
	}
	set, key := n.setFor(r.IP, r.Port)
	k := setKey{r.IP.Unmap(), r.Port}
	// Round up to the millisecond: never end before the lease does.
	ms := (left + time.Millisecond - 1) / time.Millisecond * time.Millisecond
	elem := nftables.SetElement{Key: key, Timeout: ms, Comment: elemPrefix + strconv.FormatInt(r.Until.Unix(), 10)}
	c := n.conn
	if until, ok := n.installed[k]; ok && until.After(now) {
		if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
			return fmt.Errorf("nftables: %s: %w", r, err)
		}
	}
	if err := c.SetAddElements(set, []nftables.SetElement{elem}); err != nil {
		return fmt.Errorf("nftables: %s: %w", r, err)
	}
	err := c.Flush()
	if errors.Is(err, unix.ENOENT) {
		// Removed behind portgate's back: just add it.
		if err = c.SetAddElements(set, []nftables.SetElement{elem}); err == nil {
			err = c.Flush()
		}
	}
	if err != nil {
		return fmt.Errorf("nftables: add %s: %w", r, err)
	}
	n.installed[k] = r.Until
	return nil
}

// Delete implements Backend. An element whose timeout has passed is
// already gone for the kernel: nothing is sent.
func (n *NFTables) Delete(ip netip.Addr, port uint16) error {
	k := setKey{ip.Unmap(), port}
	until, ok := n.installed[k]
	delete(n.installed, k)
	if !ok || !until.After(n.now()) {
		return nil
	}
	set, key := n.setFor(ip, port)
	if err := n.conn.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
		return fmt.Errorf("nftables: delete %s tcp/%d: %w", ip, port, err)
	}
	if err := n.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nftables: delete %s tcp/%d: %w", ip, port, err)
	}
	return nil
}

// List implements Backend: the elements of both lease sets, with their end
// computed from the time the kernel says they have left. It also rebuilds
// the record of installed elements.
func (n *NFTables) List() ([]Rule, error) {
	var out []Rule
	now := n.now()
	n.installed = map[setKey]time.Time{}
	for _, set := range []*nftables.Set{n.set4, n.set6} {
		elems, err := n.conn.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("nftables: list set %s: %w", set.Name, err)
		}
		for _, e := range elems {
			ip, port, ok := decodeKey(e.Key)
			if !ok {
				continue
			}
			r := Rule{IP: ip, Port: port}
			if e.Expires > 0 {
				r.Until = now.Add(e.Expires)
			}
			// An element without a timeout never ends by itself: record it
			// as live so Delete removes it.
			until := r.Until
			if until.IsZero() {
				until = now.Add(100 * 365 * 24 * time.Hour)
			}
			n.installed[setKey{ip, port}] = until
			out = append(out, r)
		}
	}
	return out, nil
}

// setFor returns the lease set for ip and the element key: the address,
// then the port in network order padded to 4 bytes (concatenations are
// register-aligned).
func (n *NFTables) setFor(ip netip.Addr, port uint16) (*nftables.Set, []byte) {
	ip = ip.Unmap()
	key := ip.AsSlice()
	key = append(key, byte(port>>8), byte(port), 0, 0)
	if ip.Is4() {
		return n.set4, key
	}
	return n.set6, key
}

func decodeKey(k []byte) (netip.Addr, uint16, bool) {
	var ip netip.Addr
	switch len(k) {
	case 8:
		ip = netip.AddrFrom4([4]byte(k[:4]))
	case 20:
		ip = netip.AddrFrom16([16]byte(k[:16]))
	default:
		return netip.Addr{}, 0, false
	}
	off := len(k) - 4
	return ip, uint16(k[off])<<8 | uint16(k[off+1]), true
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
