package auth

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clock is a hand-driven clock.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

var (
	src1 = netip.MustParseAddr("192.0.2.10")
	src2 = netip.MustParseAddr("192.0.2.20")
	// start is the beginning of a 30 s step, so offsets are exact.
	start = time.Unix(1_700_000_010, 0).UTC()
)

func testKey(t *testing.T) Key {
	t.Helper()
	k, err := NewKey([]byte("12345678901234567890"), 6, 30*time.Second, "SHA1")
	require.NoError(t, err)
	return k
}

func newAuth(t *testing.T, p Policy) (*Authenticator, *clock, Key) {
	t.Helper()
	c := &clock{t: start}
	k := testKey(t)
	return New([]User{{Name: "alice", Key: k}, {Name: "bob", Key: k}}, p, c.Now), c, k
}

// codeAt is the code alice's app shows offset steps from the server's now.
func codeAt(k Key, now time.Time, offset int) string {
	return k.Code(uint64(int64(k.Counter(now)) + int64(offset)))
}

func reason(t *testing.T, err error) Reason {
	t.Helper()
	var d *Denied
	require.True(t, errors.As(err, &d), "want *Denied, got %v", err)
	return d.Reason
}

// RFC 6238 appendix B, SHA1, 8 digits.
func TestRFC6238Vectors(t *testing.T) {
	k, err := NewKey([]byte("12345678901234567890"), 8, 30*time.Second, "SHA1")
	require.NoError(t, err)
	for _, v := range []struct {
		unix int64
		code string
	}{
		{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"},
		{1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
	} {
		assert.Equal(t, v.code, k.Code(k.Counter(time.Unix(v.unix, 0))), "T=%d", v.unix)
	}
	k256, err := NewKey([]byte("12345678901234567890123456789012"), 8, 30*time.Second, "sha-256")
	require.NoError(t, err)
	assert.Equal(t, "46119246", k256.Code(k256.Counter(time.Unix(59, 0))))
}

func TestWindow(t *testing.T) {
	cases := []struct {
		window, offset int
		ok             bool
	}{
		{0, 0, true}, {0, -1, false}, {0, 1, false},
		{1, -1, true}, {1, 0, true}, {1, 1, true}, {1, -2, false}, {1, 2, false},
		{2, -2, true}, {2, 3, false},
	}
	for _, c := range cases {
		a, clk, k := newAuth(t, Policy{Window: c.window})
		g, err := a.Verify("alice", codeAt(k, clk.Now(), c.offset), "", src1)
		if c.ok {
			require.NoError(t, err, "window %d offset %d", c.window, c.offset)
			assert.Equal(t, c.offset, g.Offset)
			assert.Equal(t, uint64(int64(k.Counter(clk.Now()))+int64(c.offset)), g.Counter)
		} else {
			assert.Equal(t, ReasonBadCode, reason(t, err), "window %d offset %d", c.window, c.offset)
		}
	}
}

func TestDefaultWindowIsOneStep(t *testing.T) {
	assert.Equal(t, 1, DefaultPolicy.Window)
	assert.Equal(t, 0, New(nil, Policy{Window: -3}, nil).Policy().Window)
}

func TestReplayRefused(t *testing.T) {
	a, clk, k := newAuth(t, Policy{Window: 1})
	code := codeAt(k, clk.Now(), 0)
	_, err := a.Verify("alice", code, "", src1)
	require.NoError(t, err)

	// The same code again, from anywhere, in the same step or the next.
	_, err = a.Verify("alice", code, "", src2)
	assert.Equal(t, ReasonReplay, reason(t, err))
	clk.Advance(30 * time.Second)
	_, err = a.Verify("alice", code, "", src1)
	assert.Equal(t, ReasonReplay, reason(t, err), "still in the window one step later")

	// An older code in the window is refused too: counters only go up.
	clk.t = start
	_, err = a.Verify("alice", codeAt(k, clk.Now(), -1), "", src1)
	assert.Equal(t, ReasonReplay, reason(t, err))

	// Another user with the same key is independent.
	_, err = a.Verify("bob", code, "", src1)
	assert.NoError(t, err)

	// The next step's code is fresh.
	clk.Advance(30 * time.Second)
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", src1)
	assert.NoError(t, err)
}

func TestReplayFloorSurvivesRestart(t *testing.T) {
	a, clk, k := newAuth(t, Policy{})
	code := codeAt(k, clk.Now(), 0)
	_, err := a.Verify("alice", code, "", src1)
	require.NoError(t, err)
	floors := a.Floors()
	assert.Equal(t, map[string]uint64{"alice": k.Counter(clk.Now())}, floors)

	b := New([]User{{Name: "alice", Key: k}}, Policy{}, clk.Now)
	b.Restore(floors)
	_, err = b.Verify("alice", code, "", src1)
	assert.Equal(t, ReasonReplay, reason(t, err))

	// A floor never moves back.
	b.Restore(map[string]uint64{"alice": 1})
	assert.Equal(t, floors, b.Floors())
}

// addr4 is the n-th address of 10.0.0.0/8, one per simulated source.
func addr4(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

// wrongAt is a code that is wrong for every step in the window at now.
func wrongAt(k Key, now time.Time, window int, seed int) string {
	for i := seed; ; i++ {
		c := fmt.Sprintf("%0*d", k.Digits(), i%1_000_000)
		ok := true
		for off := -window; off <= window; off++ {
			if codeAt(k, now, off) == c {
				ok = false
			}
		}
		if ok {
			return c
		}
	}
}

func TestPairBackoffDoublesAndLeavesOtherSourcesAlone(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 3, LockoutBase: 30 * time.Second, LockoutMax: 100 * time.Second, UserBurst: 1000})
	for i := range 2 {
		_, err := a.Verify("alice", "000000", "", src2)
		var d *Denied
		require.True(t, errors.As(err, &d))
		assert.Empty(t, d.Lockouts, "failure %d", i+1)
	}
	// The 3rd failure backs the pair off 30 s, then every further failure
	// doubles it, up to the cap.
	for i, want := range []time.Duration{30 * time.Second, 60 * time.Second, 100 * time.Second, 100 * time.Second} {
		_, err := a.Verify("alice", "000000", "", src2)
		var d *Denied
		require.True(t, errors.As(err, &d))
		require.Len(t, d.Lockouts, 1, "back-off %d", i+1)
		lo := d.Lockouts[0]
		assert.Equal(t, "user", lo.Scope)
		assert.Equal(t, "alice from "+src2.String(), lo.Subject)
		assert.Equal(t, i+1, lo.Count)
		assert.Equal(t, clk.Now().Add(want), lo.Until)

		// While backed off, even the right code from there is refused, unseen.
		_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", src2)
		require.True(t, errors.As(err, &d))
		assert.Equal(t, ReasonLockedUser, d.Reason)
		assert.True(t, d.Locked())
		assert.Equal(t, want, d.RetryAfter)
		assert.NotContains(t, a.Floors(), "alice", "a refused attempt must not consume the code")
		clk.Advance(want)
	}
	// The real user, from their own address, is not held back at all.
	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), "", src1)
	require.NoError(t, err)
	// A success from the attacker's address (the user there after all)
	// resets that pair.
	clk.Advance(30 * time.Second)
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", src2)
	require.NoError(t, err)
	_, err = a.Verify("alice", "000000", "", src2)
	var d *Denied
	require.True(t, errors.As(err, &d))
	assert.Empty(t, d.Lockouts, "back-off restarts after a success")
}

// TestWrongCodesElsewhereDoNotLockOutTheUser is the lab case of the issue:
// 12 wrong codes from another client, then the user's fresh code from
// their own client is accepted.
func TestWrongCodesElsewhereDoNotLockOutTheUser(t *testing.T) {
	for _, p := range []Policy{{}, {MaxFailures: 5, LockoutBase: 30 * time.Second, LockoutMax: 15 * time.Minute}} {
		a, clk, k := newAuth(t, p)
		for i := range 12 {
			_, err := a.Verify("alice", wrongAt(k, clk.Now(), 1, i), "", src2)
			require.Error(t, err)
			clk.Advance(time.Second)
		}
		_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), "", src2)
		assert.True(t, errors.As(err, new(*Denied)), "the attacker's address is held back")
		_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", src1)
		assert.NoError(t, err, "the user's fresh code from their own address")
	}
}

func TestSourceBackoffAcrossUsers(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 2, SourceMaxFailures: 4})
	// Guessing user names from one source backs the source off.
	var d *Denied
	for _, u := range []string{"root", "admin", "carol", "dave"} {
		_, err := a.Verify(u, "123456", "", src1)
		require.True(t, errors.As(err, &d))
		assert.Equal(t, ReasonUnknownUser, d.Reason)
	}
	require.Len(t, d.Lockouts, 1)
	assert.Equal(t, "source", d.Lockouts[0].Scope)
	assert.Equal(t, src1.String(), d.Lockouts[0].Subject)
	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), "", src1)
	assert.Equal(t, ReasonLockedSource, reason(t, err))
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", src2)
	assert.NoError(t, err, "another source is fine")
	clk.Advance(31 * time.Second)
	clk.Advance(30 * time.Second)
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", src1)
	assert.NoError(t, err, "the back-off ends")
}

func TestIPv6SourcesCountedByPrefix(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 2, SourceMaxFailures: 2})
	for _, s := range []string{"2001:db8:1:2::1", "2001:db8:1:2::ffff"} {
		_, err := a.Verify("nobody", "123456", "", netip.MustParseAddr(s))
		require.Error(t, err)
	}
	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), "", netip.MustParseAddr("2001:db8:1:2:abcd::9"))
	assert.Equal(t, ReasonLockedSource, reason(t, err), "same /64")
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", netip.MustParseAddr("2001:db8:1:3::1"))
	assert.NoError(t, err, "another /64")
	assert.Equal(t, sourceKey(netip.MustParseAddr("::ffff:192.0.2.10")), sourceKey(src1), "IPv4-mapped is IPv4")
}

func TestUserBudgetSparesCleanSources(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 100, SourceMaxFailures: 100, UserBurst: 3, UserGuessesPerHour: 6})
	// Three guesses from one dirty source spend the budget...
	for i := range 3 {
		_, err := a.Verify("alice", wrongAt(k, clk.Now(), 1, i), "", src2)
		assert.Equal(t, ReasonBadCode, reason(t, err))
	}
	// ...so it is refused unseen, with the time until the next guess...
	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), "", src2)
	var d *Denied
	require.True(t, errors.As(err, &d))
	assert.Equal(t, ReasonUserBudget, d.Reason)
	assert.Equal(t, 10*time.Minute, d.RetryAfter)
	// ...while a clean source is always heard: its wrong code is checked
	// (and makes it dirty), its right code accepted.
	_, err = a.Verify("alice", "999999", "", addr4(1))
	assert.Equal(t, ReasonBadCode, reason(t, err))
	_, err = a.Verify("alice", wrongAt(k, clk.Now(), 1, 7), "", addr4(1))
	assert.Equal(t, ReasonUserBudget, reason(t, err))
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", src1)
	require.NoError(t, err)
	// bob's budget is his own.
	_, err = a.Verify("bob", wrongAt(k, clk.Now(), 1, 3), "", src2)
	assert.Equal(t, ReasonBadCode, reason(t, err))
	// The budget refills.
	clk.Advance(10 * time.Minute)
	_, err = a.Verify("alice", wrongAt(k, clk.Now(), 1, 9), "", src2)
	assert.Equal(t, ReasonBadCode, reason(t, err))
}

// TestWeekOfGuessingFrom10000Sources simulates, on a simulated clock, an
// attacker guessing alice's code at 1 request/s for a week, cycling
// through 10,000 IPv4 sources, while alice opens the gate every 30 minutes
// from an address of her own. The attacker's guesses that reach the code
// check are bounded by the sources it holds plus the user budget, so its
// chance of success is small; alice is never refused.
func TestWeekOfGuessingFrom10000Sources(t *testing.T) {
	const sources = 10_000
	p := Policy{Window: 1}
	a, clk, k := newAuth(t, p)
	pol := a.Policy()
	week := 7 * 24 * time.Hour
	end := clk.Now().Add(week)
	checked, throttled, userOK, userTries := 0, 0, 0, 0
	nextUser := clk.Now().Add(17 * time.Minute)
	home := netip.MustParseAddr("198.51.100.7")
	wrong, wrongStep := "", uint64(0)
	for i := 0; clk.Now().Before(end); i++ {
		if c := k.Counter(clk.Now()); wrong == "" || c != wrongStep {
			// One known-wrong guess per time step keeps the simulation fast.
			wrong, wrongStep = wrongAt(k, clk.Now(), 1, i*7919), c
		}
		_, err := a.Verify("alice", wrong, "", addr4(i%sources))
		var d *Denied
		require.True(t, errors.As(err, &d))
		if d.Locked() {
			throttled++
		} else {
			checked++
		}
		if !clk.Now().Before(nextUser) {
			userTries++
			if _, err := a.Verify("alice", codeAt(k, clk.Now(), 0), "", home); err == nil {
				userOK++
			}
			nextUser = nextUser.Add(30 * time.Minute)
		}
		clk.Advance(time.Second)
	}
	budget := pol.UserBurst + int(pol.UserGuessesPerHour*week.Hours())
	t.Logf("a week at 1/s from %d sources: %d guesses checked, %d throttled; alice %d/%d", sources, checked, throttled, userOK, userTries)
	assert.Equal(t, userTries, userOK, "alice is never refused")
	assert.LessOrEqual(t, checked, sources+budget, "checked guesses: at most one per clean source plus the budget")
	// With 6 digits and a window of 1 (3 codes accepted), each checked guess
	// wins with probability 3e-6.
	pWin := 1 - math.Pow(1-3e-6, float64(checked))
	t.Logf("chance the attacker opened the gate this week: %.2f%%", 100*pWin)
	assert.Less(t, pWin, 0.05)
}

func TestSourceRequestRate(t *testing.T) {
	a, clk, _ := newAuth(t, Policy{SourceRate: 2, SourceBurst: 4})
	for range 4 {
		assert.Nil(t, a.Request(src1))
	}
	d := a.Request(src1)
	require.NotNil(t, d)
	assert.Equal(t, ReasonRateLimited, d.Reason)
	assert.Equal(t, 500*time.Millisecond, d.RetryAfter)
	assert.Nil(t, a.Request(src2), "another source has its own rate")
	clk.Advance(500 * time.Millisecond)
	assert.Nil(t, a.Request(src1))
	// A clock stepped back refills nothing and breaks nothing.
	clk.Advance(-time.Hour)
	assert.NotNil(t, a.Request(src1))
}

func TestThrottleOff(t *testing.T) {
	a, clk, k := newAuth(t, Policy{Off: true, MaxFailures: 1})
	for range 50 {
		_, err := a.Verify("alice", "000000", "", src2)
		assert.Equal(t, ReasonBadCode, reason(t, err))
		assert.Nil(t, a.Request(src2))
	}
	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), "", src2)
	assert.NoError(t, err)
}

func TestAdminScope(t *testing.T) {
	a, clk, _ := newAuth(t, Policy{MaxFailures: 2})
	require.Nil(t, a.Admit(AdminScope, src2))
	assert.Empty(t, a.Fail(ReasonBadToken, AdminScope, src2).Lockouts)
	d := a.Fail(ReasonBadToken, AdminScope, src2)
	require.Len(t, d.Lockouts, 1)
	assert.Equal(t, "admin", d.Lockouts[0].Scope)
	den := a.Admit(AdminScope, src2)
	require.NotNil(t, den)
	assert.Equal(t, ReasonLockedUser, den.Reason)
	assert.Nil(t, a.Admit(AdminScope, src1), "the admin from elsewhere")
	clk.Advance(30 * time.Second)
	assert.Nil(t, a.Admit(AdminScope, src2))
}

func TestThrottleSurvivesRestart(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 2, UserBurst: 2})
	for i := range 3 {
		_, _ = a.Verify("alice", wrongAt(k, clk.Now(), 1, i), "", src2)
	}
	_, _ = a.Verify("ghost", "123456", "", addr4(77))
	st, n := a.Throttle()
	assert.NotZero(t, n)
	b, err := json.Marshal(st)
	require.NoError(t, err)
	assert.NotContains(t, string(b), codeAt(k, clk.Now(), 0))

	var back ThrottleState
	require.NoError(t, json.Unmarshal(b, &back))
	// A restart with bob gone from the configuration.
	r := New([]User{{Name: "alice", Key: k}}, Policy{MaxFailures: 2, UserBurst: 2}, clk.Now)
	r.RestoreThrottle(back)
	_, err = r.Verify("alice", codeAt(k, clk.Now(), 0), "", src2)
	assert.Equal(t, ReasonLockedUser, reason(t, err), "the back-off survives the restart")
	_, err = r.Verify("alice", codeAt(k, clk.Now(), 0), "", src1)
	assert.NoError(t, err, "and the user is still welcome from elsewhere")
}

func TestThrottleClockSteps(t *testing.T) {
	pol := Policy{MaxFailures: 1, LockoutBase: time.Minute, LockoutMax: 10 * time.Minute}
	a, clk, k := newAuth(t, pol)
	_, _ = a.Verify("alice", wrongAt(k, clk.Now(), 1, 1), "", src2)
	st, _ := a.Throttle()
	// Restored on a machine whose clock is two days behind: the back-off
	// is capped at LockoutMax from its now, not two days.
	behind := &clock{t: clk.Now().Add(-48 * time.Hour)}
	r := New([]User{{Name: "alice", Key: k}}, pol, behind.Now)
	r.RestoreThrottle(st)
	_, err := r.Verify("alice", codeAt(k, behind.Now(), 0), "", src2)
	var d *Denied
	require.True(t, errors.As(err, &d))
	assert.Equal(t, ReasonLockedUser, d.Reason)
	assert.LessOrEqual(t, d.RetryAfter, 10*time.Minute)
	behind.Advance(10 * time.Minute)
	_, err = r.Verify("alice", codeAt(k, behind.Now(), 0), "", src2)
	assert.NoError(t, err, "over after LockoutMax")

	// A live clock stepping back by a day: the same cap holds.
	_, _ = a.Verify("alice", wrongAt(k, clk.Now(), 1, 2), "", src2)
	clk.Advance(-24 * time.Hour)
	_, err = a.Verify("alice", "000000", "", src2)
	require.True(t, errors.As(err, &d))
	assert.LessOrEqual(t, d.RetryAfter, 10*time.Minute)
	// Forwards by a week: everything is forgotten.
	clk.Advance(24*time.Hour + 8*24*time.Hour)
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), "", src2)
	assert.NoError(t, err)
}

func TestTrackingIsBounded(t *testing.T) {
	a, clk, _ := newAuth(t, Policy{MaxFailures: 1, MaxTracked: 100})
	for i := range 10_000 {
		clk.Advance(time.Millisecond)
		_, _ = a.Verify("alice", "123456", "", addr4(i))
	}
	assert.LessOrEqual(t, a.t.sources.Len(), 100)
	assert.LessOrEqual(t, a.t.pairs.Len(), 100)
	_, err := a.Verify("alice", "123456", "", addr4(9_999))
	assert.Equal(t, ReasonLockedUser, reason(t, err), "the latest are kept")
}

func TestMalformedAndWrongCodes(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 100, UserBurst: 100})
	good := codeAt(k, clk.Now(), 0)
	for _, c := range []struct {
		code string
		want Reason
	}{
		{"", ReasonMalformedCode},
		{"12345", ReasonMalformedCode},
		{good + "0", ReasonMalformedCode},
		{"12a456", ReasonMalformedCode},
		{" " + good[1:], ReasonMalformedCode},
		{codeAt(k, clk.Now(), 5), ReasonBadCode},
	} {
		_, err := a.Verify("alice", c.code, "", src1)
		assert.Equal(t, c.want, reason(t, err), "code %q", c.code)
	}
	_, err := a.Verify("mallory", good, "", src1)
	assert.Equal(t, ReasonUnknownUser, reason(t, err))
	_, err = a.Verify("alice", good, "", src1)
	assert.NoError(t, err, "failures did not consume the code")
}

func TestFixedPassword(t *testing.T) {
	a, _, _ := newAuth(t, Policy{MaxFailures: 2})
	assert.Equal(t, ReasonBadPassword, reason(t, a.VerifyPassword("anything", src1)), "mode off")
	sum := sha256.Sum256([]byte("randompassword123"))
	a.SetPasswordHash(sum[:], "(fixed)")
	require.NoError(t, a.VerifyPassword("randompassword123", src1))
	assert.Equal(t, ReasonBadPassword, reason(t, a.VerifyPassword("randompassword124", src2)))
	err := a.VerifyPassword("wrong", src2)
	assert.Equal(t, ReasonBadPassword, reason(t, err))
	var d *Denied
	require.True(t, errors.As(err, &d))
	require.Len(t, d.Lockouts, 1, "the password's own back-off from that source")
	assert.Equal(t, "(fixed) from "+src2.String(), d.Lockouts[0].Subject)
	assert.Equal(t, ReasonLockedUser, reason(t, a.VerifyPassword("randompassword123", src2)))
	assert.NoError(t, a.VerifyPassword("randompassword123", src1), "not from elsewhere")
}

func TestSecondFactorPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	require.NoError(t, err)
	assert.Regexp(t, `^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`, h)
	ph, err := ParsePasswordHash(h)
	require.NoError(t, err)
	bc, err := bcrypt.GenerateFromPassword([]byte("correct horse battery"), 10)
	require.NoError(t, err)
	pb, err := ParsePasswordHash(string(bc))
	require.NoError(t, err)
	for name, p := range map[string]*PasswordHash{"argon2id": ph, "bcrypt": pb} {
		t.Run(name, func(t *testing.T) {
			c := &clock{t: start}
			k := testKey(t)
			a := New([]User{{Name: "alice", Key: k, Password: p}}, Policy{UserBurst: 100, MaxFailures: 100}, c.Now)
			code := codeAt(k, c.Now(), 0)
			_, err := a.Verify("alice", code, "", src1)
			assert.Equal(t, ReasonBadPassword, reason(t, err), "no password")
			_, err = a.Verify("alice", code, "correct horse batterY", src1)
			assert.Equal(t, ReasonBadPassword, reason(t, err))
			_, err = a.Verify("alice", wrongAt(k, c.Now(), 1, 1), "correct horse battery", src1)
			assert.Equal(t, ReasonBadCode, reason(t, err), "the right password with a wrong code")
			_, err = a.Verify("alice", code, "correct horse battery", src1)
			assert.NoError(t, err, "both factors; the code was not consumed by the failures")
		})
	}
	for _, bad := range []string{"", "plain", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$", "$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43),
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43), "$2b$04$" + strings.Repeat("a", 53)} {
		_, err := ParsePasswordHash(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestNewKey(t *testing.T) {
	secret := []byte("12345678901234567890")
	for _, c := range []struct {
		name    string
		secret  []byte
		digits  int
		period  time.Duration
		alg     string
		wantErr string
	}{
		{"defaults", secret, 0, 0, "", ""},
		{"8 digits SHA512 60s", secret, 8, time.Minute, "SHA512", ""},
		{"short", secret[:15], 6, 0, "", "secret: must be at least 16 bytes"},
		{"digits", secret, 9, 0, "", "digits: must be 6, 7 or 8"},
		{"period", secret, 6, 1500 * time.Millisecond, "", "period: must be a whole number of seconds"},
		{"alg", secret, 6, 0, "MD5", `algorithm: must be SHA1, SHA256 or SHA512, got "MD5"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewKey(c.secret, c.digits, c.period, c.alg)
			if c.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, c.wantErr)
			}
		})
	}
}

func TestParseSecrets(t *testing.T) {
	b, err := ParseBase32Secret("gezd gnbv gy3t qojq gezd gnbv gy3t qojq")
	require.NoError(t, err)
	assert.Equal(t, []byte("12345678901234567890"), b)
	b, err = ParseBase32Secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====")
	require.NoError(t, err)
	assert.Equal(t, []byte("12345678901234567890"), b)
	_, err = ParseBase32Secret("GEZDGNBVGY3TQOJ1SECRETISH")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "SECRETISH", "the secret is never quoted")

	b, err = ParseHexSecret("3132333435363738393031323334353637383930")
	require.NoError(t, err)
	assert.Equal(t, []byte("12345678901234567890"), b)
	_, err = ParseHexSecret("31323z")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "31323z")
}
