// Package httpcheck provides http.request: call an HTTP endpoint and expose
// status, headers, body and parsed JSON for expectations.
package httpcheck

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/host"
)

// maxBody bounds the body kept as output.
const maxBody = 1 << 20

func init() {
	steps.Register(steps.Spec{
		Name:    "http.request",
		Summary: "Send an HTTP request and capture status, headers and body",
		Doc: "Sends `method` (default GET) to `url` with optional `headers`, `body` or `json`. " +
			"The step itself only fails when no response arrives; state what a good answer is with expect:, " +
			"e.g. outputs.status == 200. A JSON response is parsed into `json`.",
		New: func() steps.Step { return &Request{Method: "GET", Timeout: 10 * time.Second, FollowRedirects: true} },
		Outputs: []steps.Output{
			{Name: "status", Type: "int", Doc: "HTTP status code"},
			{Name: "headers", Type: "map", Doc: "response headers (first value of each)"},
			{Name: "body", Type: "string", Doc: "response body (first 1 MiB)"},
			{Name: "json", Type: "any", Doc: "the body parsed as JSON, when it is JSON"},
			{Name: "duration_ms", Type: "float", Doc: "time to the full response"},
			{Name: "tls_version", Type: "string", Doc: "negotiated TLS version, empty for plain HTTP"},
		},
		Figures:  requestFigures,
		Examples: []steps.Example{{Title: "Health check", YAML: "- uses: http.request\n  with: { url: \"https://gate:8443/healthz\", tls: { ca_file: ca.pem } }\n  expect: outputs.status == 200"}},
	})
}

// TLS options for https URLs.
type TLS struct {
	CAFile             string `yaml:"ca_file" doc:"PEM file of CAs to trust instead of the system pool"`
	CertFile           string `yaml:"cert_file" doc:"client certificate (PEM)"`
	KeyFile            string `yaml:"key_file" doc:"client key (PEM)"`
	ServerName         string `yaml:"server_name" doc:"name to verify instead of the URL's host"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" doc:"do not verify the server certificate (lab only)"`
	MinVersion         string `yaml:"min_version" doc:"lowest TLS version accepted: 1.2 or 1.3"`
}

// Request is an HTTP call.
type Request struct {
	Method          string            `yaml:"method" doc:"HTTP method (default GET)"`
	URL             string            `yaml:"url" doc:"absolute http or https URL" required:"true"`
	Headers         map[string]string `yaml:"headers" doc:"request headers"`
	Body            string            `yaml:"body" doc:"request body"`
	JSON            any               `yaml:"json" doc:"request body encoded as JSON (sets Content-Type)"`
	Form            map[string]string `yaml:"form" doc:"request body as an urlencoded form"`
	Timeout         time.Duration     `yaml:"timeout" doc:"whole-request timeout (default 10s)"`
	FollowRedirects bool              `yaml:"follow_redirects" doc:"follow redirects (default true)"`
	TLS             TLS               `yaml:"tls" doc:"TLS options"`
	Via             string            `yaml:"via" doc:"connect through this SSH host (ssh://bastion, direct-tcpip); the URL's host name is resolved there"`
}

// Validate checks the parameters.
func (r *Request) Validate() error {
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url: expected an absolute http(s) URL, got %q", r.URL)
	}
	n := 0
	for _, set := range []bool{r.Body != "", r.JSON != nil, len(r.Form) > 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("give only one of body, json and form")
	}
	if r.Timeout <= 0 {
		return errors.New("timeout: must be positive")
	}
	switch r.TLS.MinVersion {
	case "", "1.2", "1.3":
	default:
		return fmt.Errorf("tls.min_version: must be 1.2 or 1.3, got %q", r.TLS.MinVersion)
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	if err := host.ValidateVia(r.Via); err != nil {
		return err
	}
	return nil
}

func (r *Request) tlsConfig(env *steps.Env) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: r.TLS.ServerName, InsecureSkipVerify: r.TLS.InsecureSkipVerify} //nolint:gosec // opt-in for labs
	switch r.TLS.MinVersion {
	case "1.3":
		cfg.MinVersion = tls.VersionTLS13
	default:
		cfg.MinVersion = tls.VersionTLS12
	}
	if r.TLS.CAFile != "" {
		pem, err := os.ReadFile(env.Path(r.TLS.CAFile))
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	if r.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(env.Path(r.TLS.CertFile), env.Path(r.TLS.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Run sends the request.
func (r *Request) Run(ctx context.Context, env *steps.Env) error {
	tlsCfg, err := r.tlsConfig(env)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   r.Timeout,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil, ForceAttemptHTTP2: true},
	}
	if r.Via != "" {
		via := r.Via
		client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return host.DialVia(ctx, via, network, addr)
		}
	}
	if !r.FollowRedirects {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	var body io.Reader
	contentType := ""
	switch {
	case r.JSON != nil:
		b, err := json.Marshal(r.JSON)
		if err != nil {
			return fmt.Errorf("json: %w", err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	case len(r.Form) > 0:
		vals := url.Values{}
		for k, v := range r.Form {
			vals.Set(k, v)
		}
		body, contentType = strings.NewReader(vals.Encode()), "application/x-www-form-urlencoded"
	case r.Body != "":
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return steps.Failf("%s %s: %s", r.Method, redactURL(r.URL), unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return steps.Failf("reading response: %s", err)
	}
	env.SetOutput("duration_ms", float64(time.Since(start).Microseconds())/1000)
	env.SetOutput("status", resp.StatusCode)
	headers := make(map[string]any, len(resp.Header))
	for k, v := range resp.Header {
		if len(v) > 0 {
			headers[k] = v[0]
		}
	}
	env.SetOutput("headers", headers)
	env.SetOutput("body", string(data))
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" || strings.HasSuffix(mt, "+json") {
		var v any
		if json.Unmarshal(data, &v) == nil {
			env.SetOutput("json", v)
		}
	}
	version := ""
	if resp.TLS != nil {
		version = tls.VersionName(resp.TLS.Version)
	}
	env.SetOutput("tls_version", version)
	return nil
}

// redactURL drops userinfo and the query from a URL shown in a message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

func unwrapURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
