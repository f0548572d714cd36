package firewall

import (
	"fmt"
	"net/netip"

	"github.com/ti-mo/conntrack"
)

// sessions ends the connections a closed lease let in: it deletes their
// conntrack entries, in the network namespace it was opened in. Without
// it, a session opened during a lease could outlive the lease.
type sessions struct {
	conn *conntrack.Conn
}

func openSessions() (*sessions, error) {
	c, err := conntrack.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack (close_established): %w", err)
	}
	return &sessions{conn: c}, nil
}

// end deletes the entries whose original direction came from ip to port
// over proto (for a DNAT'ed session too: its original destination port is
// the gate's). It returns how many it deleted.
func (s *sessions) end(ip netip.Addr, proto string, port uint16) (int, error) {
	if s == nil {
		return 0, nil
	}
	flows, err := s.conn.Dump(nil)
	if err != nil {
		return 0, fmt.Errorf("conntrack: list: %w", err)
	}
	ip, num := ip.Unmap(), protoNum(proto)
	n := 0
	for _, f := range flows {
		o := f.TupleOrig
		if o.IP.SourceAddress.Unmap() != ip || o.Proto.Protocol != num || o.Proto.DestinationPort != port {
			continue
		}
		if err := s.conn.Delete(f); err != nil {
			return n, fmt.Errorf("conntrack: end %s -> %s/%d: %w", ip, Proto(proto), port, err)
		}
		n++
	}
	return n, nil
}

func (s *sessions) close() error {
	if s == nil {
		return nil
	}
	return s.conn.Close()
}
