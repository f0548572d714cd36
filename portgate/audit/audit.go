// Package audit writes portgate's audit trail: one JSON object per line for
// every open, close, expiry, denial and lockout, with who, from where, what
// and until when. It has no field for a code, a password, a key or a token,
// so none can be written.
package audit

import (
	"encoding/json"
	"io"
	"net/netip"
	"sync"
	"time"
)

// Event kinds.
const (
	Open      = "open"      // a lease was granted and its rule installed
	Close     = "close"     // a lease was closed before its end
	Expire    = "expire"    // a lease reached its end
	Deny      = "deny"      // a request was refused (Reason says why)
	Lockout   = "lockout"   // a user or source was locked out
	Restore   = "restore"   // a live lease's rule was reinstalled at start
	Stale     = "stale"     // a rule without a live lease was removed at start
	Start     = "start"     // the daemon started
	Stop      = "stop"      // the daemon stopped
	Reconcile = "reconcile" // start-up reconciliation finished
)

// Event is one audit record. Empty fields are left out.
type Event struct {
	Time    time.Time  `json:"time"`
	Event   string     `json:"event"`
	User    string     `json:"user,omitempty"`
	Source  netip.Addr `json:"source,omitzero"` // who asked
	IP      netip.Addr `json:"ip,omitzero"`     // who is let in
	Port    uint16     `json:"port,omitempty"`
	Lease   string     `json:"lease,omitempty"`
	Expires time.Time  `json:"expires,omitzero"`
	Reason  string     `json:"reason,omitempty"`
	// Scope and Until describe a lockout.
	Scope   string    `json:"scope,omitempty"`
	Subject string    `json:"subject,omitempty"`
	Until   time.Time `json:"until,omitzero"`
	// Count is a number the event is about (leases restored, failures).
	Count int `json:"count,omitempty"`
	// Detail is free text for start/stop and errors; never a secret.
	Detail string `json:"detail,omitempty"`
}

// Log writes events as JSON lines. It is safe for concurrent use; each
// event is one write(2), so lines never interleave.
type Log struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
	err error
}

// New returns a Log writing to w; now nil means time.Now.
func New(w io.Writer, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{w: w, now: now}
}

// Write records e, stamping its time when unset. A failed write is kept
// and returned by Err; auditing never stops the daemon by itself.
func (l *Log) Write(e Event) {
	if l == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC()
	if !e.Expires.IsZero() {
		e.Expires = e.Expires.UTC()
	}
	if !e.Until.IsZero() {
		e.Until = e.Until.UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		l.setErr(err)
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(b); err != nil && l.err == nil {
		l.err = err
	}
}

// Err returns the first write error.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *Log) setErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
}
