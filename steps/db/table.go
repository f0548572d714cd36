package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// The runbook's table, created when absent:
//
//	CREATE TABLE `failover_test` (`id` int(10) unsigned NOT NULL AUTO_INCREMENT,
//	  `cycle` varchar(50) DEFAULT NULL, `counter` int(10) unsigned NOT NULL,
//	  `failover_date` datetime NOT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB
const createTable = "CREATE TABLE IF NOT EXISTS `%s` (\n" +
	" `id` int(10) unsigned NOT NULL AUTO_INCREMENT,\n" +
	" `cycle` varchar(50) DEFAULT NULL,\n" +
	" `counter` int(10) unsigned NOT NULL,\n" +
	" `failover_date` datetime NOT NULL,\n" +
	" PRIMARY KEY (`id`)\n" +
	") ENGINE=InnoDB DEFAULT CHARSET=latin1 COMMENT='opsdrill failover drill (runbook: AWS RDS Failover Testing)'"

var tableName = regexp.MustCompile(`^[A-Za-z0-9_$]{1,64}$`)

func validTable(name string) error {
	if !tableName.MatchString(name) {
		return fmt.Errorf("table: %q is not a plain table name (letters, digits, _ and $, at most 64)", name)
	}
	return nil
}

// column is what information_schema says about one column.
type column struct {
	name, dataType, extra string
	maxLen                sql.NullInt64
	nullable              bool
	hasDefault            bool
}

var (
	integerTypes = map[string]bool{"tinyint": true, "smallint": true, "mediumint": true, "int": true, "bigint": true}
	textTypes    = map[string]bool{"char": true, "varchar": true, "tinytext": true, "text": true, "mediumtext": true, "longtext": true}
	timeTypes    = map[string]bool{"datetime": true, "timestamp": true}
)

// ensureTable checks that table has the runbook's shape, creating it when
// absent (and create is set). cycleLen is the longest cycle name to store.
// Every problem is reported before a single write is attempted.
func ensureTable(ctx context.Context, db *sql.DB, table string, create bool, cycleLen int) (created bool, err error) {
	cols, engine, err := describeTable(ctx, db, table)
	if err != nil {
		return false, err
	}
	if cols == nil {
		if !create {
			return false, fmt.Errorf("table: %s does not exist in the DSN's database", table)
		}
		if _, err := db.ExecContext(ctx, fmt.Sprintf(createTable, table)); err != nil {
			return false, fmt.Errorf("table: %s does not exist and cannot be created: %w", table, err)
		}
		return true, nil
	}
	if !strings.EqualFold(engine, "InnoDB") {
		return false, fmt.Errorf("table: %s uses the %s engine; a durability drill needs a transactional table (InnoDB)", table, engine)
	}
	byName := map[string]column{}
	for _, c := range cols {
		byName[strings.ToLower(c.name)] = c
	}
	var probs []string
	want := []struct {
		name  string
		kinds map[string]bool
		what  string
	}{
		{"id", integerTypes, "an AUTO_INCREMENT integer"},
		{"cycle", textTypes, "a character column"},
		{"counter", integerTypes, "an integer"},
		{"failover_date", timeTypes, "a datetime"},
	}
	for _, w := range want {
		c, ok := byName[w.name]
		switch {
		case !ok:
			probs = append(probs, fmt.Sprintf("no column %s (%s)", w.name, w.what))
		case !w.kinds[c.dataType]:
			probs = append(probs, fmt.Sprintf("column %s is %s, expected %s", w.name, c.dataType, w.what))
		case w.name == "id" && !strings.Contains(c.extra, "auto_increment"):
			probs = append(probs, "column id is not AUTO_INCREMENT")
		case w.name == "cycle" && c.maxLen.Valid && c.maxLen.Int64 < int64(cycleLen):
			probs = append(probs, fmt.Sprintf("column cycle holds %d characters, the cycle names need %d", c.maxLen.Int64, cycleLen))
		}
		delete(byName, w.name)
	}
	for _, c := range byName {
		if !c.nullable && !c.hasDefault && !strings.Contains(c.extra, "auto_increment") && !strings.Contains(c.extra, "GENERATED") {
			probs = append(probs, fmt.Sprintf("column %s is NOT NULL without a default, so the drill's inserts would fail", c.name))
		}
	}
	if len(probs) > 0 {
		return false, fmt.Errorf("table: %s exists with another schema: %s; drop it or name another table", table, strings.Join(probs, "; "))
	}
	return false, nil
}

// describeTable returns the columns and engine of table in the current
// database; nil columns when it does not exist.
func describeTable(ctx context.Context, db *sql.DB, table string) ([]column, string, error) {
	var engine sql.NullString
	err := db.QueryRowContext(ctx, "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table).Scan(&engine)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	rows, err := db.QueryContext(ctx, `SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE, COLUMN_DEFAULT IS NOT NULL, EXTRA
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, table)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var cols []column
	for rows.Next() {
		var c column
		var nullable string
		if err := rows.Scan(&c.name, &c.dataType, &c.maxLen, &nullable, &c.hasDefault, &c.extra); err != nil {
			return nil, "", err
		}
		c.dataType = strings.ToLower(c.dataType)
		c.nullable = nullable == "YES"
		cols = append(cols, c)
	}
	return cols, engine.String, rows.Err()
}

// probeWrite checks the privileges the drill needs (INSERT, SELECT) with a
// row that is rolled back, so nothing reaches the table or the binary log.
func probeWrite(ctx context.Context, db *sql.DB, table, cycle string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("INSERT INTO `%s` SET cycle = ?, counter = 0, failover_date = NOW()", table), cycle); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM `%s` WHERE cycle = ?", table), cycle).Scan(&n); err != nil {
		return err
	}
	return tx.Rollback()
}

// freshRun refuses a run tag that already has rows in table: a leftover
// row could otherwise stand in for a lost one, or count as unexpected.
func freshRun(ctx context.Context, db *sql.DB, table, run string) error {
	var n int64
	err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM `%s` WHERE cycle LIKE ?", table), run+"-%").Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("run: tag %q already has %d rows in %s; choose another run tag (or leave run empty for a random one), or delete those rows", run, n, table)
	}
	return nil
}
