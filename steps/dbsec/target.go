package dbsec

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// Database engines a DSN can name.
const (
	engineMySQL    = "mysql"
	enginePostgres = "postgres"
)

// Target is how the steps reach a database: a DSN (go-sql-driver/mysql
// form for MySQL and MariaDB, a postgres:// URL for PostgreSQL), the DNS
// server that resolves its host name, and a connect timeout.
type Target struct {
	DSN            string        `yaml:"dsn" doc:"MySQL/MariaDB: user:password@tcp(host:port)/database (go-sql-driver/mysql form); PostgreSQL: postgres://user:password@host:port/database" required:"true"`
	Resolver       string        `yaml:"resolver" doc:"DNS server (ip:port) resolving the DSN's host name, e.g. the VPC resolver; default: the system's"`
	ConnectTimeout time.Duration `yaml:"connect_timeout" doc:"dial, TLS handshake and log-in timeout"`
}

func defaultTarget() Target { return Target{ConnectTimeout: 5 * time.Second} }

// engine tells the DSN's database engine from its form.
func (t *Target) engine() string {
	if strings.HasPrefix(t.DSN, "postgres://") || strings.HasPrefix(t.DSN, "postgresql://") {
		return enginePostgres
	}
	return engineMySQL
}

// Validate checks the DSN without contacting anything. Messages never quote
// the password.
func (t *Target) Validate() error {
	if t.DSN == "" {
		return errors.New("dsn: missing; e.g. admin:${{ secrets.db_password }}@tcp(endpoint:3306)/drill")
	}
	if t.ConnectTimeout <= 0 {
		return fmt.Errorf("connect_timeout: must be positive, got %s", t.ConnectTimeout)
	}
	if t.Resolver != "" {
		if _, _, err := net.SplitHostPort(t.Resolver); err != nil {
			return fmt.Errorf("resolver: expected ip:port, got %q", t.Resolver)
		}
	}
	switch t.engine() {
	case enginePostgres:
		u, err := url.Parse(t.DSN)
		if err != nil {
			return errors.New("dsn: not a postgres:// URL")
		}
		if u.Query().Has("sslmode") || u.Query().Has("sslrootcert") {
			return errors.New("dsn: set TLS with the step's verify, ca_file and ca_pem, not sslmode or sslrootcert in the DSN")
		}
		if _, err := pgconn.ParseConfig(t.DSN); err != nil {
			return fmt.Errorf("dsn: %s", t.hide(err.Error()))
		}
		if u.Hostname() == "" {
			return errors.New("dsn: no host")
		}
	default:
		cfg, err := mysql.ParseDSN(t.DSN)
		if err != nil {
			return fmt.Errorf("dsn: %s", t.hide(err.Error()))
		}
		if cfg.Net != "tcp" {
			return fmt.Errorf("dsn: network %q: the check connects over tcp(host:port)", cfg.Net)
		}
		if cfg.TLSConfig != "" {
			return errors.New("dsn: set TLS with the step's verify, ca_file and ca_pem, not tls= in the DSN")
		}
	}
	return nil
}

// password returns the DSN's password, for env.Secret.
func (t *Target) password() string {
	if t.engine() == enginePostgres {
		if u, err := url.Parse(t.DSN); err == nil {
			p, _ := u.User.Password()
			return p
		}
		return ""
	}
	if cfg, err := mysql.ParseDSN(t.DSN); err == nil {
		return cfg.Passwd
	}
	return ""
}

// hide removes the DSN's password from a message.
func (t *Target) hide(msg string) string {
	if p := t.password(); p != "" {
		msg = strings.ReplaceAll(msg, p, "***")
		msg = strings.ReplaceAll(msg, url.QueryEscape(p), "***")
	}
	return msg
}

// hostPort returns the DSN's host and port.
func (t *Target) hostPort() (host, port string) {
	if t.engine() == enginePostgres {
		u, err := url.Parse(t.DSN)
		if err != nil {
			return "", ""
		}
		port = u.Port()
		if port == "" {
			port = "5432"
		}
		return u.Hostname(), port
	}
	cfg, err := mysql.ParseDSN(t.DSN)
	if err != nil {
		return "", ""
	}
	host, port, _ = net.SplitHostPort(cfg.Addr)
	return host, port
}

// dial resolves the host with the step's resolver and connects within the
// connect timeout.
func (t *Target) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := host
	if net.ParseIP(host) == nil {
		r := net.DefaultResolver
		via := "the system resolver"
		if t.Resolver != "" {
			server := t.Resolver
			via = server
			r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, server)
			}}
		}
		rctx, cancel := context.WithTimeout(ctx, t.ConnectTimeout)
		ips, err := r.LookupIP(rctx, "ip4", host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("resolve %s via %s: %w", host, via, err)
		}
		ip = ips[0].String()
	}
	d := net.Dialer{Timeout: t.ConnectTimeout}
	c, err := d.DialContext(ctx, network, net.JoinHostPort(ip, port))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return c, nil
}

type quietLogger struct{}

func (quietLogger) Print(...any) {}

// mysqlConfig is the DSN's driver configuration with the step's dialer and
// timeouts, and tlsCfg (nil: no TLS).
func (t *Target) mysqlConfig(tlsCfg *tls.Config) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(t.DSN)
	if err != nil {
		return nil, fmt.Errorf("dsn: %s", t.hide(err.Error()))
	}
	cfg.Timeout = t.ConnectTimeout
	cfg.ReadTimeout = 2 * t.ConnectTimeout
	cfg.WriteTimeout = 2 * t.ConnectTimeout
	cfg.Logger = quietLogger{}
	cfg.DialFunc = t.dial
	cfg.TLSConfig = ""
	cfg.TLS = tlsCfg
	cfg.AllowFallbackToPlaintext = false
	cfg.AllowCleartextPasswords = false
	return cfg, nil
}

// openMySQL returns a handle limited to one connection.
func (t *Target) openMySQL(tlsCfg *tls.Config) (*sql.DB, error) {
	cfg, err := t.mysqlConfig(tlsCfg)
	if err != nil {
		return nil, err
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("dsn: %s", t.hide(err.Error()))
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	return db, nil
}

// pgConfig is the DSN's pgconn configuration with the step's dialer and
// tlsCfg (nil: no TLS), and no fallback to another mode.
func (t *Target) pgConfig(tlsCfg *tls.Config) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(t.DSN + pgParamSep(t.DSN) + "sslmode=disable")
	if err != nil {
		return nil, fmt.Errorf("dsn: %s", t.hide(err.Error()))
	}
	cfg.TLSConfig = tlsCfg
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = t.ConnectTimeout
	cfg.DialFunc = t.dial
	// The name is resolved by dial, with the step's resolver.
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) { return []string{host}, nil }
	return cfg, nil
}

func pgParamSep(dsn string) string {
	if strings.Contains(dsn, "?") {
		return "&"
	}
	return "?"
}
