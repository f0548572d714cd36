package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"gopkg.in/yaml.v3"
)

// The mariadb-pair's RDS API is a lab service: cmd/lab-rdsapi, built at
// lab up like portgate and copied into db-dns, serves the RDS Query API
// (lab/rdsapi) on PairAPIPort of db-dns's lab address to requests signed
// with the lab's own access key. It acts on the pair from db-dns over the
// lab network: SSH to db-a and db-b with a key of its own (mariadb-admin
// shutdown, mariadbd started again, SQL through the local socket), and
// the endpoint's CNAME file and the resolver's restart script locally.
// The unmodified aws-rds driver of db.failover and the aws CLI reach it
// with the vars rds_api_endpoint, rds_api_access_key_id and the secret
// rds_api_secret_access_key.
const (
	// PairAPIPort is the service's port on db-dns.
	PairAPIPort = 8080
	// PairAPIBinaryEnv names a prebuilt static lab-rdsapi to copy in
	// instead of building cmd/lab-rdsapi at lab up.
	PairAPIBinaryEnv = "OPSDRILL_RDSAPI_BINARY"
	// PairAPIConfigPath is the service's configuration on db-dns (0600:
	// it holds the secret access key).
	PairAPIConfigPath = "/etc/opsdrill/rdsapi/config.yaml"
	// PairAPILog is the service's log on db-dns.
	PairAPILog = "/var/log/opsdrill-rdsapi.log"

	pairAPIBin        = "/usr/local/bin/lab-rdsapi"
	pairAPIKey        = "/etc/opsdrill/rdsapi/id_ed25519"
	pairAPIKnownHosts = "/etc/opsdrill/rdsapi/known_hosts"
)

// PairAPIConfig is the lab-rdsapi service's configuration file.
type PairAPIConfig struct {
	Listen          string        `yaml:"listen"`
	Region          string        `yaml:"region"`
	Lab             string        `yaml:"lab"`
	AccessKeyID     string        `yaml:"access_key_id"`
	SecretAccessKey string        `yaml:"secret_access_key"`
	SSHKey          string        `yaml:"ssh_key"`
	KnownHosts      string        `yaml:"known_hosts"`
	AZLag           time.Duration `yaml:"az_lag"`
}

// ReadPairAPIConfig reads the service's configuration, refusing a file
// others may read or fields it does not know.
func ReadPairAPIConfig(path string) (PairAPIConfig, error) {
	var c PairAPIConfig
	st, err := os.Stat(path)
	if err != nil {
		return c, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return c, fmt.Errorf("%s: mode %04o: it holds the secret access key, make it 0600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	var missing []string
	for name, v := range map[string]string{"listen": c.Listen, "region": c.Region, "lab": c.Lab, "access_key_id": c.AccessKeyID,
		"secret_access_key": c.SecretAccessKey, "ssh_key": c.SSHKey, "known_hosts": c.KnownHosts} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("%s: missing %s", path, strings.Join(missing, ", "))
	}
	return c, nil
}

// pairAPIStart starts the service when it is installed and not running:
// at Setup, and whenever db-dns starts again. Its configuration is its only
// input: no secret on its command line.
var pairAPIStart = Command{Detach: true, Args: []string{"sh", "-c",
	`[ -x "$0" ] && ! pgrep -x lab-rdsapi >/dev/null && exec "$0" --config "$1" --log-file "$2"`,
	pairAPIBin, PairAPIConfigPath, PairAPILog}}

// pairAPICredentials are the service's access key: random per lab, the
// same from any process that opens the lab.
func pairAPICredentials(l *Lab) (id, secret string) {
	return "AKIALAB" + strings.ToUpper(l.Password("mariadb-pair/rds-api-key-id")[:13]), l.Password("mariadb-pair/rds-api-secret")
}

// PairAPIProfile is the service's profile in the lab's aws/credentials
// and aws/config.
const PairAPIProfile = "opsdrill-rds"

// pairAWS is the service as a profile of the lab's AWS files.
func pairAWS(l *Lab) []AWSProfile {
	id, secret := pairAPICredentials(l)
	p := AWSProfile{Name: PairAPIProfile, Region: PairRegion, AccessKeyID: id, SecretAccessKey: secret}
	if dns, err := l.Host(PairDNSHost); err == nil {
		p.Endpoint = pairAPIURL(dns)
	}
	return []AWSProfile{p}
}

// pairAPIURL is the service's endpoint.
func pairAPIURL(dns *Host) string { return "http://" + dns.Addr(PairAPIPort) }

// setupPairAPI gives db-dns the service, a key the database hosts accept
// for SSHUser and their pinned host keys, then starts it and waits until
// it listens.
func setupPairAPI(ctx context.Context, l *Lab, dns *Host, nodes [2]*Host) error {
	if l.ssh == nil {
		return errors.New("the lab's RDS API reaches the pair over SSH: the lab has no SSH keys")
	}
	bin, err := labBinary(ctx, "lab-rdsapi", PairAPIBinaryEnv)
	if err != nil {
		return err
	}
	key, pub, err := newKey()
	if err != nil {
		return fmt.Errorf("the lab's RDS API: ssh key: %w", err)
	}
	var known strings.Builder
	for _, h := range nodes {
		// Appended: the lab's own key stays authorized.
		res, err := h.ExecCommand(ctx, Command{Args: []string{"sh", "-c", `cat >> "$0"`, sshAuthorizedDir + "/" + SSHUser}, Stdin: ssh.MarshalAuthorizedKey(pub)})
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			return fmt.Errorf("authorize the lab's RDS API on %s: %w", h.Name, err)
		}
		fmt.Fprintf(&known, "%s\n", knownhosts.Line([]string{h.Name, h.IP.String()}, l.ssh.hostPub[h.Name]))
	}
	id, secret := pairAPICredentials(l)
	conf, err := yaml.Marshal(PairAPIConfig{Listen: dns.Addr(PairAPIPort), Region: PairRegion, Lab: l.ID, AccessKeyID: id,
		SecretAccessKey: secret, SSHKey: pairAPIKey, KnownHosts: pairAPIKnownHosts, AZLag: 3 * time.Second})
	if err != nil {
		return err
	}
	files := []labFile{
		{strings.TrimPrefix(pairAPIBin, "/"), bin, 0o755},
		{strings.TrimPrefix(PairAPIConfigPath, "/"), conf, 0o600},
		{strings.TrimPrefix(pairAPIKey, "/"), key, 0o600},
		{strings.TrimPrefix(pairAPIKnownHosts, "/"), []byte(known.String()), 0o644},
	}
	if err := unpackFiles(ctx, dns, files); err != nil {
		return err
	}
	if _, err := dns.ExecCommand(ctx, pairAPIStart); err != nil {
		return fmt.Errorf("start the lab's RDS API: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := dns.Exec(ctx, "nc", "-z", dns.IP.String(), fmt.Sprint(PairAPIPort))
		if err == nil && res.ExitCode == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			logs, _ := dns.Exec(ctx, "tail", "-n", "20", PairAPILog)
			return fmt.Errorf("%w: the lab's RDS API does not listen on %s after 30s\nits log:\n%s", ErrNotReady, dns.Addr(PairAPIPort), logs.Stdout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
