// Package lease keeps portgate's leases: who may reach which port from which
// address until when. A Table is the in-memory view (by id and by
// address+port, since two leases may cover the same rule); a File persists
// the Table and the authenticator's replay floors with atomic writes, so a
// crash leaves either the old or the new state on disk, never half of one.
//
// The package never reads the clock: callers pass the instant, which keeps
// expiry logic testable without sleeping.
package lease

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/netip"
	"sort"
	"time"
)

// Lease is one grant: IP may connect to Port until Expires.
type Lease struct {
	ID     string     `json:"id"`
	User   string     `json:"user"`
	IP     netip.Addr `json:"ip"`     // the address allowed in
	Source netip.Addr `json:"source"` // the address that asked
	Port   uint16     `json:"port"`
	// Proto is "tcp" or "udp"; empty (state files from before UDP could
	// be leased) is "tcp".
	Proto   string    `json:"proto,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// TokenHash is the SHA-256 (hex) of the bearer token that may close
	// the lease; the token itself is only ever given to the caller.
	TokenHash string `json:"token_sha256,omitempty"`
}

// Key is what a firewall rule matches: an address, a protocol and a port.
type Key struct {
	IP    netip.Addr
	Proto string // "tcp" or "udp"
	Port  uint16
}

// Key returns the rule key of the lease.
func (l Lease) Key() Key { return Key{IP: l.IP, Proto: l.Protocol(), Port: l.Port} }

// Protocol is Proto, "tcp" when empty.
func (l Lease) Protocol() string {
	if l.Proto == "" {
		return "tcp"
	}
	return l.Proto
}

// Live reports whether the lease still holds at now.
func (l Lease) Live(now time.Time) bool { return now.Before(l.Expires) }

// TokenMatches reports, in constant time, whether token is the lease's.
func (l Lease) TokenMatches(token string) bool {
	if l.TokenHash == "" || token == "" {
		return false
	}
	want, err := hex.DecodeString(l.TokenHash)
	if err != nil {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// NewID returns a random lease id: "pg-" and 16 lower-case hex digits.
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return "pg-" + hex.EncodeToString(b)
}

// NewToken returns a random bearer token (256 bits, base64url) and the
// hash to store.
func NewToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}

// Table holds leases by id and by key. It is not safe for concurrent use;
// the daemon serialises access.
type Table struct {
	byID   map[string]*Lease
	byKey  map[Key]map[string]*Lease
	byUser map[string]int
}

// NewTable returns an empty Table.
func NewTable() *Table {
	return &Table{byID: map[string]*Lease{}, byKey: map[Key]map[string]*Lease{}, byUser: map[string]int{}}
}

// UserLen is the number of leases of user.
func (t *Table) UserLen(user string) int { return t.byUser[user] }

// Find returns the live lease of user on k that ends last.
func (t *Table) Find(user string, k Key, now time.Time) (Lease, bool) {
	var best *Lease
	for _, l := range t.byKey[k] {
		if l.User == user && l.Live(now) && (best == nil || l.Expires.After(best.Expires)) {
			best = l
		}
	}
	if best == nil {
		return Lease{}, false
	}
	return *best, true
}

// Len is the number of leases.
func (t *Table) Len() int { return len(t.byID) }

// Add stores l, replacing a lease with the same id.
func (t *Table) Add(l Lease) {
	t.Remove(l.ID)
	c := l
	t.byID[l.ID] = &c
	k := l.Key()
	if t.byKey[k] == nil {
		t.byKey[k] = map[string]*Lease{}
	}
	t.byKey[k][l.ID] = &c
	t.byUser[l.User]++
}

// Get returns the lease with id.
func (t *Table) Get(id string) (Lease, bool) {
	l, ok := t.byID[id]
	if !ok {
		return Lease{}, false
	}
	return *l, true
}

// Remove deletes the lease with id and returns it.
func (t *Table) Remove(id string) (Lease, bool) {
	l, ok := t.byID[id]
	if !ok {
		return Lease{}, false
	}
	delete(t.byID, id)
	if t.byUser[l.User]--; t.byUser[l.User] <= 0 {
		delete(t.byUser, l.User)
	}
	k := l.Key()
	delete(t.byKey[k], id)
	if len(t.byKey[k]) == 0 {
		delete(t.byKey, k)
	}
	return *l, true
}

// All returns every lease, soonest to expire first (then by id).
func (t *Table) All() []Lease {
	out := make([]Lease, 0, len(t.byID))
	for _, l := range t.byID {
		out = append(out, *l)
	}
	sortLeases(out)
	return out
}

// Due returns the leases that have ended at now, soonest first.
func (t *Table) Due(now time.Time) []Lease {
	var out []Lease
	for _, l := range t.byID {
		if !l.Live(now) {
			out = append(out, *l)
		}
	}
	sortLeases(out)
	return out
}

// Next returns the earliest expiry, and false when the table is empty.
func (t *Table) Next() (time.Time, bool) {
	var next time.Time
	for _, l := range t.byID {
		if next.IsZero() || l.Expires.Before(next) {
			next = l.Expires
		}
	}
	return next, !next.IsZero()
}

// Until returns when the rule for k must end: the latest expiry of the
// leases on k that are live at now, and false when none is.
func (t *Table) Until(k Key, now time.Time) (time.Time, bool) {
	var until time.Time
	for _, l := range t.byKey[k] {
		if l.Live(now) && l.Expires.After(until) {
			until = l.Expires
		}
	}
	return until, !until.IsZero()
}

// Rules returns, for every key with a live lease at now, when its rule
// ends.
func (t *Table) Rules(now time.Time) map[Key]time.Time {
	out := map[Key]time.Time{}
	for k := range t.byKey {
		if u, ok := t.Until(k, now); ok {
			out[k] = u
		}
	}
	return out
}

func sortLeases(ls []Lease) {
	sort.Slice(ls, func(i, j int) bool {
		if !ls[i].Expires.Equal(ls[j].Expires) {
			return ls[i].Expires.Before(ls[j].Expires)
		}
		return ls[i].ID < ls[j].ID
	})
}
