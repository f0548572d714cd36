package db

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// innodbReadOnlyServer starts a second MariaDB on the standby's host, port
// 3307, with a drill schema and user, then restarts it with
// --innodb-read-only and read_only OFF: the state of an Aurora MySQL
// reader, which only innodb_read_only gives away.
const innodbReadOnlyServer = `set -e
d=/var/lib/mysql-ro; s=/run/mysqld/ro.sock; p=/run/mysqld/ro.pid
rm -rf "$d"; mkdir -p "$d"; chown mysql:mysql "$d"
mariadb-install-db --no-defaults --user=mysql --datadir="$d" --skip-test-db >/dev/null 2>&1
start() {
	setsid mariadbd --no-defaults --user=mysql --datadir="$d" --socket="$s" --pid-file="$p" --port=3307 \
		--bind-address=0.0.0.0 --skip-name-resolve --read-only=OFF "$@" </dev/null >/dev/null 2>&1 &
	i=0; until mariadb -S "$s" -e 'SELECT 1' >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done
}
start
mariadb -S "$s" -e "CREATE DATABASE drill; CREATE USER 'drill'@'%' IDENTIFIED BY '$1'; GRANT ALL ON drill.* TO 'drill'@'%';
CREATE TABLE drill.failover_test (id BIGINT AUTO_INCREMENT PRIMARY KEY, cycle VARCHAR(64) NOT NULL, counter BIGINT NOT NULL,
failover_date TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;"
mariadb-admin -S "$s" shutdown
i=0; while [ -e "$p" ]; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done
start --innodb-read-only
`

// A server whose InnoDB is read-only (an Aurora MySQL reader) while
// read_only is OFF is found read-only, naming innodb_read_only: the flood
// refuses it before writing and db.verify will not verify there.
func TestInnoDBReadOnlyServerLab(t *testing.T) {
	pl := upPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	standby, err := pl.lab.Host(pl.lab.Vars()["mariadb_pair"].(map[string]any)["standby"].(string))
	require.NoError(t, err)
	const password = "ro-password-98765"
	res, err := standby.Exec(ctx, "sh", "-c", innodbReadOnlyServer, "sh", password)
	require.NoError(t, err)
	require.NoError(t, res.Err())
	t.Cleanup(func() {
		_, _ = standby.Exec(context.Background(), "mariadb-admin", "-S", "/run/mysqld/ro.sock", "shutdown")
	})

	c := defaultConn()
	c.DSN = fmt.Sprintf("drill:%s@tcp(%s)/drill", password, standby.Addr(3307))
	c.ConnectTimeout = 5 * time.Second
	db, err := c.open()
	require.NoError(t, err)
	defer db.Close()
	var readOnly, innodbReadOnly int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT @@read_only, @@innodb_read_only").Scan(&readOnly, &innodbReadOnly))
	require.Equal(t, 0, readOnly, "read_only is OFF: only innodb_read_only can tell")
	require.Equal(t, 1, innodbReadOnly)
	_, err = db.ExecContext(ctx, "INSERT INTO failover_test (cycle, counter) VALUES ('x', 1)")
	require.Error(t, err, "the server really refuses InnoDB writes")
	id, err := identity(ctx, db)
	require.NoError(t, err)
	assert.True(t, id.ReadOnly)
	assert.Equal(t, []string{"innodb_read_only"}, id.ReadOnlyBy)

	// The flood refuses it before a single write, naming the variable.
	dir := t.TempDir()
	f := newFlood().(*Flood)
	f.Conn = c
	f.Count, f.Writers = 5, 1
	env, _ := newEnv(t, dir, "drill", "flood")
	err = run(t, f, env)
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err), "a read-only target is bad input, not a failed check")
	assert.Contains(t, err.Error(), "is read-only (innodb_read_only)")
	assert.NotContains(t, err.Error(), password)
}
