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
// Either way portgate only ever lists, changes and deletes what it tagged as
// its own: its table or chain, and in the iptables INPUT chain the one jump
// rule carrying its comment. Guarded ports (the allow-list) are dropped by
// portgate's own rules unless a lease matches, so a port is closed by
// default even on a host whose firewall would let it through.
package firewall

import (
	"fmt"
	"net/netip"
	"time"
)

// Rule lets IP connect to TCP Port until Until.
type Rule struct {
	IP    netip.Addr
	Port  uint16
	Until time.Time
}

func (r Rule) String() string {
	return fmt.Sprintf("%s -> tcp/%d until %s", r.IP, r.Port, r.Until.UTC().Format(time.RFC3339))
}

// Backend is a firewall portgate drives. Methods are called one at a time.
type Backend interface {
	// Name is "nftables" or "iptables".
	Name() string
	// Init creates what portgate owns when missing and sets the guarded
	// ports. Installed lease rules are kept.
	Init(ports []uint16) error
	// Set installs the rule for (r.IP, r.Port), replacing an installed one,
	// so that it ends at r.Until.
	Set(r Rule) error
	// Delete removes the rule for (ip, port); a missing rule is not an
	// error.
	Delete(ip netip.Addr, port uint16) error
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
	// refused. Default true.
	KeepEstablished *bool `yaml:"keep_established"`
}

// New returns the configured backend.
func New(c Config, now func() time.Time) (Backend, error) {
	keep := c.KeepEstablished == nil || *c.KeepEstablished
	if now == nil {
		now = time.Now
	}
	switch c.Backend {
	case "", "nftables":
		return NewNFTables(c.NFTables, keep, now)
	case "iptables":
		return NewIPTables(c.IPTables, keep, now)
	}
	return nil, fmt.Errorf("firewall.backend: must be nftables or iptables, got %q", c.Backend)
}
