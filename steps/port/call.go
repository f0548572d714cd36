package port

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// maxBody bounds the answer read.
const maxBody = 64 << 10

// call is one HTTP request to the opener, made from a host.
type call struct {
	Method      string
	URL         string
	ContentType string
	// Auth is an Authorization header value; it is secret.
	Auth string
	Body []byte
	// Host is where the request starts: local or lab:NAME; Source is the
	// address there to send from.
	Host   string
	Source string
	// CACert is a PEM file on Host; Insecure skips verification.
	CACert   string
	Insecure bool
	Timeout  time.Duration
}

type answer struct {
	Status int
	Body   []byte
}

// do sends c. An error means no answer came (connection, TLS, timeout);
// any HTTP status is an answer.
func (c call) do(ctx context.Context, env *steps.Env) (answer, error) {
	if hostexec.IsLocal(c.Host) {
		return c.local(ctx, env)
	}
	return c.remote(ctx)
}

func (c call) local(ctx context.Context, env *steps.Env) (answer, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.Insecure} //nolint:gosec // opt-in, labs only
	if c.CACert != "" {
		pemData, err := os.ReadFile(env.Path(c.CACert))
		if err != nil {
			return answer{}, fmt.Errorf("ca_cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return answer{}, fmt.Errorf("ca_cert: %s holds no PEM certificate", c.CACert)
		}
		tc.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: c.Timeout}
	if c.Source != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.Source)}
	}
	client := &http.Client{
		Timeout:   c.Timeout,
		Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil, DisableKeepAlives: true, DialContext: dialer.DialContext},
		// An opener that redirects is not followed: the answer is its own.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, c.URL, bytes.NewReader(c.Body))
	if err != nil {
		return answer{}, fmt.Errorf("url: %w", err)
	}
	if c.ContentType != "" {
		req.Header.Set("Content-Type", c.ContentType)
	}
	if c.Auth != "" {
		req.Header.Set("Authorization", c.Auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, scrub(err, c)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return answer{}, fmt.Errorf("reading the answer: %w", err)
	}
	return answer{Status: resp.StatusCode, Body: body}, nil
}

// scrub drops the request body and headers from an error: net/http never
// quotes them, but the URL is quoted and is kept.
func scrub(err error, c call) error {
	if c.Auth != "" && strings.Contains(err.Error(), c.Auth) {
		return errors.New("request failed")
	}
	return err
}

// remote runs curl on the host. Everything it sends goes through a curl
// configuration read from stdin (--config -), so the code, the password or
// the token never appear on a command line or in a process list.
func (c call) remote(ctx context.Context) (answer, error) {
	if err := hostexec.LookPath(ctx, c.Host, "curl"); err != nil {
		return answer{}, fmt.Errorf("host %s: curl is needed to call the opener from there: %w", c.Host, err)
	}
	var cfg strings.Builder
	opt := func(name, value string) { fmt.Fprintf(&cfg, "%s = \"%s\"\n", name, curlQuote(value)) }
	flag := func(name string) { cfg.WriteString(name + "\n") }
	opt("url", c.URL)
	opt("request", c.Method)
	opt("proto", "=http,https")
	opt("noproxy", "*")
	opt("max-time", strconv.FormatFloat(c.Timeout.Seconds(), 'f', 3, 64))
	opt("write-out", "\n%{http_code}")
	flag("silent")
	flag("show-error")
	if c.ContentType != "" {
		opt("header", "Content-Type: "+c.ContentType)
	}
	if c.Auth != "" {
		opt("header", "Authorization: "+c.Auth)
	}
	if len(c.Body) > 0 {
		opt("data-binary", string(c.Body))
	}
	if c.CACert != "" {
		opt("cacert", c.CACert)
	}
	if c.Insecure {
		flag("insecure")
	}
	if c.Source != "" {
		opt("interface", c.Source)
	}
	where := c.Host
	if hostexec.IsLocal(where) {
		where = "local"
	}
	res, err := hostexec.Run(ctx, c.Host, []string{"curl", "--config", "-"}, []byte(cfg.String()))
	if err != nil {
		return answer{}, err
	}
	if res.ExitCode != 0 {
		return answer{}, fmt.Errorf("curl on %s exited %d: %s", where, res.ExitCode, strings.TrimSpace(res.Stderr))
	}
	out := res.Stdout
	i := strings.LastIndexByte(out, '\n')
	if i < 0 {
		return answer{}, fmt.Errorf("curl on %s: no status in its output", where)
	}
	status, err := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	if err != nil || status == 0 {
		return answer{}, fmt.Errorf("curl on %s: no HTTP answer", where)
	}
	body := out[:i]
	if len(body) > maxBody {
		body = body[:maxBody]
	}
	return answer{Status: status, Body: []byte(body)}, nil
}

// curlQuote escapes a value for a double-quoted curl config parameter.
func curlQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "\v", `\v`)
	return r.Replace(s)
}
