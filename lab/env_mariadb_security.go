package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// The mariadb-pair serves its data the way the seed "Microsoft SQL Server
// 2008 Encryption" asks of a database, with MariaDB's own means:
//
//   - in transit: TLS with a certificate from a lab CA made for this
//     process (SANs: the instance endpoint, the host's zone name and its
//     lab host name), TLS 1.2 or later, and require_secure_transport (the
//     seed's ForceEncryption): a TCP client without TLS is refused.
//     Replication between the two hosts uses TLS too, with the server
//     certificate verified.
//   - at rest: the file_key_management plugin with a key file (AES-256,
//     AES-CTR), InnoDB tablespaces, redo log, temporary tables and files,
//     Aria tables and the binary and relay logs encrypted.
//   - recoverability: Setup copies the key file to the resolver host as its
//     backup (PairKeyBackupHost:PairKeyBackupPath).
//
// The certificate and key material is generated once per process; a lab
// keeps what the process that brought it up copied into its hosts, and
// scenarios learn the CA from the vars (rds_ca_pem).
const (
	// PairTLSDir holds ca.pem, server.pem and server-key.pem on both hosts.
	PairTLSDir = "/etc/mysql/opsdrill-tls"
	// PairKeyFile is the file_key_management key file on both hosts.
	PairKeyFile = "/etc/mysql/encryption/keyfile"
	// PairKeyBackupHost and PairKeyBackupPath are where Setup backs the
	// key file up.
	PairKeyBackupHost = PairDNSHost
	PairKeyBackupPath = "/var/backups/opsdrill/mariadb-keyfile"
	// PairDataDir is the MariaDB data folder of both hosts.
	PairDataDir = "/var/lib/mysql"

	pairSecurityConf = pairConfDir + "92-opsdrill-security.cnf"
)

const pairSecurityConfText = `# opsdrill mariadb-pair: encryption in transit and at rest.
[mariadbd]
ssl_ca = ` + PairTLSDir + `/ca.pem
ssl_cert = ` + PairTLSDir + `/server.pem
ssl_key = ` + PairTLSDir + `/server-key.pem
tls_version = TLSv1.2,TLSv1.3
require_secure_transport = ON
plugin_load_add = file_key_management
file_key_management_filename = ` + PairKeyFile + `
file_key_management_encryption_algorithm = AES_CTR
innodb_encrypt_tables = ON
innodb_encrypt_log = ON
innodb_encrypt_temporary_tables = ON
innodb_encryption_threads = 2
encrypt_tmp_disk_tables = ON
encrypt_tmp_files = ON
encrypt_binlog = ON
aria_encrypt_tables = ON
`

// pairSecurityStart makes the TLS key and the encryption key readable by
// mysql only; it runs before mariadbd at every start.
var pairSecurityStart = Command{Args: []string{"sh", "-c",
	"chown -R mysql:mysql " + PairTLSDir + " /etc/mysql/encryption && chmod 600 " + PairKeyFile + " " + PairTLSDir + "/server-key.pem"}}

// PairCA is the lab certificate authority of this process.
type PairCA struct {
	// PEM is the CA certificate, what clients trust.
	PEM  []byte
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// pairMaterial is what pairHostSpec copies into the hosts.
type pairMaterial struct {
	ca      *PairCA
	certs   map[string][2][]byte // host -> cert PEM, key PEM
	keyFile []byte
	err     error
}

var pairSecrets = sync.OnceValue(func() *pairMaterial {
	m := &pairMaterial{certs: map[string][2][]byte{}}
	m.ca, m.err = newPairCA()
	if m.err != nil {
		return m
	}
	now := time.Now()
	for _, n := range pairNodes {
		cert, key, err := m.ca.Issue(PairServerNames(n.host), now.Add(-time.Hour), now.Add(365*24*time.Hour))
		if err != nil {
			m.err = err
			return m
		}
		m.certs[n.host] = [2][]byte{cert, key}
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		m.err = err
		return m
	}
	m.keyFile = []byte("# opsdrill mariadb-pair encryption keys: id;hex AES-256 key\n1;" + hex.EncodeToString(k) + "\n")
	return m
})

// LabCA returns the certificate authority that signed the mariadb-pair
// certificates of labs this process brought up.
func LabCA() (*PairCA, error) {
	m := pairSecrets()
	return m.ca, m.err
}

// PairServerNames are the DNS names a pair host's certificate carries:
// the instance endpoint, the host's zone name and its lab host name (what
// the standby's replication connects to).
func PairServerNames(host string) []string {
	return []string{PairEndpoint, nodeOf(host).dnsName, host}
}

func newPairCA() (*PairCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "opsdrill lab CA", Organization: []string{"opsdrill lab"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("lab CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &PairCA{PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert: cert, key: key}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// Issue signs a server certificate for names (DNS names or IP addresses)
// valid from notBefore to notAfter, and returns it and its private key in
// PEM. Tests use it for the faults: an expired certificate, a wrong name.
func (ca *PairCA) Issue(names []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"opsdrill lab"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %v: %w", names, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// withPairSecurity adds the TLS and encryption configuration to a database
// host of the pair. Without key material (a broken random source) the host
// keeps its plain configuration and Setup fails with the reason.
func withPairSecurity(spec HostSpec) HostSpec {
	m := pairSecrets()
	if m.err != nil {
		return spec
	}
	c := m.certs[spec.Name]
	spec.Files = append(spec.Files,
		File{Path: pairSecurityConf, Content: []byte(pairSecurityConfText)},
		File{Path: PairTLSDir + "/ca.pem", Content: m.ca.PEM},
		File{Path: PairTLSDir + "/server.pem", Content: c[0]},
		File{Path: PairTLSDir + "/server-key.pem", Content: c[1], Mode: 0o600},
		File{Path: PairKeyFile, Content: m.keyFile, Mode: 0o600},
	)
	spec.Start = append([]Command{pairSecurityStart}, spec.Start...)
	return spec
}

// pairReplicationTLS is the CHANGE MASTER clause of a replica: TLS to the
// primary, its certificate verified against the lab CA and its host name.
const pairReplicationTLS = "MASTER_SSL=1, MASTER_SSL_CA='" + PairTLSDir + "/ca.pem', MASTER_SSL_VERIFY_SERVER_CERT=1"

// setupPairSecurity backs the key file up on the backup host.
func setupPairSecurity(ctx context.Context, l *Lab) error {
	m := pairSecrets()
	if m.err != nil {
		return fmt.Errorf("mariadb-pair TLS and encryption keys: %w", m.err)
	}
	h, err := l.Host(PairKeyBackupHost)
	if err != nil {
		return err
	}
	res, err := h.Exec(ctx, "mkdir", "-p", "-m", "700", "/var/backups/opsdrill")
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("key backup folder: %w", err)
	}
	return writeFile(ctx, h, PairKeyBackupPath, string(m.keyFile), true)
}

// grantPairAudit lets the drill user read what db.at_rest reads:
// INNODB_TABLESPACES_ENCRYPTION needs PROCESS, the canary's FLUSH TABLES
// ... FOR EXPORT needs RELOAD. Granted on the primary, it replicates.
func grantPairAudit(ctx context.Context, p *MariaDBPair, primary *Host) error {
	if _, err := p.SQL(ctx, primary, fmt.Sprintf("GRANT PROCESS, RELOAD ON *.* TO '%s'@'%%'", PairUser)); err != nil {
		return fmt.Errorf("grant the audit privileges on %s: %w", primary.Name, err)
	}
	return nil
}

// pairSecurityVars are the names scenarios/db-encryption.yaml reads.
func pairSecurityVars(l *Lab) map[string]any {
	v := map[string]any{
		"rds_datadir":         PairDataDir,
		"rds_datadir_hosts":   []any{"lab:" + l.ID + "/" + pairNodes[0].host, "lab:" + l.ID + "/" + pairNodes[1].host},
		"rds_key_backup_host": "lab:" + l.ID + "/" + PairKeyBackupHost,
		"rds_key_backup_path": PairKeyBackupPath,
	}
	if ca, err := LabCA(); err == nil {
		v["rds_ca_pem"] = string(ca.PEM)
	}
	return v
}
