package auth

import (
	"net/netip"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// The throttle slows the attacker, not the user:
//
//   - failures are counted per (subject, source prefix), a subject being a
//     user name or the admin scope, and a source prefix an IPv4 address or
//     an IPv6 /64; MaxFailures in a row start a back-off that doubles with
//     every further failure, up to LockoutMax. Guesses from elsewhere never
//     lock the user out from their own address.
//   - failures are also counted per source prefix across subjects
//     (SourceMaxFailures), so one source cannot spray every user name.
//   - each subject has a guess budget (a token bucket, UserBurst guesses,
//     refilled at UserGuessesPerHour). Only sources with recent failures
//     (within ResetAfter) are held to it: a source with no recent failure
//     always has its code checked, so a correct code from a clean source
//     is never refused. Guesses against one user are thus bounded by the
//     budget plus the number of distinct clean sources an attacker holds.
//   - every source has a request rate limit (SourceRate, SourceBurst),
//     whatever it asks.
//
// Records live in least-recently-used maps bounded by MaxTracked: every
// operation is O(1), with no scan or sort however many sources were seen.

// record is the state of one (subject, source) pair or one source.
type record struct {
	failures    int // since the last success or reset
	lockouts    int
	lockedUntil time.Time
	lastFailure time.Time
	// The request rate bucket (sources only).
	tokens float64
	tokAt  time.Time
}

// bucket is a subject's guess budget.
type bucket struct {
	tokens float64
	at     time.Time
}

type pairKey struct {
	subject string
	src     netip.Prefix
}

// tracker holds the records. It is not safe for concurrent use.
type tracker struct {
	p       Policy
	pairs   *simplelru.LRU[pairKey, *record]
	sources *simplelru.LRU[netip.Prefix, *record]
	budgets map[string]*bucket
}

func newTracker(p Policy) *tracker {
	pairs, _ := simplelru.NewLRU[pairKey, *record](p.MaxTracked, nil)
	sources, _ := simplelru.NewLRU[netip.Prefix, *record](p.MaxTracked, nil)
	return &tracker{p: p, pairs: pairs, sources: sources, budgets: map[string]*bucket{}}
}

// source returns the record of src, created when missing.
func (t *tracker) source(src netip.Prefix, now time.Time) *record {
	r, ok := t.sources.Get(src)
	if !ok {
		r = &record{tokens: float64(t.p.SourceBurst), tokAt: now}
		t.sources.Add(src, r)
	}
	return r
}

// admitRequest spends one request token of the source, and says how long
// to wait when there is none.
func (t *tracker) admitRequest(r *record, now time.Time) (time.Duration, bool) {
	if t.p.SourceRate <= 0 {
		return 0, true
	}
	refill(&r.tokens, &r.tokAt, now, t.p.SourceRate, float64(t.p.SourceBurst))
	if r.tokens >= 1 {
		r.tokens--
		return 0, true
	}
	return secondsToWait(1-r.tokens, t.p.SourceRate), false
}

// refill adds rate tokens per second since at, up to burst. A clock that
// went backwards adds nothing and moves at back, so nothing is lost twice.
func refill(tokens *float64, at *time.Time, now time.Time, rate, burst float64) {
	if now.After(*at) {
		*tokens = min(burst, *tokens+now.Sub(*at).Seconds()*rate)
	}
	*at = now
}

func secondsToWait(missing, rate float64) time.Duration {
	return time.Duration(missing / rate * float64(time.Second)).Round(time.Millisecond)
}

// fresh forgets a record's past when it has been quiet for ResetAfter.
func (t *tracker) fresh(r *record, now time.Time) {
	if !r.lastFailure.IsZero() && now.Sub(r.lastFailure) >= t.p.ResetAfter && !now.Before(r.lockedUntil) {
		r.failures, r.lockouts, r.lockedUntil, r.lastFailure = 0, 0, time.Time{}, time.Time{}
	}
	// A clock that stepped back must not stretch a lockout past its cap.
	if limit := now.Add(t.p.LockoutMax); r.lockedUntil.After(limit) {
		r.lockedUntil = limit
	}
}

// recent reports whether r failed within ResetAfter.
func (t *tracker) recent(r *record, now time.Time) bool {
	return r != nil && !r.lastFailure.IsZero() && now.Sub(r.lastFailure) < t.p.ResetAfter
}

// fail counts a failure on r and returns the lockout it starts, if any:
// the first after limit failures in a row, then one at every further
// failure, each twice as long as the one before.
func (t *tracker) fail(r *record, limit int, now time.Time) (Lockout, bool) {
	t.fresh(r, now)
	r.failures++
	r.lastFailure = now
	if r.failures < limit {
		return Lockout{}, false
	}
	r.lockouts++
	d := t.p.LockoutBase
	for i := 1; i < r.lockouts && d < t.p.LockoutMax; i++ {
		d *= 2
	}
	d = min(d, t.p.LockoutMax)
	r.lockedUntil = now.Add(d)
	return Lockout{Until: r.lockedUntil, Failures: r.failures, Count: r.lockouts}, true
}

// budget returns the guess budget of subject, refilled to now.
func (t *tracker) budget(subject string, now time.Time) *bucket {
	b := t.budgets[subject]
	if b == nil {
		b = &bucket{tokens: float64(t.p.UserBurst), at: now}
		t.budgets[subject] = b
	}
	refill(&b.tokens, &b.at, now, t.p.UserGuessesPerHour/3600, float64(t.p.UserBurst))
	return b
}

// ThrottleState is the throttle's persistent form: what portgate saves so a
// restart does not hand an attacker a clean slate.
type ThrottleState struct {
	Pairs   []PairState            `json:"pairs,omitempty"`
	Sources []PairState            `json:"sources,omitempty"`
	Budgets map[string]BudgetState `json:"budgets,omitempty"`
}

// PairState is one saved record; Subject is empty for a source record.
type PairState struct {
	Subject     string       `json:"subject,omitempty"`
	Source      netip.Prefix `json:"source"`
	Failures    int          `json:"failures,omitempty"`
	Lockouts    int          `json:"lockouts,omitempty"`
	LockedUntil time.Time    `json:"locked_until,omitzero"`
	LastFailure time.Time    `json:"last_failure,omitzero"`
}

// BudgetState is a subject's guess budget at a moment.
type BudgetState struct {
	Tokens float64   `json:"tokens"`
	At     time.Time `json:"at"`
}

// snapshot returns the records that still matter at now (a failure within
// ResetAfter, or a lockout in force), oldest first, and the budgets not
// yet full.
func (t *tracker) snapshot(now time.Time) ThrottleState {
	var s ThrottleState
	keep := func(r *record) bool { return t.recent(r, now) || now.Before(r.lockedUntil) }
	for _, k := range t.pairs.Keys() {
		if r, ok := t.pairs.Peek(k); ok && keep(r) {
			s.Pairs = append(s.Pairs, PairState{k.subject, k.src, r.failures, r.lockouts, r.lockedUntil, r.lastFailure})
		}
	}
	for _, k := range t.sources.Keys() {
		if r, ok := t.sources.Peek(k); ok && keep(r) {
			s.Sources = append(s.Sources, PairState{"", k, r.failures, r.lockouts, r.lockedUntil, r.lastFailure})
		}
	}
	for name, b := range t.budgets {
		refill(&b.tokens, &b.at, now, t.p.UserGuessesPerHour/3600, float64(t.p.UserBurst))
		if b.tokens < float64(t.p.UserBurst) {
			if s.Budgets == nil {
				s.Budgets = map[string]BudgetState{}
			}
			s.Budgets[name] = BudgetState{b.tokens, b.at}
		}
	}
	return s
}

// restore loads saved records, keeping what subjects keeps (configured
// users and scopes). Lockouts are capped at now + LockoutMax and failure
// times in the future are brought back to now: a clock that was ahead when
// they were saved must not hold anyone out longer than the policy says.
func (t *tracker) restore(s ThrottleState, keepSubject func(string) bool, now time.Time) {
	load := func(p PairState) *record {
		r := &record{failures: p.Failures, lockouts: p.Lockouts, lockedUntil: p.LockedUntil, lastFailure: p.LastFailure,
			tokens: float64(t.p.SourceBurst), tokAt: now}
		if r.lastFailure.After(now) {
			r.lastFailure = now
		}
		t.fresh(r, now)
		return r
	}
	for _, p := range s.Pairs {
		if p.Source.IsValid() && keepSubject(p.Subject) {
			t.pairs.Add(pairKey{p.Subject, p.Source}, load(p))
		}
	}
	for _, p := range s.Sources {
		if p.Source.IsValid() {
			t.sources.Add(p.Source, load(p))
		}
	}
	for name, b := range s.Budgets {
		if !keepSubject(name) {
			continue
		}
		at := b.At
		if at.After(now) {
			at = now
		}
		tokens := max(0, min(b.Tokens, float64(t.p.UserBurst)))
		t.budgets[name] = &bucket{tokens: tokens, at: at}
	}
}
