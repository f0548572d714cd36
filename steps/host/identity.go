package host

import "os"

// Identity is what a report says about a host once it is open: which
// transport carries it, where it connected, and the host key verified.
type Identity struct {
	Transport string
	Address   string
	HostKey   string // e.g. SHA256:... for SSH
}

// Identifier is implemented by hosts that can say where they connected.
// Hosts that do not are reported by their reference's scheme alone.
type Identifier interface {
	Identity() Identity
}

// Identity of this machine: its host name.
func (Local) Identity() Identity {
	name, _ := os.Hostname()
	return Identity{Transport: "local", Address: name}
}

// Identities returns the identity of every host the pool has open, by
// reference. Call it before Close.
func (p *Pool) Identities() map[string]Identity {
	p.mu.Lock()
	entries := make(map[string]*poolEntry, len(p.hosts))
	for k, e := range p.hosts {
		entries[k] = e
	}
	p.mu.Unlock()
	out := make(map[string]Identity, len(entries))
	for ref, e := range entries {
		select {
		case <-e.ready:
		default:
			continue // still connecting
		}
		if e.h == nil {
			continue
		}
		id := Identity{}
		if r, err := Parse(ref); err == nil {
			id.Transport = r.Scheme
		}
		if i, ok := e.h.(Identifier); ok {
			id = i.Identity()
		}
		out[ref] = id
	}
	return out
}

// Identity of an SSH host: the address connected to and the host key it
// proved (empty until the first connection).
func (h *SSH) Identity() Identity {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Identity{Transport: "ssh", Address: h.Addr(), HostKey: h.hostKey}
}
