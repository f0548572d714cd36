package totp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Endpoint describes an HTTP validator: where to send a code and how to
// tell an accepted code from a refused one.
type Endpoint struct {
	URL           string            `yaml:"url" required:"true" doc:"validator URL, http or https"`
	Method        string            `yaml:"method" doc:"POST (default) or GET; GET sends the fields in the query string"`
	Encoding      string            `yaml:"encoding" doc:"POST body: form (default, application/x-www-form-urlencoded) or json"`
	UserField     string            `yaml:"user_field" doc:"name of the user field (default user)"`
	User          string            `yaml:"user" doc:"account to authenticate as; the user field is omitted when empty"`
	CodeField     string            `yaml:"code_field" doc:"name of the code field (default code)"`
	Fields        map[string]any    `yaml:"fields" doc:"extra fields sent with every submission; JSON keeps their types (a port stays a number)"`
	Headers       map[string]string `yaml:"headers" doc:"extra request headers, e.g. Authorization"`
	SuccessStatus []int             `yaml:"success_status" doc:"HTTP statuses that mean accepted (default any 2xx)"`
	SuccessBody   string            `yaml:"success_body" doc:"regular expression the response body must also match for accepted"`
	CACert        string            `yaml:"ca_cert" doc:"PEM file of the CA that signed an https validator's certificate (relative to the scenario)"`
	CAPEM         string            `yaml:"ca_pem" doc:"the same CA as PEM text, e.g. from a vars file"`
	InsecureTLS   bool              `yaml:"insecure_tls" doc:"do not verify the validator's certificate (lab only)"`
}

// tlsConfig builds the client TLS settings; path resolves ca_cert.
func (e *Endpoint) tlsConfig(path func(string) string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: e.InsecureTLS} //nolint:gosec // opt-in, lab only
	pemText := []byte(e.CAPEM)
	if e.CACert != "" {
		b, err := os.ReadFile(path(e.CACert))
		if err != nil {
			return nil, fmt.Errorf("endpoint.ca_cert: %w", err)
		}
		pemText = append(pemText, b...)
	}
	if len(pemText) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemText) {
			return nil, errors.New("endpoint.ca_cert / ca_pem: no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// codePlaceholder is replaced by the code in validator_command arguments.
const codePlaceholder = "{code}"

// submitter hands one code to a validator. accepted reports the verdict;
// detail is a short, secret-free description of the answer (HTTP status,
// exit status); err means no verdict could be had.
type submitter interface {
	submit(ctx context.Context, code string) (accepted bool, detail string, err error)
}

func (e *Endpoint) method() string {
	if e.Method == "" {
		return http.MethodPost
	}
	return strings.ToUpper(e.Method)
}

func (e *Endpoint) encoding() string {
	if e.Encoding == "" {
		return "form"
	}
	return e.Encoding
}

func (e *Endpoint) userField() string { return cmpOr(e.UserField, "user") }
func (e *Endpoint) codeField() string { return cmpOr(e.CodeField, "code") }

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// validate checks the endpoint at load time.
func (e *Endpoint) validate() error {
	if e.URL == "" {
		return errors.New("endpoint.url: required")
	}
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint.url: want an http:// or https:// URL, got %q", redactURL(e.URL))
	}
	if m := e.method(); m != http.MethodPost && m != http.MethodGet {
		return fmt.Errorf("endpoint.method: must be POST or GET, got %q", e.Method)
	}
	if enc := e.encoding(); enc != "form" && enc != "json" {
		return fmt.Errorf("endpoint.encoding: must be form or json, got %q", e.Encoding)
	}
	if e.method() == http.MethodGet && e.Encoding != "" {
		return errors.New("endpoint.encoding: only for POST; GET sends fields in the query string")
	}
	if e.userField() == e.codeField() {
		return fmt.Errorf("endpoint.user_field, endpoint.code_field: must differ, both are %q", e.codeField())
	}
	for _, s := range e.SuccessStatus {
		if s < 100 || s > 599 {
			return fmt.Errorf("endpoint.success_status: %d is not an HTTP status", s)
		}
	}
	if _, err := regexp.Compile(e.SuccessBody); err != nil {
		return fmt.Errorf("endpoint.success_body: %w", err)
	}
	return nil
}

// redactURL hides a password in a URL's user info.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// httpSubmitter posts codes to an Endpoint.
type httpSubmitter struct {
	e      *Endpoint
	client *http.Client
	body   *regexp.Regexp
}

// maxBody bounds how much of a response is read to match success_body.
const maxBody = 64 << 10

func newHTTPSubmitter(e *Endpoint, timeout time.Duration, tlsCfg *tls.Config) *httpSubmitter {
	tr := &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil}
	s := &httpSubmitter{e: e, client: &http.Client{Timeout: timeout, Transport: tr}}
	if e.SuccessBody != "" {
		s.body = regexp.MustCompile(e.SuccessBody) // checked by validate
	}
	return s
}

func (s *httpSubmitter) request(ctx context.Context, code string) (*http.Request, error) {
	vals := url.Values{}
	for k, v := range s.e.Fields {
		vals.Set(k, fmt.Sprint(v))
	}
	if s.e.User != "" {
		vals.Set(s.e.userField(), s.e.User)
	}
	vals.Set(s.e.codeField(), code)

	u, err := url.Parse(s.e.URL)
	if err != nil {
		return nil, errors.New("endpoint.url: unparsable")
	}
	var body io.Reader
	contentType := ""
	switch {
	case s.e.method() == http.MethodGet:
		q := u.Query()
		for k, v := range vals {
			q[k] = v
		}
		u.RawQuery = q.Encode()
	case s.e.encoding() == "json":
		m := make(map[string]any, len(vals))
		for k := range vals {
			m[k] = vals.Get(k)
		}
		for k, v := range s.e.Fields {
			m[k] = v // typed: a validator may want a number
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("endpoint: encoding the JSON body: %w", err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	default:
		body, contentType = strings.NewReader(vals.Encode()), "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequestWithContext(ctx, s.e.method(), u.String(), body)
	if err != nil {
		// The error would quote the URL, which for GET holds the code.
		return nil, fmt.Errorf("endpoint: cannot build a %s request for %s", s.e.method(), redactURL(s.e.URL))
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range s.e.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

func (s *httpSubmitter) submit(ctx context.Context, code string) (bool, string, error) {
	req, err := s.request(ctx, code)
	if err != nil {
		return false, "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// A *url.Error quotes the URL, which for GET holds the code: keep
		// only the cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return false, "", fmt.Errorf("endpoint: %s %s: %w", s.e.method(), redactURL(s.e.URL), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return false, "", fmt.Errorf("endpoint: reading the response: %w", err)
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	if len(s.e.SuccessStatus) > 0 {
		ok = slices.Contains(s.e.SuccessStatus, resp.StatusCode)
	}
	detail := "HTTP " + strconv.Itoa(resp.StatusCode)
	if ok && s.body != nil && !s.body.Match(body) {
		ok = false
		detail += ", body does not match success_body"
	}
	return ok, detail, nil
}

// commandSubmitter runs validator_command once per code. Its output is
// discarded: validators such as oathtool echo the code they refuse.
type commandSubmitter struct {
	argv    []string
	timeout time.Duration
}

func (s *commandSubmitter) submit(ctx context.Context, code string) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	argv := make([]string, len(s.argv))
	for i, a := range s.argv {
		argv[i] = strings.ReplaceAll(a, codePlaceholder, code)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, "exit status 0", nil
	case ctx.Err() != nil:
		return false, "", fmt.Errorf("validator_command: %s gave no answer within %s: %w", s.argv[0], s.timeout, ctx.Err())
	case errors.As(err, &exit):
		return false, "exit status " + strconv.Itoa(exit.ExitCode()), nil
	}
	// argv[0] never holds the code (validateProbe), so exec's error is safe.
	return false, "", fmt.Errorf("validator_command: %w", err)
}
