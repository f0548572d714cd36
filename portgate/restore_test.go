package portgate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate/api"
	"github.com/opsdrill/opsdrill/portgate/audit"
	"github.com/opsdrill/opsdrill/portgate/lease"
)

// flakyStore is the real state file with a switch that makes every write
// fail, as a full or read-only disk would.
type flakyStore struct {
	*lease.File
	broken bool
}

var errDisk = errors.New("disk full")

func (s *flakyStore) Save(st lease.State) error {
	if s.broken {
		return errDisk
	}
	return s.File.Save(st)
}

func (s *flakyStore) Append(c lease.Change) (int, error) {
	if s.broken {
		return 0, errDisk
	}
	return s.File.Append(c)
}

func restoreConfig(t *testing.T, dir, users string) *Config {
	t.Helper()
	cfg, err := ParseConfig(strings.NewReader(fmt.Sprintf("ports: [22, 3389]\nstate_file: %s\nlease: {max: 1h}\nusers:\n%s",
		filepath.Join(dir, "state.json"), users)), dir)
	require.NoError(t, err)
	return cfg
}

// TestRestoreCapsAndDrops: at start every stored lease is capped at now +
// lease.max, and dropped when its user or its port is no longer
// configured.
func TestRestoreCapsAndDrops(t *testing.T) {
	dir := t.TempDir()
	cfg := restoreConfig(t, dir, "  - {name: alice, secret: "+testSecret+"}\n")
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	// Written by a run whose clock was two days ahead, or whose lease.max
	// was longer; and by users and ports since removed.
	ahead := lease.Lease{ID: "pg-00000000000000a1", User: "alice", IP: ip("192.0.2.1"), Port: 22, Created: t0, Expires: t0.Add(48 * time.Hour)}
	gone := lease.Lease{ID: "pg-00000000000000a2", User: "dave", IP: ip("192.0.2.2"), Port: 22, Created: t0, Expires: t0.Add(time.Minute)}
	port := lease.Lease{ID: "pg-00000000000000a3", User: "alice", IP: ip("192.0.2.3"), Port: 8080, Created: t0, Expires: t0.Add(time.Minute)}
	require.NoError(t, (&lease.File{Path: cfg.StateFile}).Save(lease.State{Leases: []lease.Lease{ahead, gone, port}}))
	fw := newMemFirewall()
	fw.rules[lease.Key{IP: ip("192.0.2.1"), Proto: "tcp", Port: 22}] = t0.Add(48 * time.Hour)
	fw.rules[lease.Key{IP: ip("192.0.2.2"), Proto: "tcp", Port: 22}] = t0.Add(time.Minute)
	f := newFixtureFrom(t, cfg, fw, &clock{t: t0}, Options{})

	assert.Equal(t, map[lease.Key]time.Time{{IP: ip("192.0.2.1"), Proto: "tcp", Port: 22}: t0.Add(time.Hour)}, fw.rules,
		"capped at now + lease.max; the removed user's rule is gone")
	require.Len(t, f.d.Leases(), 1)
	assert.Equal(t, t0.Add(time.Hour), f.d.Leases()[0].Expires)
	assert.Equal(t, t0.Add(time.Hour), f.saved(t).Leases[0].Expires, "and saved capped")
	reasons := map[string]string{}
	for _, e := range f.events(t) {
		if e.Lease != "" {
			reasons[e.Lease] = e.Reason
		}
	}
	assert.Equal(t, "capped at lease.max", reasons[ahead.ID])
	assert.Equal(t, "user no longer configured", reasons[gone.ID])
	assert.Equal(t, "port no longer in the allow-list", reasons[port.ID])
}

// TestClockSteps: a lease survives a restart with the clock stepped back
// (capped, never stretched) and ends when it steps forward past the end.
func TestClockSteps(t *testing.T) {
	dir := t.TempDir()
	cfg := restoreConfig(t, dir, "  - {name: alice, secret: "+testSecret+"}\n")
	clk := &clock{t: t0}
	fw := newMemFirewall()
	f := newFixtureFrom(t, cfg, fw, clk, Options{})
	g, err := f.d.Open(context.Background(), api.OpenRequest{User: "alice", Code: f.code(0), Port: 22, Duration: 30 * time.Minute}, client)
	require.NoError(t, err)
	k := lease.Key{IP: client, Proto: "tcp", Port: 22}
	require.NoError(t, f.d.Shutdown())

	// Restart with the clock a day behind: the stored end is 1d30m away,
	// more than lease.max: capped.
	back := &clock{t: t0.Add(-24 * time.Hour)}
	f2 := newFixtureFrom(t, cfg, fw, back, Options{})
	require.Len(t, f2.d.Leases(), 1)
	assert.Equal(t, back.Now().Add(time.Hour), fw.rules[k])
	// The replay floor holds across the step: the code used before is
	// refused although its time step now lies in the future.
	_, err = f2.d.Open(context.Background(), api.OpenRequest{User: "alice", Code: f.key.Code(f.key.Counter(t0)), Port: 22}, other)
	assert.Equal(t, 401, apiErr(t, err).Status)
	require.NoError(t, f2.d.Shutdown())

	// Restart with the clock stepped forward past the end: it is over.
	fwd := &clock{t: t0.Add(31 * time.Minute)}
	f3 := newFixtureFrom(t, cfg, fw, fwd, Options{})
	assert.Empty(t, f3.d.Leases())
	assert.Empty(t, fw.rules)
	assert.Equal(t, audit.Expire, eventFor(t, f3, g.Lease.ID).Event)

	// A live daemon whose clock jumps forward ends the lease at once.
	g4, err := f3.d.Open(context.Background(), api.OpenRequest{User: "alice", Code: f3.code(0), Port: 22, Duration: time.Minute}, client)
	require.NoError(t, err)
	fwd.Advance(2 * time.Hour)
	require.NoError(t, f3.d.ExpireDue())
	assert.Empty(t, fw.rules)
	assert.Equal(t, audit.Expire, eventFor(t, f3, g4.Lease.ID).Event)
}

func eventFor(t *testing.T, f *fixture, id string) audit.Event {
	t.Helper()
	var last audit.Event
	for _, e := range f.events(t) {
		if e.Lease == id {
			last = e
		}
	}
	require.NotEmpty(t, last.Event, "no event for lease %s", id)
	return last
}

// TestCloseStaysClosedWhenTheStateCannotBeWritten: the rule goes although
// the close could not be recorded; the record is retried, and once it is
// written a restart does not reopen the lease.
func TestCloseStaysClosedWhenTheStateCannotBeWritten(t *testing.T) {
	dir := t.TempDir()
	cfg := restoreConfig(t, dir, "  - {name: alice, secret: "+testSecret+"}\n")
	store := &flakyStore{File: &lease.File{Path: cfg.StateFile}}
	fw := newMemFirewall()
	clk := &clock{t: t0}
	f := newFixtureFrom(t, cfg, fw, clk, Options{Store: store})
	g, err := f.d.Open(context.Background(), api.OpenRequest{User: "alice", Code: f.code(0), Port: 22}, client)
	require.NoError(t, err)

	store.broken = true
	require.NoError(t, f.d.Close(context.Background(), g.Lease.ID, api.Credentials{Token: g.Token}, client))
	assert.Empty(t, fw.rules, "closed in the firewall")
	assert.Empty(t, f.d.Leases())
	assert.ErrorIs(t, f.d.Retry(), errDisk, "the record is owed")
	_, err = f.d.Get(context.Background(), g.Lease.ID, api.Credentials{Token: g.Token}, client)
	assert.Equal(t, 404, apiErr(t, err).Status)

	store.broken = false
	require.NoError(t, f.d.Retry())
	require.NoError(t, store.Close())
	assert.Empty(t, f.saved(t).Leases)
	f2 := newFixtureFrom(t, cfg, fw, clk, Options{})
	assert.Empty(t, f2.d.Leases(), "a restart does not reopen it")
	assert.Empty(t, fw.rules)
}

// TestRuleFailureOnCloseIsRetried: a firewall that refuses to delete the
// rule gets asked again until it does.
func TestRuleFailureOnCloseIsRetried(t *testing.T) {
	f := newFixture(t, "")
	g, err := f.open("alice", f.code(0), 22, client)
	require.NoError(t, err)
	f.fw.fail = errors.New("netlink: busy")
	assert.Error(t, f.d.Close(context.Background(), g.Lease.ID, api.Credentials{Token: g.Token}, client))
	assert.Empty(t, f.d.Leases(), "closed in the state")
	assert.Empty(t, f.saved(t).Leases)
	assert.Error(t, f.d.Retry())
	f.fw.fail = nil
	require.NoError(t, f.d.Retry())
	assert.Empty(t, f.fw.rules)
}

// TestThrottlePersisted: the daemon saves the throttle beside its state and
// a restart loads it.
func TestThrottlePersisted(t *testing.T) {
	f := newFixture(t, "")
	for range 3 {
		_, err := f.open("alice", f.code(9), 22, other)
		require.Error(t, err)
	}
	require.NoError(t, f.d.Shutdown())
	f2 := newFixtureFrom(t, f.cfg, f.fw, f.clk, Options{})
	_, err := f2.open("alice", f2.code(0), 22, other)
	assert.Equal(t, 429, apiErr(t, err).Status, "still backed off after the restart")
	_, err = f2.open("alice", f2.code(0), 22, client)
	assert.NoError(t, err)
}

// TestUDPLease: RDP's UDP 3389 is leased on its own key; a request without
// proto takes TCP where it is allowed.
func TestUDPLease(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig(strings.NewReader(fmt.Sprintf("ports: [22, 3389, 3389/udp, 5000/udp]\nstate_file: %s\nusers:\n  - {name: alice, secret: %s}\n",
		filepath.Join(dir, "state.json"), testSecret)), dir)
	require.NoError(t, err)
	f := newFixtureFrom(t, cfg, newMemFirewall(), &clock{t: t0}, Options{})
	ctx := context.Background()
	open := func(port uint16, proto string) (api.Granted, error) {
		f.clk.Advance(30 * time.Second)
		return f.d.Open(ctx, api.OpenRequest{User: "alice", Code: f.code(0), Port: port, Proto: proto}, client)
	}
	g, err := open(3389, "udp")
	require.NoError(t, err)
	assert.Equal(t, "udp", g.Lease.Proto)
	_, err = open(3389, "")
	require.NoError(t, err)
	g5, err := open(5000, "")
	require.NoError(t, err)
	assert.Equal(t, "udp", g5.Lease.Proto, "the only protocol allowed on 5000")
	_, err = open(22, "udp")
	assert.Equal(t, 403, apiErr(t, err).Status)
	assert.Len(t, f.fw.rules, 3)
	for _, k := range []lease.Key{{IP: client, Proto: "udp", Port: 3389}, {IP: client, Proto: "tcp", Port: 3389}, {IP: client, Proto: "udp", Port: 5000}} {
		assert.Contains(t, f.fw.rules, k)
	}
	assert.Equal(t, "udp", eventFor(t, f, g.Lease.ID).Proto)
}
