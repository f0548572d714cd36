package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// The portgate environment is the seed runbook "How To Securely Open Ports
// (SSH, RDP etc.) On-Demand For Dynamic IPs Through iptables" with the OTP
// version it promises:
//
//   - gate: a default-deny nftables firewall (table inet labfw, input
//     policy drop; only established traffic, ICMP, the portgate API on
//     8443, and packets carrying portgate's mark get in) in front of real
//     services: sshd on 22, which portgate may open, and a socat TCP echo
//     on 7000, which it may not; and portgate itself, with the nftables
//     backend, one user (PortgateUser) whose TOTP key is random per lab;
//   - pgclient1 and pgclient2: two clients with their own addresses, one
//     to authenticate from and one that must stay shut out.
//
// The portgate binary is built from this source tree at lab up (go build
// with CGO_ENABLED=0, so it runs in the Debian image) and copied in; set
// PortgateBinaryEnv to use a prebuilt static binary instead. The API's
// certificate is self-signed per lab; its CA file is on both clients at
// PortgateCAPath. scenarios/open-port.yaml runs the drill against it.
const (
	PortgateEnv       = "portgate"
	PortgateGate      = "gate"
	PortgateInner     = "pginner"
	PortgateClient1   = "pgclient1"
	PortgateClient2   = "pgclient2"
	PortgateUser      = "drill"
	PortgateAPIPort   = 8443
	PortgateSSHPort   = 22
	PortgateEchoPort  = 7000
	PortgateCAPath    = "/etc/portgate/ca.pem"
	PortgateBinaryEnv = "OPSDRILL_PORTGATE_BINARY"
	// PortgateSecretName is the lab secret holding the user's key (base32).
	PortgateSecretName = "portgate_totp_secret"
	// PortgateProbeUser has a key of its own for the TOTP drill's probe of
	// the gate's window and replay protection, so the probe's codes never
	// raise the drill user's replay floor.
	PortgateProbeUser       = "probe"
	PortgateProbeSecretName = "portgate_probe_totp_secret"
)

// portgateFirewall is the gate's own firewall. Declaring the table before
// deleting it makes the file idempotent (a restarted host loads it again).
var portgateFirewall = fmt.Sprintf(`table inet labfw
delete table inet labfw
table inet labfw {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		meta l4proto { icmp, ipv6-icmp } accept
		tcp dport %d accept comment "portgate API"
		meta mark & 0x00007067 == 0x00007067 accept comment "let in by portgate"
	}
}
`, PortgateAPIPort)

func init() {
	RegisterEnv(Env{
		Name: PortgateEnv,
		Doc:  "portgate (TOTP port opener, nftables) on a default-deny gate in front of sshd, two clients, and a host behind the gate (forward: mode)",
		Hosts: []HostSpec{
			{
				Name: PortgateGate, NetAdmin: true,
				// Forwarding to the host behind the gate (forward: mode).
				Sysctls: map[string]string{"net.ipv4.ip_forward": "1"},
				Files:   []File{{Path: "/etc/labfw.nft", Content: []byte(portgateFirewall)}},
				Start: []Command{
					{Args: []string{"nft", "-f", "/etc/labfw.nft"}},
					{Args: []string{"socat", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr", PortgateEchoPort), "EXEC:/bin/cat"}, Detach: true},
				},
				Ready: &Probe{Cmd: []string{"nc", "-z", "127.0.0.1", fmt.Sprint(PortgateSSHPort)}},
			},
			{Name: PortgateClient1},
			{Name: PortgateClient2},
			// A host behind the gate, for portgate's forward: mode (the
			// runbook's "RDP and other ports that are not on the same
			// machine"): its sshd, reached through the gate once DNAT'ed.
			{Name: PortgateInner, NetAdmin: true},
		},
		Setup: setupPortgate,
		Vars:  portgateVars,
	})
}

// portgateSecret is the user's TOTP key: random per lab, the same from any
// process that opens the lab (it derives from the lab's seed).
func portgateSecret(l *Lab) []byte {
	sum := sha256.Sum256([]byte(l.Password("portgate-totp")))
	return sum[:20]
}

func portgateSecretB32(l *Lab) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(portgateSecret(l))
}

// portgateProbeSecretB32 is the probe user's key, derived like the drill
// user's.
func portgateProbeSecretB32(l *Lab) string {
	sum := sha256.Sum256([]byte(l.Password("portgate-probe-totp")))
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:20])
}

func portgateVars(l *Lab) (map[string]any, map[string]string) {
	v := map[string]any{
		"driver":    "portgate",
		"key_file":  "",
		"stanza":    "",
		"user":      PortgateUser,
		"ca_cert":   PortgateCAPath,
		"ssh_port":  PortgateSSHPort,
		"echo_port": PortgateEchoPort,
		// Scoped to this lab, so they stay unambiguous when several run.
		"client": "lab:" + l.ID + "/" + PortgateClient1,
		"other":  "lab:" + l.ID + "/" + PortgateClient2,
	}
	v["probe_user"] = PortgateProbeUser
	if g, err := l.Host(PortgateGate); err == nil {
		v["gate"] = g.IP.String()
		v["url"] = fmt.Sprintf("https://%s", g.Addr(PortgateAPIPort))
		// Every client reaches the API: "closed" on SSH is the firewall's.
		v["reach"] = g.Addr(PortgateAPIPort)
		// The CA as text, so a step on the machine running opsdrill can
		// trust the gate without a file from inside the lab.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if res, err := g.Exec(ctx, "cat", "/etc/portgate/tls.crt"); err == nil && res.ExitCode == 0 {
			v["ca_pem"] = res.Stdout
		}
		cancel()
	}
	if c, err := l.Host(PortgateClient1); err == nil {
		v["client_ip"] = c.IP.String()
	}
	if c, err := l.Host(PortgateClient2); err == nil {
		v["other_ip"] = c.IP.String()
	}
	if c, err := l.Host(PortgateInner); err == nil {
		v["inner_ip"] = c.IP.String()
	}
	return map[string]any{"portgate": v}, map[string]string{
		PortgateSecretName:      portgateSecretB32(l),
		PortgateProbeSecretName: portgateProbeSecretB32(l),
	}
}

func portgateConfig(l *Lab) []byte {
	return fmt.Appendf(nil, `# portgate in the opsdrill lab (environment %s)
listen: ":%d"
tls: {cert: /etc/portgate/tls.crt, key: /etc/portgate/tls.key}
state_file: /var/lib/portgate/state.json
audit_log: /var/log/portgate/audit.jsonl
ports: [%d]
lease: {default: 5m, min: 1s, max: 1h}
totp: {window: 1}
lockout: {max_failures: 5, base: 30s, max: 15m}
on_shutdown: keep
firewall: {backend: nftables}
users:
  - {name: %s, secret: %s}
  - {name: %s, secret: %s}
`, PortgateEnv, PortgateAPIPort, PortgateSSHPort, PortgateUser, portgateSecretB32(l), PortgateProbeUser, portgateProbeSecretB32(l))
}

func setupPortgate(ctx context.Context, l *Lab) error {
	bin, err := labBinary(ctx, "portgate", PortgateBinaryEnv)
	if err != nil {
		return err
	}
	gate, err := l.Host(PortgateGate)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := portgateCert(gate.IP.String())
	if err != nil {
		return fmt.Errorf("portgate certificate: %w", err)
	}
	files := []labFile{
		{"usr/local/bin/portgate", bin, 0o755},
		{"etc/portgate/config.yaml", portgateConfig(l), 0o600},
		{"etc/portgate/tls.crt", certPEM, 0o644},
		{"etc/portgate/tls.key", keyPEM, 0o600},
	}
	if err := unpackFiles(ctx, gate, files); err != nil {
		return err
	}
	for _, name := range []string{PortgateClient1, PortgateClient2} {
		h, err := l.Host(name)
		if err != nil {
			return err
		}
		if err := unpackFiles(ctx, h, []labFile{{strings.TrimPrefix(PortgateCAPath, "/"), certPEM, 0o644}}); err != nil {
			return err
		}
	}
	if _, err := gate.ExecCommand(ctx, Command{Detach: true, Args: []string{
		"/usr/local/bin/portgate", "--config", "/etc/portgate/config.yaml", "--log-file", "/var/log/portgate/portgate.log",
	}}); err != nil {
		return fmt.Errorf("start portgate: %w", err)
	}
	// Ready when a client reaches the API through the firewall and the
	// certificate checks out.
	client, err := l.Host(PortgateClient1)
	if err != nil {
		return err
	}
	url := fmt.Sprintf("https://%s/healthz", gate.Addr(PortgateAPIPort))
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := client.Exec(ctx, "curl", "-sS", "--max-time", "5", "--noproxy", "*", "--cacert", PortgateCAPath, url)
		if err == nil && res.ExitCode == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			logs, _ := gate.Exec(ctx, "tail", "-n", "20", "/var/log/portgate/portgate.log")
			return fmt.Errorf("%w: portgate API not reachable from %s: %v %s\nportgate log:\n%s", ErrNotReady, PortgateClient1, err, strings.TrimSpace(res.Stderr), logs.Stdout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// portgateCert is a self-signed certificate for the gate's address.
func portgateCert(ip string) (certPEM, keyPEM []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "portgate (opsdrill lab)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
		DNSNames:              []string{PortgateGate},
	}
	if parsed := net.ParseIP(ip); parsed != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}
