package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteJSONLines(t *testing.T) {
	var b bytes.Buffer
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	l := New(&b, func() time.Time { return at })
	l.Write(Event{Event: Open, User: "alice", Source: netip.MustParseAddr("192.0.2.1"), IP: netip.MustParseAddr("192.0.2.1"),
		Port: 22, Lease: "pg-1", Expires: at.Add(time.Minute)})
	l.Write(Event{Event: Deny, User: "alice", Source: netip.MustParseAddr("192.0.2.1"), Port: 22, Reason: "replay"})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 2)
	assert.Equal(t, `{"time":"2026-05-01T10:00:00Z","event":"open","user":"alice","source":"192.0.2.1","ip":"192.0.2.1","port":22,"lease":"pg-1","expires":"2026-05-01T10:01:00Z"}`, lines[0])
	assert.Equal(t, `{"time":"2026-05-01T10:00:00Z","event":"deny","user":"alice","source":"192.0.2.1","port":22,"reason":"replay"}`, lines[1],
		"empty fields are left out; times are UTC")
	require.NoError(t, l.Err())
	var nilLog *Log
	nilLog.Write(Event{Event: Start}) // a daemon without audit log
}

// TestNoSecretField: an event has no field a code, key, password or token
// could go in.
func TestNoSecretField(t *testing.T) {
	typ := reflect.TypeOf(Event{})
	for i := range typ.NumField() {
		name := strings.ToLower(typ.Field(i).Name)
		for _, bad := range []string{"code", "key", "secret", "password", "token"} {
			assert.NotContains(t, name, bad)
		}
	}
}

func TestConcurrentLinesDoNotInterleave(t *testing.T) {
	var b bytes.Buffer
	l := New(&lockedWriter{w: &b}, nil)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { l.Write(Event{Event: Expire, Lease: strings.Repeat("x", i)}) })
	}
	wg.Wait()
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var e Event
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorKept(t *testing.T) {
	l := New(failing{}, nil)
	l.Write(Event{Event: Start})
	assert.EqualError(t, l.Err(), "disk full")
}

func TestRefusalsAggregatedPerSourcePerMinute(t *testing.T) {
	var b bytes.Buffer
	at := time.Date(2026, 5, 1, 12, 0, 10, 0, time.UTC)
	l := New(&b, func() time.Time { return at })
	attacker, user := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("192.0.2.1")
	for i := range 500 {
		reason := "bad_code"
		if i%2 == 1 {
			reason = "locked_user"
		}
		l.Write(Event{Event: Deny, User: "alice", Source: attacker, Port: 22, Reason: reason})
	}
	l.Write(Event{Event: Deny, User: "alice", Source: user, Port: 22, Reason: "bad_code"})
	l.Write(Event{Event: Open, User: "alice", Source: user, Port: 22})
	at = at.Add(time.Minute)
	require.NoError(t, l.Flush())
	var got []Event
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var e Event
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		got = append(got, e)
	}
	require.Len(t, got, DenyBurst+3, "the first refusals in full, one summary, and the rest")
	sum := got[len(got)-1]
	assert.Equal(t, DenySummary, sum.Event)
	assert.Equal(t, attacker, sum.Source)
	assert.Equal(t, 500-DenyBurst, sum.Count)
	assert.Equal(t, map[string]int{"bad_code": 247, "locked_user": 248}, sum.Reasons)
	assert.True(t, sum.Time.Equal(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)))
	assert.True(t, sum.Until.Equal(time.Date(2026, 5, 1, 12, 1, 0, 0, time.UTC)))
	assert.Equal(t, Open, got[len(got)-2].Event, "other events are never held back")
}

func TestFileRotatesBySize(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "audit.jsonl")
	// A file portgate did not write stays untouched.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "audit.jsonl.notes"), []byte("mine"), 0o600))
	l, err := OpenFile(p, FileOptions{MaxBytes: 1000, Keep: 2}, nil)
	require.NoError(t, err)
	for i := range 100 {
		l.Write(Event{Event: Open, User: "alice", Lease: fmt.Sprintf("pg-%016d", i)})
	}
	require.NoError(t, l.Close())
	for _, name := range []string{"audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"} {
		st, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err, name)
		assert.LessOrEqual(t, st.Size(), int64(1000), name)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), name)
	}
	_, err = os.Stat(filepath.Join(dir, "audit.jsonl.3"))
	assert.ErrorIs(t, err, os.ErrNotExist, "only keep rotated files")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Contains(t, string(b), "pg-0000000000000099", "the newest events are in the live file")
	notes, err := os.ReadFile(filepath.Join(dir, "audit.jsonl.notes"))
	require.NoError(t, err)
	assert.Equal(t, "mine", string(notes))
	l.Write(Event{Event: Open})
	assert.Error(t, l.Err(), "writing after Close is an error, kept")
}
