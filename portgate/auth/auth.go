// Package auth decides whether a portgate caller may act: TOTP codes checked
// against per-user keys within a small window, each time step accepted once
// per user (replay refused), and lockout with exponential backoff per user
// and per source address after repeated failures. Every comparison of a
// secret value runs in constant time.
//
// The clock is injected, so tests drive time by hand:
//
//	a := auth.New(users, auth.Policy{Window: 1}, clock.Now)
//	g, err := a.Verify("alice", "123456", source)
//
// An Authenticator holds the replay floor of every user (the highest counter
// accepted so far); portgate persists it with its leases (Floors, Restore),
// so a restart does not reopen a window for replays.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Clock returns the current time.
type Clock func() time.Time

// Policy is how strict the Authenticator is. Zero fields take the defaults
// noted on each.
type Policy struct {
	// Window is how many time steps either side of the current one are
	// accepted (clock drift, a code typed as it changes); 0 accepts the
	// current step only. DefaultPolicy and portgate's configuration use 1.
	Window int
	// MaxFailures is how many failures in a row lock a user or a source
	// out. Default 5.
	MaxFailures int
	// LockoutBase is the first lockout; each further lockout doubles it.
	// Default 30s.
	LockoutBase time.Duration
	// LockoutMax caps a lockout. Default 15m.
	LockoutMax time.Duration
	// ResetAfter forgets failures and past lockouts after this long without
	// a failure. Default 1h.
	ResetAfter time.Duration
	// MaxTracked bounds how many sources are remembered; beyond it stale
	// ones are forgotten first, then the least recently failed unlocked
	// ones, then the locked ones closest to unlocking. Default 100,000.
	MaxTracked int
}

func (p Policy) withDefaults() Policy {
	if p.Window < 0 {
		p.Window = 0
	}
	if p.MaxFailures <= 0 {
		p.MaxFailures = 5
	}
	if p.LockoutBase <= 0 {
		p.LockoutBase = 30 * time.Second
	}
	if p.LockoutMax <= 0 {
		p.LockoutMax = 15 * time.Minute
	}
	if p.LockoutMax < p.LockoutBase {
		p.LockoutMax = p.LockoutBase
	}
	if p.ResetAfter <= 0 {
		p.ResetAfter = time.Hour
	}
	if p.MaxTracked <= 0 {
		p.MaxTracked = 100_000
	}
	return p
}

// DefaultPolicy is one step either side and the default lockout.
var DefaultPolicy = Policy{Window: 1}.withDefaults()

// User is someone who may authenticate.
type User struct {
	Name string
	Key  Key
}

// Reason says why a request was denied. Reasons go to the audit log; the
// API tells callers less (see Denied.Public).
type Reason string

// Denial reasons.
const (
	ReasonUnknownUser   Reason = "unknown_user"
	ReasonMalformedCode Reason = "malformed_code"
	ReasonBadCode       Reason = "bad_code"
	ReasonReplay        Reason = "replay"
	ReasonBadPassword   Reason = "bad_password"
	ReasonLockedUser    Reason = "locked_user"
	ReasonLockedSource  Reason = "locked_source"
)

// Lockout is a lockout that a failure just started.
type Lockout struct {
	Scope    string // "user" or "source"
	Subject  string // user name, or the source address or /64
	Until    time.Time
	Failures int // failures in a row that triggered it
	Count    int // lockouts since the last success (1 for the first)
}

// Denied is the error of a refused authentication.
type Denied struct {
	Reason Reason
	// RetryAfter is set when the caller is locked out.
	RetryAfter time.Duration
	// Lockouts lists the lockouts this very failure started.
	Lockouts []Lockout
}

func (d *Denied) Error() string { return "authentication denied: " + string(d.Reason) }

// Locked reports whether the denial is a lockout in force.
func (d *Denied) Locked() bool {
	return d.Reason == ReasonLockedUser || d.Reason == ReasonLockedSource
}

// Grant is a successful authentication.
type Grant struct {
	User    string
	Counter uint64 // the time step whose code was accepted
	Offset  int    // counter minus the server's current counter
}

// lock tracks failures of one user or source.
type lock struct {
	failures    int
	lockouts    int
	lockedUntil time.Time
	lastFailure time.Time
}

// Authenticator verifies codes. It is safe for concurrent use.
type Authenticator struct {
	policy Policy
	now    Clock

	mu      sync.Mutex
	users   map[string]User
	floors  map[string]uint64 // highest counter accepted per user; absent: none yet
	ulocks  map[string]*lock
	slocks  map[netip.Prefix]*lock
	dummy   Key
	pwHash  *[sha256.Size]byte
	pwLabel string
}

// New returns an Authenticator for users. now nil means time.Now.
func New(users []User, p Policy, now Clock) *Authenticator {
	if now == nil {
		now = time.Now
	}
	a := &Authenticator{
		policy: p.withDefaults(),
		now:    now,
		users:  map[string]User{},
		floors: map[string]uint64{},
		ulocks: map[string]*lock{},
		slocks: map[netip.Prefix]*lock{},
	}
	for _, u := range users {
		a.users[u.Name] = u
	}
	// Work done for an unknown user, so its timing matches a known one.
	a.dummy, _ = NewKey(make([]byte, 20), 6, 30*time.Second, "SHA1")
	return a
}

// Policy returns the effective policy.
func (a *Authenticator) Policy() Policy { return a.policy }

// HasUser reports whether name is a configured user.
func (a *Authenticator) HasUser(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.users[name]
	return ok
}

// Verify checks code for user, called from source. It returns a Grant, or
// a *Denied error. A lockout in force is checked before the code, and then
// the code is not even looked at.
func (a *Authenticator) Verify(user, code string, source netip.Addr) (Grant, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	skey := sourceKey(source)
	if d := a.lockedLocked(skey, user, now); d != nil {
		return Grant{}, d
	}
	u, known := a.users[user]
	key := u.Key
	if !known {
		key = a.dummy
	}
	cur := key.Counter(now)
	matched, offset := matchCode(key, code, cur, a.policy.Window)
	switch {
	case !known:
		return Grant{}, a.failLocked(ReasonUnknownUser, "", skey, now)
	case len(code) != key.Digits() || !allDigits(code):
		return Grant{}, a.failLocked(ReasonMalformedCode, user, skey, now)
	case !matched:
		return Grant{}, a.failLocked(ReasonBadCode, user, skey, now)
	}
	c := uint64(int64(cur) + int64(offset))
	if floor, seen := a.floors[user]; seen && c <= floor {
		return Grant{}, a.failLocked(ReasonReplay, user, skey, now)
	}
	a.floors[user] = c
	delete(a.ulocks, user)
	delete(a.slocks, skey)
	return Grant{User: user, Counter: c, Offset: offset}, nil
}

// matchCode compares code with the codes of every counter in the window,
// all of them, in constant time, and returns the offset of the match.
func matchCode(k Key, code string, cur uint64, window int) (bool, int) {
	matched, at := 0, 0
	for off := -window; off <= window; off++ {
		c := int64(cur) + int64(off)
		if c < 0 {
			continue
		}
		eq := subtle.ConstantTimeCompare([]byte(k.Code(uint64(c))), []byte(code))
		// Keep the first match without branching on secret data.
		first := eq & (1 - matched)
		at = subtle.ConstantTimeSelect(first, off, at)
		matched |= eq
	}
	return matched == 1, at
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// SetPasswordHash enables the fixed-password mode of the seed runbook:
// one shared password, given by its SHA-256, checked in constant time,
// with the same source lockout as codes and a lockout of its own under
// label (the name the audit log shows).
func (a *Authenticator) SetPasswordHash(sum []byte, label string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var h [sha256.Size]byte
	copy(h[:], sum)
	a.pwHash, a.pwLabel = &h, label
}

// VerifyPassword checks the fixed password from source.
func (a *Authenticator) VerifyPassword(password string, source netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	skey := sourceKey(source)
	if a.pwHash == nil {
		return a.failLocked(ReasonBadPassword, "", skey, now)
	}
	if d := a.lockedLocked(skey, a.pwLabel, now); d != nil {
		return d
	}
	h := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(h[:], a.pwHash[:]) != 1 {
		return a.failLocked(ReasonBadPassword, a.pwLabel, skey, now)
	}
	delete(a.ulocks, a.pwLabel)
	delete(a.slocks, skey)
	return nil
}

// lockedLocked returns a denial when the source or the user is locked out.
func (a *Authenticator) lockedLocked(skey netip.Prefix, user string, now time.Time) *Denied {
	if l := a.slocks[skey]; l != nil && now.Before(l.lockedUntil) {
		return &Denied{Reason: ReasonLockedSource, RetryAfter: l.lockedUntil.Sub(now)}
	}
	if l := a.ulocks[user]; l != nil && now.Before(l.lockedUntil) {
		return &Denied{Reason: ReasonLockedUser, RetryAfter: l.lockedUntil.Sub(now)}
	}
	return nil
}

// failLocked counts a failure against user (when known) and the source,
// and starts lockouts where the count reaches the limit.
func (a *Authenticator) failLocked(r Reason, user string, skey netip.Prefix, now time.Time) *Denied {
	d := &Denied{Reason: r}
	if user != "" {
		l := a.ulocks[user]
		if l == nil {
			l = &lock{}
			a.ulocks[user] = l
		}
		if lo, ok := a.count(l, now); ok {
			lo.Scope, lo.Subject = "user", user
			d.Lockouts = append(d.Lockouts, lo)
		}
	}
	l := a.slocks[skey]
	if l == nil {
		a.pruneLocked(now)
		l = &lock{}
		a.slocks[skey] = l
	}
	if lo, ok := a.count(l, now); ok {
		lo.Scope, lo.Subject = "source", subject(skey)
		d.Lockouts = append(d.Lockouts, lo)
	}
	return d
}

// count adds a failure to l and reports the lockout it starts, if any.
func (a *Authenticator) count(l *lock, now time.Time) (Lockout, bool) {
	if !l.lastFailure.IsZero() && now.Sub(l.lastFailure) >= a.policy.ResetAfter && !now.Before(l.lockedUntil) {
		*l = lock{}
	}
	l.failures++
	l.lastFailure = now
	if l.failures < a.policy.MaxFailures {
		return Lockout{}, false
	}
	failures := l.failures
	l.lockouts++
	l.failures = 0
	d := a.policy.LockoutBase
	for i := 1; i < l.lockouts && d < a.policy.LockoutMax; i++ {
		d *= 2
	}
	d = min(d, a.policy.LockoutMax)
	l.lockedUntil = now.Add(d)
	return Lockout{Until: l.lockedUntil, Failures: failures, Count: l.lockouts}, true
}

// pruneLocked makes room below MaxTracked: stale sources go first, then
// the least recently failed unlocked ones, then the locked ones closest to
// unlocking (a flood of addresses must not exhaust memory).
func (a *Authenticator) pruneLocked(now time.Time) {
	if len(a.slocks) < a.policy.MaxTracked {
		return
	}
	for k, l := range a.slocks {
		if now.Sub(l.lastFailure) >= a.policy.ResetAfter && !now.Before(l.lockedUntil) {
			delete(a.slocks, k)
		}
	}
	if len(a.slocks) < a.policy.MaxTracked {
		return
	}
	type entry struct {
		k      netip.Prefix
		locked bool
		t      time.Time
	}
	all := make([]entry, 0, len(a.slocks))
	for k, l := range a.slocks {
		if now.Before(l.lockedUntil) {
			all = append(all, entry{k, true, l.lockedUntil})
		} else {
			all = append(all, entry{k, false, l.lastFailure})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].locked != all[j].locked {
			return !all[i].locked
		}
		return all[i].t.Before(all[j].t)
	})
	for _, e := range all {
		if len(a.slocks) < a.policy.MaxTracked {
			break
		}
		delete(a.slocks, e.k)
	}
}

// Floors returns the replay floor of every user: the highest counter
// accepted so far.
func (a *Authenticator) Floors() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]uint64, len(a.floors))
	for k, v := range a.floors {
		out[k] = v
	}
	return out
}

// Restore sets replay floors saved by an earlier run; a floor never moves
// back.
func (a *Authenticator) Restore(floors map[string]uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range floors {
		if cur, ok := a.floors[k]; !ok || v > cur {
			a.floors[k] = v
		}
	}
}

// sourceKey is what a source is locked out by: its IPv4 address, or the
// /64 of an IPv6 address (one host usually holds a whole /64).
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

func subject(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// String describes a lockout for logs.
func (l Lockout) String() string {
	return fmt.Sprintf("%s %s locked until %s after %d failures (lockout %d)", l.Scope, l.Subject, l.Until.UTC().Format(time.RFC3339), l.Failures, l.Count)
}
