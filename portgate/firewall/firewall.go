// Package firewall installs portgate's rules: "address A may open TCP
// connections to port P until T". Two backends are offered, selected by
// configuration:
//
//   - nftables, over netlink (google/nftables): portgate owns one table.
//     Leases are elements of a set with per-element timeouts, so the kernel
//     ends each one on time even while portgate is down.
//   - iptables, through the iptables binary with argv (coreos/go-iptables):
//     portgate owns one chain, jumped to from INPUT. Each lease is a rule
//     with a comment tag and, by default, an xt_time end date, so it too
//     stops matching on time without portgate.
//
// The kernel's end is a fallback for while portgate is down: Delete always
// removes the rule explicitly, whatever end it was (re-)installed with.
//
// Either way portgate only ever lists, changes and deletes what it tagged as
// its own: its table or chain, and in the iptables INPUT chain the one jump
// rule carrying its comment. Guarded ports (the allow-list) are dropped by
// portgate's own rules unless a lease matches, so a port is closed by
// default even on a host whose firewall would let it through.
package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Protocols a port can be guarded for.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Port is a guarded port: a protocol and a number.
type Port struct {
	Proto string // TCP or UDP
	Num   uint16
}

func (p Port) String() string { return strconv.Itoa(int(p.Num)) + "/" + p.Proto }

// ParsePort reads "22" (TCP), "22/tcp" or "3389/udp".
func ParsePort(s string) (Port, error) {
	num, proto, hasProto := strings.Cut(s, "/")
	p := Port{Proto: TCP}
	if hasProto {
		p.Proto = strings.ToLower(proto)
		if p.Proto != TCP && p.Proto != UDP {
			return Port{}, fmt.Errorf("%q: the protocol must be tcp or udp", s)
		}
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return Port{}, fmt.Errorf("%q: expected a port 1 to 65535, optionally with /tcp or /udp", s)
	}
	p.Num = uint16(n)
	return p, nil
}

// UnmarshalYAML takes a number (TCP) or "PORT/PROTO".
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a port is a number or \"PORT/PROTO\"", n.Line)
	}
	v, err := ParsePort(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: port %w", n.Line, err)
	}
	*p = v
	return nil
}

// Proto returns the protocol of a rule or lease: "" is TCP, as before
// UDP could be guarded.
func Proto(p string) string {
	if p == "" {
		return TCP
	}
	return p
}

// Rule lets IP reach Port over Proto (TCP when empty) until Until.
type Rule struct {
	IP    netip.Addr
	Proto string
	Port  uint16
	Until time.Time
}

func (r Rule) String() string {
	return fmt.Sprintf("%s -> %s/%d until %s", r.IP, Proto(r.Proto), r.Port, r.Until.UTC().Format(time.RFC3339))
}

// Backend is a firewall portgate drives. Methods are called one at a time.
type Backend interface {
	// Name is "nftables" or "iptables".
	Name() string
	// Init creates what portgate owns when missing and sets the guarded
	// ports. Installed lease rules are kept.
	Init(ports []Port) error
	// Set installs the rule for (r.IP, r.Proto, r.Port), replacing an
	// installed one, so that it ends at r.Until.
	Set(r Rule) error
	// Delete removes the rule for (ip, proto, port); a missing rule is not
	// an error.
	Delete(ip netip.Addr, proto string, port uint16) error
	// List returns the lease rules installed, with their end where the
	// firewall records it (zero when it does not).
	List() ([]Rule, error)
}

// Config selects and tunes a backend.
type Config struct {
	// Backend is "nftables" (default) or "iptables".
	Backend  string         `yaml:"backend"`
	NFTables NFTablesConfig `yaml:"nftables"`
	IPTables IPTablesConfig `yaml:"iptables"`
	// KeepEstablished lets connections opened during a lease continue
	// after it ends (an SSH session is not cut); new connections are
	// refused. Default true, false with CloseEstablished.
	KeepEstablished *bool `yaml:"keep_established"`
	// CloseEstablished ends a lease's sessions with it: its conntrack
	// entries are deleted and guarded ports accept no packet without a
	// lease (a TCP session picked up mid-stream by conntrack would
	// otherwise pass as established).
	CloseEstablished bool `yaml:"close_established"`
	// Forward is portgate's forward: section, set by the daemon from its
	// configuration.
	Forward []Forward `yaml:"-"`
}

// New returns the configured backend.
func New(c Config, now func() time.Time) (Backend, error) {
	if c.CloseEstablished && c.KeepEstablished != nil && *c.KeepEstablished {
		return nil, errors.New("firewall: keep_established and close_established contradict each other; choose one")
	}
	keep := (c.KeepEstablished == nil || *c.KeepEstablished) && !c.CloseEstablished
	if now == nil {
		now = time.Now
	}
	var s *sessions
	if c.CloseEstablished {
		var err error
		if s, err = openSessions(); err != nil {
			return nil, err
		}
	}
	switch c.Backend {
	case "", "nftables":
		n, err := NewNFTables(c.NFTables, keep, now)
		if err != nil {
			return nil, errors.Join(err, s.close())
		}
		n.sessions, n.forwards = s, c.Forward
		return n, nil
	case "iptables":
		b, err := NewIPTables(c.IPTables, keep, now)
		if err == nil && len(c.Forward) > 0 && len(b.chain) > MaxForwardChain {
			err = fmt.Errorf("firewall.iptables.chain: %q: at most %d characters with forward: (portgate adds %s%s and %s%s)",
				b.chain, MaxForwardChain, b.chain, natSuffix, b.chain, fwdSuffix)
		}
		if err != nil {
			return nil, errors.Join(err, s.close())
		}
		b.sessions, b.forwards = s, c.Forward
		return b, nil
	}
	return nil, errors.Join(fmt.Errorf("firewall.backend: must be nftables or iptables, got %q", c.Backend), s.close())
}
