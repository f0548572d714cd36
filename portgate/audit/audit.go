// Package audit writes portgate's audit trail: one JSON object per line for
// every open, close, expiry, denial and lockout, with who, from where, what
// and until when. It has no field for a code, a password, a key or a token,
// so none can be written.
//
// Its cost stays bounded under attack: past the first DenyBurst refusals of
// a source in a minute, that source's refusals are counted and written as
// one deny_summary line when the minute is over. OpenFile adds size-based
// rotation (path, path.1 ... path.Keep) and syncs to disk per batch: each
// line is one write(2), so readers see it at once, and fsync follows every
// event that is not a refusal, and refusals every SyncBatch records or at
// Flush.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
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
	// DenySummary counts a source's refusals of one minute beyond the
	// first DenyBurst (Count, Reasons; Time and Until bound the minute).
	DenySummary = "deny_summary"
)

// DenyBurst is how many refusals of one source per minute are written in
// full.
const DenyBurst = 5

// SyncBatch is how many refusals may wait for a sync.
const SyncBatch = 64

// maxPending bounds the sources with refusals being counted: past it the
// counts are written out early.
const maxPending = 10_000

// Event is one audit record. Empty fields are left out.
type Event struct {
	Time    time.Time  `json:"time"`
	Event   string     `json:"event"`
	User    string     `json:"user,omitempty"`
	Source  netip.Addr `json:"source,omitzero"` // who asked
	IP      netip.Addr `json:"ip,omitzero"`     // who is let in
	Port    uint16     `json:"port,omitempty"`
	Proto   string     `json:"proto,omitempty"` // udp; empty for tcp
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
	// Reasons counts a summary's refusals by reason.
	Reasons map[string]int `json:"reasons,omitempty"`
}

// Log writes events as JSON lines. It is safe for concurrent use; each
// event is one line, so lines never interleave.
type Log struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
	err error

	file     *rotating // nil unless OpenFile
	pending  map[netip.Addr]*tally
	minute   time.Time // the minute pending counts belong to
	unsynced int
}

// tally is one source's refusals of the current minute.
type tally struct {
	written int
	over    map[string]int // beyond DenyBurst, by reason
	user    string
	port    uint16
}

// New returns a Log writing to w; now nil means time.Now.
func New(w io.Writer, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{w: w, now: now, pending: map[netip.Addr]*tally{}}
}

// FileOptions tune OpenFile.
type FileOptions struct {
	// MaxBytes rotates the file before it grows past this. Default 64 MiB.
	MaxBytes int64
	// Keep is how many rotated files are kept. Default 5.
	Keep int
}

// OpenFile returns a Log appending to path (created 0600), rotated by size.
func OpenFile(path string, o FileOptions, now func() time.Time) (*Log, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.Keep <= 0 {
		o.Keep = 5
	}
	r := &rotating{path: path, opt: o}
	if err := r.open(); err != nil {
		return nil, err
	}
	l := New(nil, now)
	l.file, l.w = r, r
	return l, nil
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
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(e.Time)
	if e.Event == Deny && e.Source.IsValid() {
		t := l.pending[e.Source]
		if t == nil {
			if len(l.pending) >= maxPending {
				l.summariesLocked(e.Time)
			}
			t = &tally{}
			l.pending[e.Source] = t
		}
		if t.written >= DenyBurst {
			if t.over == nil {
				t.over = map[string]int{}
			}
			t.over[e.Reason]++
			t.user, t.port = e.User, e.Port
			return
		}
		t.written++
		l.writeLocked(e)
		l.unsynced++
		if l.unsynced >= SyncBatch {
			l.syncLocked()
		}
		return
	}
	l.writeLocked(e)
	l.syncLocked()
}

// rollLocked writes the summaries of a minute that has ended.
func (l *Log) rollLocked(now time.Time) {
	m := now.UTC().Truncate(time.Minute)
	if m.Equal(l.minute) {
		return
	}
	l.summariesLocked(now)
	l.minute = m
}

// summariesLocked writes one deny_summary per source with counted
// refusals, and starts counting afresh.
func (l *Log) summariesLocked(now time.Time) {
	srcs := slices.SortedFunc(maps.Keys(l.pending), func(a, b netip.Addr) int { return a.Compare(b) })
	wrote := false
	for _, src := range srcs {
		t := l.pending[src]
		if len(t.over) == 0 {
			continue
		}
		n := 0
		for _, c := range t.over {
			n += c
		}
		start := l.minute
		if start.IsZero() {
			start = now.UTC().Truncate(time.Minute)
		}
		l.writeLocked(Event{Time: start, Event: DenySummary, Source: src, User: t.user, Port: t.port, Count: n, Reasons: t.over,
			Until: start.Add(time.Minute), Detail: fmt.Sprintf("%d further refusals of this source in this minute", n)})
		wrote = true
	}
	clear(l.pending)
	if wrote {
		l.syncLocked()
	}
}

// Flush writes the summaries of minutes that have ended and syncs. The
// daemon calls it every few seconds and when it stops.
func (l *Log) Flush() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(l.now())
	l.syncLocked()
	return l.err
}

// Close flushes everything, the current minute's counts too, and closes a
// file opened by OpenFile.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.summariesLocked(l.now())
	l.syncLocked()
	if l.file != nil {
		if err := l.file.close(); err != nil && l.err == nil {
			l.err = err
		}
	}
	return l.err
}

func (l *Log) writeLocked(e Event) {
	e.Time = e.Time.UTC()
	if !e.Expires.IsZero() {
		e.Expires = e.Expires.UTC()
	}
	if !e.Until.IsZero() {
		e.Until = e.Until.UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		l.keep(err)
		return
	}
	b = append(b, '\n')
	if _, err := l.w.Write(b); err != nil {
		l.keep(err)
	}
}

func (l *Log) syncLocked() {
	l.unsynced = 0
	if l.file != nil {
		if err := l.file.sync(); err != nil {
			l.keep(err)
		}
	}
}

func (l *Log) keep(err error) {
	if l.err == nil {
		l.err = err
	}
}

// Err returns the first write error.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// rotating is an append-only file that rotates by size. It is used under
// the Log's lock.
type rotating struct {
	path string
	opt  FileOptions
	f    *os.File
	size int64
}

func (r *rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *rotating) Write(b []byte) (int, error) {
	if r.f == nil {
		return 0, errors.New("audit log: closed")
	}
	if r.size > 0 && r.size+int64(len(b)) > r.opt.MaxBytes {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(b)
	r.size += int64(n)
	return n, err
}

// rotate moves path to path.1 (path.1 to path.2, ..., dropping the oldest,
// path.Keep) and starts an empty path.
func (r *rotating) rotate() error {
	if err := r.close(); err != nil {
		return err
	}
	for i := r.opt.Keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", r.path, i), fmt.Sprintf("%s.%d", r.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit log: rotate: %w", err)
		}
	}
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	return r.open()
}

func (r *rotating) sync() error {
	if r.f == nil {
		return nil
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

func (r *rotating) close() error {
	if r.f == nil {
		return nil
	}
	err := r.sync()
	if cerr := r.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("audit log: %w", cerr)
	}
	r.f = nil
	return err
}
