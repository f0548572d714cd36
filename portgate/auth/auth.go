// Package auth decides whether a portgate caller may act: TOTP codes checked
// against per-user keys within a small window, each time step accepted once
// per user (replay refused), an optional password as a second factor
// (argon2id or bcrypt hashes), and a throttle that slows the attacker
// rather than the user (see throttle.go): back-off per (user, source
// prefix) and per source, a per-user guess budget that sources without
// recent failures are never held to, and a request rate per source. Every
// comparison of a secret value runs in constant time.
//
// The clock is injected, so tests drive time by hand:
//
//	a := auth.New(users, auth.Policy{Window: 1}, clock.Now)
//	g, err := a.Verify("alice", "123456", "", source)
//
// An Authenticator holds the replay floor of every user (the highest counter
// accepted so far) and the throttle's records; portgate persists both
// (Floors, Restore, Throttle, RestoreThrottle), so a restart neither reopens
// a window for replays nor hands an attacker a clean slate.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/netip"
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
	// Off disables the throttle entirely (failures are still audited). It
	// exists so drills can prove they catch a gate without one.
	Off bool
	// MaxFailures is how many failures in a row of one user from one
	// source prefix start its back-off. Default 5.
	MaxFailures int
	// SourceMaxFailures is the same across users, for one source prefix.
	// Default 4 x MaxFailures.
	SourceMaxFailures int
	// LockoutBase is the first back-off; each further failure doubles it.
	// Default 30s.
	LockoutBase time.Duration
	// LockoutMax caps a back-off. Default 1h.
	LockoutMax time.Duration
	// ResetAfter forgets failures and past back-offs after this long
	// without a failure; a source that failed within it has "recent
	// failures" and is held to the user's guess budget. Default 168h.
	ResetAfter time.Duration
	// UserGuessesPerHour refills each user's guess budget. Default 12.
	UserGuessesPerHour float64
	// UserBurst is the budget's size. Default 10.
	UserBurst int
	// SourceRate is the requests per second one source prefix may make,
	// in bursts of SourceBurst. Defaults 2 and 20.
	SourceRate  float64
	SourceBurst int
	// MaxTracked bounds the (user, source) pairs and the sources
	// remembered; beyond it the least recently seen are forgotten.
	// Default 1,000,000.
	MaxTracked int
}

func (p Policy) withDefaults() Policy {
	if p.Window < 0 {
		p.Window = 0
	}
	if p.MaxFailures <= 0 {
		p.MaxFailures = 5
	}
	if p.SourceMaxFailures <= 0 {
		p.SourceMaxFailures = 4 * p.MaxFailures
	}
	if p.LockoutBase <= 0 {
		p.LockoutBase = 30 * time.Second
	}
	if p.LockoutMax <= 0 {
		p.LockoutMax = time.Hour
	}
	if p.LockoutMax < p.LockoutBase {
		p.LockoutMax = p.LockoutBase
	}
	if p.ResetAfter <= 0 {
		p.ResetAfter = 168 * time.Hour
	}
	if p.UserGuessesPerHour <= 0 {
		p.UserGuessesPerHour = 12
	}
	if p.UserBurst <= 0 {
		p.UserBurst = 10
	}
	if p.SourceRate <= 0 {
		p.SourceRate = 2
	}
	if p.SourceBurst <= 0 {
		p.SourceBurst = 20
	}
	if p.MaxTracked <= 0 {
		p.MaxTracked = 1_000_000
	}
	return p
}

// DefaultPolicy is one step either side and the default throttle.
var DefaultPolicy = Policy{Window: 1}.withDefaults()

// User is someone who may authenticate.
type User struct {
	Name string
	Key  Key
	// Password, when set, is a second factor required with every code.
	Password *PasswordHash
}

// Reason says why a request was denied. Reasons go to the audit log; the
// API tells callers less (see Denied.Locked).
type Reason string

// Denial reasons.
const (
	ReasonUnknownUser   Reason = "unknown_user"
	ReasonMalformedCode Reason = "malformed_code"
	ReasonBadCode       Reason = "bad_code"
	ReasonReplay        Reason = "replay"
	ReasonBadPassword   Reason = "bad_password"
	ReasonBadToken      Reason = "bad_token"
	// ReasonLockedUser: this user from this source prefix is backed off.
	ReasonLockedUser Reason = "locked_user"
	// ReasonLockedSource: this source prefix is backed off for everyone.
	ReasonLockedSource Reason = "locked_source"
	// ReasonUserBudget: the user's guess budget is spent and this source
	// has recent failures.
	ReasonUserBudget Reason = "user_budget"
	// ReasonRateLimited: the source sends requests too fast.
	ReasonRateLimited Reason = "rate_limited"
)

// AdminScope is the subject admin token failures are counted under.
const AdminScope = "(admin)"

// Lockout is a back-off that a failure just started.
type Lockout struct {
	Scope    string // "user" (the user from one source prefix), "source" or "admin"
	Subject  string // "user from source", or the source address or /64
	Until    time.Time
	Failures int // failures in a row that triggered it
	Count    int // back-offs since the last success (1 for the first)
}

// Denied is the error of a refused authentication.
type Denied struct {
	Reason Reason
	// RetryAfter is set when the caller is throttled.
	RetryAfter time.Duration
	// Lockouts lists the back-offs this very failure started.
	Lockouts []Lockout
}

func (d *Denied) Error() string { return "authentication denied: " + string(d.Reason) }

// Locked reports whether the denial is a throttle in force: the
// credentials were not even looked at.
func (d *Denied) Locked() bool {
	switch d.Reason {
	case ReasonLockedUser, ReasonLockedSource, ReasonUserBudget, ReasonRateLimited:
		return true
	}
	return false
}

// Grant is a successful authentication.
type Grant struct {
	User    string
	Counter uint64 // the time step whose code was accepted
	Offset  int    // counter minus the server's current counter
}

// Authenticator verifies codes. It is safe for concurrent use.
type Authenticator struct {
	policy Policy
	now    Clock

	mu      sync.Mutex
	users   map[string]User
	floors  map[string]uint64 // highest counter accepted per user; absent: none yet
	t       *tracker
	changes uint64 // failures and successes counted: the throttle moved
	dummy   Key
	pwHash  *[sha256.Size]byte
	pwLabel string
	// pwSlots bounds concurrent password hashing (memory-hard: each
	// argon2id check takes its m of memory).
	pwSlots chan struct{}
}

// New returns an Authenticator for users. now nil means time.Now.
func New(users []User, p Policy, now Clock) *Authenticator {
	if now == nil {
		now = time.Now
	}
	p = p.withDefaults()
	a := &Authenticator{
		policy:  p,
		now:     now,
		users:   map[string]User{},
		floors:  map[string]uint64{},
		t:       newTracker(p),
		pwSlots: make(chan struct{}, 2),
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

// Verify checks code (and password, for a user who has one) for user,
// called from source. It returns a Grant, or a *Denied error. The throttle
// is consulted first; when it holds the caller back the credentials are
// not even looked at. Passwords are hashed outside the lock.
func (a *Authenticator) Verify(user, code, password string, source netip.Addr) (Grant, error) {
	skey := sourceKey(source)
	a.mu.Lock()
	now := a.now()
	u, known := a.users[user]
	subject := user
	if !known {
		subject = ""
	}
	if d := a.admitLocked(subject, skey, now); d != nil {
		a.mu.Unlock()
		return Grant{}, d
	}
	a.mu.Unlock()

	pwOK := true
	if known && u.Password != nil {
		a.pwSlots <- struct{}{}
		pwOK = u.Password.Verify(password)
		<-a.pwSlots
	}
	key := u.Key
	if !known {
		key = a.dummy
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	now = a.now()
	cur := key.Counter(now)
	matched, offset := matchCode(key, code, cur, a.policy.Window)
	switch {
	case !known:
		return Grant{}, a.failLocked(ReasonUnknownUser, "", skey, now)
	case len(code) != key.Digits() || !allDigits(code):
		return Grant{}, a.failLocked(ReasonMalformedCode, user, skey, now)
	case !matched:
		return Grant{}, a.failLocked(ReasonBadCode, user, skey, now)
	case !pwOK:
		// The code is not consumed: it was right, the password was not.
		return Grant{}, a.failLocked(ReasonBadPassword, user, skey, now)
	}
	c := uint64(int64(cur) + int64(offset))
	if floor, seen := a.floors[user]; seen && c <= floor {
		return Grant{}, a.failLocked(ReasonReplay, user, skey, now)
	}
	a.floors[user] = c
	a.succeedLocked(user, skey)
	return Grant{User: user, Counter: c, Offset: offset}, nil
}

// Request spends one request of source's rate; it is called once per API
// request, before anything else. nil means go ahead.
func (a *Authenticator) Request(source netip.Addr) *Denied {
	if a.policy.Off {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if wait, ok := a.t.admitRequest(a.t.source(sourceKey(source), now), now); !ok {
		return &Denied{Reason: ReasonRateLimited, RetryAfter: wait}
	}
	return nil
}

// Admit runs the throttle for subject (a user name, or AdminScope) from
// source before a secret other than a code is compared. nil means go
// ahead.
func (a *Authenticator) Admit(subject string, source netip.Addr) *Denied {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.admitLocked(subject, sourceKey(source), a.now())
}

// Fail counts a failure of subject from source, after Admit.
func (a *Authenticator) Fail(r Reason, subject string, source netip.Addr) *Denied {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failLocked(r, subject, sourceKey(source), a.now())
}

// Succeed clears the failures of subject from source, after Admit.
func (a *Authenticator) Succeed(subject string, source netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.succeedLocked(subject, sourceKey(source))
}

// admitLocked applies the throttle, in order: the source's back-off, the pair's back-off, and the subject's guess
// budget for sources with recent failures. An empty subject (an unknown
// user) meets only the source's checks.
func (a *Authenticator) admitLocked(subject string, skey netip.Prefix, now time.Time) *Denied {
	if a.policy.Off {
		return nil
	}
	t := a.t
	src := t.source(skey, now)
	t.fresh(src, now)
	if now.Before(src.lockedUntil) {
		return &Denied{Reason: ReasonLockedSource, RetryAfter: src.lockedUntil.Sub(now)}
	}
	if subject == "" {
		return nil
	}
	pair, _ := t.pairs.Get(pairKey{subject, skey})
	if pair != nil {
		t.fresh(pair, now)
		if now.Before(pair.lockedUntil) {
			return &Denied{Reason: ReasonLockedUser, RetryAfter: pair.lockedUntil.Sub(now)}
		}
	}
	if t.recent(pair, now) || t.recent(src, now) {
		if b := t.budget(subject, now); b.tokens < 1 {
			return &Denied{Reason: ReasonUserBudget, RetryAfter: secondsToWait(1-b.tokens, a.policy.UserGuessesPerHour/3600)}
		}
	}
	return nil
}

// failLocked counts a failure against the pair (when subject is known)
// and the source, spends a guess of the subject's budget, and starts the
// back-offs the counts reach.
func (a *Authenticator) failLocked(r Reason, subject string, skey netip.Prefix, now time.Time) *Denied {
	d := &Denied{Reason: r}
	if a.policy.Off {
		return d
	}
	a.changes++
	t := a.t
	if subject != "" {
		if b := t.budget(subject, now); b.tokens >= 1 {
			b.tokens--
		}
		k := pairKey{subject, skey}
		pair, ok := t.pairs.Get(k)
		if !ok {
			pair = &record{}
			t.pairs.Add(k, pair)
		}
		if lo, ok := t.fail(pair, a.policy.MaxFailures, now); ok {
			lo.Scope, lo.Subject = "user", subject+" from "+subjectOf(skey)
			if subject == AdminScope {
				lo.Scope, lo.Subject = "admin", subjectOf(skey)
			}
			d.Lockouts = append(d.Lockouts, lo)
		}
	}
	if lo, ok := t.fail(t.source(skey, now), a.policy.SourceMaxFailures, now); ok {
		lo.Scope, lo.Subject = "source", subjectOf(skey)
		d.Lockouts = append(d.Lockouts, lo)
	}
	return d
}

// succeedLocked forgets the pair's failures and the source's failure
// count (its request rate stays).
func (a *Authenticator) succeedLocked(subject string, skey netip.Prefix) {
	a.changes++
	a.t.pairs.Remove(pairKey{subject, skey})
	if r, ok := a.t.sources.Peek(skey); ok {
		r.failures, r.lockouts, r.lockedUntil, r.lastFailure = 0, 0, time.Time{}, time.Time{}
	}
}

// Throttle returns the throttle's state worth saving, and a change count
// that moves whenever it does (save again only when it moved).
func (a *Authenticator) Throttle() (ThrottleState, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.t.snapshot(a.now()), a.changes
}

// Changes is the change count Throttle returns, without the snapshot.
func (a *Authenticator) Changes() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changes
}

// RestoreThrottle loads a saved throttle state. Records of users no longer
// configured are dropped; back-offs are capped at now + LockoutMax.
func (a *Authenticator) RestoreThrottle(s ThrottleState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.t.restore(s, func(subject string) bool {
		_, ok := a.users[subject]
		return ok || subject == AdminScope || (a.pwLabel != "" && subject == a.pwLabel)
	}, a.now())
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
	if d := a.admitLocked(a.pwLabel, skey, now); d != nil {
		return d
	}
	h := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(h[:], a.pwHash[:]) != 1 {
		return a.failLocked(ReasonBadPassword, a.pwLabel, skey, now)
	}
	a.succeedLocked(a.pwLabel, skey)
	return nil
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

func subjectOf(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// String describes a lockout for logs.
func (l Lockout) String() string {
	return fmt.Sprintf("%s %s locked until %s after %d failures (lockout %d)", l.Scope, l.Subject, l.Until.UTC().Format(time.RFC3339), l.Failures, l.Count)
}
