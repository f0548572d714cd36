package dbsec

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

// pgTestEnv is a PostgreSQL 15 server (Debian's) for db.tls's tests: TLS
// with a lab CA certificate for the name "pg", TLS 1.2 at least, and a
// pg_hba.conf that admits TCP clients only over TLS (hostssl).
const pgTestEnv = "dbsec-postgres"

const (
	pgConfDir = "/etc/postgresql/15/main"
	pgHBA     = "local all postgres peer\nhostssl all all 0.0.0.0/0 scram-sha-256\n"
	pgConf    = "listen_addresses = '*'\nssl = on\nssl_cert_file = '/etc/postgresql/opsdrill/server.pem'\n" +
		"ssl_key_file = '/etc/postgresql/opsdrill/server-key.pem'\nssl_min_protocol_version = 'TLSv1.2'\n"
)

func init() {
	ca, err := lab.LabCA()
	if err != nil {
		panic(err)
	}
	now := time.Now()
	cert, key, err := ca.Issue([]string{"pg"}, now.Add(-time.Hour), now.Add(200*24*time.Hour))
	if err != nil {
		panic(err)
	}
	lab.RegisterEnv(lab.Env{
		Name: pgTestEnv,
		Doc:  "PostgreSQL with TLS and hostssl-only pg_hba (steps/dbsec tests)",
		Hosts: []lab.HostSpec{{
			Name: "pg",
			Files: []lab.File{
				{Path: pgConfDir + "/conf.d/opsdrill.conf", Content: []byte(pgConf)},
				{Path: pgConfDir + "/pg_hba.conf", Content: []byte(pgHBA)},
				{Path: "/etc/postgresql/opsdrill/server.pem", Content: cert},
				{Path: "/etc/postgresql/opsdrill/server-key.pem", Content: key, Mode: 0o600},
			},
			Start: []lab.Command{
				{Args: []string{"sh", "-c", "chown -R postgres:postgres /etc/postgresql && pg_ctlcluster 15 main start"}},
			},
			Ready: &lab.Probe{Cmd: []string{"su", "postgres", "-c", "psql -qAtc 'SELECT 1'"}, Timeout: time.Minute},
		}},
	})
}

// TestPostgresTLS drives db.tls against a real PostgreSQL: verified TLS
// and plaintext refused, then a name mismatch, plaintext admitted by
// pg_hba, and TLS switched off.
func TestPostgresTLS(t *testing.T) {
	l := labtest.Up(t, pgTestEnv)
	pg, err := l.Host("pg")
	require.NoError(t, err)
	sh(t, pg, `su postgres -c "psql -qc \"CREATE ROLE app LOGIN PASSWORD 'app-pass-4417'\""`)
	ca, err := lab.LabCA()
	require.NoError(t, err)
	dsn := fmt.Sprintf("postgres://app:app-pass-4417@%s/postgres", pg.Addr(5432))
	newCheck := func() *TLSCheck {
		c := newTLSCheck().(*TLSCheck)
		c.DSN, c.CAPEM, c.ServerName = dsn, string(ca.PEM), "pg"
		return c
	}

	t.Run("healthy", func(t *testing.T) {
		out, err := runStep(t, newCheck())
		require.NoError(t, err)
		assert.Equal(t, "postgres", out["engine"])
		assert.Equal(t, "TLSv1.3", out["tls_version"])
		assert.Equal(t, "TLSv1.3", out["server_tls_version"], "pg_stat_ssl agrees")
		assert.NotEmpty(t, out["server_cipher"])
		assert.Equal(t, true, out["hostname_verified"])
		assert.Equal(t, true, out["plaintext_refused"])
		assert.Contains(t, out["plaintext_error"], "no encryption")
	})
	t.Run("name mismatch", func(t *testing.T) {
		c := newCheck()
		c.ServerName = ""
		_, err := runStep(t, c)
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), err)
		assert.Contains(t, err.Error(), "name mismatch")
	})
	t.Run("plaintext admitted by pg_hba", func(t *testing.T) {
		sh(t, pg, `echo 'host all all 0.0.0.0/0 scram-sha-256' >> `+pgConfDir+`/pg_hba.conf && pg_ctlcluster 15 main reload`)
		t.Cleanup(func() {
			sh(t, pg, `printf '`+pgHBA+`' > `+pgConfDir+`/pg_hba.conf && pg_ctlcluster 15 main reload`)
		})
		require.Eventually(t, func() bool {
			out, err := runStep(t, newCheck())
			return err == nil && out["plaintext_refused"] == false
		}, 20*time.Second, 500*time.Millisecond)
		out, _ := runStep(t, newCheck())
		assert.Contains(t, out["plaintext_error"], "password authentication failed", "the probe's random password, never the real one")
	})
	t.Run("TLS off", func(t *testing.T) {
		sh(t, pg, `echo 'ssl = off' > `+pgConfDir+`/conf.d/zz-test.conf && printf 'host all all 0.0.0.0/0 scram-sha-256\n' >> `+pgConfDir+`/pg_hba.conf && pg_ctlcluster 15 main restart`)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.Eventually(t, func() bool {
			res, err := pg.Exec(ctx, "su", "postgres", "-c", "psql -qAtc 'SELECT 1'")
			return err == nil && res.ExitCode == 0
		}, 30*time.Second, 300*time.Millisecond)
		out, err := runStep(t, newCheck())
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), err)
		assert.Contains(t, err.Error(), "does not offer TLS")
		assert.Equal(t, false, out["tls"])
	})
}
