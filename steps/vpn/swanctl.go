package vpn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// swanctl drives a charon daemon with the swanctl command, its VICI client,
// run where the gateway is: on this machine (a real gateway) or inside a lab
// host. uri selects charon's VICI socket (swanctl --uri), so a gateway whose
// socket is not at the default path works too.
type swanctl struct {
	host string
	uri  string
}

// socketURI turns a socket parameter into a swanctl --uri: a path becomes
// unix://path; URIs pass through.
func socketURI(socket string) string {
	if socket == "" || strings.Contains(socket, "://") {
		return socket
	}
	return "unix://" + socket
}

// run runs swanctl with args. Exit codes are returned, not turned into
// errors: swanctl exits non-zero for outcomes the caller interprets.
func (s swanctl) run(ctx context.Context, args ...string) (hostexec.Result, error) {
	argv := append([]string{"swanctl"}, args...)
	if s.uri != "" {
		argv = append(argv, "--uri", s.uri)
	}
	res, err := hostexec.Run(ctx, s.host, argv, nil)
	res.Stderr = dropPluginNoise(res.Stderr)
	if err != nil {
		return res, fmt.Errorf("swanctl %s on %s: %w", args[0], hostName(s.host), err)
	}
	return res, nil
}

// must runs swanctl and turns a non-zero exit into an error quoting its
// output.
func (s swanctl) must(ctx context.Context, args ...string) (string, error) {
	res, err := s.run(ctx, args...)
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return res.Stdout, fmt.Errorf("swanctl %s on %s exited %d: %s", strings.Join(args, " "), hostName(s.host), res.ExitCode, lastLines(res.Stderr+res.Stdout, 3))
	}
	return res.Stdout, nil
}

// ping checks that charon answers on its VICI socket.
func (s swanctl) ping(ctx context.Context) error {
	if err := hostexec.LookPath(ctx, s.host, "swanctl"); err != nil {
		return fmt.Errorf("swanctl is not installed on %s (strongswan-swanctl): %w", hostName(s.host), err)
	}
	if _, err := s.must(ctx, "--stats"); err != nil {
		where := "its default VICI socket"
		if s.uri != "" {
			where = s.uri
		}
		return fmt.Errorf("charon does not answer on %s: %w", where, err)
	}
	return nil
}

// writeFile stores data at dst on the gateway host, readable only by its
// owner (it holds a pre-shared key).
func (s swanctl) writeFile(ctx context.Context, dst string, data []byte) error {
	res, err := hostexec.Run(ctx, s.host, []string{"sh", "-ec", `umask 077; mkdir -p "$1"; cat >"$2"`, "sh", path.Dir(dst), dst}, data)
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit %d: %s", res.ExitCode, lastLines(res.Stderr, 2))
	}
	if err != nil {
		return fmt.Errorf("write %s on %s: %w", dst, hostName(s.host), err)
	}
	return nil
}

// removeFile deletes dst on the gateway host and reports whether it existed.
func (s swanctl) removeFile(ctx context.Context, dst string) (bool, error) {
	res, err := hostexec.Run(ctx, s.host, []string{"sh", "-c", `[ -e "$1" ] || exit 3; rm -f "$1"`, "sh", dst}, nil)
	switch {
	case err != nil:
		return false, fmt.Errorf("remove %s on %s: %w", dst, hostName(s.host), err)
	case res.ExitCode == 3:
		return false, nil
	case res.ExitCode != 0:
		return false, fmt.Errorf("remove %s on %s: exit %d: %s", dst, hostName(s.host), res.ExitCode, lastLines(res.Stderr, 2))
	}
	return true, nil
}

// load (re)loads every connection and secret of the main configuration,
// which includes conf.d/*.conf, swanctl's own way of adding a connection
// without touching the others.
func (s swanctl) load(ctx context.Context, mainConf string) error {
	args := []string{"--load-all", "--noprompt"}
	if mainConf != "" {
		args = append(args, "--file", mainConf)
	}
	_, err := s.must(ctx, args...)
	return err
}

// conn is a loaded connection as swanctl --list-conns shows it.
type conn struct {
	Name     string
	Children []string
}

func (s swanctl) conns(ctx context.Context) ([]conn, error) {
	out, err := s.must(ctx, "--list-conns", "--pretty")
	if err != nil {
		return nil, err
	}
	return connsFromPretty(out), nil
}

func connsFromPretty(out string) []conn {
	var cs []conn
	for _, ev := range parsePretty(out) {
		if ev.Name != "list-conn event" {
			continue
		}
		for _, c := range ev.Sections {
			cn := conn{Name: c.Name}
			if ch := c.Section("children"); ch != nil {
				for _, x := range ch.Sections {
					cn.Children = append(cn.Children, x.Name)
				}
			}
			cs = append(cs, cn)
		}
	}
	return cs
}

// ikeSA is an IKE_SA with its CHILD_SAs as swanctl --list-sas shows them;
// values keep charon's names (state, encr-alg, spi-in, ...).
type ikeSA struct {
	Name     string
	Values   map[string]string
	Children []childSA
}

type childSA struct {
	ID     string // name-uniqueid
	Values map[string]string
	Lists  map[string][]string
}

func (c childSA) name() string { return c.Values["name"] }

func (s swanctl) sas(ctx context.Context, ike string) ([]ikeSA, error) {
	args := []string{"--list-sas", "--pretty"}
	if ike != "" {
		args = append(args, "--ike", ike)
	}
	out, err := s.must(ctx, args...)
	if err != nil {
		return nil, err
	}
	return sasFromPretty(out), nil
}

func sasFromPretty(out string) []ikeSA {
	var sas []ikeSA
	for _, ev := range parsePretty(out) {
		if ev.Name != "list-sa event" {
			continue
		}
		for _, sa := range ev.Sections {
			is := ikeSA{Name: sa.Name, Values: sa.Values}
			if ch := sa.Section("child-sas"); ch != nil {
				for _, c := range ch.Sections {
					is.Children = append(is.Children, childSA{ID: c.Name, Values: c.Values, Lists: c.Lists})
				}
			}
			sas = append(sas, is)
		}
	}
	return sas
}

// section is a block of swanctl's --pretty output: VICI messages printed
// as nested "name {", "key = value" and "key = [" ... "]" lines.
type section struct {
	Name     string
	Values   map[string]string
	Lists    map[string][]string
	Sections []*section
}

// Section returns the first sub-section named name.
func (s *section) Section(name string) *section {
	for _, x := range s.Sections {
		if x.Name == name {
			return x
		}
	}
	return nil
}

// parsePretty reads swanctl --pretty output into its top-level sections
// ("list-sa event", "list-sas reply", ...). Lines it does not understand
// are skipped.
func parsePretty(out string) []*section {
	root := &section{}
	stack := []*section{root}
	list := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		top := stack[len(stack)-1]
		switch {
		case line == "":
		case list != "":
			if line == "]" {
				list = ""
			} else {
				top.Lists[list] = append(top.Lists[list], line)
			}
		case strings.HasSuffix(line, " {"):
			s := &section{Name: strings.TrimSuffix(line, " {"), Values: map[string]string{}, Lists: map[string][]string{}}
			top.Sections = append(top.Sections, s)
			stack = append(stack, s)
		case line == "}":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		default:
			k, v, ok := strings.Cut(line, " = ")
			if !ok {
				continue
			}
			if v == "[" {
				list = k
				top.Lists[k] = []string{}
				continue
			}
			if top.Values != nil {
				top.Values[k] = v
			}
		}
	}
	return root.Sections
}

// reasons tells why an IKE or CHILD_SA negotiation failed, from the lines
// charon logs during swanctl --initiate, most specific first.
var reasons = []struct {
	marker string
	reason string
}{
	{"received NO_PROPOSAL_CHOSEN", "the peer accepts none of the proposals (NO_PROPOSAL_CHOSEN): the IKE or ESP algorithms or groups differ"},
	{"no proposal found", "none of the peer's proposals is acceptable (no proposal found): the IKE or ESP algorithms or groups differ"},
	{"received AUTHENTICATION_FAILED", "authentication failed (AUTHENTICATION_FAILED): pre-shared key or identity mismatch"},
	{"decryption failed?", "the peer's encrypted reply could not be decrypted: pre-shared key mismatch (IKEv1 main mode derives its keys from the pre-shared key)"},
	{"could not decrypt payloads", "the peer's encrypted reply could not be decrypted: pre-shared key mismatch"},
	{"received INVALID_ID_INFORMATION", "the peer refused our identity or traffic selectors (INVALID_ID_INFORMATION)"},
	{"received TS_UNACCEPTABLE", "the peer refused the traffic selectors (TS_UNACCEPTABLE): inside /30 or VPC CIDR differ"},
	{"no shared key found", "no pre-shared key is loaded for these IKE identities"},
	{"no matching peer config", "the peer found no configuration for our identity"},
	{"error installing route", "charon could not route the traffic selector: this host has no address in the local traffic selector (the CGW inside address; see up_commands)"},
	{"unable to install", "the kernel refused the SA, policy or route"},
	{"peer not responding", "no answer from the peer (peer not responding): check the address, UDP 500/4500 and firewalls"},
	{"initiation timed out", "no answer within the timeout"},
}

// failureReason returns the reason and the log lines that show it. A
// proposal refused after the IKE_SA was established concerns the CHILD_SA
// (ESP algorithms, PFS group), before it the IKE_SA.
func failureReason(log string) (string, []string) {
	lines := strings.Split(log, "\n")
	for _, r := range reasons {
		var seen []string
		ikeUp := false
		phase := ""
		for _, l := range lines {
			if strings.Contains(l, "[IKE] IKE_SA ") && strings.Contains(l, " established between ") {
				ikeUp = true
			}
			if strings.Contains(l, r.marker) {
				seen = appendUnique(seen, strings.TrimSpace(l))
				if phase == "" {
					phase = "IKE_SA (phase 1: IKE proposal)"
					if ikeUp {
						phase = "CHILD_SA (phase 2: ESP proposal or PFS group)"
					}
				}
			}
		}
		if len(seen) == 0 {
			continue
		}
		if strings.Contains(r.marker, "NO_PROPOSAL_CHOSEN") || r.marker == "no proposal found" {
			return r.reason + "; refused for the " + phase, seen
		}
		return r.reason, seen
	}
	return "", nil
}

// dropPluginNoise removes swanctl's complaints about plugins its build
// lacks, which say nothing about the command's outcome.
func dropPluginNoise(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "plugin '") && strings.Contains(l, "failed to load") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "(no output)"
	}
	return strings.Join(lines, "; ")
}

func hostName(h string) string {
	if hostexec.IsLocal(h) {
		return "this machine"
	}
	return h
}

// runCommands runs rendered ip commands on the gateway host, each an argv
// split on blanks (they never need quoting). It stops at the first failure.
func runCommands(ctx context.Context, host string, cmds []string) error {
	for _, c := range cmds {
		argv := strings.Fields(c)
		if len(argv) == 0 {
			continue
		}
		res, err := hostexec.Run(ctx, host, argv, nil)
		if err == nil && res.ExitCode != 0 {
			err = errors.New(lastLines(res.Stderr+res.Stdout, 2))
		}
		if err != nil {
			return fmt.Errorf("%q on %s: %w", c, hostName(host), err)
		}
	}
	return nil
}
