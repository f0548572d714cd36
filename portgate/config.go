package portgate

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/portgate/auth"
	"github.com/opsdrill/opsdrill/portgate/firewall"
)

// Config is portgate's configuration file (YAML). Unknown fields are
// errors, so a typo never silently weakens a setting.
type Config struct {
	// Listen is the API address. Default ":8443".
	Listen string `yaml:"listen"`
	// TLS is the certificate and key of the API; the --tls-cert and
	// --tls-key flags override them.
	TLS struct {
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"tls"`
	// StateFile holds live leases and replay floors. Default
	// /var/lib/portgate/state.json.
	StateFile string `yaml:"state_file"`
	// AuditLog receives JSON lines; "-" is standard output. Default
	// /var/log/portgate/audit.jsonl.
	AuditLog string `yaml:"audit_log"`
	// AuditRotate rotates the audit log by size: at max_bytes (default
	// 64 MiB), keeping `keep` old files (default 5).
	AuditRotate struct {
		MaxBytes int64 `yaml:"max_bytes"`
		Keep     int   `yaml:"keep"`
	} `yaml:"audit_rotate"`
	// Ports is the allow-list: the only ports portgate ever opens, and the
	// ports it keeps closed otherwise: 22 (TCP), "22/tcp", "3389/udp".
	Ports []firewall.Port `yaml:"ports"`
	Lease struct {
		Default time.Duration `yaml:"default"` // default 5m
		Min     time.Duration `yaml:"min"`     // default 5s
		Max     time.Duration `yaml:"max"`     // default 1h
		// MaxPerUser and MaxTotal bound live leases: of one user (default
		// 10) and in all (default 1000). A re-open of the same address and
		// port by the same user extends its lease instead of adding one.
		MaxPerUser int `yaml:"max_per_user"`
		MaxTotal   int `yaml:"max_total"`
	} `yaml:"lease"`
	TOTP struct {
		// Window is the number of time steps accepted either side of
		// the current one: 0 or 1 (default 1); up to 3 for clients with
		// bad clocks, with a warning.
		Window *int `yaml:"window"`
	} `yaml:"totp"`
	// Lockout is the throttle (package auth): back-off per (user, source
	// prefix) and per source, a guess budget per user that sources without
	// recent failures are never held to, a request rate per source.
	Lockout struct {
		// Off disables it (failures are still audited), loudly.
		Off               bool          `yaml:"off"`
		MaxFailures       int           `yaml:"max_failures"`        // default 5, per user and source prefix
		SourceMaxFailures int           `yaml:"source_max_failures"` // default 4 x max_failures, per source prefix
		Base              time.Duration `yaml:"base"`                // default 30s, doubled at each further failure
		Max               time.Duration `yaml:"max"`                 // default 1h
		ResetAfter        time.Duration `yaml:"reset_after"`         // default 168h
		// UserGuessesPerHour and UserBurst are each user's guess budget.
		UserGuessesPerHour float64 `yaml:"user_guesses_per_hour"` // default 12
		UserBurst          int     `yaml:"user_burst"`            // default 10
		// SourceRate and SourceBurst limit the requests of one source
		// prefix, whatever they ask.
		SourceRate  float64 `yaml:"source_rate"`  // per second, default 2
		SourceBurst int     `yaml:"source_burst"` // default 20
		MaxTracked  int     `yaml:"max_tracked"`  // sources and pairs remembered, default 1,000,000
	} `yaml:"lockout"`
	// OnShutdown is what SIGTERM does with live leases: "keep" (default;
	// they still end on time, in the kernel and at the next start) or
	// "close" (every lease is closed before exiting).
	OnShutdown string          `yaml:"on_shutdown"`
	Firewall   firewall.Config `yaml:"firewall"`
	// Forward DNATs guarded ports to hosts behind the gate and guards the
	// FORWARD path (either backend): [{port: 3389, to: 10.0.5.2:3389}].
	Forward []firewall.Forward `yaml:"forward"`
	Users   []UserConfig       `yaml:"users"`
	// AdminTokens are SHA-256 hashes (hex) of bearer tokens that may list
	// and close every lease.
	AdminTokens []string `yaml:"admin_token_sha256"`
	// FixedPassword is the seed runbook's mode: one shared password, no
	// user, no code. It is refused unless portgate runs with
	// --allow-fixed-password.
	FixedPassword *FixedPasswordConfig `yaml:"fixed_password"`

	users       []auth.User
	userPolicy  map[string]UserConfig
	adminHashes [][]byte
	// secretFiles are the files holding key material: secret files, the
	// TLS key, and the configuration itself when a key is inline.
	secretFiles []string
	inline      bool
}

// SecretFiles lists the files that hold key material (see CheckPerms).
func (c *Config) SecretFiles() []string { return c.secretFiles }

// CheckPerms refuses files holding key material that the group or others
// may read or write: a TOTP key read is a second factor gone.
func (c *Config) CheckPerms() error {
	var errs []error
	for _, p := range c.secretFiles {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if m := st.Mode().Perm(); m&0o077 != 0 {
			errs = append(errs, fmt.Errorf("%s holds key material and has mode %04o: group and others must have no access (chmod 600 %s)", p, m, p))
		}
	}
	return errors.Join(errs...)
}

// UserConfig is one user. Exactly one of the secret fields is set; the
// key is what totp.generate_key produces (base32 for FreeOTP, hex for
// oathtool), with the same digits, period and algorithm.
type UserConfig struct {
	Name          string        `yaml:"name"`
	Secret        string        `yaml:"secret"`          // base32
	SecretHex     string        `yaml:"secret_hex"`      // hex
	SecretFile    string        `yaml:"secret_file"`     // file holding the base32 key
	SecretHexFile string        `yaml:"secret_hex_file"` // file holding the hex key
	Digits        int           `yaml:"digits"`          // default 6
	Period        time.Duration `yaml:"period"`          // default 30s
	Algorithm     string        `yaml:"algorithm"`       // default SHA1
	// PasswordHash makes a password a second factor, required with every
	// code: argon2id (`portgate hash-password`) or bcrypt.
	PasswordHash string `yaml:"password_hash"`
	// Ports restricts the user to part of the allow-list (default: all).
	Ports []firewall.Port `yaml:"ports"`
	// StatedIP lets the user ask for a lease for another address than the
	// one the request comes from, within StatedIPRanges when given.
	StatedIP       bool           `yaml:"stated_ip"`
	StatedIPRanges []netip.Prefix `yaml:"stated_ip_ranges"`
	// MaxLease caps this user's leases below lease.max.
	MaxLease time.Duration `yaml:"max_lease"`
}

// FixedPasswordConfig configures the seed's fixed-password mode.
type FixedPasswordConfig struct {
	// SHA256 is the hex SHA-256 of the password.
	SHA256 string `yaml:"sha256"`
	// Port is the one port the password opens.
	Port uint16 `yaml:"port"`
	// StatedIP lets the form's ipaddr field name another address, as the
	// seed's page did. Default false: the caller's own address only.
	StatedIP bool `yaml:"stated_ip"`

	hash []byte
}

var userName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// LoadConfig reads and checks a configuration file. Relative secret files
// are taken from the configuration's folder.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := ParseConfig(f, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if c.inline {
		c.secretFiles = append([]string{path}, c.secretFiles...)
	}
	return c, nil
}

// ParseConfig decodes YAML strictly and validates it. Relative secret file
// paths are taken from dir.
func ParseConfig(r io.Reader, dir string) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		// yaml.v3 quotes offending values; a secret field has none
		// that could fail to decode (they are strings), so this is safe.
		return nil, err
	}
	if err := c.validate(dir); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate(dir string) error {
	if c.Listen == "" {
		c.Listen = ":8443"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q: expected host:port or :port", c.Listen)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("tls: give both cert and key, or neither")
	}
	if c.AuditRotate.MaxBytes < 0 || c.AuditRotate.Keep < 0 {
		return errors.New("audit_rotate: max_bytes and keep must be positive")
	}
	if c.StateFile == "" {
		c.StateFile = "/var/lib/portgate/state.json"
	}
	if c.AuditLog == "" {
		c.AuditLog = "/var/log/portgate/audit.jsonl"
	}
	if len(c.Ports) == 0 {
		return errors.New("ports: list at least one port portgate may open")
	}
	seen := map[firewall.Port]bool{}
	for i, p := range c.Ports {
		if p.Num == 0 {
			return fmt.Errorf("ports[%d]: must be 1 to 65535", i)
		}
		if seen[p] {
			return fmt.Errorf("ports[%d]: %s is listed twice", i, p)
		}
		seen[p] = true
	}
	slices.SortFunc(c.Ports, func(a, b firewall.Port) int {
		if a.Num != b.Num {
			return int(a.Num) - int(b.Num)
		}
		return strings.Compare(a.Proto, b.Proto)
	})
	if c.Lease.Default == 0 {
		c.Lease.Default = 5 * time.Minute
	}
	if c.Lease.Min == 0 {
		c.Lease.Min = 5 * time.Second
	}
	if c.Lease.Max == 0 {
		c.Lease.Max = time.Hour
	}
	switch {
	case c.Lease.Min < time.Second:
		return fmt.Errorf("lease.min: must be at least 1s, got %s", c.Lease.Min)
	case c.Lease.Max < c.Lease.Min:
		return fmt.Errorf("lease.max: %s is below lease.min %s", c.Lease.Max, c.Lease.Min)
	case c.Lease.Max > 7*24*time.Hour:
		return fmt.Errorf("lease.max: at most 168h, got %s", c.Lease.Max)
	case c.Lease.Default < c.Lease.Min || c.Lease.Default > c.Lease.Max:
		return fmt.Errorf("lease.default: %s is outside lease.min %s .. lease.max %s", c.Lease.Default, c.Lease.Min, c.Lease.Max)
	}
	switch {
	case c.Lease.MaxPerUser < 0:
		return fmt.Errorf("lease.max_per_user: must be positive, got %d", c.Lease.MaxPerUser)
	case c.Lease.MaxTotal < 0:
		return fmt.Errorf("lease.max_total: must be positive, got %d", c.Lease.MaxTotal)
	}
	if c.Lease.MaxPerUser == 0 {
		c.Lease.MaxPerUser = 10
	}
	if c.Lease.MaxTotal == 0 {
		c.Lease.MaxTotal = 1000
	}
	if c.TOTP.Window == nil {
		one := 1
		c.TOTP.Window = &one
	}
	if w := *c.TOTP.Window; w < 0 || w > 3 {
		return fmt.Errorf("totp.window: must be 0 to 3 steps, got %d", w)
	}
	for _, n := range []struct {
		name string
		v    float64
	}{
		{"lockout.max_failures", float64(c.Lockout.MaxFailures)}, {"lockout.source_max_failures", float64(c.Lockout.SourceMaxFailures)},
		{"lockout.user_guesses_per_hour", c.Lockout.UserGuessesPerHour}, {"lockout.user_burst", float64(c.Lockout.UserBurst)},
		{"lockout.source_rate", c.Lockout.SourceRate}, {"lockout.source_burst", float64(c.Lockout.SourceBurst)},
		{"lockout.max_tracked", float64(c.Lockout.MaxTracked)},
	} {
		if n.v < 0 {
			return fmt.Errorf("%s: must be positive, got %v", n.name, n.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"lockout.base", c.Lockout.Base}, {"lockout.max", c.Lockout.Max}, {"lockout.reset_after", c.Lockout.ResetAfter}} {
		if d.v < 0 {
			return fmt.Errorf("%s: must be positive, got %s", d.name, d.v)
		}
	}
	switch c.OnShutdown {
	case "":
		c.OnShutdown = "keep"
	case "keep", "close":
	default:
		return fmt.Errorf("on_shutdown: must be keep or close, got %q", c.OnShutdown)
	}
	switch c.Firewall.Backend {
	case "":
		c.Firewall.Backend = "nftables"
	case "nftables", "iptables":
	default:
		return fmt.Errorf("firewall.backend: must be nftables or iptables, got %q", c.Firewall.Backend)
	}
	if err := firewall.ValidateForwards(c.Forward, c.Ports); err != nil {
		return err
	}
	if chain := c.Firewall.IPTables.Chain; len(c.Forward) > 0 && c.Firewall.Backend == "iptables" && len(chain) > firewall.MaxForwardChain {
		return fmt.Errorf("firewall.iptables.chain: %q: at most %d characters with forward: (portgate adds -NAT and -FWD chains)", chain, firewall.MaxForwardChain)
	}
	c.Firewall.Forward = c.Forward
	if len(c.Users) == 0 && c.FixedPassword == nil {
		return errors.New("users: configure at least one user")
	}
	c.userPolicy = map[string]UserConfig{}
	for i, u := range c.Users {
		where := fmt.Sprintf("users[%d]", i)
		if !userName.MatchString(u.Name) {
			return fmt.Errorf("%s.name: %q: use 1 to 64 letters, digits, '.', '_', '@' or '-'", where, u.Name)
		}
		if _, dup := c.userPolicy[u.Name]; dup {
			return fmt.Errorf("%s.name: %q is configured twice", where, u.Name)
		}
		secret, err := u.secret(dir)
		if err != nil {
			return fmt.Errorf("%s (%s).%w", where, u.Name, err)
		}
		key, err := auth.NewKey(secret, u.Digits, u.Period, u.Algorithm)
		if err != nil {
			return fmt.Errorf("%s (%s).%w", where, u.Name, err)
		}
		for j, p := range u.Ports {
			if !seen[p] {
				return fmt.Errorf("%s (%s).ports[%d]: %s is not in the allow-list (ports)", where, u.Name, j, p)
			}
		}
		if len(u.StatedIPRanges) > 0 && !u.StatedIP {
			return fmt.Errorf("%s (%s).stated_ip_ranges: needs stated_ip: true", where, u.Name)
		}
		if u.MaxLease < 0 || (u.MaxLease > 0 && u.MaxLease < c.Lease.Min) {
			return fmt.Errorf("%s (%s).max_lease: must be at least lease.min %s, got %s", where, u.Name, c.Lease.Min, u.MaxLease)
		}
		au := auth.User{Name: u.Name, Key: key}
		if u.PasswordHash != "" {
			if au.Password, err = auth.ParsePasswordHash(u.PasswordHash); err != nil {
				return fmt.Errorf("%s (%s).password_hash: %w", where, u.Name, err)
			}
		}
		if u.Secret != "" || u.SecretHex != "" {
			c.inline = true
		}
		for _, f := range []string{u.SecretFile, u.SecretHexFile} {
			if f != "" {
				if !filepath.IsAbs(f) {
					f = filepath.Join(dir, f)
				}
				c.secretFiles = append(c.secretFiles, f)
			}
		}
		// Keep the policy without the key material.
		u.Secret, u.SecretHex, u.PasswordHash = "", "", ""
		c.userPolicy[u.Name] = u
		c.users = append(c.users, au)
	}
	for i, h := range c.AdminTokens {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return fmt.Errorf("admin_token_sha256[%d]: must be 64 hex digits (sha256sum of the token)", i)
		}
		c.adminHashes = append(c.adminHashes, b)
	}
	if fp := c.FixedPassword; fp != nil {
		b, err := hex.DecodeString(fp.SHA256)
		if err != nil || len(b) != 32 {
			return errors.New("fixed_password.sha256: must be 64 hex digits (printf %s PASSWORD | sha256sum)")
		}
		fp.hash = b
		if !seen[firewall.Port{Proto: firewall.TCP, Num: fp.Port}] {
			return fmt.Errorf("fixed_password.port: %d is not in the allow-list (ports)", fp.Port)
		}
	}
	return nil
}

// secret reads the one secret field that is set. Errors start with the
// field name and never quote the value.
func (u UserConfig) secret(dir string) ([]byte, error) {
	type src struct {
		field, value string
		file, hex    bool
	}
	var set []src
	for _, s := range []src{
		{"secret", u.Secret, false, false},
		{"secret_hex", u.SecretHex, false, true},
		{"secret_file", u.SecretFile, true, false},
		{"secret_hex_file", u.SecretHexFile, true, true},
	} {
		if s.value != "" {
			set = append(set, s)
		}
	}
	if len(set) != 1 {
		return nil, errors.New("secret: set exactly one of secret, secret_hex, secret_file, secret_hex_file")
	}
	s := set[0]
	v := s.value
	if s.file {
		p := v
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.field, err)
		}
		v = string(b)
	}
	var b []byte
	var err error
	if s.hex {
		b, err = auth.ParseHexSecret(v)
	} else {
		b, err = auth.ParseBase32Secret(v)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.field, err)
	}
	return b, nil
}

// Allowed resolves a request for port (and proto, "" for the default) to
// an entry of the allow-list: the one named, or for no proto TCP when it is
// listed, else UDP.
func (c *Config) Allowed(port uint16, proto string) (firewall.Port, bool) {
	for _, p := range []string{firewall.TCP, firewall.UDP} {
		if proto != "" && proto != p {
			continue
		}
		want := firewall.Port{Proto: p, Num: port}
		if slices.Contains(c.Ports, want) {
			return want, true
		}
	}
	return firewall.Port{}, false
}

// Policy returns the authentication policy the configuration describes.
func (c *Config) Policy() auth.Policy {
	l := c.Lockout
	return auth.Policy{
		Window:             *c.TOTP.Window,
		Off:                l.Off,
		MaxFailures:        l.MaxFailures,
		SourceMaxFailures:  l.SourceMaxFailures,
		LockoutBase:        l.Base,
		LockoutMax:         l.Max,
		ResetAfter:         l.ResetAfter,
		UserGuessesPerHour: l.UserGuessesPerHour,
		UserBurst:          l.UserBurst,
		SourceRate:         l.SourceRate,
		SourceBurst:        l.SourceBurst,
		MaxTracked:         l.MaxTracked,
	}
}
