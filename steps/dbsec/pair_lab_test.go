package dbsec

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

// pairFixture is a running mariadb-pair with the names the steps need.
type pairFixture struct {
	l        *lab.Lab
	p        *lab.MariaDBPair
	password string
	resolver string
	caPEM    string
	hosts    []string
	backup   string
}

// shared is the package's mariadb-pair: brought up by the first test that
// needs it, taken down by TestMain after the last. Every test puts back
// the faults it injects.
var shared struct {
	once sync.Once
	f    *pairFixture
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := shared.f.l.Down(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "lab down:", err)
		}
		cancel()
	}
	os.Exit(code)
}

func upPair(t *testing.T) *pairFixture {
	t.Helper()
	labtest.Require(t)
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		l, err := lab.Up(ctx, lab.Options{Envs: []string{lab.PairEnv}})
		if err != nil {
			shared.err = err
			return
		}
		shared.f = &pairFixture{l: l}
		shared.err = shared.f.init(ctx)
	})
	require.NoError(t, shared.err)
	return shared.f
}

func (f *pairFixture) init(ctx context.Context) error {
	p, err := lab.OpenMariaDBPair(ctx, f.l.ID)
	if err != nil {
		return err
	}
	f.p = p
	vars := f.l.Vars()
	secrets := vars[lab.SecretsKey].(map[string]any)
	f.password, f.resolver = secrets["rds_password"].(string), vars["rds_resolver"].(string)
	f.caPEM, f.backup = vars["rds_ca_pem"].(string), vars["rds_key_backup_host"].(string)
	for _, h := range vars["rds_datadir_hosts"].([]any) {
		f.hosts = append(f.hosts, h.(string))
	}
	return nil
}

func (f *pairFixture) dsn(host string) string {
	return fmt.Sprintf("%s:%s@tcp(%s:%d)/%s", lab.PairUser, f.password, host, lab.PairPort, lab.PairDatabase)
}

func (f *pairFixture) host(t *testing.T, name string) *lab.Host {
	h, err := f.l.Host(name)
	require.NoError(t, err)
	return h
}

// sh runs a shell script as root in a lab host.
func sh(t *testing.T, h *lab.Host, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := h.Exec(ctx, "sh", "-c", script)
	require.NoError(t, err)
	require.NoError(t, res.Err(), script)
	return res.Stdout
}

// serveCert makes h's MariaDB present a certificate for names, valid from
// nb to na, signed by the lab CA (FLUSH SSL reloads it at once).
func serveCert(t *testing.T, h *lab.Host, names []string, nb, na time.Time) {
	t.Helper()
	ca, err := lab.LabCA()
	require.NoError(t, err)
	cert, key, err := ca.Issue(names, nb, na)
	require.NoError(t, err)
	ctx := context.Background()
	for file, content := range map[string][]byte{"server.pem": cert, "server-key.pem": key} {
		res, err := h.ExecCommand(ctx, lab.Command{Args: []string{"sh", "-c", `cat > "$0" && chown mysql "$0"`, lab.PairTLSDir + "/" + file}, Stdin: content})
		require.NoError(t, err)
		require.NoError(t, res.Err())
	}
	sh(t, h, "mariadb -e 'FLUSH SSL'")
}

func runStep(t *testing.T, s steps.Step) (map[string]any, error) {
	t.Helper()
	if v, ok := s.(steps.Validator); ok {
		require.NoError(t, v.Validate())
	}
	env := steps.NewEnv("dbsec", "step", t.TempDir(), steps.Hooks{Log: func(l string) { t.Log(l) }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := s.Run(ctx, env)
	return env.Outputs(), err
}

// TestPairTLS drives db.tls against the lab's pair: its healthy TLS, then
// each fault injected on a real MariaDB.
func TestPairTLS(t *testing.T) {
	f := upPair(t)
	dbA, dbB := f.host(t, "db-a"), f.host(t, "db-b")
	newCheck := func(dsn string) *TLSCheck {
		c := newTLSCheck().(*TLSCheck)
		c.DSN, c.Resolver, c.CAPEM = dsn, f.resolver, f.caPEM
		return c
	}

	t.Run("healthy: verified, TLS 1.3, plaintext refused", func(t *testing.T) {
		out, err := runStep(t, newCheck(f.dsn(lab.PairEndpoint)))
		require.NoError(t, err)
		assert.Equal(t, true, out["tls"])
		assert.Equal(t, "TLSv1.3", out["tls_version"])
		assert.Equal(t, "TLSv1.3", out["server_tls_version"], "the server sees the same protocol")
		assert.NotEmpty(t, out["server_cipher"])
		assert.Equal(t, true, out["chain_verified"])
		assert.Equal(t, true, out["hostname_verified"])
		assert.Contains(t, out["sans"], lab.PairEndpoint)
		assert.Contains(t, out["issuer"], "opsdrill lab CA")
		assert.Greater(t, out["days_left"], 300)
		assert.Equal(t, true, out["plaintext_refused"])
	})
	t.Run("untrusted CA fails under verify full and passes under verify none", func(t *testing.T) {
		c := newCheck(f.dsn(lab.PairEndpoint))
		c.CAPEM = ""
		_, err := runStep(t, c)
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), err)
		assert.Contains(t, err.Error(), "not trusted")
		c = newCheck(f.dsn(lab.PairEndpoint))
		c.CAPEM, c.Verify = "", verifyNone
		out, err := runStep(t, c)
		require.NoError(t, err)
		assert.Equal(t, false, out["chain_verified"])
	})
	t.Run("wrong-name certificate fails verify full, passes verify ca", func(t *testing.T) {
		serveCert(t, dbA, []string{"someone-else.example"}, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
		t.Cleanup(func() {
			serveCert(t, dbA, lab.PairServerNames("db-a"), time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
		})
		out, err := runStep(t, newCheck(f.dsn(lab.PairEndpoint)))
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), err)
		assert.Contains(t, err.Error(), "name mismatch")
		assert.Equal(t, false, out["hostname_verified"])
		assert.Equal(t, true, out["chain_verified"])
		c := newCheck(f.dsn(lab.PairEndpoint))
		c.Verify = verifyCA
		_, err = runStep(t, c)
		require.NoError(t, err)
	})
	t.Run("expired certificate fails, days_left negative", func(t *testing.T) {
		serveCert(t, dbA, lab.PairServerNames("db-a"), time.Now().Add(-60*24*time.Hour), time.Now().Add(-2*24*time.Hour))
		t.Cleanup(func() {
			serveCert(t, dbA, lab.PairServerNames("db-a"), time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
		})
		out, err := runStep(t, newCheck(f.dsn(lab.PairEndpoint)))
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), err)
		assert.Contains(t, err.Error(), "expired")
		assert.Less(t, out["days_left"], 0)
	})
	t.Run("plaintext allowed is reported", func(t *testing.T) {
		sh(t, dbA, "mariadb -e 'SET GLOBAL require_secure_transport = OFF'")
		t.Cleanup(func() { sh(t, dbA, "mariadb -e 'SET GLOBAL require_secure_transport = ON'") })
		out, err := runStep(t, newCheck(f.dsn(lab.PairEndpoint)))
		require.NoError(t, err)
		assert.Equal(t, false, out["plaintext_refused"])
	})
	t.Run("TLS off fails", func(t *testing.T) {
		// The standby, restarted without TLS, reached by its zone name.
		ctx := context.Background()
		sh(t, dbB, "printf '[mariadbd]\\nskip-ssl\\nrequire_secure_transport = OFF\\n' > /etc/mysql/mariadb.conf.d/99-test-no-tls.cnf")
		require.NoError(t, dbB.Stop(ctx, 30*time.Second))
		require.NoError(t, dbB.Start(ctx))
		t.Cleanup(func() {
			sh(t, dbB, "rm /etc/mysql/mariadb.conf.d/99-test-no-tls.cnf")
			require.NoError(t, dbB.Stop(ctx, 30*time.Second))
			require.NoError(t, dbB.Start(ctx))
			require.NoError(t, f.p.WaitReplicating(ctx))
		})
		out, err := runStep(t, newCheck(f.dsn("db-b.lab-1b.compute.lab")))
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), err)
		assert.Contains(t, err.Error(), "does not offer TLS")
		assert.Equal(t, false, out["tls"])
	})
}

// TestPairAtRest drives db.at_rest's sql driver against the pair: the lab
// encrypts, and each fault is caught, by the server's view and by the
// canary in the raw files.
func TestPairAtRest(t *testing.T) {
	f := upPair(t)
	ctx := context.Background()
	dbA, backup := f.host(t, "db-a"), f.host(t, lab.PairKeyBackupHost)
	_, err := f.p.SQL(ctx, dbA, "CREATE TABLE drill.orders (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100) NOT NULL DEFAULT '');"+
		"CREATE TABLE drill.plain_orders (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100) NOT NULL DEFAULT '') ENCRYPTED=NO;")
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := f.p.SQL(ctx, dbA, "DROP TABLE drill.orders; DROP TABLE drill.plain_orders;")
		require.NoError(t, err)
	})
	newCheck := func() *AtRest {
		a := newAtRest().(*AtRest)
		a.DSN, a.Resolver, a.CAPEM = f.dsn(lab.PairEndpoint), f.resolver, f.caPEM
		a.Tables = []string{"orders"}
		a.DataDirHosts = f.hosts
		a.KeyBackupHost, a.KeyBackupPath = f.backup, lab.PairKeyBackupPath
		return a
	}

	t.Run("encrypted: no canary in the raw files, key present and backed up", func(t *testing.T) {
		a := newCheck()
		a.CanaryTable, a.CanaryColumn = "orders", "note"
		out, err := runStep(t, a)
		require.NoError(t, err)
		assert.Equal(t, true, out["encrypted"])
		assert.Equal(t, false, out["canary_found"])
		assert.Equal(t, f.hosts[0], out["datadir_host"], "the writer's files are searched")
		assert.Equal(t, map[string]any{"orders": true}, out["tables"])
		assert.Equal(t, true, out["key_present"])
		assert.Equal(t, true, out["key_backed_up"])
		assert.Contains(t, out["key_plugins"], "file_key_management")
	})
	t.Run("a table with encryption off: the canary is found in its tablespace", func(t *testing.T) {
		a := newCheck()
		a.Tables = []string{"orders", "plain_orders"}
		a.CanaryTable, a.CanaryColumn = "plain_orders", "note"
		out, err := runStep(t, a)
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), err)
		assert.Equal(t, true, out["canary_found"])
		assert.Contains(t, fmt.Sprint(out["canary_files"]), "plain_orders.ibd")
		assert.Equal(t, []any{"plain_orders"}, out["unencrypted_tables"])
		assert.Contains(t, err.Error(), "table plain_orders is not encrypted: created with ENCRYPTED=NO")
	})
	t.Run("encryption off on the server: a new table's canary is found", func(t *testing.T) {
		sh(t, dbA, "mariadb -e 'SET GLOBAL innodb_encrypt_tables = OFF'")
		t.Cleanup(func() { sh(t, dbA, "mariadb -e 'SET GLOBAL innodb_encrypt_tables = ON'") })
		out, err := runStep(t, newCheck())
		require.Error(t, err)
		assert.Equal(t, true, out["canary_found"])
		assert.Contains(t, err.Error(), "innodb_encrypt_tables is OFF")
		assert.Contains(t, err.Error(), "the canary is readable in opsdrill_canary_")
	})
	t.Run("key file missing", func(t *testing.T) {
		sh(t, dbA, "mv "+lab.PairKeyFile+" /root/keyfile.saved")
		t.Cleanup(func() { sh(t, dbA, "mv /root/keyfile.saved "+lab.PairKeyFile) })
		out, err := runStep(t, newCheck())
		require.Error(t, err)
		assert.Equal(t, false, out["key_present"])
		assert.Contains(t, err.Error(), "the key file "+lab.PairKeyFile+" is missing on "+f.hosts[0])
	})
	t.Run("key backup differs", func(t *testing.T) {
		sh(t, backup, "cp "+lab.PairKeyBackupPath+" /root/backup.saved && echo '2;00' >> "+lab.PairKeyBackupPath)
		t.Cleanup(func() { sh(t, backup, "mv /root/backup.saved "+lab.PairKeyBackupPath) })
		out, err := runStep(t, newCheck())
		require.Error(t, err)
		assert.Equal(t, false, out["key_backed_up"])
		assert.Contains(t, err.Error(), "differs from the server's key file")
	})
	t.Run("the searched host must be the server written", func(t *testing.T) {
		a := newCheck()
		a.DataDirHosts = f.hosts[1:]
		_, err := runStep(t, a)
		require.Error(t, err)
		assert.False(t, steps.IsFailure(err))
		assert.Contains(t, err.Error(), "none is the server the DSN reached (@@hostname db-a)")
	})
	// No canary table is left behind.
	rows, err := f.p.SQL(ctx, dbA, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='drill' AND TABLE_NAME LIKE 'opsdrill_canary_%'")
	require.NoError(t, err)
	assert.Equal(t, "0", rows[0][0])
	assert.Equal(t, "0", strings.TrimSpace(sh(t, dbA, "mariadb -N -e 'SELECT COUNT(*) FROM drill.orders'")), "the canary row was deleted")
}
