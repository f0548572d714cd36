package db

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/steps"
)

// flood runs a bounded flood through the endpoint and returns its outputs.
func (pl *pairLab) flood(t *testing.T, dir string, writers int, count int64, table string) map[string]any {
	t.Helper()
	f := newFlood().(*Flood)
	f.Conn = pl.conn()
	f.Writers, f.Count, f.Duration, f.Table = writers, count, 5*time.Minute, table
	env, rec := newEnv(t, dir, "drill", "flood")
	err := run(t, f, env)
	require.NoError(t, err)
	rec.assertNoSecret(t, env, err, pl.password)
	return env.Outputs()
}

// verify judges a flood without a failover (require_failover off).
func (pl *pairLab) verify(t *testing.T, dir, oplog string) (map[string]any, error) {
	t.Helper()
	v := newVerify().(*Verify)
	v.Conn = pl.conn()
	v.OpLog = oplog
	v.RequireFailover = false
	env, rec := newEnv(t, dir, "drill", "verify")
	err := run(t, v, env)
	rec.assertNoSecret(t, env, err, pl.password)
	return env.Outputs(), err
}

// TestFloodVerifyLab floods the lab's primary through the endpoint and
// injects, before db.verify, each fault it must catch: acknowledged rows
// deleted (lost, exactly those), rows no writer attempted (unexpected), a
// row written twice (duplicates).
func TestFloodVerifyLab(t *testing.T) {
	pl := upPair(t)

	t.Run("a clean flood verifies", func(t *testing.T) {
		dir := t.TempDir()
		out := pl.flood(t, dir, 3, 200, "failover_test")
		assert.Equal(t, int64(600), intOut(t, out, "attempted"))
		assert.Equal(t, int64(600), intOut(t, out, "acknowledged"))
		assert.Equal(t, int64(0), intOut(t, out, "errors"))
		cycles := out["cycles"].([]any)
		require.Len(t, cycles, 3)
		w := writerOut(t, out, cycles[0].(string))
		assert.Equal(t, int64(200), w["last_acked"])

		v, err := pl.verify(t, dir, out["oplog"].(string))
		require.NoError(t, err)
		assert.Equal(t, int64(0), intOut(t, v, "lost"))
		assert.Equal(t, int64(0), intOut(t, v, "unexpected"))
		assert.Equal(t, int64(0), intOut(t, v, "duplicates"))
		assert.Equal(t, int64(600), intOut(t, v, "acknowledged"))
		assert.Equal(t, true, v["oplog_complete"])
		for _, c := range cycles {
			assert.Equal(t, int64(200), v["max_acked"].(map[string]any)[c.(string)])
			assert.Equal(t, int64(200), v["max_in_db"].(map[string]any)[c.(string)], "the runbook's max(counter) check")
		}
		// Without a failover the downtime is the longest gap between two
		// acknowledgements: inside the flood, and its ends are its outputs.
		gap := v["write_downtime_ms"].(float64)
		assert.Greater(t, gap, 0.0)
		assert.Less(t, gap, float64(intOut(t, out, "duration_ms")))
		assert.InDelta(t, (v["downtime_end_s"].(float64)-v["downtime_start_s"].(float64))*1000, gap, 0.01)
		assert.Equal(t, true, v["writes_resumed"])
		assert.Equal(t, false, v["fault_in_load"])
		assert.Contains(t, v["headline"], "0 of 600 acknowledged writes lost")

		// The op log is on disk, one invoke and one ok per write.
		data, err := os.ReadFile(out["oplog"].(string))
		require.NoError(t, err)
		assert.Regexp(t, `(?m)^\{"type":"header","version":1,`, string(data))
		assert.Regexp(t, `(?m)^\{"t":\d+,"p":0,"type":"invoke","v":1\}$`, string(data))
		assert.Regexp(t, `(?m)^\{"t":\d+,"p":0,"type":"ok","v":1,"id":\d+\}$`, string(data))
		assert.Regexp(t, `(?m)^\{"type":"end","t":\d+\}$`, string(data))
	})

	t.Run("deleted rows are reported exactly as lost", func(t *testing.T) {
		dir := t.TempDir()
		out := pl.flood(t, dir, 3, 200, "failover_test")
		c2 := out["cycles"].([]any)[1].(string)
		pl.sql(t, fmt.Sprintf("DELETE FROM drill.failover_test WHERE cycle = '%s' AND counter IN (10, 11, 150)", c2))
		v, err := pl.verify(t, dir, out["oplog"].(string))
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), "a loss is a failed check, not an error: %v", err)
		assert.Contains(t, err.Error(), "3 acknowledged writes lost")
		assert.Equal(t, int64(3), intOut(t, v, "lost"))
		w := writerOut(t, v, c2)
		assert.Equal(t, []any{int64(10), int64(11), int64(150)}, w["lost_counters"])
		assert.Equal(t, int64(3), w["lost"])
		for _, c := range out["cycles"].([]any) {
			if c != c2 {
				assert.Equal(t, int64(0), writerOut(t, v, c.(string))["lost"])
			}
		}
		assert.Equal(t, int64(0), intOut(t, v, "unexpected"))

		// The last write gone: max(counter) no longer matches, as the
		// runbook's comparison would have shown.
		pl.sql(t, fmt.Sprintf("DELETE FROM drill.failover_test WHERE cycle = '%s' AND counter = 200", c2))
		v, err = pl.verify(t, dir, out["oplog"].(string))
		require.Error(t, err)
		assert.Equal(t, int64(4), intOut(t, v, "lost"))
		assert.Equal(t, int64(199), v["max_in_db"].(map[string]any)[c2])
		assert.Equal(t, int64(200), v["max_acked"].(map[string]any)[c2])

		// A row put back with the lost write's cycle and counter (a
		// leftover of an earlier run) is not that write: its id differs.
		pl.sql(t, fmt.Sprintf("INSERT INTO drill.failover_test SET cycle = '%s', counter = 200, failover_date = NOW()", c2))
		v, err = pl.verify(t, dir, out["oplog"].(string))
		require.Error(t, err)
		assert.Equal(t, int64(4), intOut(t, v, "lost"), "the stand-in does not make the write present")
		assert.Equal(t, int64(1), intOut(t, v, "unexpected"))
		assert.Equal(t, int64(200), v["max_in_db"].(map[string]any)[c2], "the runbook's max(counter) check is fooled; the id check is not")
	})

	t.Run("rows no writer attempted are unexpected, a second row is a duplicate", func(t *testing.T) {
		dir := t.TempDir()
		out := pl.flood(t, dir, 2, 100, "failover_test")
		run := out["run"].(string)
		c1 := out["cycles"].([]any)[0].(string)
		pl.sql(t, fmt.Sprintf(`INSERT INTO drill.failover_test SET cycle = '%s', counter = 5000, failover_date = NOW();
INSERT INTO drill.failover_test SET cycle = '%s-cycle9', counter = 1, failover_date = NOW();`, c1, run))
		v, err := pl.verify(t, dir, out["oplog"].(string))
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err))
		assert.Equal(t, int64(2), intOut(t, v, "unexpected"))
		assert.Equal(t, int64(0), intOut(t, v, "lost"))
		assert.Equal(t, int64(1), writerOut(t, v, c1)["unexpected"])

		pl.sql(t, fmt.Sprintf(`DELETE FROM drill.failover_test WHERE cycle LIKE '%s-%%' AND (counter = 5000 OR cycle LIKE '%%cycle9');
INSERT INTO drill.failover_test SET cycle = '%s', counter = 42, failover_date = NOW();`, run, c1))
		v, err = pl.verify(t, dir, out["oplog"].(string))
		require.Error(t, err)
		assert.Equal(t, int64(1), intOut(t, v, "duplicates"))
		assert.Equal(t, int64(0), intOut(t, v, "unexpected"))
		assert.Equal(t, int64(0), intOut(t, v, "lost"))
	})

	t.Run("test case 1 and 2 modes: a connection per write, a pinned address", func(t *testing.T) {
		for _, mode := range []string{"connect_per_write", "pin"} {
			dir := t.TempDir()
			f := newFlood().(*Flood)
			f.Conn = pl.conn()
			f.Writers, f.Count, f.Duration = 2, 50, time.Minute
			f.ConnectPerOp, f.Pin = mode == "connect_per_write", mode == "pin"
			env, _ := newEnv(t, dir, "drill", "flood")
			require.NoError(t, run(t, f, env), mode)
			out := env.Outputs()
			assert.Equal(t, int64(100), intOut(t, out, "acknowledged"), mode)
			if f.Pin {
				assert.Regexp(t, `^\d+\.\d+\.\d+\.\d+:3306 \(pinned from `+lab.PairEndpoint+`\)$`, out["target"])
			} else {
				assert.Equal(t, lab.PairEndpoint+":3306", out["target"])
			}
			v, err := pl.verify(t, dir, out["oplog"].(string))
			require.NoError(t, err, mode)
			assert.Equal(t, int64(100), intOut(t, v, "acknowledged"))
		}
	})

	t.Run("verify refuses the standby", func(t *testing.T) {
		dir := t.TempDir()
		out := pl.flood(t, dir, 1, 10, "failover_test")
		v := newVerify().(*Verify)
		v.Conn = pl.conn()
		v.DSN = pl.dsn(standbyIP(t, pl))
		v.OpLog = out["oplog"].(string)
		env, _ := newEnv(t, dir, "drill", "verify")
		err := run(t, v, env)
		require.Error(t, err)
		assert.False(t, steps.IsFailure(err))
		assert.Contains(t, err.Error(), "read-only")
	})
}

// standbyIP is the standby's address on the lab network.
func standbyIP(t *testing.T, pl *pairLab) string {
	t.Helper()
	vars := pl.lab.Vars()
	w := vars["mariadb_pair"].(map[string]any)["standby"].(string)
	return vars["hosts"].(map[string]any)[w].(map[string]any)["ip"].(string)
}

// TestFloodBadInputLab: every bad input is a clear error naming what to
// fix, given before a single write (no op log, no row).
func TestFloodBadInputLab(t *testing.T) {
	pl := upPair(t)
	pl.sql(t, `CREATE USER 'reader'@'%' IDENTIFIED BY 'reader-password-1234';
GRANT SELECT ON drill.* TO 'reader'@'%';
CREATE USER 'nocreate'@'%' IDENTIFIED BY 'nocreate-password-1234';
GRANT SELECT, INSERT ON drill.* TO 'nocreate'@'%';
CREATE TABLE drill.failover_test (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, cycle VARCHAR(50), counter INT UNSIGNED NOT NULL, failover_date DATETIME NOT NULL) ENGINE=InnoDB;
CREATE TABLE drill.other_schema (id INT PRIMARY KEY, cycle INT, counter VARCHAR(10));
CREATE TABLE drill.myisam_table (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, cycle VARCHAR(50), counter INT UNSIGNED NOT NULL, failover_date DATETIME NOT NULL) ENGINE=MyISAM;
CREATE TABLE drill.short_cycle (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, cycle VARCHAR(5), counter INT UNSIGNED NOT NULL, failover_date DATETIME NOT NULL) ENGINE=InnoDB;
INSERT INTO drill.failover_test SET cycle = 'rused-cycle1', counter = 1, failover_date = NOW();`)
	dnsIP := pl.lab.Vars()["hosts"].(map[string]any)[lab.PairDNSHost].(map[string]any)["ip"].(string)

	cases := []struct {
		name   string
		mutate func(f *Flood)
		want   string
	}{
		{"unreachable: nothing listens", func(f *Flood) { f.DSN = pl.dsn(dnsIP) }, "cannot reach"},
		{"unresolvable endpoint", func(f *Flood) {
			f.DSN = fmt.Sprintf("drill:%s@tcp(nosuch.drill.lab-1.rds.lab:3306)/drill?tls=preferred", pl.password)
		}, "resolve nosuch.drill.lab-1.rds.lab via"},
		{"wrong password", func(f *Flood) {
			f.DSN = fmt.Sprintf("drill:wrong-password-123@tcp(%s:3306)/drill?tls=preferred", lab.PairEndpoint)
		}, "wrong user name or password"},
		{"no INSERT privilege", func(f *Flood) {
			f.DSN = fmt.Sprintf("reader:reader-password-1234@tcp(%s:3306)/drill?tls=preferred", lab.PairEndpoint)
		}, "missing privilege: INSERT command denied"},
		{"table absent and no CREATE privilege", func(f *Flood) {
			f.DSN = fmt.Sprintf("nocreate:nocreate-password-1234@tcp(%s:3306)/drill?tls=preferred", lab.PairEndpoint)
			f.Table = "never_created"
		}, "missing privilege: CREATE command denied"},
		{"table with another schema", func(f *Flood) { f.Table = "other_schema" }, "table: other_schema exists with another schema: column id is not AUTO_INCREMENT; column cycle is int, expected a character column; column counter is varchar, expected an integer; no column failover_date"},
		{"non-transactional table", func(f *Flood) { f.Table = "myisam_table" }, "MyISAM engine"},
		{"cycle column too short", func(f *Flood) { f.Table = "short_cycle" }, "column cycle holds 5 characters"},
		{"absent table, creation off", func(f *Flood) { f.Table = "absent_table"; f.CreateTable = false }, "table: absent_table does not exist"},
		{"the standby", func(f *Flood) { f.DSN = pl.dsn(standbyIP(t, pl)) }, "is read-only (read_only): a standby or replica"},
		{"a run tag that already has rows", func(f *Flood) { f.RunTag = "rused" }, `run: tag "rused" already has 1 rows in failover_test`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := newFlood().(*Flood)
			f.Conn = pl.conn()
			f.ConnectTimeout = 3 * time.Second
			f.Count, f.Writers = 5, 2
			tc.mutate(f)
			env, _ := newEnv(t, dir, "drill", "flood")
			err := run(t, f, env)
			require.Error(t, err)
			assert.False(t, steps.IsFailure(err), "bad input is an error, not a failed check")
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), pl.password)
			_, statErr := os.Stat(filepath.Join(dir, "artifacts", "drill", "flood-oplog.jsonl"))
			assert.True(t, os.IsNotExist(statErr), "no op log: flooding never started")
		})
	}
	// Nothing was written by any of them.
	rows := pl.sql(t, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'drill' AND TABLE_NAME IN ('never_created', 'absent_table')")
	assert.Equal(t, "0", rows[0][0])
}

// TestFloodValidate: parameter errors name the field, at load time.
func TestFloodValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(f *Flood)
		want   string
	}{
		{"zero writers", func(f *Flood) { f.Writers = 0 }, "writers: must be at least 1, got 0"},
		{"no dsn", func(f *Flood) { f.DSN = "" }, "dsn: missing"},
		{"bad dsn", func(f *Flood) { f.DSN = "user:s3cret-pw@tcp(host:3306)drill" }, "dsn: "},
		{"no database", func(f *Flood) { f.DSN = "user:pw@tcp(host:3306)/" }, "dsn: no database name"},
		{"timeout in dsn", func(f *Flood) { f.DSN = "user:pw@tcp(host:3306)/drill?readTimeout=1s" }, "dsn: set timeout, readTimeout and writeTimeout with the step"},
		{"unix socket", func(f *Flood) { f.DSN = "user:pw@unix(/run/mysqld/mysqld.sock)/drill" }, "dsn: network \"unix\""},
		{"zero duration", func(f *Flood) { f.Duration = 0 }, "duration: must be positive"},
		{"negative count", func(f *Flood) { f.Count = -1 }, "count: must not be negative"},
		{"bad table", func(f *Flood) { f.Table = "drop table x;" }, "table: \"drop table x;\" is not a plain table name"},
		{"bad resolver", func(f *Flood) { f.Resolver = "10.0.0.2" }, "resolver: expected ip:port"},
		{"bad run", func(f *Flood) { f.RunTag = "a-b" }, "run: \"a-b\""},
		{"backoff", func(f *Flood) { f.BackoffMax = time.Millisecond }, "backoff_min, backoff_max"},
		{"read timeout", func(f *Flood) { f.ReadTimeout = 0 }, "read_timeout: must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlood().(*Flood)
			f.DSN = "user:pw@tcp(db.example.internal:3306)/drill"
			tc.mutate(f)
			err := f.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cret-pw")
		})
	}
	f := newFlood().(*Flood)
	f.DSN = "user:pw@tcp(db.example.internal:3306)/drill"
	require.NoError(t, f.Validate())
}
