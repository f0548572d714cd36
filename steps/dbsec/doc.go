// Package dbsec provides the drill of the seed "Microsoft SQL Server 2008
// Encryption" parts I and II, for the databases this project runs: data in
// transit and data at rest.
//
//   - db.tls connects with the server's TLS (MySQL and MariaDB through
//     go-sql-driver/mysql, PostgreSQL through jackc/pgx) and reports the
//     protocol and cipher (the client's and the server's own view), the
//     certificate chain with its names and days left, whether the chain
//     and the DSN's host name verify, and whether the server refuses a
//     client without TLS. `verify: full` (the default) is the lesson of the
//     seed's `TrustServerCertificate=true`: an untrusted or mismatched
//     certificate fails the step, and the handshake is aborted before any
//     credential is sent.
//   - db.at_rest proves the data at rest is encrypted: `driver: aws-rds`
//     reads StorageEncrypted, the KMS key's state and the snapshots
//     through aws-sdk-go-v2; `driver: sql` reads the server's own view
//     (key management plugin, InnoDB/redo/binlog encryption, each table's
//     tablespace) and, where the data folder is reachable through a host
//     reference, writes a random canary row, flushes it and searches the
//     raw files for it. The key file the server needs is checked present
//     and identical to its backup (only digests leave the hosts).
//
// SQL Server itself cannot run here; README's roadmap says what a
// `driver: sqlserver` would check.
package dbsec

import "github.com/opsdrill/opsdrill/steps"

func init() {
	steps.Register(steps.Spec{
		Name:    "db.tls",
		Summary: "Connect with the database's TLS: protocol, cipher, certificate chain, host name verification, plaintext refused",
		Doc: "Connects to `dsn` (go-sql-driver/mysql form, or a postgres:// URL) with TLS and reports the negotiated protocol " +
			"(`tls_version`, spelled TLSv1.2/TLSv1.3 as MySQL's Ssl_version does, so `outputs.tls_version >= \"TLSv1.2\"` compares right) " +
			"and cipher, the server's own view of the session (Ssl_version/Ssl_cipher, pg_stat_ssl), and the certificate chain " +
			"(subject, issuer, SANs, not-after, `days_left`). The chain is verified against `ca_file`/`ca_pem` (default: the system's roots) " +
			"and the leaf against the DSN's host (or `server_name`). `verify: full` (default) fails an untrusted, expired or mismatched " +
			"certificate and aborts the handshake before credentials are sent; `verify: ca` checks the chain only; `verify: none` only reports, " +
			"as the seed's TrustServerCertificate=true does. A server that offers no TLS fails the step. " +
			"With `plaintext_check` (default) it then tries without TLS: `plaintext_refused` is true when the server refuses " +
			"(MySQL/MariaDB require_secure_transport or REQUIRE SSL: the valid credentials are denied; PostgreSQL hostssl-only pg_hba: " +
			"refused before authentication, probed with a random password so the real one never travels in clear).",
		New: newTLSCheck,
		Outputs: []steps.Output{
			{Name: "tls", Type: "bool", Doc: "a TLS handshake happened"},
			{Name: "engine", Type: "string", Doc: "mysql or postgres"},
			{Name: "server", Type: "string", Doc: "the DSN's host:port"},
			{Name: "tls_version", Type: "string", Doc: "negotiated protocol: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"},
			{Name: "cipher", Type: "string", Doc: "negotiated cipher suite (Go's name)"},
			{Name: "server_tls_version", Type: "string", Doc: "the protocol the server reports for the session"},
			{Name: "server_cipher", Type: "string", Doc: "the cipher the server reports for the session"},
			{Name: "subject", Type: "string", Doc: "the server certificate's subject"},
			{Name: "issuer", Type: "string", Doc: "its issuer"},
			{Name: "sans", Type: "list", Doc: "its subject alternative names"},
			{Name: "not_after", Type: "string", Doc: "its expiry, RFC 3339"},
			{Name: "days_left", Type: "int", Doc: "whole days until it expires (negative: expired)"},
			{Name: "chain", Type: "list", Doc: "every certificate presented: subject, issuer, sans, not_before, not_after, days_left, is_ca"},
			{Name: "chain_verified", Type: "bool", Doc: "the chain leads to a trusted CA and every certificate is valid now"},
			{Name: "hostname_verified", Type: "bool", Doc: "the leaf carries verified_name"},
			{Name: "verified_name", Type: "string", Doc: "the name checked: server_name or the DSN's host"},
			{Name: "verify", Type: "string", Doc: "the policy applied"},
			{Name: "verify_error", Type: "string", Doc: "why the chain or the name did not verify"},
			{Name: "plaintext_refused", Type: "bool", Doc: "a client without TLS was refused"},
			{Name: "plaintext_error", Type: "string", Doc: "how the server refused (or answered) the plaintext client"},
		},
		Examples: []steps.Example{
			{Title: "The seed's ForceEncryption and Encrypt=true, with the certificate verified", YAML: "- uses: db.tls\n  with:\n    dsn: \"admin:${{ secrets.db_password }}@tcp(${{ vars.endpoint }}:3306)/drill\"\n    ca_file: rds-global-bundle.pem\n  expect:\n    - outputs.tls_version >= \"TLSv1.2\"\n    - outputs.days_left > 30\n    - outputs.plaintext_refused"},
			{Title: "PostgreSQL", YAML: "- uses: db.tls\n  with:\n    dsn: \"postgres://app:${{ secrets.pg_password }}@db.internal:5432/app\"\n    ca_pem: ${{ vars.pg_ca_pem }}"},
		},
	})
	steps.Register(steps.Spec{
		Name:    "db.at_rest",
		Summary: "Prove data at rest is encrypted (RDS StorageEncrypted and KMS key, or the server's view and a canary in the raw files) and its key recoverable",
		Doc: "`driver: aws-rds` reads the instance's StorageEncrypted and KmsKeyId (DescribeDBInstances), the key's state " +
			"(kms DescribeKey: Enabled, not pending deletion) and, with `snapshots` (default), that every snapshot of the instance is encrypted " +
			"with a usable key (DescribeDBSnapshots), through aws-sdk-go-v2 with the usual AWS configuration. " +
			"`driver: sql` (MySQL 8, MariaDB) connects over TLS (`verify`, `ca_file`, `ca_pem` as db.tls) and reads the server's view: " +
			"an active key management plugin (file_key_management, keyring), innodb_encrypt_tables, the redo and binary log encryption, " +
			"and each table of the DSN's database (`tables`, default all): MariaDB's INNODB_TABLESPACES_ENCRYPTION, MySQL's ENCRYPTION='Y'. " +
			"With `datadir_hosts`, the strongest proof: the host whose hostname is the server's @@hostname has its data folder searched for a random " +
			"canary row written into `canary_table` (default: a table created with the server's defaults, dropped afterwards) and flushed " +
			"(FLUSH TABLES ... FOR EXPORT): found in any file (tablespace, redo log, binary log) means not encrypted. " +
			"The key file the server needs (file_key_management_filename, keyring_file_data) is checked present on that host and, with " +
			"`key_backup_path`, identical to its backup on `key_backup_host` (SHA-256 compared on the hosts; the key never leaves them). " +
			"Every finding fails the step and comes with its fix.",
		New: newAtRest,
		Outputs: []steps.Output{
			{Name: "encrypted", Type: "bool", Doc: "no finding"},
			{Name: "findings", Type: "list", Doc: "what is not (provably) encrypted or recoverable"},
			{Name: "storage_encrypted", Type: "bool", Doc: "aws-rds: the instance's StorageEncrypted"},
			{Name: "kms_key_id", Type: "string", Doc: "aws-rds: the instance's KmsKeyId"},
			{Name: "key_state", Type: "string", Doc: "aws-rds: the key's KeyState (Enabled, Disabled, PendingDeletion, ...)"},
			{Name: "key_manager", Type: "string", Doc: "aws-rds: AWS or CUSTOMER"},
			{Name: "snapshots", Type: "list", Doc: "aws-rds: id, encrypted, kms_key_id, type of each snapshot"},
			{Name: "unencrypted_snapshots", Type: "list", Doc: "aws-rds: ids of snapshots not encrypted"},
			{Name: "tables", Type: "map", Doc: "sql: table name -> encrypted"},
			{Name: "unencrypted_tables", Type: "list", Doc: "sql: tables not encrypted"},
			{Name: "key_plugins", Type: "list", Doc: "sql: active key management plugins"},
			{Name: "server_hostname", Type: "string", Doc: "sql: the server's @@hostname"},
			{Name: "datadir_host", Type: "string", Doc: "sql: the host whose data folder was searched"},
			{Name: "canary_found", Type: "bool", Doc: "sql: the canary is readable in a raw file"},
			{Name: "canary_files", Type: "list", Doc: "sql: the files holding it"},
			{Name: "canary_table", Type: "string", Doc: "sql: the table the canary was written to"},
			{Name: "key_file", Type: "string", Doc: "sql: the server's key file"},
			{Name: "key_present", Type: "bool", Doc: "sql: the key file exists and is not empty on the server's host"},
			{Name: "key_backed_up", Type: "bool", Doc: "sql: its backup is identical"},
		},
		Examples: []steps.Example{
			{Title: "RDS: storage, key and snapshots", YAML: "- uses: db.at_rest\n  with: { driver: aws-rds, instance: testrds, region: ap-south-1 }"},
			{Title: "MariaDB with file_key_management: the server's view, a canary in the raw files, the key backed up", YAML: "- uses: db.at_rest\n  with:\n    dsn: \"admin:${{ secrets.db_password }}@tcp(${{ vars.endpoint }}:3306)/drill\"\n    ca_pem: ${{ vars.db_ca_pem }}\n    tables: [failover_test]\n    datadir_hosts: [\"ssh://db-a\", \"ssh://db-b\"]\n    key_backup_host: ssh://backup\n    key_backup_path: /srv/keys/mariadb-keyfile"},
		},
	})
}
