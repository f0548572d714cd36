package dbsec

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// serverVars are the encryption settings read from the server.
var serverVars = []string{
	"version", "version_comment", "hostname", "datadir", "log_bin",
	// MariaDB
	"innodb_encrypt_tables", "innodb_encrypt_log", "encrypt_binlog", "encrypt_tmp_files",
	"aria_encrypt_tables", "file_key_management_filename", "file_key_management_filekey",
	// MySQL 8
	"default_table_encryption", "innodb_redo_log_encrypt", "innodb_undo_log_encrypt", "binlog_encryption", "keyring_file_data",
}

// sqlView is the server's own account of its encryption at rest.
type sqlView struct {
	vars    map[string]string
	plugins []string // active key management plugins
	tables  []tableState
}

func (v sqlView) mariadb() bool {
	return strings.Contains(strings.ToLower(v.vars["version"]+v.vars["version_comment"]), "mariadb")
}

func (v sqlView) on(name string) bool {
	switch strings.ToUpper(v.vars[name]) {
	case "ON", "1", "YES", "FORCE":
		return true
	}
	return false
}

// tableState is one table and whether its tablespace is encrypted.
type tableState struct {
	Name      string
	Engine    string
	Options   string
	Encrypted bool
	Why       string
}

// runSQL reads the server's view, writes and searches a canary, checks the
// key material, and returns the findings.
func (a *AtRest) runSQL(ctx context.Context, env *steps.Env) ([]finding, error) {
	var cfg *tls.Config
	tg := a.target()
	host, _ := tg.hostPort()
	if !a.NoTLS {
		roots, err := trustPool(env.Path(a.CAFile), a.CAPEM)
		if err != nil {
			return nil, err
		}
		var h handshake
		cfg = clientTLS(&h, roots, host, a.Verify, time.Now)
	}
	db, err := tg.openMySQL(cfg)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	view, err := a.readView(ctx, db)
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "PROCESS privilege") {
			hint = " (GRANT PROCESS ON *.* to the DSN's user: MariaDB shows INNODB_TABLESPACES_ENCRYPTION only with it)"
		}
		return nil, fmt.Errorf("read encryption settings from %s: %s%s", host, a.target().hide(err.Error()), hint)
	}
	findings := a.judgeView(view)
	a.reportView(env, view)

	if len(a.DataDirHosts) > 0 {
		server, err := a.serverHost(ctx, view.vars["hostname"])
		if err != nil {
			return nil, err
		}
		env.SetOutput("datadir_host", server)
		cf, err := a.canary(ctx, env, db, view, server)
		if err != nil {
			return nil, err
		}
		findings = append(findings, cf...)
		kf, err := a.keyMaterial(ctx, env, view, server)
		if err != nil {
			return nil, err
		}
		findings = append(findings, kf...)
	}
	return findings, nil
}

func (a *AtRest) readView(ctx context.Context, db *sql.DB) (sqlView, error) {
	v := sqlView{vars: map[string]string{}}
	q := "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('" + strings.Join(serverVars, "','") + "')"
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return v, err
	}
	for rows.Next() {
		var k, val string
		if err := rows.Scan(&k, &val); err != nil {
			rows.Close()
			return v, err
		}
		v.vars[k] = val
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return v, err
	}
	prow, err := db.QueryContext(ctx, "SELECT PLUGIN_NAME FROM information_schema.PLUGINS WHERE PLUGIN_STATUS = 'ACTIVE' AND (PLUGIN_TYPE = 'ENCRYPTION' OR PLUGIN_NAME LIKE 'keyring%')")
	if err != nil {
		return v, err
	}
	for prow.Next() {
		var n string
		if err := prow.Scan(&n); err != nil {
			prow.Close()
			return v, err
		}
		v.plugins = append(v.plugins, n)
	}
	prow.Close()
	if err := prow.Err(); err != nil {
		return v, err
	}
	v.tables, err = a.readTables(ctx, db, v.mariadb())
	return v, err
}

// readTables reads each base table of the DSN's database: MariaDB from
// INNODB_TABLESPACES_ENCRYPTION (ENCRYPTION_SCHEME 1 is encrypted), MySQL 8
// from TABLES.CREATE_OPTIONS (ENCRYPTION='Y').
func (a *AtRest) readTables(ctx context.Context, db *sql.DB, mariadb bool) ([]tableState, error) {
	q := `SELECT t.TABLE_NAME, COALESCE(t.ENGINE, ''), COALESCE(t.CREATE_OPTIONS, ''), -1
FROM information_schema.TABLES t WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' ORDER BY t.TABLE_NAME`
	if mariadb {
		q = `SELECT t.TABLE_NAME, COALESCE(t.ENGINE, ''), COALESCE(t.CREATE_OPTIONS, ''), COALESCE(e.ENCRYPTION_SCHEME, -1)
FROM information_schema.TABLES t
LEFT JOIN information_schema.INNODB_TABLESPACES_ENCRYPTION e ON e.NAME = CONCAT(t.TABLE_SCHEMA, '/', t.TABLE_NAME)
WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' ORDER BY t.TABLE_NAME`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tableState
	for rows.Next() {
		var t tableState
		var scheme int
		if err := rows.Scan(&t.Name, &t.Engine, &t.Options, &scheme); err != nil {
			return nil, err
		}
		t.Encrypted, t.Why = tableEncrypted(t, scheme, mariadb)
		out = append(out, t)
	}
	return out, rows.Err()
}

// tableEncrypted decides from the server's metadata.
func tableEncrypted(t tableState, scheme int, mariadb bool) (bool, string) {
	opts := strings.ToUpper(strings.ReplaceAll(t.Options, "`", ""))
	switch {
	case !mariadb:
		if strings.Contains(opts, "ENCRYPTION='Y'") {
			return true, "ENCRYPTION='Y'"
		}
		return false, "no ENCRYPTION='Y' in its options"
	case strings.EqualFold(t.Engine, "InnoDB"):
		switch scheme {
		case 1:
			return true, "tablespace encrypted (ENCRYPTION_SCHEME 1)"
		case 0:
			if strings.Contains(opts, "ENCRYPTED=NO") {
				return false, "created with ENCRYPTED=NO"
			}
			return false, "tablespace not encrypted (ENCRYPTION_SCHEME 0)"
		}
		return false, "tablespace has no encryption data (never encrypted)"
	case strings.EqualFold(t.Engine, "Aria"):
		return false, "Aria table: encrypted only with aria_encrypt_tables, not listed per table"
	}
	return false, t.Engine + " cannot be encrypted"
}

// judgeView turns the server's settings into findings.
func (a *AtRest) judgeView(v sqlView) []finding {
	var out []finding
	add := func(what, fix string) { out = append(out, finding{What: what, Fix: fix}) }
	if len(v.plugins) == 0 {
		add("no key management plugin is active", "load file_key_management (MariaDB) or a keyring component (MySQL 8) with the key file")
	}
	if v.mariadb() {
		if !v.on("innodb_encrypt_tables") {
			add("innodb_encrypt_tables is "+orNone(v.vars["innodb_encrypt_tables"]), "set innodb_encrypt_tables = ON (or FORCE) with innodb_encryption_threads > 0")
		}
		if !v.on("innodb_encrypt_log") {
			add("the redo log is not encrypted (innodb_encrypt_log OFF)", "set innodb_encrypt_log = ON")
		}
		if v.on("log_bin") && !v.on("encrypt_binlog") {
			add("the binary log is not encrypted (encrypt_binlog OFF)", "set encrypt_binlog = ON")
		}
		if v.vars["aria_encrypt_tables"] != "" && !v.on("aria_encrypt_tables") {
			for _, t := range v.tables {
				if strings.EqualFold(t.Engine, "Aria") && a.wants(t.Name) {
					add("Aria table "+t.Name+" is not encrypted (aria_encrypt_tables OFF)", "set aria_encrypt_tables = ON or convert the table to InnoDB")
				}
			}
		}
	} else {
		if !v.on("default_table_encryption") {
			add("default_table_encryption is "+orNone(v.vars["default_table_encryption"]), "set default_table_encryption = ON")
		}
		if !v.on("innodb_redo_log_encrypt") {
			add("the redo log is not encrypted (innodb_redo_log_encrypt OFF)", "set innodb_redo_log_encrypt = ON")
		}
		if v.on("log_bin") && !v.on("binlog_encryption") {
			add("the binary log is not encrypted (binlog_encryption OFF)", "set binlog_encryption = ON")
		}
	}
	seen := map[string]bool{}
	for _, t := range v.tables {
		seen[t.Name] = true
		if a.wants(t.Name) && !t.Encrypted && !strings.EqualFold(t.Engine, "Aria") {
			add("table "+t.Name+" is not encrypted: "+t.Why, "ALTER TABLE "+t.Name+" ENCRYPTED=YES (MariaDB) / ENCRYPTION='Y' (MySQL)")
		}
	}
	for _, t := range a.Tables {
		if !seen[t] {
			add("table "+t+" does not exist in the DSN's database", "check tables:")
		}
	}
	return out
}

// wants reports whether table t is among those checked.
func (a *AtRest) wants(t string) bool {
	return len(a.Tables) == 0 || slices.Contains(a.Tables, t)
}

func (a *AtRest) reportView(env *steps.Env, v sqlView) {
	tables := map[string]any{}
	var unenc []any
	rows := [][]string{}
	for _, t := range v.tables {
		if !a.wants(t.Name) {
			continue
		}
		tables[t.Name] = t.Encrypted
		if !t.Encrypted {
			unenc = append(unenc, t.Name)
		}
		rows = append(rows, []string{t.Name, t.Engine, yesNo(t.Encrypted), t.Why})
	}
	if unenc == nil {
		unenc = []any{}
	}
	env.SetOutput("tables", tables)
	env.SetOutput("unencrypted_tables", unenc)
	env.SetOutput("key_plugins", steps.List(v.plugins))
	env.SetOutput("server_hostname", v.vars["hostname"])
	env.AddEvidence(steps.TableEvidence("Tables (the server's view)", []string{"table", "engine", "encrypted", "why"}, rows))
	var vrows [][]string
	for _, k := range serverVars {
		if val, ok := v.vars[k]; ok && k != "version_comment" {
			vrows = append(vrows, []string{k, val})
		}
	}
	vrows = append(vrows, []string{"active key management plugins", strings.Join(v.plugins, ", ")})
	env.AddEvidence(steps.TableEvidence("Encryption settings", []string{"setting", "value"}, vrows))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// serverHost finds, among datadir_hosts, the one the DSN reached: its
// hostname is the server's @@hostname. Searching another host's files
// would prove nothing about the rows just written.
func (a *AtRest) serverHost(ctx context.Context, hostname string) (string, error) {
	var seen []string
	for _, h := range a.DataDirHosts {
		res, err := hostexec.Run(ctx, h, []string{"hostname"}, nil)
		if err != nil {
			return "", fmt.Errorf("datadir_hosts: %s: %w", h, err)
		}
		name := strings.TrimSpace(res.Stdout)
		if name == hostname {
			return h, nil
		}
		seen = append(seen, h+" is "+name)
	}
	return "", fmt.Errorf("datadir_hosts: none is the server the DSN reached (@@hostname %s): %s", hostname, strings.Join(seen, ", "))
}

// canary writes a random row, flushes its table to disk, and searches the
// server's data folder (tablespaces, redo log, undo, binary and relay logs)
// for it: found means some file holds the data in clear.
func (a *AtRest) canary(ctx context.Context, env *steps.Env, db *sql.DB, v sqlView, host string) ([]finding, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	value := "opsdrill-canary-" + hex.EncodeToString(b)
	table, column := a.CanaryTable, a.CanaryColumn
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cleanupCtx := context.WithoutCancel(ctx)
	if table == "" {
		table, column = "opsdrill_canary_"+hex.EncodeToString(b[:4]), "v"
		if _, err := conn.ExecContext(ctx, "CREATE TABLE `"+table+"` (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL) ENGINE=InnoDB"); err != nil {
			return nil, fmt.Errorf("create the canary table: %s", a.target().hide(err.Error()))
		}
		defer func() { _, _ = conn.ExecContext(cleanupCtx, "DROP TABLE IF EXISTS `"+table+"`") }()
	} else {
		defer func() {
			_, _ = conn.ExecContext(cleanupCtx, "DELETE FROM `"+table+"` WHERE `"+column+"` = ?", value)
		}()
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO `"+table+"` (`"+column+"`) VALUES (?)", value); err != nil {
		return nil, fmt.Errorf("write the canary into %s.%s: %s", table, column, a.target().hide(err.Error()))
	}
	// FOR EXPORT writes the table's dirty pages to its tablespace file.
	if _, err := conn.ExecContext(ctx, "FLUSH TABLES `"+table+"` FOR EXPORT"); err != nil {
		return nil, fmt.Errorf("flush %s to disk (FLUSH TABLES ... FOR EXPORT needs the RELOAD and LOCK TABLES privileges): %s", table, a.target().hide(err.Error()))
	}
	if _, err := conn.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
		return nil, err
	}
	dir := a.DataDir
	if dir == "" {
		dir = v.vars["datadir"]
	}
	res, err := hostexec.Run(ctx, host, []string{"grep", "-rlaF", "-e", value, "--", dir}, nil)
	if err != nil {
		return nil, fmt.Errorf("search %s on %s: %w", dir, host, err)
	}
	var files []any
	for line := range strings.SplitSeq(strings.TrimSpace(res.Stdout), "\n") {
		if line != "" {
			files = append(files, line)
		}
	}
	switch {
	case res.ExitCode > 1 && len(files) == 0:
		return nil, fmt.Errorf("search %s on %s: grep exited %d: %s", dir, host, res.ExitCode, strings.TrimSpace(res.Stderr))
	case files == nil:
		files = []any{}
	}
	env.SetOutput("canary_found", len(files) > 0)
	env.SetOutput("canary_files", files)
	env.SetOutput("canary_table", table)
	rows := [][]string{{host, dir, table + "." + column, fmt.Sprint(len(files))}}
	for _, f := range files {
		rows = append(rows, []string{"", f.(string), "", "canary found"})
	}
	env.AddEvidence(steps.TableEvidence("Canary search in the raw files", []string{"host", "searched", "canary written to", "files with the canary"}, rows))
	var out []finding
	for _, f := range files {
		out = append(out, finding{What: "the canary is readable in " + path.Base(f.(string)) + " on " + host,
			Fix: "encrypt what that file holds (tablespace, redo log, binary/relay log)"})
	}
	return out, nil
}

// keyMaterial checks the key file the server needs is present on its host
// and identical to its backup. Only digests leave the hosts.
func (a *AtRest) keyMaterial(ctx context.Context, env *steps.Env, v sqlView, host string) ([]finding, error) {
	keyFile := v.vars["file_key_management_filename"]
	if keyFile == "" {
		keyFile = v.vars["keyring_file_data"]
	}
	env.SetOutput("key_file", keyFile)
	if keyFile == "" {
		env.SetOutput("key_present", false)
		env.SetOutput("key_backed_up", false)
		if len(v.plugins) > 0 {
			env.Logf("the key plugin %s keeps no key file on the server; its keys are checked where they live", strings.Join(v.plugins, ", "))
		}
		return nil, nil
	}
	sum, err := digest(ctx, host, keyFile)
	if err != nil {
		return nil, err
	}
	env.SetOutput("key_present", sum != "")
	var out []finding
	rows := [][]string{{host, keyFile, presence(sum)}}
	if sum == "" {
		out = append(out, finding{What: "the key file " + keyFile + " is missing on " + host + ": the server cannot restart and its data cannot be read",
			Fix: "restore the key file from its backup before any restart"})
	}
	backed := false
	if a.KeyBackupPath != "" {
		bsum, err := digest(ctx, a.KeyBackupHost, a.KeyBackupPath)
		if err != nil {
			return nil, err
		}
		where := a.KeyBackupHost
		if where == "" {
			where = "local"
		}
		backed = sum != "" && bsum == sum
		state := presence(bsum)
		switch {
		case bsum != "" && sum != "" && !backed:
			state = "differs from the server's key file"
		case backed:
			state = "identical to the server's key file"
		}
		rows = append(rows, []string{where, a.KeyBackupPath, state})
		if !backed && sum != "" {
			out = append(out, finding{What: "the key file's backup " + a.KeyBackupPath + " on " + where + " " + state,
				Fix: "copy the key file to its backup location (the seed: back up the certificate and private key to ensure recoverability)"})
		}
	}
	env.SetOutput("key_backed_up", backed)
	env.AddEvidence(steps.TableEvidence("Key material", []string{"host", "file", "state"}, rows))
	return out, nil
}

func presence(sum string) string {
	if sum == "" {
		return "MISSING"
	}
	return "present"
}

// digest returns the SHA-256 of a file on host, or "" when it is absent
// or empty. The key never leaves the host.
func digest(ctx context.Context, host, file string) (string, error) {
	res, err := hostexec.Run(ctx, host, []string{"sh", "-c", `[ -s "$0" ] || exit 3; sha256sum < "$0"`, file}, nil)
	if err != nil {
		return "", fmt.Errorf("read %s on %s: %w", file, host, err)
	}
	switch res.ExitCode {
	case 0:
		f := strings.Fields(res.Stdout)
		if len(f) == 0 {
			return "", fmt.Errorf("digest of %s on %s: no output", file, host)
		}
		return f[0], nil
	case 3:
		return "", nil
	}
	return "", fmt.Errorf("read %s on %s: exit %d: %s", file, host, res.ExitCode, strings.TrimSpace(res.Stderr))
}
