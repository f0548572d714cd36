package lab

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// The fwknop environment is the port drill for users of fwknop, the
// best-known single packet authorization tool: Debian's fwknop-server in
// front of sshd on a default-deny gate, and two clients with the fwknop
// client, so scenarios/open-port.yaml runs unchanged against fwknopd (its
// vars under `fwknop`, given to the scenario as its `portgate` section):
//
//   - fwgate: iptables INPUT policy DROP (loopback, established traffic,
//     ICMP and the reach port 7001 get in); fwknopd sniffs SPA packets on
//     udp/62201 with libpcap and, for a valid one, lets its sender reach
//     tcp/22 for the timeout the packet asks (at most 60 s), through its
//     own FWKNOP_INPUT chain; replayed packets are refused (digest cache);
//     an echo on 7000 stays closed whatever the packet asks.
//   - fwclient1 and fwclient2: the fwknop client, fwclient1 with the user's
//     key file (an fwknoprc, random per lab) at FwknopKeyFile.
const (
	FwknopEnv       = "fwknop"
	FwknopGate      = "fwgate"
	FwknopClient1   = "fwclient1"
	FwknopClient2   = "fwclient2"
	FwknopUser      = "drill"
	FwknopSPAPort   = 62201
	FwknopSSHPort   = 22
	FwknopEchoPort  = 7000
	FwknopReachPort = 7001
	FwknopKeyFile   = "/etc/fwknop/drill.fwknoprc"
	FwknopStanza    = "gate"
	// FwknopMaxTimeout caps what a packet may ask for.
	FwknopMaxTimeout = 60
)

// fwknopFirewall is the gate's default-deny firewall; fwknopd adds its jump
// to FWKNOP_INPUT at the top of INPUT when it starts.
const fwknopFirewall = `set -e
iptables -F INPUT
iptables -P INPUT DROP
iptables -A INPUT -i lo -j ACCEPT
iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A INPUT -p icmp -j ACCEPT
iptables -A INPUT -p tcp --dport 7001 -j ACCEPT -m comment --comment reach
ip6tables -P INPUT DROP
ip6tables -A INPUT -i lo -j ACCEPT
`

// fwknopdConf is fwknopd.conf: pcap on the lab interface, iptables, and
// a digest cache that survives restarts (replays refused).
const fwknopdConf = `# fwknopd in the opsdrill lab
PCAP_INTF                   eth0;
ENABLE_PCAP_PROMISC         N;
PCAP_FILTER                 udp port 62201;
ENABLE_DIGEST_PERSISTENCE   Y;
FLUSH_IPT_AT_INIT           Y;
FLUSH_IPT_AT_EXIT           Y;
ENABLE_IPT_FORWARDING       N;
`

var fwknopdStart = []string{"sh", "-c", `[ -f /etc/fwknop/access.conf ] || exit 0
rm -f /var/run/fwknop/fwknopd.pid
exec fwknopd -f -c /etc/fwknop/fwknopd.conf -a /etc/fwknop/access.conf`}

func init() {
	RegisterEnv(Env{
		Name: FwknopEnv,
		Doc:  "fwknopd (single packet authorization, Debian's fwknop-server) on a default-deny gate in front of sshd, and two clients",
		Hosts: []HostSpec{
			{
				Name: FwknopGate, NetAdmin: true,
				Files: []File{
					{Path: "/etc/fwknop/lab-firewall.sh", Content: []byte(fwknopFirewall), Mode: 0o755},
					{Path: "/etc/fwknop/fwknopd.conf", Content: []byte(fwknopdConf), Mode: 0o600},
				},
				Start: []Command{
					{Args: []string{"sh", "/etc/fwknop/lab-firewall.sh"}},
					{Args: []string{"mkdir", "-p", "/var/run/fwknop", "/var/lib/fwknop"}},
					// access.conf holds the lab's keys, written by setup; a
					// restarted host starts fwknopd again with it.
					{Args: fwknopdStart, Detach: true},
					{Args: []string{"socat", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr", FwknopEchoPort), "EXEC:/bin/cat"}, Detach: true},
					{Args: []string{"socat", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr", FwknopReachPort), "EXEC:/bin/cat"}, Detach: true},
				},
				Ready: &Probe{Cmd: []string{"nc", "-z", "127.0.0.1", "22"}},
			},
			{Name: FwknopClient1},
			{Name: FwknopClient2},
		},
		Setup: setupFwknop,
		Vars:  fwknopVars,
	})
}

// fwknopKeys are the user's Rijndael and HMAC keys (base64): random per
// lab, the same from any process that opens it.
func fwknopKeys(l *Lab) (enc, mac string) {
	e := sha256.Sum256([]byte(l.Password("fwknop-rijndael")))
	m1 := sha256.Sum256([]byte(l.Password("fwknop-hmac-1")))
	m2 := sha256.Sum256([]byte(l.Password("fwknop-hmac-2")))
	return base64.StdEncoding.EncodeToString(e[:]), base64.StdEncoding.EncodeToString(append(m1[:], m2[:]...))
}

func fwknopAccess(l *Lab) []byte {
	enc, mac := fwknopKeys(l)
	return fmt.Appendf(nil, `# fwknopd access in the opsdrill lab: the drill user may open ssh only.
SOURCE              ANY
OPEN_PORTS          tcp/%d
REQUIRE_USERNAME    %s
KEY_BASE64          %s
HMAC_KEY_BASE64     %s
FW_ACCESS_TIMEOUT   30
MAX_FW_TIMEOUT      %d
`, FwknopSSHPort, FwknopUser, enc, mac, FwknopMaxTimeout)
}

func fwknopRC(l *Lab) []byte {
	enc, mac := fwknopKeys(l)
	return fmt.Appendf(nil, "[%s]\nKEY_BASE64          %s\nHMAC_KEY_BASE64     %s\nUSE_HMAC            Y\n", FwknopStanza, enc, mac)
}

func setupFwknop(ctx context.Context, l *Lab) error {
	gate, err := l.Host(FwknopGate)
	if err != nil {
		return err
	}
	if err := unpackFiles(ctx, gate, []labFile{{"etc/fwknop/access.conf", fwknopAccess(l), 0o600}}); err != nil {
		return err
	}
	if _, err := gate.ExecCommand(ctx, Command{Detach: true, Args: fwknopdStart}); err != nil {
		return fmt.Errorf("start fwknopd: %w", err)
	}
	client, err := l.Host(FwknopClient1)
	if err != nil {
		return err
	}
	if err := unpackFiles(ctx, client, []labFile{{FwknopKeyFile[1:], fwknopRC(l), 0o600}}); err != nil {
		return err
	}
	res, err := gate.Exec(ctx, "sh", "-c", "for i in $(seq 100); do pidof fwknopd >/dev/null && iptables -S INPUT | grep -q FWKNOP_INPUT && exit 0; sleep 0.1; done; exit 1")
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		logs, _ := gate.Exec(ctx, "sh", "-c", "iptables -S; ps ax")
		return fmt.Errorf("%w: fwknopd did not start (its chain is not in INPUT):\n%s", ErrNotReady, logs.Stdout)
	}
	return nil
}

func fwknopVars(l *Lab) (map[string]any, map[string]string) {
	v := map[string]any{
		"driver":    "fwknop",
		"user":      FwknopUser,
		"key_file":  FwknopKeyFile,
		"stanza":    FwknopStanza,
		"ssh_port":  FwknopSSHPort,
		"echo_port": FwknopEchoPort,
		"ca_cert":   "",
		"client":    "lab:" + l.ID + "/" + FwknopClient1,
		"other":     "lab:" + l.ID + "/" + FwknopClient2,
	}
	if g, err := l.Host(FwknopGate); err == nil {
		v["gate"] = g.IP.String()
		v["url"] = fmt.Sprintf("spa://%s:%d", g.IP, FwknopSPAPort)
		v["reach"] = fmt.Sprintf("%s:%d", g.IP, FwknopReachPort)
	}
	return map[string]any{"fwknop": v}, nil
}
