package dbsec

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/opsdrill/opsdrill/steps"
)

// TLSCheck is db.tls: connect with the server's TLS, report what was
// negotiated and presented, and try a plaintext connection.
type TLSCheck struct {
	Target     `yaml:",inline"`
	Verify     string `yaml:"verify" doc:"full (default): the certificate must chain to a trusted CA and carry the DSN's host name (or server_name); ca: the chain only; none: report without failing, the seed's TrustServerCertificate=true"`
	CAFile     string `yaml:"ca_file" doc:"PEM bundle of trusted CAs (e.g. AWS's RDS global bundle); default with ca_pem empty: the system's roots"`
	CAPEM      string `yaml:"ca_pem" doc:"trusted CA certificates in PEM, e.g. ${{ vars.rds_ca_pem }}"`
	ServerName string `yaml:"server_name" doc:"name the certificate must carry; default: the DSN's host"`
	Plaintext  bool   `yaml:"plaintext_check" doc:"also try without TLS and report whether the server refuses (default true)"`

	now func() time.Time
}

func newTLSCheck() steps.Step {
	return &TLSCheck{Target: defaultTarget(), Verify: verifyFull, Plaintext: true}
}

// Validate checks the parameters.
func (c *TLSCheck) Validate() error {
	if err := c.Target.Validate(); err != nil {
		return err
	}
	switch c.Verify {
	case verifyFull, verifyCA, verifyNone:
	default:
		return fmt.Errorf("verify: must be full, ca or none, got %q", c.Verify)
	}
	if c.CAPEM != "" && !strings.Contains(c.CAPEM, "-----BEGIN CERTIFICATE-----") {
		return errors.New("ca_pem: expected PEM certificates (-----BEGIN CERTIFICATE-----)")
	}
	return nil
}

// Run connects and judges.
func (c *TLSCheck) Run(ctx context.Context, env *steps.Env) error {
	env.Secret(c.password())
	now := c.now
	if now == nil {
		now = time.Now
	}
	host, port := c.hostPort()
	name := c.ServerName
	if name == "" {
		name = host
	}
	roots, err := trustPool(env.Path(c.CAFile), c.CAPEM)
	if err != nil {
		return err
	}
	env.SetOutput("server", host+":"+port)
	env.SetOutput("engine", c.engine())

	var h handshake
	cfg := clientTLS(&h, roots, name, c.Verify, now)
	var view serverView
	switch c.engine() {
	case enginePostgres:
		view, err = c.pgTLS(ctx, cfg)
	default:
		view, err = c.mysqlTLS(ctx, cfg)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.report(env, &h, view, name, now())
	if !h.done {
		env.SetOutput("tls", false)
		if err != nil && isNoTLS(err) {
			return steps.Failf("%s does not offer TLS: the connection would travel in plaintext", host+":"+port)
		}
		if err == nil {
			err = errors.New("no TLS handshake happened")
		}
		return fmt.Errorf("connect to %s:%s with TLS: %s", host, port, c.hide(err.Error()))
	}
	env.SetOutput("tls", true)
	switch {
	case h.chainErr != nil && c.Verify != verifyNone:
		return steps.Failf("%s: %v (verify: %s)", host+":"+port, h.chainErr, c.Verify)
	case h.nameErr != nil && c.Verify == verifyFull:
		return steps.Failf("%s: %v (verify: full)", host+":"+port, h.nameErr)
	case err != nil:
		return fmt.Errorf("log in to %s:%s over TLS: %s", host, port, c.hide(err.Error()))
	}
	if h.chainErr != nil || h.nameErr != nil {
		env.Logf("warning: the certificate is not trustworthy (%v), passed only because verify: none", errors.Join(h.chainErr, h.nameErr))
	}
	if c.Plaintext {
		refused, why, perr := c.plaintext(ctx)
		if perr != nil {
			return fmt.Errorf("plaintext check of %s:%s: %s", host, port, c.hide(perr.Error()))
		}
		env.SetOutput("plaintext_refused", refused)
		env.SetOutput("plaintext_error", c.hide(why))
		verdict := "refused: " + c.hide(why)
		if !refused {
			verdict = "ACCEPTED: a client without TLS is served in plaintext"
		}
		env.AddEvidence(steps.TableEvidence("Plaintext connection (no TLS)", []string{"server", "result"},
			[][]string{{host + ":" + port, verdict}}))
	}
	return nil
}

// serverView is the server's own account of the session's TLS.
type serverView struct {
	version, cipher string
}

func (c *TLSCheck) report(env *steps.Env, h *handshake, view serverView, name string, now time.Time) {
	env.SetOutput("server_tls_version", view.version)
	env.SetOutput("server_cipher", view.cipher)
	env.SetOutput("verified_name", name)
	env.SetOutput("verify", c.Verify)
	if !h.done {
		return
	}
	env.SetOutput("tls_version", tlsVersionName(h.version))
	env.SetOutput("cipher", tls.CipherSuiteName(h.cipher))
	env.SetOutput("chain_verified", h.chainErr == nil)
	env.SetOutput("hostname_verified", h.nameErr == nil)
	var problems []string
	if h.chainErr != nil {
		problems = append(problems, h.chainErr.Error())
	}
	if h.nameErr != nil {
		problems = append(problems, h.nameErr.Error())
	}
	env.SetOutput("verify_error", strings.Join(problems, "; "))
	chain := []any{}
	rows := [][]string{}
	for i, cert := range h.chain {
		info := certInfo(cert, now)
		chain = append(chain, info)
		var sans []string
		for _, s := range info["sans"].([]any) {
			sans = append(sans, s.(string))
		}
		rows = append(rows, []string{fmt.Sprint(i), info["subject"].(string), info["issuer"].(string),
			strings.Join(sans, ", "), info["not_after"].(string), fmt.Sprint(info["days_left"])})
	}
	env.SetOutput("chain", chain)
	if len(h.chain) > 0 {
		leaf := chain[0].(map[string]any)
		env.SetOutput("subject", leaf["subject"])
		env.SetOutput("issuer", leaf["issuer"])
		env.SetOutput("sans", leaf["sans"])
		env.SetOutput("not_after", leaf["not_after"])
		env.SetOutput("days_left", leaf["days_left"])
	}
	env.AddEvidence(steps.TableEvidence("Certificate chain presented", []string{"#", "subject", "issuer", "SANs", "not after", "days left"}, rows))
	chainRes, nameRes := "trusted", "matches "+name
	if h.chainErr != nil {
		chainRes = h.chainErr.Error()
	}
	if h.nameErr != nil {
		nameRes = h.nameErr.Error()
	}
	env.AddEvidence(steps.TableEvidence("TLS session", []string{"check", "result"}, [][]string{
		{"protocol (client)", tlsVersionName(h.version)},
		{"cipher (client)", tls.CipherSuiteName(h.cipher)},
		{"protocol (server's view)", orNone(view.version)},
		{"cipher (server's view)", orNone(view.cipher)},
		{"chain", chainRes},
		{"host name", nameRes},
		{"policy", "verify: " + c.Verify},
	}))
}

func orNone(s string) string {
	if s == "" {
		return "(not reported)"
	}
	return s
}

// isNoTLS reports whether the server turned TLS down.
func isNoTLS(err error) bool {
	return errors.Is(err, mysql.ErrNoTLS) || strings.Contains(err.Error(), "server refused TLS connection")
}

// mysqlTLS logs in over TLS and asks the server how it sees the session.
func (c *TLSCheck) mysqlTLS(ctx context.Context, cfg *tls.Config) (serverView, error) {
	var v serverView
	db, err := c.openMySQL(cfg)
	if err != nil {
		return v, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')")
	if err != nil {
		return v, err
	}
	defer rows.Close()
	for rows.Next() {
		var k, val string
		if err := rows.Scan(&k, &val); err != nil {
			return v, err
		}
		switch k {
		case "Ssl_version":
			v.version = val
		case "Ssl_cipher":
			v.cipher = val
		}
	}
	return v, rows.Err()
}

// pgTLS logs in over TLS and reads pg_stat_ssl for the session.
func (c *TLSCheck) pgTLS(ctx context.Context, cfg *tls.Config) (serverView, error) {
	var v serverView
	pc, err := c.pgConfig(cfg)
	if err != nil {
		return v, err
	}
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return v, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res := conn.ExecParams(ctx, "SELECT coalesce(version, ''), coalesce(cipher, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return v, res.Err
	}
	if len(res.Rows) == 1 && len(res.Rows[0]) == 2 {
		v.version, v.cipher = string(res.Rows[0][0]), string(res.Rows[0][1])
	}
	return v, nil
}

// plaintext tries to log in without TLS. MySQL: with the DSN's own
// credentials (the driver never sends a cleartext password: native and
// caching_sha2 authentication exchange scrambles), since a refusal shows
// only as "access denied" for an account the TLS login just proved valid.
// PostgreSQL: with a random password, since pg_hba's `password` method
// would send the real one in clear; a hostssl-only server refuses before
// authentication ("no encryption"), any other answer means the server
// served a plaintext client.
func (c *TLSCheck) plaintext(ctx context.Context) (refused bool, why string, err error) {
	if c.engine() == enginePostgres {
		pc, err := c.pgConfig(nil)
		if err != nil {
			return false, "", err
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		pc.Password = "opsdrill-probe-" + hex.EncodeToString(b)
		conn, err := pgconn.ConnectConfig(ctx, pc)
		if err == nil {
			conn.Close(context.WithoutCancel(ctx))
			return false, "", nil
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			if pe.Code == "28000" && strings.Contains(pe.Message, "no encryption") {
				return true, pe.Message, nil
			}
			// Authentication was attempted: the transport was accepted.
			return false, pe.Message, nil
		}
		return false, "", err
	}
	db, err := c.openMySQL(nil)
	if err != nil {
		return false, "", err
	}
	defer db.Close()
	err = db.PingContext(ctx)
	if err == nil {
		return false, "", nil
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 3159: // ER_SECURE_TRANSPORT_REQUIRED (MySQL)
			return true, me.Message, nil
		case 1045: // MariaDB's require_secure_transport, or REQUIRE SSL on the account
			return true, "the account's valid credentials are denied without TLS: " + me.Message, nil
		}
	}
	return false, "", err
}
