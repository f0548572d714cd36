package auth

import (
	"crypto/sha256"
	"errors"
	"net/netip"
	"testing"
	"time"

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
		g, err := a.Verify("alice", codeAt(k, clk.Now(), c.offset), src1)
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
	_, err := a.Verify("alice", code, src1)
	require.NoError(t, err)

	// The same code again, from anywhere, in the same step or the next.
	_, err = a.Verify("alice", code, src2)
	assert.Equal(t, ReasonReplay, reason(t, err))
	clk.Advance(30 * time.Second)
	_, err = a.Verify("alice", code, src1)
	assert.Equal(t, ReasonReplay, reason(t, err), "still in the window one step later")

	// An older code in the window is refused too: counters only go up.
	clk.t = start
	_, err = a.Verify("alice", codeAt(k, clk.Now(), -1), src1)
	assert.Equal(t, ReasonReplay, reason(t, err))

	// Another user with the same key is independent.
	_, err = a.Verify("bob", code, src1)
	assert.NoError(t, err)

	// The next step's code is fresh.
	clk.Advance(30 * time.Second)
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), src1)
	assert.NoError(t, err)
}

func TestReplayFloorSurvivesRestart(t *testing.T) {
	a, clk, k := newAuth(t, Policy{})
	code := codeAt(k, clk.Now(), 0)
	_, err := a.Verify("alice", code, src1)
	require.NoError(t, err)
	floors := a.Floors()
	assert.Equal(t, map[string]uint64{"alice": k.Counter(clk.Now())}, floors)

	b := New([]User{{Name: "alice", Key: k}}, Policy{}, clk.Now)
	b.Restore(floors)
	_, err = b.Verify("alice", code, src1)
	assert.Equal(t, ReasonReplay, reason(t, err))

	// A floor never moves back.
	b.Restore(map[string]uint64{"alice": 1})
	assert.Equal(t, floors, b.Floors())
}

func TestUserLockoutWithBackoff(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 3, LockoutBase: 30 * time.Second, LockoutMax: 100 * time.Second})
	next := byte(0)
	fail3 := func() *Denied {
		// From three fresh sources: only the user's count matters.
		var last *Denied
		for i := range 3 {
			next++
			_, err := a.Verify("alice", "000000", netip.AddrFrom4([4]byte{198, 51, 100, next}))
			require.True(t, errors.As(err, &last))
			if i < 2 {
				assert.Empty(t, last.Lockouts)
			}
		}
		return last
	}
	for i, want := range []time.Duration{30 * time.Second, 60 * time.Second, 100 * time.Second, 100 * time.Second} {
		d := fail3()
		require.Len(t, d.Lockouts, 1, "lockout %d", i+1)
		lo := d.Lockouts[0]
		assert.Equal(t, "user", lo.Scope)
		assert.Equal(t, "alice", lo.Subject)
		assert.Equal(t, i+1, lo.Count)
		assert.Equal(t, clk.Now().Add(want), lo.Until, "lockout %d", i+1)

		// While locked, even the right code is refused, unseen.
		_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), src1)
		var den *Denied
		require.True(t, errors.As(err, &den))
		assert.Equal(t, ReasonLockedUser, den.Reason)
		assert.True(t, den.Locked())
		assert.Equal(t, want, den.RetryAfter)
		assert.NotContains(t, a.Floors(), "alice", "a locked-out attempt must not consume the code")
		// bob is not affected.
		_, err = a.Verify("bob", codeAt(k, clk.Now(), 0), src2)
		require.NoError(t, err)
		clk.Advance(want)
	}
	// After the lockout, success resets the count.
	clk.Advance(30 * time.Second)
	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), src1)
	require.NoError(t, err)
	d := fail3()
	require.Len(t, d.Lockouts, 1)
	assert.Equal(t, 1, d.Lockouts[0].Count, "backoff restarts after a success")
}

func TestSourceLockout(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 4})
	// Guessing user names from one source locks the source.
	var d *Denied
	for _, u := range []string{"root", "admin", "carol", "dave"} {
		_, err := a.Verify(u, "123456", src1)
		require.True(t, errors.As(err, &d))
		assert.Equal(t, ReasonUnknownUser, d.Reason)
	}
	require.Len(t, d.Lockouts, 1)
	assert.Equal(t, "source", d.Lockouts[0].Scope)
	assert.Equal(t, src1.String(), d.Lockouts[0].Subject)

	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), src1)
	assert.Equal(t, ReasonLockedSource, reason(t, err))
	// Another source is fine.
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), src2)
	assert.NoError(t, err)
	// Unknown users never lock a real user out.
	clk.Advance(31 * time.Second)
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), src1)
	assert.NoError(t, err)
}

func TestIPv6SourcesLockedByPrefix(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 2})
	for _, s := range []string{"2001:db8:1:2::1", "2001:db8:1:2::ffff"} {
		_, err := a.Verify("nobody", "123456", netip.MustParseAddr(s))
		require.Error(t, err)
	}
	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), netip.MustParseAddr("2001:db8:1:2:abcd::9"))
	assert.Equal(t, ReasonLockedSource, reason(t, err), "same /64")
	_, err = a.Verify("alice", codeAt(k, clk.Now(), 0), netip.MustParseAddr("2001:db8:1:3::1"))
	assert.NoError(t, err, "another /64")
	// IPv4-mapped addresses count as IPv4.
	assert.Equal(t, sourceKey(netip.MustParseAddr("::ffff:192.0.2.10")), sourceKey(src1))
}

func TestFailuresForgottenAfterResetAfter(t *testing.T) {
	a, clk, _ := newAuth(t, Policy{MaxFailures: 3, ResetAfter: 10 * time.Minute})
	for range 2 {
		_, err := a.Verify("alice", "000000", src1)
		require.Error(t, err)
	}
	clk.Advance(10 * time.Minute)
	_, err := a.Verify("alice", "000000", src1)
	var d *Denied
	require.True(t, errors.As(err, &d))
	assert.Empty(t, d.Lockouts, "old failures were forgotten")
}

func TestSuccessResetsFailures(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 3})
	for range 2 {
		_, err := a.Verify("alice", "000000", src1)
		require.Error(t, err)
	}
	_, err := a.Verify("alice", codeAt(k, clk.Now(), 0), src1)
	require.NoError(t, err)
	for range 2 {
		_, err := a.Verify("alice", "000000", src1)
		var d *Denied
		require.True(t, errors.As(err, &d))
		assert.Empty(t, d.Lockouts)
	}
}

func TestMalformedAndWrongCodes(t *testing.T) {
	a, clk, k := newAuth(t, Policy{MaxFailures: 100})
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
		_, err := a.Verify("alice", c.code, src1)
		assert.Equal(t, c.want, reason(t, err), "code %q", c.code)
	}
	_, err := a.Verify("mallory", good, src1)
	assert.Equal(t, ReasonUnknownUser, reason(t, err))
	_, err = a.Verify("alice", good, src1)
	assert.NoError(t, err, "failures did not consume the code")
}

func TestFixedPassword(t *testing.T) {
	a, _, _ := newAuth(t, Policy{MaxFailures: 2})
	assert.Equal(t, ReasonBadPassword, reason(t, a.VerifyPassword("anything", src1)), "mode off")
	sum := sha256.Sum256([]byte("randompassword123"))
	a.SetPasswordHash(sum[:], "(fixed)")
	require.NoError(t, a.VerifyPassword("randompassword123", src1))
	assert.Equal(t, ReasonBadPassword, reason(t, a.VerifyPassword("randompassword124", src1)))
	err := a.VerifyPassword("wrong", src2)
	assert.Equal(t, ReasonBadPassword, reason(t, err))
	var d *Denied
	require.True(t, errors.As(err, &d))
	require.Len(t, d.Lockouts, 1, "the password's own lockout")
	assert.Equal(t, "(fixed)", d.Lockouts[0].Subject)
	assert.Equal(t, ReasonLockedUser, reason(t, a.VerifyPassword("randompassword123", src1)))
}

func TestPruneKeepsLockedSources(t *testing.T) {
	a, clk, _ := newAuth(t, Policy{MaxFailures: 2, MaxTracked: 3})
	locked := netip.MustParseAddr("203.0.113.1")
	for range 2 {
		_, err := a.Verify("nobody", "123456", locked)
		require.Error(t, err)
	}
	for i := range 50 {
		clk.Advance(100 * time.Millisecond)
		_, _ = a.Verify("nobody", "123456", netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)}))
	}
	assert.LessOrEqual(t, len(a.slocks), 3)
	_, err := a.Verify("nobody", "123456", locked)
	assert.Equal(t, ReasonLockedSource, reason(t, err), "a locked source outlives unlocked ones")
}

func TestPruneBoundsLockedSources(t *testing.T) {
	a, clk, _ := newAuth(t, Policy{MaxFailures: 1, MaxTracked: 10})
	for i := range 1000 {
		clk.Advance(time.Millisecond)
		_, _ = a.Verify("nobody", "123456", netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}))
	}
	assert.LessOrEqual(t, len(a.slocks), 10, "memory stays bounded under a flood of sources")
	_, err := a.Verify("nobody", "123456", netip.AddrFrom4([4]byte{203, 0, 3, 231}))
	assert.Equal(t, ReasonLockedSource, reason(t, err), "the latest lockouts are kept")
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
