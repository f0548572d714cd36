package host

import (
	"context"
	"fmt"
	"net"
	"strings"
)

// ValidateVia checks a `via:` reference: a host that dials for the step,
// so never this machine.
func ValidateVia(ref string) error {
	if ref == "" {
		return nil
	}
	if IsLocal(ref) {
		return fmt.Errorf("via: %q: name the host to dial through (ssh://bastion); leave via: out to dial from here", ref)
	}
	if err := Validate(ref); err != nil {
		return fmt.Errorf("via: %w", err)
	}
	return nil
}

// DialVia opens a connection to address from the host ref names (a
// bastion): the name is resolved there, with the host's own resolver, so
// a private zone that answers only inside the network is used, and the
// connection's RemoteAddr is the address it went to.
func DialVia(ctx context.Context, ref, network, address string) (net.Conn, error) {
	h, err := Open(ctx, ref)
	if err != nil {
		return nil, err
	}
	name, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	ip := name
	if net.ParseIP(name) == nil {
		if ip, err = ResolveOn(ctx, h, name); err != nil {
			return nil, err
		}
	}
	target := net.JoinHostPort(ip, port)
	c, err := h.Dial(ctx, network, target)
	if err != nil {
		return nil, err
	}
	return &resolvedConn{Conn: c, raddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: atoiPort(port)}}, nil
}

// ResolveOn looks name up on h (getent ahostsv4: the host's resolver,
// /etc/hosts included) and returns its first IPv4 address.
func ResolveOn(ctx context.Context, h Host, name string) (string, error) {
	res, err := h.Run(ctx, Command{Args: []string{"getent", "ahostsv4", name}})
	if err != nil {
		return "", fmt.Errorf("resolve %s on %s: %w", name, h, err)
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("resolve %s on %s: no address (getent exit %d)", name, h, res.ExitCode)
	}
	f := strings.Fields(res.Stdout)
	if len(f) == 0 || net.ParseIP(f[0]) == nil {
		return "", fmt.Errorf("resolve %s on %s: unexpected answer %q", name, h, res.Stdout)
	}
	return f[0], nil
}

func atoiPort(p string) int {
	n := 0
	for _, r := range p {
		if r < '0' || r > '9' {
			return 0
		}
		n = n*10 + int(r-'0')
	}
	return n
}

// resolvedConn reports the address a tunnelled connection went to: an SSH
// channel has none of its own.
type resolvedConn struct {
	net.Conn
	raddr net.Addr
}

func (c *resolvedConn) RemoteAddr() net.Addr { return c.raddr }
