package port

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// fwknopPort is fwknopd's default SPA port.
const fwknopPort = 62201

var (
	stanzaRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	// spaChars is the alphabet of an SPA packet as fwknop writes it:
	// base64 text.
	spaChars = regexp.MustCompile(`^[A-Za-z0-9+/]+$`)
)

// isSPA reports whether s has the form of an SPA packet.
func isSPA(s string) bool { return len(s) >= 32 && len(s) <= 4096 && spaChars.MatchString(s) }

// spaServer reads url: spa://HOST[:PORT].
func spaServer(u string) (host string, port int, err error) {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "spa" || p.Hostname() == "" || p.User != nil || (p.Path != "" && p.Path != "/") {
		return "", 0, fmt.Errorf("url: with driver: fwknop, expected spa://GATE[:PORT], got %q", u)
	}
	port = fwknopPort
	if s := p.Port(); s != "" {
		if port, err = strconv.Atoi(s); err != nil || port < 1 || port > 65535 {
			return "", 0, fmt.Errorf("url: %q: bad port", u)
		}
	}
	return p.Hostname(), port, nil
}

func (o *Open) validateFwknop() error {
	if _, _, err := spaServer(o.URL); err != nil {
		return err
	}
	if o.Port == 0 {
		return errors.New("port: required with driver: fwknop")
	}
	if o.Proto == "udp" {
		return errors.New("proto: udp: fwknopd answers nothing and a UDP port cannot be probed, so an opening could not be confirmed; drill TCP")
	}
	if o.User != "" && !userRE.MatchString(o.User) {
		return fmt.Errorf("user: %q is not a user name", o.User)
	}
	if o.Stanza != "" && !stanzaRE.MatchString(o.Stanza) {
		return fmt.Errorf("stanza: %q is not a stanza name", o.Stanza)
	}
	switch {
	case o.Code != "" && !isSPA(o.Code):
		return errors.New("code: with driver: fwknop, an SPA packet (port.open's code output)")
	case o.Code != "" && o.WrongCreds:
		return errors.New("wrong_credentials, code: give one")
	case o.Code == "" && !o.WrongCreds && o.KeyFile == "":
		return errors.New("key_file: required with driver: fwknop (the user's fwknoprc), unless code or wrong_credentials")
	case o.Duration < 0 || o.Duration%time.Second != 0:
		return fmt.Errorf("duration: must be a whole number of seconds, got %s", o.Duration)
	case o.OpenWait <= 0:
		return fmt.Errorf("open_wait: must be positive, got %s", o.OpenWait)
	case o.Attempts > 1:
		return errors.New("attempts: not with driver: fwknop (fwknopd has no throttle to observe)")
	}
	for name, set := range map[string]bool{
		"secret": o.TOTP.Secret != "" || o.TOTP.SecretHex != "", "offset_steps": o.OffsetSteps != 0,
		"password": o.Password != "", "fields": len(o.Fields) > 0, "success_match": o.SuccessMatch != "", "ip": o.IP != "",
	} {
		if set {
			return fmt.Errorf("%s: not with driver: fwknop", name)
		}
	}
	return nil
}

// runFwknop sends one SPA packet from the host, then watches the port from
// there: fwknopd never answers, so whether the port opened is the verdict.
func (o *Open) runFwknop(ctx context.Context, env *steps.Env) error {
	gate, spaPort, _ := spaServer(o.URL)
	target := net.JoinHostPort(gate, strconv.Itoa(o.Port))
	packet, how, err := o.spaPacket(ctx, gate, spaPort)
	if err != nil {
		return err
	}
	env.Secret(packet)
	env.SetOutput("code", packet)
	sent := time.Now()
	opened, err := o.watchOpen(ctx, target)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(packet))
	id := "spa-" + hex.EncodeToString(sum[:8])
	env.SetOutput("status", 0)
	env.SetOutput("opened", opened)
	env.SetOutput("token", "")
	reason, refusal := "", ""
	expires := time.Time{}
	if opened {
		env.SetOutput("lease_id", id)
		env.SetOutput("ip", "")
		if o.Duration > 0 {
			expires = sent.Add(o.Duration).UTC()
			env.SetOutput("expires", expires.Format("2006-01-02T15:04:05.000Z07:00"))
			env.SetOutput("expires_unix", int((expires.UnixMilli()+999)/1000))
			env.SetOutput("expires_in_ms", int(time.Until(expires).Milliseconds()))
		} else {
			env.SetOutput("expires", "")
			env.SetOutput("expires_unix", 0)
			env.SetOutput("expires_in_ms", 0)
		}
		env.Logf("fwknop: %s became reachable from %s %s after the packet", target, o.Conn.from(), time.Since(sent).Round(time.Millisecond))
	} else {
		reason = fmt.Sprintf("no answer (SPA), and %s stayed closed from %s for %s", target, o.Conn.from(), o.OpenWait)
		refusal = "silent"
		for _, name := range []string{"lease_id", "ip", "expires"} {
			env.SetOutput(name, "")
		}
		env.SetOutput("expires_unix", 0)
		env.SetOutput("expires_in_ms", 0)
		env.Logf("fwknop: %s", reason)
	}
	env.SetOutput("reason", reason)
	env.SetOutput("refusal", refusal)
	result := "opened"
	if !opened {
		result = "refused: " + reason
	}
	rows := [][]string{
		{"SPA server", fmt.Sprintf("%s udp/%d", gate, spaPort)}, {"Driver", "fwknop"}, {"Sent from", o.Conn.from()},
		{"Packet", how}, {"Access", "tcp/" + strconv.Itoa(o.Port)}, {"Result", result},
	}
	if opened {
		rows = append(rows, []string{"Grant", id})
		if !expires.IsZero() {
			rows = append(rows, []string{"Ends", expires.Format(time.RFC3339)})
		}
	}
	env.AddEvidence(steps.TableEvidence("Port opening request", []string{"Field", "Value"}, rows))
	return o.verdict(opened, reason)
}

// spaPacket sends the packet and returns it: the one given in code (a
// replay, sent as is over UDP), or a new one from the fwknop client with
// the key file (or random keys, for wrong_credentials).
func (o *Open) spaPacket(ctx context.Context, gate string, spaPort int) (packet, how string, err error) {
	if o.Code != "" {
		if err := sendUDP(ctx, o.Conn.Host, gate, spaPort, o.Code); err != nil {
			return "", "", err
		}
		return o.Code, "given verbatim (a replay), sent as is", nil
	}
	if err := hostexec.LookPath(ctx, o.Conn.Host, "fwknop"); err != nil {
		return "", "", fmt.Errorf("host %s: the fwknop client is needed (Debian: fwknop-client): %w", o.Conn.from(), err)
	}
	args := []string{"--no-save-args", "-A", "tcp/" + strconv.Itoa(o.Port), "-s", "-D", gate, "-p", strconv.Itoa(spaPort)}
	var stdin []byte
	how = "made by the fwknop client with " + o.KeyFile
	if o.WrongCreds {
		// Throwaway keys no server has: the packet must be refused.
		enc, mac := make([]byte, 32), make([]byte, 64)
		_, _ = rand.Read(enc)
		_, _ = rand.Read(mac)
		stdin = fmt.Appendf(nil, "[default]\nKEY_BASE64 %s\nHMAC_KEY_BASE64 %s\nUSE_HMAC Y\n",
			base64.StdEncoding.EncodeToString(enc), base64.StdEncoding.EncodeToString(mac))
		how = "made by the fwknop client under random keys (wrong on purpose)"
	} else {
		args = append(args, "--rc-file", o.KeyFile)
		if o.Stanza != "" {
			args = append(args, "-n", o.Stanza)
		}
	}
	if o.Duration > 0 {
		args = append(args, "-f", strconv.Itoa(int(o.Duration/time.Second)))
	}
	if o.User != "" {
		args = append(args, "-U", o.User)
	}
	// The packet is saved to a private temporary file and printed; random
	// keys arrive on stdin into another, so no key is ever an argument.
	script := `umask 077; keys=$1; shift; p=$(mktemp) || exit 1; rc=""
if [ "$keys" = stdin ]; then rc=$(mktemp) || exit 1; cat > "$rc"; set -- "$@" --rc-file "$rc"; fi
fwknop "$@" -B "$p" >&2; s=$?
[ $s -eq 0 ] && cat "$p"
rm -f "$p" ${rc:+"$rc"}; exit $s`
	keys := "file"
	if stdin != nil {
		keys = "stdin"
	}
	res, err := hostexec.Run(ctx, o.Conn.Host, append([]string{"sh", "-c", script, "fwknop-send", keys}, args...), stdin)
	if err != nil {
		return "", "", fmt.Errorf("fwknop on %s: %w", o.Conn.from(), err)
	}
	if res.ExitCode != 0 {
		return "", "", fmt.Errorf("fwknop on %s exited %d: %s", o.Conn.from(), res.ExitCode, firstLine([]byte(res.Stderr)))
	}
	packet = strings.TrimSpace(res.Stdout)
	if !isSPA(packet) {
		return "", "", fmt.Errorf("fwknop on %s saved no SPA packet", o.Conn.from())
	}
	return packet, how, nil
}

// sendUDP sends payload to gate:port from host, from stdin there (socat),
// never on a command line.
func sendUDP(ctx context.Context, host, gate string, port int, payload string) error {
	addr := net.JoinHostPort(gate, strconv.Itoa(port))
	if hostexec.IsLocal(host) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "udp", addr)
		if err != nil {
			return fmt.Errorf("send the SPA packet to %s: %w", addr, err)
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	}
	res, err := hostexec.Run(ctx, host, []string{"socat", "-u", "STDIN", "UDP-SENDTO:" + addr}, []byte(payload))
	if err != nil {
		return fmt.Errorf("send the SPA packet from %s: %w", host, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("socat on %s exited %d: %s", host, res.ExitCode, firstLine([]byte(res.Stderr)))
	}
	return nil
}

// watchOpen probes target from the host until it accepts a connection or
// open_wait has passed.
func (o *Open) watchOpen(ctx context.Context, target string) (bool, error) {
	deadline := time.Now().Add(o.OpenWait)
	for {
		open, err := probeFrom(ctx, o.Conn.Host, target, time.Second)
		if err != nil {
			return false, err
		}
		if open {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// probeFrom reports whether a TCP connection from host to target is
// accepted within timeout (nc -z on a lab or remote host).
func probeFrom(ctx context.Context, host, target string, timeout time.Duration) (bool, error) {
	if hostexec.IsLocal(host) {
		c, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", target)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	}
	h, p, _ := net.SplitHostPort(target)
	res, err := hostexec.Run(ctx, host, []string{"nc", "-z", "-w", strconv.Itoa(max(1, int(timeout/time.Second))), h, p}, nil)
	if err != nil {
		return false, err
	}
	return res.ExitCode == 0, nil
}
