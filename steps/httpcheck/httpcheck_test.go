package httpcheck

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

func do(t *testing.T, r *Request) (map[string]any, error) {
	t.Helper()
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Timeout == 0 {
		r.Timeout = 2 * time.Second
	}
	require.NoError(t, r.Validate())
	env := steps.NewEnv("s", "h", "", steps.Hooks{})
	env.BaseDir = t.TempDir()
	err := r.Run(context.Background(), env)
	return env.Outputs(), err
}

func TestRequestJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Seen", r.Header.Get("X-Token")+"|"+r.Header.Get("Content-Type"))
		w.WriteHeader(201)
		w.Write([]byte(`{"echo":` + string(body) + `,"n":2}`))
	}))
	defer srv.Close()
	out, err := do(t, &Request{Method: "POST", URL: srv.URL, Headers: map[string]string{"X-Token": "t"}, JSON: map[string]any{"a": 1}})
	require.NoError(t, err)
	assert.Equal(t, 201, out["status"])
	assert.Equal(t, "t|application/json", out["headers"].(map[string]any)["X-Seen"])
	js := out["json"].(map[string]any)
	assert.Equal(t, float64(2), js["n"])
	assert.Equal(t, map[string]any{"a": float64(1)}, js["echo"])
	assert.Equal(t, "", out["tls_version"])
}

func TestRequestTLSWithCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	// Without trusting the test CA the request fails as a check.
	_, err := do(t, &Request{URL: srv.URL})
	require.Error(t, err)
	assert.True(t, steps.IsFailure(err))
	assert.Contains(t, err.Error(), "certificate")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	out, err := do(t, &Request{URL: srv.URL, TLS: TLS{CAFile: ca}})
	require.NoError(t, err)
	assert.Equal(t, "ok", out["body"])
	assert.Equal(t, "TLS 1.3", out["tls_version"])
}

func TestRequestNoRedirect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/next", http.StatusFound)
			return
		}
		w.Write([]byte("next"))
	}))
	defer srv.Close()
	out, err := do(t, &Request{URL: srv.URL, FollowRedirects: false})
	require.NoError(t, err)
	assert.Equal(t, 302, out["status"])
	out, err = do(t, &Request{URL: srv.URL, FollowRedirects: true})
	require.NoError(t, err)
	assert.Equal(t, "next", out["body"])
}

func TestRequestConnectionRefusedHidesCredentials(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := do(t, &Request{URL: "http://user:pw@" + url[len("http://"):] + "/x?token=abc"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "pw@")
	assert.NotContains(t, err.Error(), "token=abc")
}

func TestRequestValidate(t *testing.T) {
	for _, r := range []Request{
		{URL: "ftp://x", Timeout: time.Second},
		{URL: "http://x", Body: "a", JSON: 1, Timeout: time.Second},
		{URL: "http://x", Timeout: time.Second, TLS: TLS{MinVersion: "1.0"}},
		{URL: "http://x", Timeout: time.Second, TLS: TLS{CertFile: "a"}},
	} {
		assert.Error(t, r.Validate())
	}
}
