package port

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	pgt "github.com/opsdrill/opsdrill/portgate/portgatetest"
	"github.com/opsdrill/opsdrill/steps"
)

func newExpiry(address string, end time.Time, mod func(*Expiry)) *Expiry {
	spec, _ := steps.Lookup("port.expiry")
	e := spec.New().(*Expiry)
	e.Address, e.Expires = address, end.UTC().Format(time.RFC3339Nano)
	e.Interval, e.Timeout = 50*time.Millisecond, 300*time.Millisecond
	if mod != nil {
		mod(e)
	}
	return e
}

// listen serves address until stop is called.
func listen(t *testing.T) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() { ln.Close() }
}

func TestExpiryValidate(t *testing.T) {
	end := time.Now()
	for _, c := range []struct {
		mod  func(*Expiry)
		want string
	}{
		{func(e *Expiry) { e.Address = "gate" }, `address: expected host:port, got "gate"`},
		{func(e *Expiry) { e.Expires = "tomorrow" }, `expires: expected an RFC 3339 instant, got "tomorrow"`},
		{func(e *Expiry) { e.Tolerance = 0 }, "tolerance: must be positive"},
		{func(e *Expiry) { e.Source, e.Host = "10.0.0.1", "lab:pgclient1" }, "source: only when probing from this machine"},
		{func(e *Expiry) { e.Host = "lab:pgclient1" }, "timeout: at least 1s from a lab host"},
		{func(e *Expiry) { e.Host = "nowhere" }, `host: "nowhere" is not a host reference`},
	} {
		assert.ErrorContains(t, newExpiry("127.0.0.1:22", end, c.mod).Validate(), c.want)
	}
	require.NoError(t, newExpiry("127.0.0.1:22", end, nil).Validate())
}

// Faults the step must catch, on plain local listeners: a port that stays
// open past the end, and one closed long before it.
func TestExpiryCatchesFaults(t *testing.T) {
	addr, _ := listen(t)
	r := runStep(t, newExpiry(addr, time.Now().Add(300*time.Millisecond), func(e *Expiry) { e.Tolerance = 200 * time.Millisecond }))
	require.True(t, r.failed(), "%v", r.err)
	assert.Contains(t, r.err.Error(), "is still open")
	assert.Equal(t, false, r.out["closed"])

	closedAddr, stop := listen(t)
	stop()
	r = runStep(t, newExpiry(closedAddr, time.Now().Add(5*time.Second), nil))
	require.True(t, r.failed(), "%v", r.err)
	assert.Contains(t, r.err.Error(), "before the lease end: the lease was cut short")

	// A listener stopped at the end passes, with its timeline as evidence.
	addr, stop = listen(t)
	end := time.Now().Add(400 * time.Millisecond)
	time.AfterFunc(time.Until(end), stop)
	r = runStep(t, newExpiry(addr, end, func(e *Expiry) { e.Tolerance = 5 * time.Second }))
	require.NoError(t, r.err)
	assert.Equal(t, true, r.out["closed"])
	require.Len(t, r.evidence, 1)
	assert.Equal(t, "series", r.evidence[0].Kind)
}

// TestExpiryAgainstPortgate watches a real lease end, for each backend.
func TestExpiryAgainstPortgate(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			g, mk, svc := gateSteps(t, pgt.Options{Backend: backend})
			open := runStep(t, mk(func(o *Open) { o.Duration = 3 * time.Second }))
			require.NoError(t, open.err)
			r := runStep(t, newExpiry(svc, mustTime(t, open.out["expires"].(string)), func(e *Expiry) {
				e.Source, e.Tolerance = g.UplinkIP, time.Second
			}))
			require.NoError(t, r.err)
			t.Logf("%s: closed %d ms after the end, last open %v ms", backend, r.out["closed_after_ms"], r.out["last_open_ms"])
			assert.Equal(t, true, r.out["closed"])
			assert.NotNil(t, r.out["last_open_ms"], "it was seen open before the end")
			assert.Equal(t, http.StatusCreated, open.out["status"])
		})
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return v
}

// A port that closes at the end and then opens again (something re-adds
// the rule) is not closed, even when a probe fell in the gap.
func TestExpiryCatchesReopen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	serve := func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}
	go serve(ln)
	end := time.Now().Add(300 * time.Millisecond)
	reopened := make(chan net.Listener, 1)
	time.AfterFunc(time.Until(end), func() {
		ln.Close()
		time.Sleep(250 * time.Millisecond)
		ln2, err := net.Listen("tcp", addr)
		if err != nil {
			reopened <- nil
			return
		}
		go serve(ln2)
		reopened <- ln2
	})
	r := runStep(t, newExpiry(addr, end, func(e *Expiry) { e.Tolerance, e.Hold = 2*time.Second, 2*time.Second }))
	ln2 := <-reopened
	require.NotNil(t, ln2, "the test could not listen on %s again", addr)
	defer ln2.Close()
	require.True(t, r.failed(), "%v", r.err)
	assert.Contains(t, r.err.Error(), "then was open again")
	assert.Equal(t, true, r.out["reopened"])
	assert.Equal(t, false, r.out["closed"])

	// With hold 0 the step stops at the first closed probe, as before.
	addr2, stop := listen(t)
	end = time.Now().Add(300 * time.Millisecond)
	time.AfterFunc(time.Until(end), stop)
	r = runStep(t, newExpiry(addr2, end, func(e *Expiry) { e.Tolerance, e.Hold = 2*time.Second, 0 }))
	require.NoError(t, r.err)
	assert.Equal(t, false, r.out["reopened"])
}
