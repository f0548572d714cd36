package dbsec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// Drivers of db.at_rest.
const (
	driverSQL    = "sql"
	driverAWSRDS = "aws-rds"
)

// AtRest is db.at_rest: prove the data at rest is encrypted and its key
// recoverable, from the platform's view (aws-rds) or the server's own
// (sql), and where the data folder is reachable, from the raw files.
type AtRest struct {
	Driver string `yaml:"driver" doc:"sql (default): the server's own view, and the raw files through datadir_hosts; aws-rds: StorageEncrypted, the KMS key and the snapshots"`

	// sql
	DSN            string        `yaml:"dsn" doc:"sql: user:password@tcp(host:port)/database (go-sql-driver/mysql form)"`
	Resolver       string        `yaml:"resolver" doc:"sql: DNS server (ip:port) resolving the DSN's host name; default: the system's"`
	ConnectTimeout time.Duration `yaml:"connect_timeout" doc:"sql: dial, TLS handshake and log-in timeout"`
	Verify         string        `yaml:"verify" doc:"sql: TLS certificate policy of the connection (full, ca, none), as db.tls"`
	CAFile         string        `yaml:"ca_file" doc:"sql: PEM bundle of trusted CAs for the connection"`
	CAPEM          string        `yaml:"ca_pem" doc:"sql: trusted CA certificates in PEM"`
	NoTLS          bool          `yaml:"no_tls" doc:"sql: connect without TLS (a server that refuses plaintext refuses this)"`
	Tables         []string      `yaml:"tables" doc:"sql: tables of the DSN's database that must be encrypted; default: every table of it"`
	DataDirHosts   []string      `yaml:"datadir_hosts" doc:"sql: host references (lab:NAME, local) of the database servers; the one whose hostname is the server's @@hostname has its data folder searched for a canary"`
	DataDir        string        `yaml:"datadir" doc:"sql: the data folder on those hosts; default: the server's @@datadir"`
	CanaryTable    string        `yaml:"canary_table" doc:"sql: table the canary row goes into (its other columns need defaults); default: a table the step creates with the server's defaults and drops"`
	CanaryColumn   string        `yaml:"canary_column" doc:"sql: character column of canary_table receiving the canary"`
	KeyBackupHost  string        `yaml:"key_backup_host" doc:"sql: host holding the backup of the key file (default: local)"`
	KeyBackupPath  string        `yaml:"key_backup_path" doc:"sql: path of the key file's backup; it must be identical to the server's key file"`

	// aws-rds
	Instance    string `yaml:"instance" doc:"aws-rds: DB instance identifier"`
	Region      string `yaml:"region" doc:"aws-rds: AWS region (default: the AWS configuration's)"`
	EndpointURL string `yaml:"endpoint_url" doc:"aws-rds: API endpoint for RDS and KMS instead of AWS's (BaseEndpoint), e.g. http://localhost:4566"`
	Snapshots   bool   `yaml:"snapshots" doc:"aws-rds: check the instance's snapshots are encrypted too (default true)"`
}

func newAtRest() steps.Step {
	return &AtRest{Driver: driverSQL, ConnectTimeout: defaultTarget().ConnectTimeout, Verify: verifyFull, Snapshots: true}
}

// Validate checks the parameters.
func (a *AtRest) Validate() error {
	switch a.Driver {
	case driverSQL:
		if err := a.target().Validate(); err != nil {
			return err
		}
		if a.target().engine() == enginePostgres {
			return errors.New("dsn: PostgreSQL has no built-in encryption at rest to read; check the storage with driver: aws-rds (StorageEncrypted), or the volume's encryption")
		}
		switch a.Verify {
		case verifyFull, verifyCA, verifyNone:
		default:
			return fmt.Errorf("verify: must be full, ca or none, got %q", a.Verify)
		}
		for _, h := range append(append([]string{}, a.DataDirHosts...), a.KeyBackupHost) {
			if err := hostexec.Validate(h); err != nil {
				return err
			}
		}
		if (a.CanaryTable == "") != (a.CanaryColumn == "") {
			return errors.New("canary_table and canary_column go together")
		}
		if a.KeyBackupPath != "" && len(a.DataDirHosts) == 0 {
			return errors.New("key_backup_path: comparing the key file with its backup needs datadir_hosts, where the key file is read")
		}
		for _, t := range a.Tables {
			if !identifier(t) {
				return fmt.Errorf("tables: %q is not a plain table name", t)
			}
		}
		if a.CanaryTable != "" && (!identifier(a.CanaryTable) || !identifier(a.CanaryColumn)) {
			return errors.New("canary_table, canary_column: plain names only")
		}
	case driverAWSRDS:
		if a.Instance == "" {
			return errors.New("instance: missing; the DB instance identifier, e.g. testrds")
		}
		if a.EndpointURL != "" && !strings.HasPrefix(a.EndpointURL, "http://") && !strings.HasPrefix(a.EndpointURL, "https://") {
			return fmt.Errorf("endpoint_url: expected http(s)://host[:port], got %q", a.EndpointURL)
		}
	default:
		return fmt.Errorf("driver: must be sql or aws-rds, got %q", a.Driver)
	}
	return nil
}

// target is the SQL connection's parameters.
func (a *AtRest) target() *Target {
	return &Target{DSN: a.DSN, Resolver: a.Resolver, ConnectTimeout: a.ConnectTimeout}
}

// identifier accepts the table and column names the step quotes itself.
func identifier(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '$' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// finding is one reason the data is not (provably) encrypted, with its fix.
type finding struct {
	What string
	Fix  string
}

// Run checks with the chosen driver and fails on any finding.
func (a *AtRest) Run(ctx context.Context, env *steps.Env) error {
	var findings []finding
	var err error
	switch a.Driver {
	case driverAWSRDS:
		findings, err = a.runAWS(ctx, env)
	default:
		env.Secret(a.target().password())
		findings, err = a.runSQL(ctx, env)
	}
	if err != nil {
		return err
	}
	list := []any{}
	rows := [][]string{}
	for _, f := range findings {
		list = append(list, f.What)
		rows = append(rows, []string{f.What, f.Fix})
	}
	env.SetOutput("findings", list)
	env.SetOutput("encrypted", len(findings) == 0)
	if len(findings) == 0 {
		return nil
	}
	env.AddEvidence(steps.TableEvidence("Findings", []string{"finding", "fix"}, rows))
	what := make([]string, len(findings))
	for i, f := range findings {
		what[i] = f.What
	}
	return steps.Failf("data at rest is not provably encrypted: %s", strings.Join(what, "; "))
}
