package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"gopkg.in/yaml.v3"
)

// Every lab host runs sshd, so scenarios reach the lab the way they reach
// real hosts: over ssh://, through an OpenSSH client config. Up writes, in
// the state folder (or a private temporary folder without one):
//
//	ssh_config       a Host entry per lab host (HostName its address, User
//	                 ops, the lab's key, the pinned known_hosts; hosts only
//	                 the bastion reaches have ProxyJump bastion)
//	id_ed25519       the lab's user key (and .pub), accepted for ops
//	known_hosts      every host's own host key, generated for this lab
//	vars-ssh.yaml    the lab's vars with every lab:LABID/NAME host
//	                 reference turned into ssh://NAME?sudo=true
//	aws/credentials  the environments' AWS-compatible APIs (Env.AWS) as
//	aws/config       named profiles, the credentials file 0600
//
// so that `ssh -F .lab/ssh_config client1 hostname` works with the system
// client and `opsdrill run --ssh-config .lab/ssh_config --vars
// .lab/vars.yaml --vars .lab/vars-ssh.yaml` runs the same drills over SSH.
// The login user is ops, with passwordless sudo; root cannot log in.
const (
	SSHUser          = "ops"
	SSHConfigFile    = "ssh_config"
	SSHKeyFile       = "id_ed25519"
	SSHKnownHosts    = "known_hosts"
	SSHVarsFile      = "vars-ssh.yaml"
	sshHostKeyPath   = "/etc/opsdrill/ssh/ssh_host_ed25519_key"
	sshAuthorizedDir = "/etc/opsdrill/ssh/authorized_keys"
)

// sshdConfig is the drop-in every lab host's sshd reads first (Debian's
// sshd_config includes sshd_config.d/*.conf at its top; first value wins).
const sshdConfig = `# Written by opsdrill's lab: keys only, no root login.
HostKey ` + sshHostKeyPath + `
AuthorizedKeysFile ` + sshAuthorizedDir + `/%u
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
UseDNS no
AllowTcpForwarding yes
MaxSessions 64
MaxStartups 100:30:200
`

// sshStart makes the ops user (no password, not locked) with passwordless
// sudo and starts sshd; it runs before a host's own start commands, also
// when a stopped host is started again.
var sshStart = Command{Args: []string{"sh", "-ec", `id ` + SSHUser + ` >/dev/null 2>&1 || useradd -m -s /bin/bash -p '*' ` + SSHUser + `
printf '%s ALL=(ALL) NOPASSWD:ALL\n' ` + SSHUser + ` >/etc/sudoers.d/opsdrill
chmod 0440 /etc/sudoers.d/opsdrill
mkdir -p /run/sshd
pgrep -x sshd >/dev/null || /usr/sbin/sshd
for _ in $(seq 100); do nc -z 127.0.0.1 22 && exit 0; sleep 0.05; done
echo "sshd does not listen on port 22" >&2; exit 1`}}

// labSSH holds the lab's SSH keys while Up runs.
type labSSH struct {
	userPriv []byte
	userPub  ssh.PublicKey
	hostPriv map[string][]byte
	hostPub  map[string]ssh.PublicKey
}

func newKey() ([]byte, ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "opsdrill lab")
	if err != nil {
		return nil, nil, err
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(blk), spub, nil
}

// prepareSSH draws the lab's user key and one host key per host.
func (l *Lab) prepareSSH(chosen []Env) error {
	s := &labSSH{hostPriv: map[string][]byte{}, hostPub: map[string]ssh.PublicKey{}}
	var err error
	if s.userPriv, s.userPub, err = newKey(); err != nil {
		return fmt.Errorf("lab ssh key: %w", err)
	}
	for _, e := range chosen {
		for _, h := range e.Hosts {
			if s.hostPriv[h.Name], s.hostPub[h.Name], err = newKey(); err != nil {
				return fmt.Errorf("lab ssh host key: %w", err)
			}
		}
	}
	l.ssh = s
	return nil
}

// sshFiles are the files a host needs for sshd.
func (l *Lab) sshFiles(host string) []File {
	if l.ssh == nil {
		return nil
	}
	return []File{
		{Path: "/etc/ssh/sshd_config.d/opsdrill.conf", Content: []byte(sshdConfig)},
		{Path: sshHostKeyPath, Content: l.ssh.hostPriv[host], Mode: 0o600},
		{Path: sshHostKeyPath + ".pub", Content: ssh.MarshalAuthorizedKey(l.ssh.hostPub[host])},
		{Path: sshAuthorizedDir + "/" + SSHUser, Content: ssh.MarshalAuthorizedKey(l.ssh.userPub)},
	}
}

// SSHDir is the folder holding the lab's ssh_config, key and known_hosts.
func (l *Lab) SSHDir() string { return l.sshDir }

// SSHConfig is the path of the lab's OpenSSH client config.
func (l *Lab) SSHConfig() string { return filepath.Join(l.sshDir, SSHConfigFile) }

// behindBastion names the hosts only the bastion reaches: their Host entry
// gets ProxyJump.
var behindBastion = map[string]string{}

// writeSSH writes ssh_config, the key and known_hosts into l.sshDir.
func (l *Lab) writeSSH() error {
	if l.ssh == nil || l.sshDir == "" {
		return nil
	}
	key := filepath.Join(l.sshDir, SSHKeyFile)
	known := filepath.Join(l.sshDir, SSHKnownHosts)
	var kh, cfg bytes.Buffer
	fmt.Fprintf(&cfg, "# Written by `opsdrill lab up` for lab %s. Use it with:\n", l.ID)
	if len(l.hosts) > 0 {
		fmt.Fprintf(&cfg, "#   ssh -F %s %s hostname\n", l.SSHConfig(), l.hosts[0].Name)
	}
	fmt.Fprintf(&cfg, "#   opsdrill run --ssh-config %s ...\n", l.SSHConfig())
	for _, h := range l.hosts {
		fmt.Fprintf(&kh, "%s\n", knownhosts.Line([]string{h.Name, h.IP.String()}, l.ssh.hostPub[h.Name]))
		fmt.Fprintf(&cfg, "\nHost %s\n  HostName %s\n", h.Name, h.IP)
		if jump, ok := behindBastion[h.Name]; ok {
			fmt.Fprintf(&cfg, "  ProxyJump %s\n", jump)
		}
		fmt.Fprintf(&cfg, "  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  ConnectTimeout 10\n  ServerAliveInterval 15\n",
			SSHUser, key, known)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{SSHKeyFile, l.ssh.userPriv, 0o600},
		{SSHKeyFile + ".pub", ssh.MarshalAuthorizedKey(l.ssh.userPub), 0o644},
		{SSHKnownHosts, kh.Bytes(), 0o644},
		{SSHConfigFile, cfg.Bytes(), 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(l.sshDir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("lab ssh: %w", err)
		}
	}
	return nil
}

// sshFileNames are the files writeSSH and writeSSHVars write, removed by
// Down.
var sshFileNames = []string{SSHConfigFile, SSHKeyFile, SSHKeyFile + ".pub", SSHKnownHosts, SSHVarsFile, AWSCredentialsFile, AWSConfigFile}

func removeSSHFiles(dir string) error {
	for _, n := range sshFileNames {
		if err := removeIfExists(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	// The aws folder goes when empty.
	if err := os.Remove(filepath.Join(dir, filepath.Dir(AWSConfigFile))); err != nil && !os.IsNotExist(err) && !isNotEmpty(err) {
		return err
	}
	return nil
}

func isNotEmpty(err error) bool {
	return errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)
}

// The lab's AWS-compatible APIs as shared-configuration profiles (Env.AWS),
// beside ssh_config in the state folder.
const (
	AWSCredentialsFile = "aws/credentials"
	AWSConfigFile      = "aws/config"
)

// writeAWS writes the environments' AWS profiles, if any: the credentials
// file 0600 (it holds the secret keys), the config file with each
// profile's region.
func (l *Lab) writeAWS(chosen []Env) error {
	var profiles []AWSProfile
	for _, e := range chosen {
		if e.AWS != nil {
			profiles = append(profiles, e.AWS(l)...)
		}
	}
	if len(profiles) == 0 || l.sshDir == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(l.sshDir, filepath.Dir(AWSConfigFile)), 0o700); err != nil {
		return fmt.Errorf("lab aws profiles: %w", err)
	}
	var creds, cfg bytes.Buffer
	fmt.Fprintf(&creds, "# Written by `opsdrill lab up` for lab %s.\n", l.ID)
	fmt.Fprintf(&cfg, "# Written by `opsdrill lab up` for lab %s. Use it with:\n#   AWS_CONFIG_FILE=%s AWS_SHARED_CREDENTIALS_FILE=%s aws --profile NAME --endpoint-url URL ...\n",
		l.ID, filepath.Join(l.sshDir, AWSConfigFile), filepath.Join(l.sshDir, AWSCredentialsFile))
	for _, p := range profiles {
		fmt.Fprintf(&creds, "\n[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", p.Name, p.AccessKeyID, p.SecretAccessKey)
		fmt.Fprintf(&cfg, "\n# endpoint: %s\n[profile %s]\nregion = %s\noutput = json\n", p.Endpoint, p.Name, p.Region)
	}
	if err := writeFileAtomic(filepath.Join(l.sshDir, AWSCredentialsFile), creds.Bytes(), 0o600); err != nil {
		return fmt.Errorf("lab aws profiles: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(l.sshDir, AWSConfigFile), cfg.Bytes(), 0o644); err != nil {
		return fmt.Errorf("lab aws profiles: %w", err)
	}
	return nil
}

// SSHVars returns the lab's variables that name lab hosts, with every
// lab:LABID/NAME (or lab:NAME) reference turned into ssh://NAME?sudo=true:
// lab hosts act as root, so over SSH the drills ask sudo for it.
func (l *Lab) SSHVars() map[string]any {
	out := map[string]any{}
	hosts := map[string]bool{}
	for _, h := range l.hosts {
		hosts[h.Name] = true
	}
	for k, v := range l.vars {
		if k == SecretsKey {
			continue
		}
		if nv, changed := sshRefs(v, l.ID, hosts); changed {
			out[k] = nv
		}
	}
	return out
}

// sshRefs rewrites the host references in v; other lab: values (the lab
// id naming the lab's RDS API) are left alone.
func sshRefs(v any, labID string, hosts map[string]bool) (any, bool) {
	switch x := v.(type) {
	case string:
		name, ok := strings.CutPrefix(x, "lab:"+labID+"/")
		if !ok {
			name, ok = strings.CutPrefix(x, "lab:")
		}
		if !ok || !hosts[name] {
			return x, false
		}
		return "ssh://" + name + "?sudo=true", true
	case map[string]any:
		out := make(map[string]any, len(x))
		changed := false
		for k, e := range x {
			nv, c := sshRefs(e, labID, hosts)
			out[k], changed = nv, changed || c
		}
		return out, changed
	case []any:
		out := make([]any, len(x))
		changed := false
		for i, e := range x {
			nv, c := sshRefs(e, labID, hosts)
			out[i], changed = nv, changed || c
		}
		return out, changed
	}
	return v, false
}

// writeSSHVars writes SSHVars as vars-ssh.yaml, to pass after vars.yaml.
func (l *Lab) writeSSHVars() error {
	if l.sshDir == "" {
		return nil
	}
	vars := l.SSHVars()
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by `opsdrill lab up` for lab %s: its host references over SSH.\n", l.ID)
	fmt.Fprintf(&b, "# Pass it after vars.yaml, with --ssh-config %s:\n", l.SSHConfig())
	fmt.Fprintf(&b, "#   opsdrill run --ssh-config %s --vars %s --vars %s ...\n", l.SSHConfig(), l.varsFile, filepath.Join(l.sshDir, SSHVarsFile))
	fmt.Fprintf(&b, "# keys: %s\n", strings.Join(keys, ", "))
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(vars); err != nil {
		return fmt.Errorf("encode lab ssh vars: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode lab ssh vars: %w", err)
	}
	return writeFileAtomic(filepath.Join(l.sshDir, SSHVarsFile), b.Bytes(), 0o600)
}

// startSSH runs sshStart in a host.
func (h *Host) startSSH(ctx context.Context) error {
	res, err := h.ExecCommand(ctx, sshStart)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("%w: host %s: start sshd: %w", ErrNotReady, h.Name, err)
	}
	return nil
}
