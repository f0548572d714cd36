package dbsec

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
)

func parsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}

// TestJudge verifies chains as db.tls does, one fault per case.
func TestJudge(t *testing.T) {
	ca, err := lab.LabCA()
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	now := time.Now()
	issue := func(names []string, nb, na time.Time) *x509.Certificate {
		c, _, err := ca.Issue(names, nb, na)
		require.NoError(t, err)
		return parsePEM(t, c)
	}
	good := issue([]string{"db.example.internal", "10.0.0.5"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	tests := []struct {
		name             string
		chain            []*x509.Certificate
		roots            *x509.CertPool
		host             string
		chainErr, nameOK bool
		want             string
	}{
		{name: "trusted, right name", chain: []*x509.Certificate{good}, roots: roots, host: "db.example.internal", nameOK: true},
		{name: "trusted, IP SAN", chain: []*x509.Certificate{good}, roots: roots, host: "10.0.0.5", nameOK: true},
		{name: "wrong name", chain: []*x509.Certificate{good}, roots: roots, host: "other.example.internal", want: "name mismatch"},
		{name: "untrusted CA", chain: []*x509.Certificate{good}, roots: x509.NewCertPool(), host: "db.example.internal", chainErr: true, nameOK: true, want: "not trusted"},
		{name: "expired", chain: []*x509.Certificate{issue([]string{"db.example.internal"}, now.Add(-48*time.Hour), now.Add(-time.Hour))},
			roots: roots, host: "db.example.internal", chainErr: true, nameOK: true, want: "expired"},
		{name: "not yet valid", chain: []*x509.Certificate{issue([]string{"db.example.internal"}, now.Add(time.Hour), now.Add(48*time.Hour))},
			roots: roots, host: "db.example.internal", chainErr: true, nameOK: true, want: "not trusted"},
		{name: "no certificate", roots: roots, host: "db", chainErr: true, want: "no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chainErr, nameErr := judge(tt.chain, tt.roots, tt.host, now)
			assert.Equal(t, tt.chainErr, chainErr != nil, "chain: %v", chainErr)
			assert.Equal(t, tt.nameOK, nameErr == nil, "name: %v", nameErr)
			if tt.want != "" {
				assert.ErrorContains(t, errors.Join(chainErr, nameErr), tt.want)
			}
		})
	}
}

func TestTLSNamesAndDays(t *testing.T) {
	assert.Equal(t, "TLSv1", tlsVersionName(tls.VersionTLS10))
	assert.Equal(t, "TLSv1.2", tlsVersionName(tls.VersionTLS12))
	assert.Equal(t, "TLSv1.3", tlsVersionName(tls.VersionTLS13))
	assert.Less(t, tlsVersionName(tls.VersionTLS12), tlsVersionName(tls.VersionTLS13), "expectations compare the names as strings")
	assert.Less(t, tlsVersionName(tls.VersionTLS11), tlsVersionName(tls.VersionTLS12))
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	assert.Equal(t, 30, daysLeft(now.Add(30*24*time.Hour+time.Hour), now))
	assert.Equal(t, 0, daysLeft(now.Add(time.Hour), now))
	assert.Equal(t, -1, daysLeft(now.Add(-time.Hour), now), "an expired certificate has negative days left")
}

func TestTLSValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *TLSCheck)
		want   string
	}{
		{"no dsn", func(c *TLSCheck) { c.DSN = "" }, "dsn: missing"},
		{"tls= in a MySQL DSN", func(c *TLSCheck) { c.DSN += "?tls=skip-verify" }, "not tls= in the DSN"},
		{"sslmode in a PostgreSQL DSN", func(c *TLSCheck) { c.DSN = "postgres://app:s3cret-pw@db:5432/app?sslmode=disable" }, "not sslmode"},
		{"unix socket", func(c *TLSCheck) { c.DSN = "drill:s3cret-pw@unix(/run/mysqld/mysqld.sock)/drill" }, "connects over tcp"},
		{"bad verify", func(c *TLSCheck) { c.Verify = "trust" }, "verify: must be full, ca or none"},
		{"ca_pem not PEM", func(c *TLSCheck) { c.CAPEM = "MIIB..." }, "ca_pem: expected PEM"},
		{"bad resolver", func(c *TLSCheck) { c.Resolver = "10.0.0.2" }, "resolver: expected ip:port"},
		{"no timeout", func(c *TLSCheck) { c.ConnectTimeout = 0 }, "connect_timeout: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTLSCheck().(*TLSCheck)
			c.DSN = "drill:s3cret-pw@tcp(db:3306)/drill"
			tt.mutate(c)
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "s3cret-pw")
		})
	}
}
