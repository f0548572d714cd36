package httpcheck

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
	"github.com/opsdrill/opsdrill/steps/host/sshtest"
)

func TestRequestVia(t *testing.T) {
	s := sshtest.Start(t)
	p := &host.Pool{SSHConfig: s.Config(t, s.KnownHosts(t, s.HostKey), map[string]string{"bastion": ""})}
	t.Cleanup(func() { _ = p.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "from "+r.Host)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	r := &Request{Method: "GET", URL: "http://localhost:" + port + "/x", Timeout: 5 * time.Second, FollowRedirects: true, Via: "ssh://bastion"}
	require.NoError(t, r.Validate())
	env := steps.NewEnv("s", "x", t.TempDir(), steps.Hooks{})
	require.NoError(t, r.Run(host.WithPool(context.Background(), p), env))
	assert.Equal(t, 200, env.Outputs()["status"])
	assert.Equal(t, "from localhost:"+port, env.Outputs()["body"])
	assert.Contains(t, s.Forwarded(t), "127.0.0.1 "+port, "the request went through the bastion, to the address the name has there")

	r.Via = "local"
	require.Error(t, r.Validate())
}
