package db

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

// The DSN's host is resolved on the bastion and the connection comes out
// of it; the op log's server address is the one dialled there.
func TestConnDialVia(t *testing.T) {
	s := sshtest.Start(t)
	p := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"bastion": ""})}
	t.Cleanup(func() { _ = p.Close() })
	ctx := host.WithPool(context.Background(), p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	c := defaultConn()
	c.DSN = "u:pw@tcp(localhost:" + port + ")/d"
	c.Via = "ssh://bastion"
	require.NoError(t, c.Validate())
	conn, err := c.dial(ctx, "tcp", "localhost:"+port)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:"+port, conn.RemoteAddr().String())
	require.NoError(t, conn.Close())
	assert.Contains(t, s.Forwarded(t), "127.0.0.1 "+port)

	require.NoError(t, ln.Close())
	_, err = c.dial(ctx, "tcp", "localhost:"+port)
	require.Error(t, err)
	var ce *connectError
	assert.ErrorAs(t, err, &ce, "a refused connection through the bastion is a connect error: nothing was sent")
	assert.Contains(t, err.Error(), "via ssh://bastion")

	c.Via = "local"
	assert.ErrorContains(t, c.Validate(), "via:")
}
