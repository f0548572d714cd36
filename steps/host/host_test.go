package host

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ref
		err  string
	}{
		{in: "", want: Ref{Scheme: "local"}},
		{in: "local", want: Ref{Scheme: "local"}},
		{in: "ssh://cgw", want: Ref{Scheme: "ssh", Name: "cgw"}},
		{in: "ssh://ops@cgw:2222?sudo=true", want: Ref{Scheme: "ssh", User: "ops", Name: "cgw", Port: 2222, Sudo: true}},
		{in: "ssh://ops@cgw?sudo=false", want: Ref{Scheme: "ssh", User: "ops", Name: "cgw"}},
		{in: "lab:client1", want: Ref{Scheme: "lab", Name: "client1"}},
		{in: "lab:abc/client1", want: Ref{Scheme: "lab", Name: "abc/client1"}},
		{in: "client1", err: "is not a host reference"},
		{in: "lab:", err: "a name is missing"},
		{in: "ssh://", err: "host name is missing"},
		{in: "ssh://ops:hunter2@cgw", err: "a password does not belong"},
		{in: "ssh://cgw:99999", err: "port"},
		{in: "ssh://cgw/etc", err: "no path"},
		{in: "ssh://cgw?sudo=maybe", err: "sudo="},
		{in: "ssh://cgw?proxy=x", err: `unknown option "proxy"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.NotContains(t, err.Error(), "hunter2")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, r)
			again, err := Parse(r.String())
			require.NoError(t, err)
			assert.Equal(t, r, again, "String reads back")
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{in: "local"},
		{in: "ssh://ops@cgw?sudo=true"},
		{in: "local?sudo=true", err: "not a host reference"},
		{in: "nosuch:thing", err: "no nosuch: transport"},
	} {
		err := Validate(tc.in)
		if tc.err == "" {
			assert.NoError(t, err, tc.in)
			continue
		}
		require.Error(t, err, tc.in)
		assert.Contains(t, err.Error(), tc.err)
	}
}

// countingTransport counts opens and can fail them.
type countingTransport struct {
	opens atomic.Int32
	fail  atomic.Bool
}

func (c *countingTransport) Check(Ref) error { return nil }

func (c *countingTransport) Open(context.Context, Ref, *Pool) (Host, error) {
	c.opens.Add(1)
	time.Sleep(20 * time.Millisecond)
	if c.fail.Load() {
		return nil, assert.AnError
	}
	return Local{}, nil
}

func TestPoolSharesOneOpen(t *testing.T) {
	ct := &countingTransport{}
	Register("counting", ct)
	p := &Pool{}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Open(ctx, "counting:a")
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 1, ct.opens.Load(), "one open for concurrent users")
	_, err := p.Open(ctx, "counting:b")
	require.NoError(t, err)
	assert.EqualValues(t, 2, ct.opens.Load())

	require.NoError(t, p.Close())
	ct.fail.Store(true)
	_, err = p.Open(ctx, "counting:a")
	require.ErrorIs(t, err, assert.AnError)
	ct.fail.Store(false)
	_, err = p.Open(ctx, "counting:a")
	require.NoError(t, err, "a failed open is not remembered")
	assert.EqualValues(t, 4, ct.opens.Load())

	q := &Pool{}
	h, err := Open(WithPool(ctx, q), "local")
	require.NoError(t, err)
	assert.Equal(t, "local", h.String())
	assert.Len(t, q.hosts, 1, "Open used the context's pool")
}

func TestLocal(t *testing.T) {
	ctx := context.Background()
	var h Host = Local{}
	res, err := h.Run(ctx, Command{Args: []string{"sh", "-c", "cat; echo $GREETING >&2; exit 4"}, Stdin: []byte("in"), Env: []string{"GREETING=hi"}})
	require.NoError(t, err)
	assert.Equal(t, Result{Stdout: "in", Stderr: "hi\n", ExitCode: 4}, res)
	_, err = h.Run(ctx, Command{})
	assert.Error(t, err)

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = h.Run(short, Command{Args: []string{"sh", "-c", "sleep 30 & sleep 30"}})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second)

	dst := filepath.Join(t.TempDir(), "sub", "f")
	require.NoError(t, h.WriteFile(ctx, dst, []byte("data"), 0o600))
	b, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.Equal(t, "data", string(b))
	st, err := os.Stat(dst)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := h.Dial(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	c.Close()
	require.NoError(t, LookPath(ctx, h, "sh"))
	require.Error(t, LookPath(ctx, h, "no-such-program-here"))
}
