package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// A database host that stops answering (killed, cut off: no reset comes
// back) is "unreachable" within the state's 5s, and a command to it ends
// with its context: the service's SSH never waits for TCP to give up.
func TestSSHOpsHostThatStopsAnswering(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	srv := &ssh.ServerConfig{NoClientAuth: true}
	srv.AddHostKey(signer)
	// A loopback address of its own: sshOps dials port 22.
	var b [2]byte
	_, _ = rand.Read(b[:])
	ip := netip.AddrFrom4([4]byte{127, 77, b[0], b[1] | 1})
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 22).String())
	if err != nil {
		t.Skipf("no loopback port 22 to listen on: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { nc.Close() })
			go func() {
				// The handshake, then silence: channel opens get no answer.
				_, _, reqs, err := ssh.NewServerConn(nc, srv)
				if err == nil {
					ssh.DiscardRequests(reqs)
				}
			}()
		}
	}()
	h := &Host{Name: "db-a", IP: ip}
	ops := &sshOps{h: h, cfg: &ssh.ClientConfig{User: SSHUser, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}}

	start := time.Now()
	st, err := ops.state(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "unreachable", st)
	assert.Less(t, time.Since(start), 8*time.Second, "the state's own 5s bound the channel open")

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = ops.exec(ctx, Command{Args: []string{"true"}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 3*time.Second, fmt.Sprintf("exec waited %s", time.Since(start)))
}
