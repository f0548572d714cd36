package portgate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate/api"
	"github.com/opsdrill/opsdrill/portgate/audit"
	"github.com/opsdrill/opsdrill/portgate/auth"
	"github.com/opsdrill/opsdrill/portgate/firewall"
	"github.com/opsdrill/opsdrill/portgate/lease"
)

// memFirewall records rules in memory. The real backends are exercised
// against real nftables and iptables in the integration tests; this one
// lets the daemon's decisions be checked with a hand-driven clock.
type memFirewall struct {
	rules map[lease.Key]time.Time
	ports []firewall.Port
	fail  error
	calls []string
}

func newMemFirewall() *memFirewall { return &memFirewall{rules: map[lease.Key]time.Time{}} }

func (m *memFirewall) Name() string { return "memory" }
func (m *memFirewall) Init(p []firewall.Port) error {
	m.ports = p
	m.calls = append(m.calls, "init")
	return m.fail
}
func (m *memFirewall) Set(r firewall.Rule) error {
	m.calls = append(m.calls, "set "+r.IP.String())
	if m.fail != nil {
		return m.fail
	}
	m.rules[lease.Key{IP: r.IP, Proto: firewall.Proto(r.Proto), Port: r.Port}] = r.Until
	return nil
}
func (m *memFirewall) Delete(ip netip.Addr, proto string, port uint16) error {
	m.calls = append(m.calls, "delete "+ip.String())
	if m.fail != nil {
		return m.fail
	}
	delete(m.rules, lease.Key{IP: ip, Proto: firewall.Proto(proto), Port: port})
	return nil
}
func (m *memFirewall) List() ([]firewall.Rule, error) {
	var out []firewall.Rule
	for k, u := range m.rules {
		out = append(out, firewall.Rule{IP: k.IP, Proto: k.Proto, Port: k.Port, Until: u})
	}
	return out, m.fail
}

type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

var (
	client  = netip.MustParseAddr("192.0.2.10")
	other   = netip.MustParseAddr("192.0.2.20")
	t0      = time.Unix(1_700_000_010, 0).UTC() // the start of a 30 s step
	adminTk = strings.Repeat("Q", 43)
)

type fixture struct {
	d     *Daemon
	fw    *memFirewall
	clk   *clock
	key   auth.Key
	audit *bytes.Buffer
	state string
	cfg   *Config
}

func newFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	dir := t.TempDir()
	sum := sha256.Sum256([]byte(adminTk))
	// The default lockout, unless extra has its own.
	lockout := "lockout: {max_failures: 3, base: 30s}\n"
	if strings.Contains(extra, "lockout:") {
		lockout = ""
	}
	yaml := fmt.Sprintf(`
ports: [22, 3389]
state_file: %s
lease: {default: 5m, min: 5s, max: 1h}
%sadmin_token_sha256: [%s]
users:
  - {name: alice, secret: %s}
  - {name: bob, secret: %s, ports: [3389], stated_ip: true, stated_ip_ranges: [198.51.100.0/24], max_lease: 10m}
%s`, filepath.Join(dir, "state.json"), lockout, hex.EncodeToString(sum[:]), testSecret, testSecret, extra)
	cfg, err := ParseConfig(strings.NewReader(yaml), dir)
	require.NoError(t, err)
	return newFixtureFrom(t, cfg, newMemFirewall(), &clock{t: t0}, Options{})
}

func newFixtureFrom(t *testing.T, cfg *Config, fw *memFirewall, clk *clock, o Options) *fixture {
	t.Helper()
	var buf bytes.Buffer
	o.Now, o.Firewall, o.Audit = clk.Now, fw, audit.New(&buf, clk.Now)
	d, err := New(cfg, o)
	require.NoError(t, err)
	require.NoError(t, d.Start())
	k, err := auth.NewKey([]byte("12345678901234567890"), 6, 30*time.Second, "SHA1")
	require.NoError(t, err)
	return &fixture{d: d, fw: fw, clk: clk, key: k, audit: &buf, state: cfg.StateFile, cfg: cfg}
}

// code is what the user's app shows now, offset steps away.
func (f *fixture) code(offset int) string {
	return f.key.Code(uint64(int64(f.key.Counter(f.clk.Now())) + int64(offset)))
}

func (f *fixture) open(user, code string, port uint16, src netip.Addr) (api.Granted, error) {
	return f.d.Open(context.Background(), api.OpenRequest{User: user, Code: code, Port: port}, src)
}

func (f *fixture) events(t *testing.T) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, line := range strings.Split(strings.TrimSpace(f.audit.String()), "\n") {
		var e audit.Event
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		out = append(out, e)
	}
	return out
}

func (f *fixture) last(t *testing.T) audit.Event {
	ev := f.events(t)
	return ev[len(ev)-1]
}

func apiErr(t *testing.T, err error) *api.Error {
	t.Helper()
	var e *api.Error
	require.True(t, errors.As(err, &e), "want *api.Error, got %v", err)
	return e
}

func (f *fixture) saved(t *testing.T) lease.State {
	t.Helper()
	st, err := (&lease.File{Path: f.state}).Load()
	require.NoError(t, err)
	return st
}

func TestOpenInstallsRulePersistsAndAudits(t *testing.T) {
	f := newFixture(t, "")
	code := f.code(0)
	g, err := f.open("alice", code, 22, client)
	require.NoError(t, err)
	assert.Equal(t, client, g.Lease.IP)
	assert.Equal(t, t0.Add(5*time.Minute), g.Lease.Expires, "default lease")
	assert.NotEmpty(t, g.Token)
	assert.Equal(t, map[lease.Key]time.Time{{IP: client, Proto: "tcp", Port: 22}: t0.Add(5 * time.Minute)}, f.fw.rules)

	st := f.saved(t)
	require.Len(t, st.Leases, 1)
	assert.Equal(t, g.Lease.ID, st.Leases[0].ID)
	assert.Equal(t, f.key.Counter(t0), st.Floors["alice"], "the replay floor is persisted with the lease")

	e := f.last(t)
	assert.Equal(t, audit.Open, e.Event)
	assert.Equal(t, "alice", e.User)
	assert.Equal(t, client, e.Source)
	assert.Equal(t, client, e.IP)
	assert.Equal(t, uint16(22), e.Port)
	assert.Equal(t, g.Lease.ID, e.Lease)
	assert.True(t, e.Expires.Equal(g.Lease.Expires))

	b, err := os.ReadFile(f.state)
	require.NoError(t, err)
	for name, secret := range map[string]string{"code": code, "token": g.Token, "key": testSecret} {
		assert.NotContains(t, f.audit.String(), secret, "audit log holds the %s", name)
		assert.NotContains(t, string(b), secret, "state file holds the %s", name)
	}
}

func TestRefusalsOpenNothing(t *testing.T) {
	cases := []struct {
		name       string
		run        func(f *fixture) error
		status     int
		code       string
		reason     string
		codeUnused bool   // the current code still works afterwards
		user       string // whose code the case used (default alice)
	}{
		{"wrong code", func(f *fixture) error { _, err := f.open("alice", f.code(7), 22, client); return err },
			http.StatusUnauthorized, api.CodeAuthFailed, "bad_code", true, ""},
		{"unknown user", func(f *fixture) error { _, err := f.open("mallory", f.code(0), 22, client); return err },
			http.StatusUnauthorized, api.CodeAuthFailed, "unknown_user", true, ""},
		{"port not in allow-list", func(f *fixture) error { _, err := f.open("alice", f.code(0), 25, client); return err },
			http.StatusForbidden, api.CodePortNotAllowed, "port_not_allowed", true, ""},
		{"duration over max", func(f *fixture) error {
			_, err := f.d.Open(context.Background(), api.OpenRequest{User: "alice", Code: f.code(0), Port: 22, Duration: 2 * time.Hour}, client)
			return err
		}, http.StatusBadRequest, api.CodeBadRequest, "duration_out_of_range", true, ""},
		{"port not for this user", func(f *fixture) error { _, err := f.open("bob", f.code(0), 22, client); return err },
			http.StatusForbidden, api.CodePortNotAllowed, "port_not_allowed_for_user", false, "bob"},
		{"stated ip not allowed", func(f *fixture) error {
			_, err := f.d.Open(context.Background(), api.OpenRequest{User: "alice", Code: f.code(0), Port: 22, IP: other}, client)
			return err
		}, http.StatusForbidden, api.CodeIPNotAllowed, "stated_ip_not_allowed", false, ""},
		{"stated ip out of range", func(f *fixture) error {
			_, err := f.d.Open(context.Background(), api.OpenRequest{User: "bob", Code: f.code(0), Port: 3389, IP: other}, client)
			return err
		}, http.StatusForbidden, api.CodeIPNotAllowed, "stated_ip_out_of_range", false, "bob"},
		{"over the user's max lease", func(f *fixture) error {
			_, err := f.d.Open(context.Background(), api.OpenRequest{User: "bob", Code: f.code(0), Port: 3389, Duration: 20 * time.Minute}, client)
			return err
		}, http.StatusBadRequest, api.CodeBadRequest, "duration_over_user_limit", false, "bob"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "")
			err := c.run(f)
			e := apiErr(t, err)
			assert.Equal(t, c.status, e.Status)
			assert.Equal(t, c.code, e.Code)
			assert.Empty(t, f.fw.rules, "nothing opened")
			assert.Empty(t, f.d.Leases())
			last := f.last(t)
			assert.Equal(t, audit.Deny, last.Event)
			assert.Equal(t, c.reason, last.Reason)
			user, port := "alice", uint16(22)
			if c.user == "bob" {
				user, port = "bob", 3389
			}
			_, err = f.open(user, f.code(0), port, client)
			if c.codeUnused {
				assert.NoError(t, err, "a refusal before authentication does not use the code up")
			} else {
				assert.Equal(t, api.CodeAuthFailed, apiErr(t, err).Code, "the code was used by the refused request: replay")
			}
		})
	}
}

func TestReplayedCodeOpensNothing(t *testing.T) {
	f := newFixture(t, "")
	code := f.code(0)
	_, err := f.open("alice", code, 22, client)
	require.NoError(t, err)
	// The same code, from another address, a step later: refused.
	f.clk.Advance(30 * time.Second)
	_, err = f.open("alice", code, 22, other)
	e := apiErr(t, err)
	assert.Equal(t, http.StatusUnauthorized, e.Status)
	assert.Equal(t, "replay", f.last(t).Reason)
	_, opened := f.fw.rules[lease.Key{IP: other, Proto: "tcp", Port: 22}]
	assert.False(t, opened)

	// A restarted daemon still refuses it: the floor was persisted.
	f2 := newFixtureFrom(t, f.cfg, f.fw, f.clk, Options{})
	_, err = f2.open("alice", code, 22, other)
	assert.Equal(t, api.CodeAuthFailed, apiErr(t, err).Code)
	assert.Equal(t, "replay", f2.last(t).Reason)
}

func TestLockoutReturns429AndIsAudited(t *testing.T) {
	f := newFixture(t, "")
	for range 3 {
		_, err := f.open("alice", f.code(9), 22, other)
		require.Error(t, err)
	}
	var lockouts []audit.Event
	for _, e := range f.events(t) {
		if e.Event == audit.Lockout {
			lockouts = append(lockouts, e)
		}
	}
	require.Len(t, lockouts, 1, "alice from the guessing source only")
	assert.Equal(t, "user", lockouts[0].Scope)
	assert.Equal(t, "alice from "+other.String(), lockouts[0].Subject)
	assert.True(t, lockouts[0].Until.Equal(t0.Add(30*time.Second)))

	_, err := f.open("alice", f.code(0), 22, other)
	e := apiErr(t, err)
	assert.Equal(t, http.StatusTooManyRequests, e.Status)
	assert.Equal(t, 30*time.Second, e.RetryAfter)
	assert.Equal(t, "locked_user", f.last(t).Reason)
	assert.Empty(t, f.fw.rules)

	_, err = f.open("alice", f.code(0), 22, client)
	assert.NoError(t, err, "alice from her own address is not locked out")
	f.clk.Advance(30 * time.Second)
	_, err = f.open("alice", f.code(0), 22, other)
	assert.NoError(t, err, "the back-off ends")
}

func TestRequestRateLimit(t *testing.T) {
	f := newFixture(t, "lockout: {max_failures: 3, source_rate: 1, source_burst: 2}\n")
	for range 2 {
		_, err := f.open("alice", f.code(0), 25, other)
		assert.Equal(t, http.StatusForbidden, apiErr(t, err).Status)
	}
	_, err := f.open("alice", f.code(0), 22, other)
	e := apiErr(t, err)
	assert.Equal(t, http.StatusTooManyRequests, e.Status)
	assert.Equal(t, api.CodeRateLimited, e.Code)
	assert.Equal(t, "rate_limited", f.last(t).Reason)
	_, err = f.open("alice", f.code(0), 22, client)
	assert.NoError(t, err, "another source has its own rate")
}
func TestExpiry(t *testing.T) {
	f := newFixture(t, "")
	g, err := f.d.Open(context.Background(), api.OpenRequest{User: "alice", Code: f.code(0), Port: 22, Duration: 10 * time.Second}, client)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(10*time.Second), f.fw.rules[lease.Key{IP: client, Proto: "tcp", Port: 22}])

	f.clk.Advance(9999 * time.Millisecond)
	require.NoError(t, f.d.ExpireDue())
	assert.Len(t, f.fw.rules, 1, "not yet")
	f.clk.Advance(time.Millisecond)
	listed, err := f.d.List(context.Background(), api.Credentials{Token: adminTk}, client)
	require.NoError(t, err)
	assert.Empty(t, listed, "an ended lease is not listed, even before the reaper runs")
	require.NoError(t, f.d.ExpireDue())
	assert.Empty(t, f.fw.rules, "removed at the end")
	assert.Empty(t, f.d.Leases())
	assert.Empty(t, f.saved(t).Leases)
	e := f.last(t)
	assert.Equal(t, audit.Expire, e.Event)
	assert.Equal(t, g.Lease.ID, e.Lease)
}

func TestOverlappingLeasesShareOneRule(t *testing.T) {
	f := newFixture(t, "  - {name: carol, secret: "+testSecret+"}\n")
	k := lease.Key{IP: client, Proto: "tcp", Port: 22}
	long, err := f.d.Open(context.Background(), api.OpenRequest{User: "alice", Code: f.code(0), Port: 22, Duration: time.Hour}, client)
	require.NoError(t, err)
	f.clk.Advance(30 * time.Second)
	_, err = f.d.Open(context.Background(), api.OpenRequest{User: "carol", Code: f.code(0), Port: 22, Duration: time.Minute}, client)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(time.Hour), f.fw.rules[k], "the shorter lease does not cut the longer one")

	// Closing the long one shortens the rule to the short one's end.
	require.NoError(t, f.d.Close(context.Background(), long.Lease.ID, api.Credentials{Token: long.Token}, client))
	assert.Equal(t, t0.Add(90*time.Second), f.fw.rules[k])
	f.clk.Advance(time.Minute)
	require.NoError(t, f.d.ExpireDue())
	assert.Empty(t, f.fw.rules)
}

func TestReopenExtendsAndLeasesAreBounded(t *testing.T) {
	f := newFixture(t, "  - {name: carol, secret: "+testSecret+"}\n")
	f.cfg.Lease.MaxPerUser, f.cfg.Lease.MaxTotal = 2, 3
	ctx := context.Background()
	open := func(user string, port uint16, ip netip.Addr, d time.Duration) (api.Granted, error) {
		f.clk.Advance(30 * time.Second)
		return f.d.Open(ctx, api.OpenRequest{User: user, Code: f.code(0), Port: port, Duration: d}, ip)
	}
	first, err := open("alice", 22, client, 10*time.Minute)
	require.NoError(t, err)
	again, err := open("alice", 22, client, 20*time.Minute)
	require.NoError(t, err)
	assert.Equal(t, first.Lease.ID, again.Lease.ID, "the same address and port: the lease is extended")
	assert.Equal(t, f.clk.Now().Add(20*time.Minute), again.Lease.Expires)
	shorter, err := open("alice", 22, client, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, again.Lease.Expires, shorter.Lease.Expires, "a shorter re-open never cuts it")
	assert.Len(t, f.d.Leases(), 1)
	assert.Equal(t, "extended", f.last(t).Reason)
	assert.Equal(t, http.StatusNotFound, statusOf(f.d.Close(ctx, first.Lease.ID, api.Credentials{Token: first.Token}, other)), "the old token was replaced")

	_, err = open("alice", 3389, client, time.Minute)
	require.NoError(t, err)
	_, err = open("alice", 3389, other, time.Minute)
	e := apiErr(t, err)
	assert.Equal(t, api.CodeTooManyLeases, e.Code)
	assert.Equal(t, http.StatusTooManyRequests, e.Status)
	assert.Equal(t, "too_many_leases_for_user", f.last(t).Reason)
	_, err = open("carol", 22, other, time.Minute)
	require.NoError(t, err)
	_, err = open("carol", 3389, other, time.Minute)
	e = apiErr(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, e.Status, "lease.max_total")
	assert.Len(t, f.d.Leases(), 3)
	assert.Len(t, f.fw.rules, 3)
}

func TestCloseAndListCredentials(t *testing.T) {
	f := newFixture(t, "")
	ctx := context.Background()
	g, err := f.open("alice", f.code(0), 22, client)
	require.NoError(t, err)
	bobs, err := f.d.Open(ctx, api.OpenRequest{User: "bob", Code: f.code(0), Port: 3389}, client)
	require.NoError(t, err)

	// A wrong token, another lease's token and an unknown id all get 404.
	for _, c := range []struct {
		id   string
		cred api.Credentials
	}{
		{g.Lease.ID, api.Credentials{Token: strings.Repeat("x", 43)}},
		{g.Lease.ID, api.Credentials{Token: bobs.Token}},
		{"pg-0000000000000000", api.Credentials{Token: g.Token}},
	} {
		err := f.d.Close(ctx, c.id, c.cred, other)
		assert.Equal(t, http.StatusNotFound, apiErr(t, err).Status)
		assert.Len(t, f.fw.rules, 2)
	}
	// Those were failures of the admin scope from there: it is backed off,
	// even with the right token, and not from elsewhere.
	_, err = f.d.List(ctx, api.Credentials{Token: adminTk}, other)
	assert.Equal(t, http.StatusTooManyRequests, apiErr(t, err).Status)
	// Past 5 refusals a minute from one source, the audit log counts them.
	f.clk.Advance(time.Minute)
	require.NoError(t, f.d.audit.Flush())
	sum := f.last(t)
	assert.Equal(t, audit.DenySummary, sum.Event)
	assert.Equal(t, map[string]int{"no_such_lease": 1, "locked_user": 1}, sum.Reasons)

	// The admin sees both; a user only their own; a lease token cannot list.
	all, err := f.d.List(ctx, api.Credentials{Token: adminTk}, client)
	require.NoError(t, err)
	assert.Len(t, all, 2)
	f.clk.Advance(30 * time.Second)
	mine, err := f.d.List(ctx, api.Credentials{User: "bob", Code: f.code(0)}, client)
	require.NoError(t, err)
	require.Len(t, mine, 1)
	assert.Equal(t, "bob", mine[0].User)
	_, err = f.d.List(ctx, api.Credentials{Token: g.Token}, client)
	assert.Equal(t, http.StatusUnauthorized, apiErr(t, err).Status)
	got, err := f.d.Get(ctx, g.Lease.ID, api.Credentials{Token: g.Token}, client)
	require.NoError(t, err)
	assert.Equal(t, g.Lease.ID, got.ID)

	// The lease's token closes it; the admin closes the other.
	require.NoError(t, f.d.Close(ctx, g.Lease.ID, api.Credentials{Token: g.Token}, client))
	assert.Equal(t, "closed by token", f.last(t).Reason)
	require.NoError(t, f.d.Close(ctx, bobs.Lease.ID, api.Credentials{Token: adminTk}, client))
	assert.Empty(t, f.fw.rules)
	assert.Empty(t, f.saved(t).Leases)
	err = f.d.Close(ctx, g.Lease.ID, api.Credentials{Token: g.Token}, client)
	assert.Equal(t, http.StatusNotFound, apiErr(t, err).Status, "closing twice")
}

func TestStatedIPWithinRange(t *testing.T) {
	f := newFixture(t, "")
	stated := netip.MustParseAddr("198.51.100.7")
	g, err := f.d.Open(context.Background(), api.OpenRequest{User: "bob", Code: f.code(0), Port: 3389, IP: stated}, client)
	require.NoError(t, err)
	assert.Equal(t, stated, g.Lease.IP)
	assert.Equal(t, client, g.Lease.Source)
	_, ok := f.fw.rules[lease.Key{IP: stated, Proto: "tcp", Port: 3389}]
	assert.True(t, ok)
}

func TestFirewallFailureOpensNothingAndBurnsTheCode(t *testing.T) {
	f := newFixture(t, "")
	f.fw.fail = errors.New("netlink: operation not permitted")
	code := f.code(0)
	_, err := f.open("alice", code, 22, client)
	require.Error(t, err)
	assert.Equal(t, http.StatusInternalServerError, statusOf(err))
	assert.Empty(t, f.d.Leases())
	assert.Empty(t, f.saved(t).Leases)
	assert.Equal(t, "firewall_error", f.last(t).Reason)
	f.fw.fail = nil
	_, err = f.open("alice", code, 22, client)
	assert.Equal(t, api.CodeAuthFailed, apiErr(t, err).Code, "a code that was accepted stays used")
}

func statusOf(err error) int {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return http.StatusInternalServerError
}

func TestStartReconciles(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig(strings.NewReader(fmt.Sprintf("ports: [22, 80]\nstate_file: %s\n", filepath.Join(dir, "state.json"))+
		"users:\n  - {name: alice, secret: "+testSecret+"}\n"), dir)
	require.NoError(t, err)
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	live := lease.Lease{ID: "pg-000000000000000a", User: "alice", IP: ip("192.0.2.1"), Port: 22, Created: t0.Add(-time.Minute), Expires: t0.Add(time.Minute)}
	drifted := lease.Lease{ID: "pg-000000000000000b", User: "alice", IP: ip("192.0.2.2"), Port: 22, Created: t0.Add(-time.Minute), Expires: t0.Add(2 * time.Minute)}
	expired := lease.Lease{ID: "pg-000000000000000c", User: "alice", IP: ip("192.0.2.3"), Port: 22, Created: t0.Add(-time.Hour), Expires: t0.Add(-time.Second)}
	kept := lease.Lease{ID: "pg-000000000000000d", User: "alice", IP: ip("192.0.2.4"), Port: 80, Created: t0.Add(-time.Minute), Expires: t0.Add(time.Minute)}
	require.NoError(t, (&lease.File{Path: cfg.StateFile}).Save(lease.State{
		Leases: []lease.Lease{live, drifted, expired, kept}, Floors: map[string]uint64{"alice": 7},
	}))
	fw := newMemFirewall()
	fw.rules[lease.Key{IP: ip("192.0.2.2"), Proto: "tcp", Port: 22}] = t0.Add(time.Hour)         // wrong end
	fw.rules[lease.Key{IP: ip("192.0.2.3"), Proto: "tcp", Port: 22}] = t0.Add(time.Hour)         // lease ended
	fw.rules[lease.Key{IP: ip("192.0.2.9"), Proto: "tcp", Port: 22}] = t0.Add(time.Hour)         // no lease at all
	fw.rules[lease.Key{IP: ip("192.0.2.4"), Proto: "tcp", Port: 80}] = t0.Add(time.Minute + 1e8) // fine
	f := newFixtureFrom(t, cfg, fw, &clock{t: t0}, Options{})

	assert.Equal(t, map[lease.Key]time.Time{
		{IP: ip("192.0.2.1"), Proto: "tcp", Port: 22}: t0.Add(time.Minute),
		{IP: ip("192.0.2.2"), Proto: "tcp", Port: 22}: t0.Add(2 * time.Minute),
		{IP: ip("192.0.2.4"), Proto: "tcp", Port: 80}: t0.Add(time.Minute + 1e8),
	}, fw.rules)
	assert.Equal(t, []firewall.Port{{Proto: "tcp", Num: 22}, {Proto: "tcp", Num: 80}}, fw.ports)
	assert.Len(t, f.d.Leases(), 3)
	assert.Len(t, f.saved(t).Leases, 3, "the expired lease is gone from the state file")
	assert.Equal(t, uint64(7), f.d.Auth().Floors()["alice"])

	count := map[string]int{}
	for _, e := range f.events(t) {
		count[e.Event]++
	}
	assert.Equal(t, 1, count[audit.Expire])
	assert.Equal(t, 2, count[audit.Stale])
	assert.Equal(t, 2, count[audit.Restore])
	assert.Equal(t, 1, count[audit.Reconcile])
}

func TestShutdownPolicies(t *testing.T) {
	for _, policy := range []string{"keep", "close"} {
		t.Run(policy, func(t *testing.T) {
			f := newFixture(t, "on_shutdown: "+policy+"\n")
			_, err := f.open("alice", f.code(0), 22, client)
			require.NoError(t, err)
			require.NoError(t, f.d.Shutdown())
			if policy == "keep" {
				assert.Len(t, f.fw.rules, 1)
				assert.Len(t, f.saved(t).Leases, 1)
			} else {
				assert.Empty(t, f.fw.rules)
				assert.Empty(t, f.saved(t).Leases)
			}
			assert.Equal(t, audit.Stop, f.last(t).Event)
		})
	}
}

func TestFixedPasswordMode(t *testing.T) {
	sum := sha256.Sum256([]byte("randompassword123"))
	extra := fmt.Sprintf("fixed_password: {sha256: %s, port: 22}\n", hex.EncodeToString(sum[:]))
	dir := t.TempDir()
	cfg, err := ParseConfig(strings.NewReader(fmt.Sprintf("ports: [22]\nstate_file: %s\n%s", filepath.Join(dir, "s.json"), extra)), dir)
	require.NoError(t, err)
	_, err = New(cfg, Options{Firewall: newMemFirewall()})
	require.ErrorIs(t, err, ErrFixedPasswordRefused)

	f := newFixtureFrom(t, cfg, newMemFirewall(), &clock{t: t0}, Options{FixedPassword: true})
	_, err = f.d.OpenFixed(context.Background(), "wrong", netip.Addr{}, client)
	assert.Equal(t, http.StatusUnauthorized, apiErr(t, err).Status)
	assert.Equal(t, "bad_password", f.last(t).Reason)
	_, err = f.d.OpenFixed(context.Background(), "randompassword123", other, client)
	assert.Equal(t, http.StatusForbidden, apiErr(t, err).Status, "the seed let anyone name any address; portgate does not by default")
	g, err := f.d.OpenFixed(context.Background(), "randompassword123", netip.Addr{}, client)
	require.NoError(t, err)
	assert.Equal(t, fixedUser, g.Lease.User)
	assert.Equal(t, t0.Add(5*time.Minute), g.Lease.Expires, "fixed-password leases end too")
	assert.NotContains(t, f.audit.String(), "randompassword123")
}

// TestHTTPAPI drives the daemon through its HTTP handler.
func TestHTTPAPI(t *testing.T) {
	f := newFixture(t, "")
	srv := httptest.NewServer(api.NewHandler(f.d, api.Options{}))
	defer srv.Close()
	post := func(body string) (*http.Response, map[string]any) {
		resp, err := http.Post(srv.URL+"/v1/leases", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
		return resp, m
	}
	resp, m := post(fmt.Sprintf(`{"user":"alice","code":%q,"port":22,"duration":"60s"}`, f.code(0)))
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%v", m)
	assert.Equal(t, "127.0.0.1", m["ip"], "the lease is for the TCP peer")
	assert.Equal(t, float64(t0.Add(time.Minute).Unix()), m["expires_unix"])
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	token := m["token"].(string)
	id := m["id"].(string)

	resp, m = post(`{"user":"alice","code":"123456","port":22,"extra":1}`)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, `"extra": unknown field (known: user, code, password, port, proto, ip, duration)`, m["message"])
	resp, m = post(fmt.Sprintf(`{"user":"alice","code":%q,"port":25}`, f.code(0)))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, api.CodePortNotAllowed, m["error"])
	for range 3 {
		post(`{"user":"alice","code":"000000","port":22}`)
	}
	resp, m = post(`{"user":"alice","code":"000000","port":22}`)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "30", resp.Header.Get("Retry-After"))
	assert.Equal(t, api.CodeLockedOut, m["error"])

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/leases/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp.Body.Close()

	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/v1/leases", nil)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:123456")))
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the source is still locked out")
	resp.Body.Close()

	req, _ = http.NewRequest(http.MethodDelete, srv.URL+"/v1/leases/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Empty(t, f.fw.rules)

	resp, err = http.Get(srv.URL + "/openport")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "the fixed-password page is off")
}

// TestJournalCompaction: opens and closes are journal lines; the journal
// is folded into a snapshot once it outgrows the live state, by Run (here
// called by hand), not in the request.
func TestJournalCompaction(t *testing.T) {
	f := newFixture(t, "")
	ctx := context.Background()
	for range 120 {
		f.clk.Advance(30 * time.Second)
		g, err := f.open("alice", f.code(0), 22, client)
		require.NoError(t, err)
		require.NoError(t, f.d.Close(ctx, g.Lease.ID, api.Credentials{Token: g.Token}, client))
		require.NoError(t, f.d.Compact(), "what Run does when persisting pokes it")
	}
	keep, err := f.open("bob", f.code(0), 3389, client)
	require.NoError(t, err)
	b, err := os.ReadFile(f.state + ".journal")
	require.NoError(t, err)
	lines := strings.Count(string(b), "\n")
	assert.LessOrEqual(t, lines, 102, "compacted")
	assert.Positive(t, lines)
	st := f.saved(t)
	require.Len(t, st.Leases, 1)
	assert.Equal(t, keep.Lease.ID, st.Leases[0].ID)
	assert.Equal(t, f.key.Counter(f.clk.Now()), st.Floors["alice"])
}
