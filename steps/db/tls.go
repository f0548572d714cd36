package db

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/opsdrill/opsdrill/steps"
)

// TLSOptions is how a db step protects its connection to the database.
// With pin (or any connection to an address rather than the endpoint's
// name) the certificate is still verified against the endpoint's name:
// the address is where to connect, the name is who must answer.
type TLSOptions struct {
	TLS    string `yaml:"tls" doc:"verify-full (the certificate chains to a trusted CA and names the DSN's host), verify-ca (chains only), skip-verify (encrypted, not verified), preferred (TLS when the server offers it, not verified), off; default: the DSN's tls= parameter, else verify-full with ca_file/ca_pem, else preferred"`
	CAFile string `yaml:"ca_file" doc:"PEM bundle of the CAs to trust, e.g. AWS's RDS global-bundle.pem (relative to the scenario); default: the system's roots"`
	CAPEM  string `yaml:"ca_pem" doc:"the CAs to trust as PEM text, e.g. the lab's ${{ vars.rds_ca_pem }}"`
}

// TLS modes.
const (
	tlsVerifyFull = "verify-full"
	tlsVerifyCA   = "verify-ca"
	tlsSkipVerify = "skip-verify"
	tlsPreferred  = "preferred"
	tlsOff        = "off"
)

var tlsModes = []string{tlsVerifyFull, tlsVerifyCA, tlsSkipVerify, tlsPreferred, tlsOff}

// validateTLS checks the TLS options against the DSN.
func (c *Conn) validateTLS(cfg *mysql.Config) error {
	t := c.TLSOptions
	if t.TLS != "" && !slices.Contains(tlsModes, t.TLS) {
		return fmt.Errorf("tls: must be one of %s, got %q", strings.Join(tlsModes, ", "), t.TLS)
	}
	if _, inDSN := dsnTLS(c.DSN); inDSN && (t.TLS != "" || t.CAFile != "" || t.CAPEM != "") {
		return errors.New("dsn: tls= is set in the DSN and the step sets tls/ca_file/ca_pem: give it in one place (the step's tls)")
	}
	if t.CAFile != "" && t.CAPEM != "" {
		return errors.New("ca_file, ca_pem: give one")
	}
	if (t.CAFile != "" || t.CAPEM != "") && t.TLS != "" && t.TLS != tlsVerifyFull && t.TLS != tlsVerifyCA {
		return fmt.Errorf("ca_file: trusted CAs only matter with tls verify-full or verify-ca, not %s", t.TLS)
	}
	if t.CAPEM != "" {
		if _, err := certPool([]byte(t.CAPEM)); err != nil {
			return fmt.Errorf("ca_pem: %w", err)
		}
	}
	return nil
}

// dsnTLS returns the DSN's tls= parameter.
func dsnTLS(dsn string) (string, bool) {
	i := strings.LastIndex(dsn, "?")
	if i < 0 || i < strings.LastIndex(dsn, ")") {
		return "", false
	}
	for kv := range strings.SplitSeq(dsn[i+1:], "&") {
		if v, ok := strings.CutPrefix(kv, "tls="); ok {
			return v, true
		}
	}
	return "", false
}

// mode is the TLS mode in effect; "" leaves the DSN's tls= to the driver.
func (c *Conn) mode() string {
	switch {
	case c.TLSOptions.TLS != "":
		return c.TLSOptions.TLS
	case c.CAFile != "" || c.CAPEM != "":
		return tlsVerifyFull
	}
	if _, inDSN := dsnTLS(c.DSN); inDSN {
		return ""
	}
	return tlsPreferred
}

// loadCA reads ca_file (relative to the scenario) before the step
// connects; a bad bundle is an error naming the file.
func (c *Conn) loadCA(env *steps.Env) error {
	var data []byte
	switch {
	case c.CAFile != "":
		b, err := os.ReadFile(env.Path(c.CAFile))
		if err != nil {
			return fmt.Errorf("ca_file: %w", err)
		}
		data = b
	case c.CAPEM != "":
		data = []byte(c.CAPEM)
	default:
		return nil
	}
	pool, err := certPool(data)
	if err != nil {
		if c.CAFile != "" {
			return fmt.Errorf("ca_file %s: %w", c.CAFile, err)
		}
		return fmt.Errorf("ca_pem: %w", err)
	}
	c.roots = pool
	return nil
}

func certPool(pemData []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// applyTLS sets the driver's TLS configuration for the mode. host is the
// name the certificate must carry: the DSN's host, also when the
// connection goes to a pinned address.
func (c *Conn) applyTLS(cfg *mysql.Config, host string) {
	mode := c.mode()
	base := func() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} }
	cfg.AllowFallbackToPlaintext = false
	switch mode {
	case "":
		// The DSN's tls= as the driver parsed it; a verifying
		// configuration still names the endpoint, not the pinned address.
		if cfg.TLS != nil && !cfg.TLS.InsecureSkipVerify {
			cfg.TLS = cfg.TLS.Clone()
			cfg.TLS.ServerName = host
		}
		cfg.AllowFallbackToPlaintext = cfg.TLSConfig == tlsPreferred
	case tlsOff:
		cfg.TLS, cfg.TLSConfig = nil, "false"
	case tlsPreferred, tlsSkipVerify:
		t := base()
		t.InsecureSkipVerify = true
		cfg.TLS, cfg.AllowFallbackToPlaintext = t, mode == tlsPreferred
	case tlsVerifyCA:
		t := base()
		roots := c.roots
		// Chain only: Go verifies names too, so it is skipped and the
		// chain checked here.
		t.InsecureSkipVerify = true
		t.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, roots, "")
		}
		cfg.TLS = t
	case tlsVerifyFull:
		t := base()
		t.RootCAs, t.ServerName = c.roots, host
		cfg.TLS = t
	}
}

// verifyChain checks a peer's chain against roots (nil: the system's),
// and its name when name is set.
func verifyChain(raw [][]byte, roots *x509.CertPool, name string) error {
	if len(raw) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("tls: server certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
	return err
}

// tlsHint explains a certificate failure with what to set.
func tlsHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var inv x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return " (the server's certificate is not signed by a trusted CA: give the CA bundle in ca_file, e.g. AWS's RDS global-bundle.pem)"
	case errors.As(err, &host):
		return " (the server's certificate does not name the DSN's host: connect by the endpoint name the certificate carries)"
	case errors.As(err, &inv):
		return " (the server's certificate is not valid now, or not for a server)"
	}
	var ne *net.OpError
	if errors.As(err, &ne) && strings.Contains(err.Error(), "tls") {
		return " (TLS handshake failed)"
	}
	return ""
}
