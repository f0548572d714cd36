package db

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	hostpkg "github.com/opsdrill/opsdrill/steps/host"
)

// Conn is how a step reaches the database: a DSN in go-sql-driver/mysql
// form, the DNS server that resolves its host name, and the timeouts that
// keep a client from hanging on a dead primary.
type Conn struct {
	DSN            string        `yaml:"dsn" doc:"user:password@tcp(host:port)/database (go-sql-driver/mysql form); host is the endpoint name or an address" required:"true"`
	Resolver       string        `yaml:"resolver" doc:"DNS server (ip:port) resolving the DSN's host name at every connection, e.g. the VPC resolver; default: the system's"`
	ConnectTimeout time.Duration `yaml:"connect_timeout" doc:"dial and log-in timeout"`
	ReadTimeout    time.Duration `yaml:"read_timeout" doc:"wait at most this long for the server's answer; a write still unanswered then has an unknown outcome"`
	WriteTimeout   time.Duration `yaml:"write_timeout" doc:"socket write timeout"`
	Via            string        `yaml:"via" doc:"connect through this SSH host (ssh://bastion, direct-tcpip), the way CI reaches a private endpoint; the DSN's host name is resolved there (or by resolver:, asked over TCP through the tunnel)"`
	TLSOptions     `yaml:",inline"`

	// serverName is the name a pinned connection's certificate must
	// carry (the endpoint's, not the address's).
	serverName string
	roots      *x509.CertPool
}

func defaultConn() Conn {
	return Conn{ConnectTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
}

// Validate checks the DSN and timeouts without contacting anything. Error
// messages never quote the password.
func (c *Conn) Validate() error {
	if c.DSN == "" {
		return errors.New("dsn: missing; e.g. admin:${{ secrets.db_password }}@tcp(endpoint:3306)/drill")
	}
	cfg, err := mysql.ParseDSN(c.DSN)
	if err != nil {
		return fmt.Errorf("dsn: %s", hidePassword(err.Error(), c.DSN))
	}
	if cfg.Net != "tcp" {
		return fmt.Errorf("dsn: network %q: the drill connects over tcp(host:port)", cfg.Net)
	}
	if cfg.DBName == "" {
		return errors.New("dsn: no database name; end the DSN with /DATABASE")
	}
	if cfg.Timeout != 0 || cfg.ReadTimeout != 0 || cfg.WriteTimeout != 0 {
		return errors.New("dsn: set timeout, readTimeout and writeTimeout with the step's connect_timeout, read_timeout and write_timeout, not in the DSN")
	}
	if err := hostpkg.ValidateVia(c.Via); err != nil {
		return err
	}
	if err := c.validateTLS(cfg); err != nil {
		return err
	}
	if c.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Resolver); err != nil {
			return fmt.Errorf("resolver: expected ip:port, got %q", c.Resolver)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"connect_timeout", c.ConnectTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be positive, got %s", d.name, d.v)
		}
	}
	return nil
}

// hidePassword removes the DSN's password from a message.
func hidePassword(msg, dsn string) string {
	at := strings.LastIndex(dsn, "@")
	colon := strings.Index(dsn, ":")
	if at > 0 && colon >= 0 && colon < at {
		if pw := dsn[colon+1 : at]; pw != "" {
			msg = strings.ReplaceAll(msg, pw, "***")
		}
	}
	return msg
}

// password returns the DSN's password, for env.Secret.
func (c *Conn) password() string {
	cfg, err := mysql.ParseDSN(c.DSN)
	if err != nil {
		return ""
	}
	return cfg.Passwd
}

// config builds the driver configuration. addr, when set, replaces the
// DSN's host:port (a pinned address).
func (c *Conn) config(addr string) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("dsn: %s", hidePassword(err.Error(), c.DSN))
	}
	host := c.serverName
	if host == "" {
		host, _, _ = net.SplitHostPort(cfg.Addr)
	}
	if addr != "" {
		cfg.Addr = addr
	}
	c.applyTLS(cfg, host)
	cfg.Timeout = c.ConnectTimeout
	cfg.ReadTimeout = c.ReadTimeout
	cfg.WriteTimeout = c.WriteTimeout
	cfg.InterpolateParams = true
	// Known up front, so a connection costs no extra round trip.
	cfg.MaxAllowedPacket = 4 << 20
	cfg.Logger = quietLogger{}
	cfg.DialFunc = c.dial
	return cfg, nil
}

// addr returns the DSN's host:port.
func (c *Conn) addr() string {
	cfg, err := mysql.ParseDSN(c.DSN)
	if err != nil {
		return ""
	}
	return cfg.Addr
}

// resolver returns the resolver the DSN's host name is looked up with.
func (c *Conn) resolver() *net.Resolver {
	if c.Resolver == "" {
		return net.DefaultResolver
	}
	server, via := c.Resolver, c.Via
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		if via != "" {
			// DNS over TCP through the tunnel: the resolver answers
			// only inside the network.
			return hostpkg.DialVia(ctx, via, "tcp", server)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
}

// resolve looks a host up with the step's resolver, with no caching: every
// connection follows the endpoint's current CNAME, like a client whose
// cache expired.
func (c *Conn) resolve(ctx context.Context, host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return host, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	if c.Via != "" && c.Resolver == "" {
		// The far side's resolver: a private zone answers only there.
		h, err := hostpkg.Open(ctx, c.Via)
		if err != nil {
			return "", &connectError{op: "resolve " + host + " via " + c.Via, err: err}
		}
		ip, err := hostpkg.ResolveOn(ctx, h, host)
		if err != nil {
			return "", &connectError{op: "resolve " + host + " via " + c.Via, err: err}
		}
		return ip, nil
	}
	ips, err := c.resolver().LookupIP(ctx, "ip4", host)
	if err != nil {
		via := "the system resolver"
		if c.Resolver != "" {
			via = c.Resolver
		}
		return "", &connectError{op: "resolve " + host + " via " + via, err: err}
	}
	return ips[0].String(), nil
}

// dial resolves the host and connects, within the connect timeout.
func (c *Conn) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &connectError{op: "dial " + addr, err: err}
	}
	if c.Via != "" && c.Resolver == "" {
		// The name is resolved on the far side.
		dctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
		defer cancel()
		conn, err := hostpkg.DialVia(dctx, c.Via, network, addr)
		if err != nil {
			return nil, &connectError{op: "connect to " + addr + " via " + c.Via, err: err}
		}
		return conn, nil
	}
	ip, err := c.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	if c.Via != "" {
		dctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
		defer cancel()
		conn, err := hostpkg.DialVia(dctx, c.Via, network, net.JoinHostPort(ip, port))
		if err != nil {
			return nil, &connectError{op: "connect to " + addr + " via " + c.Via, err: err}
		}
		return conn, nil
	}
	d := net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: 5 * time.Second}
	conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip, port))
	if err != nil {
		return nil, &connectError{op: "connect to " + addr, err: err}
	}
	return conn, nil
}

// connectError is a failure to reach the server at all: nothing was sent,
// so a write attempted on it certainly did not happen.
type connectError struct {
	op  string
	err error
}

func (e *connectError) Error() string { return e.op + ": " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

type quietLogger struct{}

func (quietLogger) Print(...any) {}

// open returns a database handle limited to one connection, for the
// steps' control queries (pre-flight checks, identity, verification).
func (c *Conn) open() (*sql.DB, error) {
	cfg, err := c.config("")
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("dsn: %s", hidePassword(err.Error(), c.DSN))
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}

// explain turns a connection or query error into a message that says what
// is wrong and which parameter to look at.
func (c *Conn) explain(err error) error {
	var me *mysql.MySQLError
	var ce *connectError
	switch {
	case errors.As(err, &me):
		switch me.Number {
		case 1045:
			hint := ""
			if cfg, perr := mysql.ParseDSN(c.DSN); perr == nil && (cfg.TLSConfig == "" || cfg.TLSConfig == "false") {
				// MariaDB refuses a plaintext client under
				// require_secure_transport (or REQUIRE SSL) with this error.
				hint = ", or the server refuses connections without TLS (add ?tls=preferred, or verify with db.tls)"
			}
			return fmt.Errorf("dsn: access denied for the DSN's user at %s: wrong user name or password%s (%s)", c.addr(), hint, me.Message)
		case 1044, 1049:
			return fmt.Errorf("dsn: database not usable at %s: %s", c.addr(), me.Message)
		case 1142, 1143, 1227:
			return fmt.Errorf("dsn: missing privilege: %s", me.Message)
		}
		return fmt.Errorf("%s: %w", c.addr(), err)
	case errors.As(err, &ce):
		hint := ""
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			hint = " (nothing listens there)"
		case isTimeout(err):
			hint = " (no answer: wrong address, firewall, or the host is down)"
		}
		return fmt.Errorf("dsn: cannot reach %s: %v%s", c.addr(), ce, hint)
	case tlsHint(err) != "":
		return fmt.Errorf("dsn: %s: %v%s", c.addr(), err, tlsHint(err))
	case isTimeout(err):
		return fmt.Errorf("dsn: %s did not answer in time: %v", c.addr(), err)
	}
	return fmt.Errorf("%s: %w", c.addr(), err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// Identity is which server answers, and whether it takes writes.
type Identity struct {
	Hostname string
	ServerID int64
	// ReadOnly: the server refuses the drill's writes. ReadOnlyBy names the
	// variables that say so: read_only (MariaDB, MySQL, RDS standbys),
	// super_read_only (MySQL replicas), innodb_read_only (Aurora MySQL
	// readers).
	ReadOnly   bool
	ReadOnlyBy []string
	Version    string
}

// readOnlyVars are the variables that make a MySQL-family server refuse
// writes; a server lacking one (MariaDB has no super_read_only) simply
// does not report it.
var readOnlyVars = []string{"read_only", "super_read_only", "innodb_read_only"}

// identity asks the server who it is and whether it is writable.
func identity(ctx context.Context, db *sql.DB) (Identity, error) {
	var id Identity
	if err := db.QueryRowContext(ctx, "SELECT @@hostname, @@server_id, VERSION()").Scan(&id.Hostname, &id.ServerID, &id.Version); err != nil {
		return id, err
	}
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('"+strings.Join(readOnlyVars, "', '")+"')")
	if err != nil {
		return id, err
	}
	defer rows.Close()
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return id, err
		}
		if on := strings.ToUpper(value); on == "ON" || on == "1" {
			id.ReadOnly = true
			id.ReadOnlyBy = append(id.ReadOnlyBy, strings.ToLower(name))
		}
	}
	return id, rows.Err()
}

// String names the server for messages.
func (id Identity) String() string {
	return fmt.Sprintf("%s (server_id %d)", id.Hostname, id.ServerID)
}

// resolvedAddr is the address the DSN's host resolves to now, ip:port.
func (c *Conn) resolvedAddr(ctx context.Context) (string, error) {
	host, port, err := net.SplitHostPort(c.addr())
	if err != nil {
		return "", err
	}
	ip, err := c.resolve(ctx, host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip, port), nil
}

// at returns the connection pinned to addr (ip:port) instead of the DSN's
// host; its certificate must still name the DSN's host.
func (c Conn) at(addr string) Conn {
	if c.serverName == "" {
		c.serverName, _, _ = net.SplitHostPort(c.addr())
	}
	c.DSN = pinDSN(c.DSN, addr)
	return c
}
