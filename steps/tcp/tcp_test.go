package tcp

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

func probe(t *testing.T, p *Probe) (map[string]any, error) {
	t.Helper()
	if p.Timeout == 0 {
		p.Timeout = time.Second
	}
	require.NoError(t, p.Validate())
	env := steps.NewEnv("s", "p", "", steps.Hooks{})
	err := p.Run(context.Background(), env)
	return env.Outputs(), err
}

func listener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// closedAddr returns an address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestProbeOpen(t *testing.T) {
	out, err := probe(t, &Probe{Address: listener(t), Expect: "open"})
	require.NoError(t, err)
	assert.Equal(t, true, out["open"])
	assert.Equal(t, "open", out["state"])
}

func TestProbeExpectOpenButClosedFails(t *testing.T) {
	out, err := probe(t, &Probe{Address: closedAddr(t), Expect: "open"})
	require.Error(t, err)
	assert.True(t, steps.IsFailure(err))
	assert.Equal(t, "refused", out["state"])
	assert.Equal(t, false, out["open"])
}

func TestProbeExpectClosed(t *testing.T) {
	_, err := probe(t, &Probe{Address: closedAddr(t), Expect: "closed"})
	require.NoError(t, err)
	_, err = probe(t, &Probe{Address: listener(t), Expect: "closed"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is open, expected closed")
}

func TestProbeFromSourceAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			got <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	_, err = probe(t, &Probe{Address: ln.Addr().String(), Expect: "open", Source: "127.0.0.2"})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.2", <-got)
}

func TestProbeValidate(t *testing.T) {
	for _, p := range []Probe{
		{Address: "nohost", Expect: "open", Timeout: time.Second},
		{Address: "a:1", Expect: "maybe", Timeout: time.Second},
		{Address: "a:1", Expect: "open", Timeout: time.Second, Source: "not-ip"},
	} {
		assert.Error(t, p.Validate())
	}
}
