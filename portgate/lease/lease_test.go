package lease

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	t0  = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ip1 = netip.MustParseAddr("192.0.2.10")
	ip2 = netip.MustParseAddr("192.0.2.20")
)

func mk(id string, ip netip.Addr, port uint16, expires time.Duration) Lease {
	return Lease{ID: id, User: "alice", IP: ip, Source: ip, Port: port, Created: t0, Expires: t0.Add(expires)}
}

func TestTableKeysAndExpiry(t *testing.T) {
	tb := NewTable()
	_, ok := tb.Next()
	assert.False(t, ok)

	tb.Add(mk("a", ip1, 22, 5*time.Minute))
	tb.Add(mk("b", ip1, 22, 10*time.Minute)) // same rule, longer
	tb.Add(mk("c", ip2, 22, 1*time.Minute))
	assert.Equal(t, 3, tb.Len())

	next, ok := tb.Next()
	require.True(t, ok)
	assert.Equal(t, t0.Add(time.Minute), next)

	k1 := Key{IP: ip1, Proto: "tcp", Port: 22}
	until, ok := tb.Until(k1, t0)
	require.True(t, ok)
	assert.Equal(t, t0.Add(10*time.Minute), until, "a key's rule lasts as long as its longest lease")
	assert.Equal(t, map[Key]time.Time{k1: t0.Add(10 * time.Minute), {IP: ip2, Proto: "tcp", Port: 22}: t0.Add(time.Minute)}, tb.Rules(t0))

	// Closing the longer lease shortens the rule to the other one.
	_, ok = tb.Remove("b")
	require.True(t, ok)
	until, _ = tb.Until(k1, t0)
	assert.Equal(t, t0.Add(5*time.Minute), until)

	// Due lists ended leases, soonest first; at the exact end a lease is over.
	assert.Empty(t, tb.Due(t0.Add(59*time.Second)))
	due := tb.Due(t0.Add(5 * time.Minute))
	require.Len(t, due, 2)
	assert.Equal(t, []string{"c", "a"}, []string{due[0].ID, due[1].ID})
	_, ok = tb.Until(k1, t0.Add(5*time.Minute))
	assert.False(t, ok, "no live lease left on the key")

	// Re-adding an id replaces it everywhere.
	tb.Add(mk("a", ip2, 80, time.Minute))
	_, ok = tb.Until(k1, t0)
	assert.False(t, ok)
	assert.Len(t, tb.All(), 2)
	_, ok = tb.Remove("zzz")
	assert.False(t, ok)
}

func TestTokens(t *testing.T) {
	tok, hash := NewToken()
	assert.Regexp(t, `^[A-Za-z0-9_-]{43}$`, tok)
	l := Lease{TokenHash: hash}
	assert.True(t, l.TokenMatches(tok))
	assert.False(t, l.TokenMatches(tok[:42]+"x"))
	assert.False(t, l.TokenMatches(""))
	assert.False(t, Lease{}.TokenMatches(tok))
	tok2, _ := NewToken()
	assert.NotEqual(t, tok, tok2)
	assert.Regexp(t, regexp.MustCompile(`^pg-[0-9a-f]{16}$`), NewID())
}

func TestFileRoundTripAndAtomicity(t *testing.T) {
	dir := t.TempDir()
	f := &File{Path: filepath.Join(dir, "state.json")}
	st, err := f.Load()
	require.NoError(t, err, "a missing file is an empty state")
	assert.Empty(t, st.Leases)

	_, hash := NewToken()
	l := mk("pg-0123456789abcdef", ip1, 22, time.Hour)
	l.TokenHash = hash
	want := State{Leases: []Lease{l}, Floors: map[string]uint64{"alice": 56_666_667}}
	require.NoError(t, f.Save(want))
	got, err := (&File{Path: f.Path}).Load()
	require.NoError(t, err)
	assert.Equal(t, StateVersion, got.Version)
	require.Len(t, got.Leases, 1)
	assert.True(t, got.Leases[0].Expires.Equal(l.Expires))
	assert.Equal(t, l.IP, got.Leases[0].IP)
	assert.Equal(t, want.Floors, got.Floors)

	fi, err := os.Stat(f.Path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	// No temporary file is left behind.
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)

	// A failed save (folder gone) leaves nothing half-written.
	bad := &File{Path: filepath.Join(dir, "missing", "state.json")}
	require.Error(t, bad.Save(want))
}

func TestJournal(t *testing.T) {
	dir := t.TempDir()
	f := &File{Path: filepath.Join(dir, "state.json")}
	a, b := mk("pg-000000000000000a", ip1, 22, time.Hour), mk("pg-000000000000000b", ip2, 22, time.Hour)
	require.NoError(t, f.Save(State{Leases: []Lease{a}, Floors: map[string]uint64{"alice": 5}}))

	n, err := f.Append(Change{Add: []Lease{b}, Floors: map[string]uint64{"alice": 9, "bob": 3}})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = f.Append(Change{Remove: []string{a.ID, "pg-unknown"}, Floors: map[string]uint64{"alice": 7}})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	fi, err := os.Stat(f.JournalPath())
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	got, err := (&File{Path: f.Path}).Load()
	require.NoError(t, err)
	require.Len(t, got.Leases, 1)
	assert.Equal(t, b.ID, got.Leases[0].ID)
	assert.Equal(t, map[string]uint64{"alice": 9, "bob": 3}, got.Floors, "floors only rise")

	// Re-adding an id replaces it: replaying a journal over a snapshot that
	// already holds its changes changes nothing.
	require.NoError(t, f.Save(got))
	_, err = f.Append(Change{Add: []Lease{b}})
	require.NoError(t, err)
	again, err := (&File{Path: f.Path}).Load()
	require.NoError(t, err)
	assert.Len(t, again.Leases, 1)

	// A snapshot empties the journal.
	require.NoError(t, f.Save(again))
	jb, err := os.ReadFile(f.JournalPath())
	require.NoError(t, err)
	assert.Empty(t, jb)
	n, err = f.Append(Change{Remove: []string{b.ID}})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, f.Close())
	got, err = (&File{Path: f.Path}).Load()
	require.NoError(t, err)
	assert.Empty(t, got.Leases)
}

func TestJournalTornAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	f := &File{Path: filepath.Join(dir, "state.json")}
	a := mk("pg-000000000000000a", ip1, 22, time.Hour)
	_, err := f.Append(Change{Add: []Lease{a}})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	good, err := os.ReadFile(f.JournalPath())
	require.NoError(t, err)

	// A crash in the middle of the last write: that change is ignored.
	torn := append(append([]byte{}, good...), []byte(`{"remove":["pg-000000000000000a"`)...)
	require.NoError(t, os.WriteFile(f.JournalPath(), torn, 0o600))
	got, err := (&File{Path: f.Path}).Load()
	require.NoError(t, err)
	assert.Len(t, got.Leases, 1)

	// Damage before the last line is an error, not a silent loss.
	bad := append([]byte("{not json}\n"), good...)
	require.NoError(t, os.WriteFile(f.JournalPath(), bad, 0o600))
	_, err = (&File{Path: f.Path}).Load()
	assert.ErrorContains(t, err, "line 1")
}

func TestFileRejectsCorruptState(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"not json":      "{",
		"unknown field": `{"version":1,"leases":[],"extra":1}`,
		"wrong version": `{"version":2,"leases":[]}`,
		"incomplete":    `{"version":1,"leases":[{"id":"x","ip":"192.0.2.1"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
			_, err := (&File{Path: p}).Load()
			require.Error(t, err)
		})
	}
}
