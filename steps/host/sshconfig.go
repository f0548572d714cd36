package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// sshSettings is what the OpenSSH client config says about one host, with
// OpenSSH's defaults filled in.
type sshSettings struct {
	alias          string // the name in the reference, what Host patterns match
	hostName       string
	port           int
	user           string
	identityFiles  []string
	identitiesOnly bool
	knownHosts     []string // user files first: accept-new appends to the first
	strict         string   // yes, ask, accept-new, no, off
	proxyJump      []string // hops, first to last; nil for a direct connection
	connectTimeout time.Duration
	aliveInterval  time.Duration
	aliveCountMax  int
}

// The keywords opsdrill reads; anything else in the file is left to the
// system ssh.
const (
	kwHostName       = "HostName"
	kwUser           = "User"
	kwPort           = "Port"
	kwIdentityFile   = "IdentityFile"
	kwIdentitiesOnly = "IdentitiesOnly"
	kwUserKnownHosts = "UserKnownHostsFile"
	kwGlobalKnown    = "GlobalKnownHostsFile"
	kwStrict         = "StrictHostKeyChecking"
	kwProxyJump      = "ProxyJump"
	kwConnectTimeout = "ConnectTimeout"
	kwAliveInterval  = "ServerAliveInterval"
	kwAliveCountMax  = "ServerAliveCountMax"
	kwProxyCommand   = "ProxyCommand"
)

// defaultConnectTimeout bounds a connection when the config sets none:
// OpenSSH waits for the kernel's TCP timeout, which is minutes.
const defaultConnectTimeout = 15 * time.Second

// loadSSHConfig reads an OpenSSH client config. An empty path means
// ~/.ssh/config, which may be missing; a path that was named must exist.
func loadSSHConfig(path string) (*ssh_config.Config, error) {
	named := path != ""
	if !named {
		home, err := os.UserHomeDir()
		if err != nil {
			return &ssh_config.Config{}, nil
		}
		path = filepath.Join(home, ".ssh", "config")
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !named {
		return &ssh_config.Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ssh config: %w", err)
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %w", path, err)
	}
	return cfg, nil
}

// resolveSSH applies cfg to a reference the way ssh(1) does: the first
// value found for a keyword wins, the reference's user and port win over
// the file's.
func resolveSSH(cfg *ssh_config.Config, r Ref) (sshSettings, error) {
	alias := r.Name
	get := func(kw string) string {
		v, _ := cfg.Get(alias, kw)
		return strings.TrimSpace(v)
	}
	s := sshSettings{alias: alias, hostName: alias, port: 22, strict: "ask", aliveCountMax: 3, connectTimeout: defaultConnectTimeout}
	if v := get(kwProxyCommand); v != "" && !strings.EqualFold(v, "none") {
		return s, fmt.Errorf("ssh config for %s: ProxyCommand is not supported; use ProxyJump", alias)
	}
	if v := get(kwUser); v != "" {
		s.user = v
	}
	if r.User != "" {
		s.user = r.User
	}
	if s.user == "" {
		if u, err := user.Current(); err == nil {
			s.user = u.Username
		}
	}
	if v := get(kwPort); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return s, fmt.Errorf("ssh config for %s: Port %q is not a TCP port", alias, v)
		}
		s.port = p
	}
	if r.Port != 0 {
		s.port = r.Port
	}
	if v := get(kwHostName); v != "" {
		s.hostName = expandTokens(v, s, "")
	}
	home, _ := os.UserHomeDir()
	files, _ := cfg.GetAll(alias, kwIdentityFile)
	if len(files) == 0 {
		for _, n := range []string{"id_rsa", "id_ecdsa", "id_ed25519"} {
			files = append(files, filepath.Join(home, ".ssh", n))
		}
	}
	for _, f := range files {
		s.identityFiles = append(s.identityFiles, expandTokens(f, s, home))
	}
	var err error
	if s.identitiesOnly, err = yesNo(alias, kwIdentitiesOnly, get(kwIdentitiesOnly)); err != nil {
		return s, err
	}
	known := get(kwUserKnownHosts)
	if known == "" {
		known = "~/.ssh/known_hosts ~/.ssh/known_hosts2"
	}
	global := get(kwGlobalKnown)
	if global == "" {
		global = "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"
	}
	for _, f := range append(strings.Fields(known), strings.Fields(global)...) {
		if strings.EqualFold(f, "none") {
			continue
		}
		s.knownHosts = append(s.knownHosts, expandTokens(f, s, home))
	}
	if v := strings.ToLower(get(kwStrict)); v != "" {
		switch v {
		case "yes", "ask", "accept-new", "no", "off":
			s.strict = v
		default:
			return s, fmt.Errorf("ssh config for %s: StrictHostKeyChecking %q: use yes, accept-new or no", alias, v)
		}
	}
	if v := get(kwProxyJump); v != "" && !strings.EqualFold(v, "none") {
		for _, hop := range strings.Split(v, ",") {
			if hop = strings.TrimSpace(hop); hop != "" {
				s.proxyJump = append(s.proxyJump, hop)
			}
		}
	}
	if s.connectTimeout, err = seconds(alias, kwConnectTimeout, get(kwConnectTimeout), defaultConnectTimeout); err != nil {
		return s, err
	}
	if s.aliveInterval, err = seconds(alias, kwAliveInterval, get(kwAliveInterval), 0); err != nil {
		return s, err
	}
	if v := get(kwAliveCountMax); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return s, fmt.Errorf("ssh config for %s: ServerAliveCountMax %q: use a positive count", alias, v)
		}
		s.aliveCountMax = n
	}
	return s, nil
}

func yesNo(alias, kw, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "", "no":
		return false, nil
	case "yes":
		return true, nil
	}
	return false, fmt.Errorf("ssh config for %s: %s %q: use yes or no", alias, kw, v)
}

func seconds(alias, kw, v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("ssh config for %s: %s %q: use whole seconds", alias, kw, v)
	}
	if n == 0 {
		return def, nil
	}
	return time.Duration(n) * time.Second, nil
}

// expandTokens expands ~ and the ssh_config tokens opsdrill knows: %h (the
// host name, or the alias while HostName itself is expanded), %n (the
// alias), %p, %r (the remote user), %u (the local user), %d (home), %%.
func expandTokens(v string, s sshSettings, home string) string {
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if v == "~" || strings.HasPrefix(v, "~/") {
		v = home + v[1:]
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	return strings.NewReplacer(
		"%%", "%",
		"%h", s.hostName,
		"%n", s.alias,
		"%p", strconv.Itoa(s.port),
		"%r", s.user,
		"%u", local,
		"%d", home,
	).Replace(v)
}
