package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
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
