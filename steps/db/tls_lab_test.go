package db

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/steps"
)

// otherCA is a CA that signed nothing the lab serves.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not the lab CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestTLSLab connects db.flood to the lab pair, which serves TLS from the
// lab CA with the endpoint's name and refuses plaintext, in every tls
// mode: verification against the endpoint's name holds with pin too, and
// each broken trust (no CA, another CA, a name the certificate lacks,
// plaintext) is a clear error before any write.
func TestTLSLab(t *testing.T) {
	pl := upPair(t)
	caPEM, ok := pl.lab.Vars()["rds_ca_pem"].(string)
	require.True(t, ok, "the lab gives its CA")
	caFile := filepath.Join(t.TempDir(), "lab-ca.pem")
	require.NoError(t, os.WriteFile(caFile, []byte(caPEM), 0o644))
	wrongCA := filepath.Join(t.TempDir(), "other-ca.pem")
	require.NoError(t, os.WriteFile(wrongCA, otherCA(t), 0o644))
	plain := fmt.Sprintf("%s:%s@tcp(%s:%d)/%s", lab.PairUser, pl.password, lab.PairEndpoint, lab.PairPort, lab.PairDatabase)
	byIP := fmt.Sprintf("%s:%s@tcp(%s:%d)/%s", lab.PairUser, pl.password, writerIP(t, pl), lab.PairPort, lab.PairDatabase)

	cases := []struct {
		name string
		dsn  string
		tls  TLSOptions
		pin  bool
		want string // error; "" writes
	}{
		{"verify-full with the lab CA (ca_file)", plain, TLSOptions{TLS: tlsVerifyFull, CAFile: caFile}, false, ""},
		{"ca_pem alone means verify-full", plain, TLSOptions{CAPEM: caPEM}, false, ""},
		{"verify-full, pinned to the primary's address: still checked against the endpoint's name", plain, TLSOptions{CAFile: caFile}, true, ""},
		{"verify-ca by address: chain only", byIP, TLSOptions{TLS: tlsVerifyCA, CAFile: caFile}, false, ""},
		{"skip-verify", plain, TLSOptions{TLS: tlsSkipVerify}, false, ""},
		{"preferred (the default)", plain, TLSOptions{}, false, ""},
		{"verify-full without the CA", plain, TLSOptions{TLS: tlsVerifyFull}, false, "not signed by a trusted CA: give the CA bundle in ca_file"},
		{"verify-full with another CA", plain, TLSOptions{CAFile: wrongCA}, false, "not signed by a trusted CA"},
		{"verify-ca with another CA", byIP, TLSOptions{TLS: tlsVerifyCA, CAFile: wrongCA}, false, "not signed by a trusted CA"},
		{"verify-full by address: the certificate does not name it", byIP, TLSOptions{CAFile: caFile}, false, "does not name the DSN's host"},
		{"off: the server refuses plaintext", plain, TLSOptions{TLS: tlsOff}, false, "dsn: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlood().(*Flood)
			f.Conn = pl.conn()
			f.DSN, f.TLSOptions, f.Pin = tc.dsn, tc.tls, tc.pin
			f.Writers, f.Count = 1, 3
			env, _ := newEnv(t, t.TempDir(), "drill", "flood")
			err := run(t, f, env)
			if tc.want == "" {
				require.NoError(t, err)
				assert.Equal(t, int64(3), intOut(t, env.Outputs(), "acknowledged"))
				return
			}
			require.Error(t, err)
			assert.False(t, steps.IsFailure(err), "bad trust is an error, not a failed check")
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), pl.password)
			assert.Nil(t, env.Outputs()["oplog"], "nothing was written")
		})
	}
}

// writerIP is the writer's address on the lab network.
func writerIP(t *testing.T, pl *pairLab) string {
	t.Helper()
	vars := pl.lab.Vars()
	w := vars["mariadb_pair"].(map[string]any)["writer"].(string)
	return vars["hosts"].(map[string]any)[w].(map[string]any)["ip"].(string)
}
