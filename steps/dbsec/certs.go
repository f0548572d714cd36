package dbsec

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

// Verification policies of db.tls, the lesson of the seed's
// `TrustServerCertificate=true`: an unverified certificate encrypts the
// connection for whoever sits in the middle.
const (
	verifyFull = "full" // the chain to a trusted CA, and the DSN's host name
	verifyCA   = "ca"   // the chain only
	verifyNone = "none" // report, never fail (TrustServerCertificate=true)
)

// handshake is what the client saw of the server's TLS.
type handshake struct {
	done     bool
	version  uint16
	cipher   uint16
	chain    []*x509.Certificate
	chainErr error // the chain does not lead to a trusted CA
	nameErr  error // the leaf does not carry the expected name
}

// tlsVersionName spells a version the way MySQL's Ssl_version and
// PostgreSQL's pg_stat_ssl do, so expectations compare like for like:
// "TLSv1.2" < "TLSv1.3".
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// trustPool builds the roots: the CA file and PEM given, or the system's.
func trustPool(caFile, caPEM string) (*x509.CertPool, error) {
	if caFile == "" && caPEM == "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("system certificate pool: %w", err)
		}
		return pool, nil
	}
	pool := x509.NewCertPool()
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", caFile)
		}
	}
	if caPEM != "" && !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("ca_pem: no PEM certificate")
	}
	return pool, nil
}

// clientTLS returns a client configuration that records the handshake in
// h and judges the server's certificate itself: the chain against roots,
// the leaf against name. Under verify full or ca a bad certificate aborts
// the handshake, before any credential is sent; under none it is only
// recorded. TLS 1.0 and 1.1 are accepted so that a server offering them is
// reported (and failed by an expectation) rather than unreachable.
func clientTLS(h *handshake, roots *x509.CertPool, name, policy string, now func() time.Time) *tls.Config {
	return &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: true, // verified below, so that what failed is known
		MinVersion:         tls.VersionTLS10,
		VerifyConnection: func(cs tls.ConnectionState) error {
			h.done = true
			h.version, h.cipher, h.chain = cs.Version, cs.CipherSuite, cs.PeerCertificates
			h.chainErr, h.nameErr = judge(cs.PeerCertificates, roots, name, now())
			switch {
			case policy == verifyNone:
				return nil
			case h.chainErr != nil:
				return h.chainErr
			case policy == verifyFull && h.nameErr != nil:
				return h.nameErr
			}
			return nil
		},
	}
}

// judge verifies a presented chain at instant now: does it lead to a
// trusted root (validity periods included), and does the leaf carry name.
func judge(chain []*x509.Certificate, roots *x509.CertPool, name string, now time.Time) (chainErr, nameErr error) {
	if len(chain) == 0 {
		return errors.New("the server presented no certificate"), errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, chainErr = chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if chainErr != nil {
		chainErr = fmt.Errorf("certificate not trusted: %w", chainErr)
	}
	if err := chain[0].VerifyHostname(name); err != nil {
		nameErr = fmt.Errorf("certificate name mismatch: %w", err)
	}
	return chainErr, nameErr
}

// daysLeft is the whole days from now to notAfter, negative once expired.
func daysLeft(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

// certInfo is one certificate of the chain as outputs and evidence show it.
func certInfo(c *x509.Certificate, now time.Time) map[string]any {
	sans := []any{}
	for _, n := range c.DNSNames {
		sans = append(sans, n)
	}
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	return map[string]any{
		"subject":    c.Subject.String(),
		"issuer":     c.Issuer.String(),
		"sans":       sans,
		"not_before": c.NotBefore.UTC().Format(time.RFC3339),
		"not_after":  c.NotAfter.UTC().Format(time.RFC3339),
		"days_left":  daysLeft(c.NotAfter, now),
		"is_ca":      c.IsCA,
	}
}
