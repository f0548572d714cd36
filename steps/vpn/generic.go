package vpn

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Generic is an AWS Site-to-Site VPN connection as described by the
// "Generic" configuration text the VPC console offers for download.
type Generic struct {
	VPNConnectionID string
	GatewayID       string // the virtual private (vgw-) or transit (tgw-) gateway
	CustomerGateway string // cgw-...
	Tunnels         []Tunnel
	// Warnings are values a real download would not hold but that do not
	// stop the file from being used, such as a documentation example's
	// pre-shared key outside AWS's character rules.
	Warnings []ParseError
}

// Tunnel is one of the connection's two IPsec tunnels.
type Tunnel struct {
	Number int
	Line   int // line of its "IPSec Tunnel #N" heading

	CGWOutside netip.Addr // the customer gateway's public address
	// CGWOutsidePlaceholder is the line where the file gives a placeholder
	// (AWS's examples print YOUR_UPLINK_ADDRESS) instead of CGWOutside.
	CGWOutsidePlaceholder int
	VGWOutside            netip.Addr   // the AWS endpoint of this tunnel
	CGWInside             netip.Prefix // e.g. 169.254.21.46/30
	VGWInside             netip.Prefix // e.g. 169.254.21.45/30
	PSK                   string

	IKE   IKE
	IPsec IPsec

	DPDInterval time.Duration
	DPDRetries  int
	MSS         int // TCP MSS adjustment, bytes (0: not given)
	MTU         int // tunnel interface MTU, bytes (0: not given)

	Routing string     // static or bgp
	NextHop netip.Addr // static routing: the VGW inside address
	CGWASN  int        // BGP only (0: the file gives a placeholder, YOUR_BGP_ASN)
	VGWASN  int        // BGP only
}

// IKE holds phase 1 parameters as AWS names them (aes-128-cbc, sha1, 2).
type IKE struct {
	Version    int // 1 or 2
	AuthMethod string
	Encryption []string
	Integrity  []string
	DHGroups   []int
	Lifetime   time.Duration
	Mode       string // main or aggressive (IKEv1)
}

// IPsec holds phase 2 parameters as AWS names them.
type IPsec struct {
	Protocol   string // esp
	Encryption []string
	Integrity  []string
	PFSGroups  []int // empty: no perfect forward secrecy
	Lifetime   time.Duration
	Mode       string // tunnel
}

// Inside returns the tunnel's inside /30 network.
func (t Tunnel) Inside() netip.Prefix { return t.CGWInside.Masked() }

// ParseError is one problem in a configuration file, at a line.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ParseErrors lists every problem found, in line order.
type ParseErrors []ParseError

func (es ParseErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

var (
	tunnelHeading  = regexp.MustCompile(`(?i)^\s*IPSec\s+Tunnel\s+#\s*(\d+)\s*$`)
	sectionHeading = regexp.MustCompile(`^\s*#([1-9]):\s*(.*?)\s*$`)
	// keyValue is "  - Key    : value". AWS's BGP example and template
	// print one key with a second colon, "- Customer Gateway:        : ip".
	keyValue    = regexp.MustCompile(`^\s*(?:-\s*)?([A-Za-z][A-Za-z0-9 '()/.-]*?)\s*:(?:\s*:)?\s*(.*?)\s*$`)
	placeholder = regexp.MustCompile(`^YOUR_[A-Z0-9_]+$`)
	pskChars    = regexp.MustCompile(`^[A-Za-z0-9._]+$`)
	spaces      = regexp.MustCompile(`\s+`)
)

// The sections of a tunnel, by their "#N:" heading.
const (
	secNone = iota
	secIKE
	secIPsec
	secInterface
	secRouting
)

var sectionNames = map[int]string{
	secIKE:       "#1 Internet Key Exchange Configuration",
	secIPsec:     "#2 IPSec Configuration",
	secInterface: "#3 Tunnel Interface Configuration",
	secRouting:   "#4 Routing Configuration",
}

// field is one value a tunnel needs: where it is read and how it is stored.
type field struct {
	key      string // normalised key, lower case
	section  int
	block    string // "outside" or "inside" for the addresses of #3
	label    string // how messages name it
	required bool
	// placeholder: the value may be one of the YOUR_... placeholders of
	// AWS's documented examples; it is then left unset.
	placeholder bool
	set         func(t *Tunnel, v string) error
}

// tunnelFields are the values read per tunnel. The older layout gives the
// IKE Diffie-Hellman group as "Perfect Forward Secrecy" in #1; both are
// accepted.
var tunnelFields = []field{
	{key: "ike version", section: secIKE, label: "IKE version", set: setIKEVersion},
	{key: "authentication method", section: secIKE, label: "Authentication Method", set: func(t *Tunnel, v string) error {
		if !strings.EqualFold(v, "Pre-Shared Key") {
			return fmt.Errorf("only Pre-Shared Key is supported, got %q", v)
		}
		t.IKE.AuthMethod = "psk"
		return nil
	}},
	{key: "pre-shared key", section: secIKE, label: "Pre-Shared Key", required: true, set: setPSK},
	{key: "authentication algorithm", section: secIKE, label: "IKE Authentication Algorithm", required: true, set: func(t *Tunnel, v string) error {
		return setAlgorithms(&t.IKE.Integrity, v, ikeIntegrity)
	}},
	{key: "encryption algorithm", section: secIKE, label: "IKE Encryption Algorithm", required: true, set: func(t *Tunnel, v string) error {
		return setAlgorithms(&t.IKE.Encryption, v, encryption)
	}},
	{key: "lifetime", section: secIKE, label: "IKE Lifetime", required: true, set: func(t *Tunnel, v string) error {
		return setSeconds(&t.IKE.Lifetime, v)
	}},
	{key: "phase 1 negotiation mode", section: secIKE, label: "Phase 1 Negotiation Mode", set: func(t *Tunnel, v string) error {
		switch m := strings.ToLower(v); m {
		case "main", "aggressive":
			t.IKE.Mode = m
			return nil
		}
		return fmt.Errorf("expected main or aggressive, got %q", v)
	}},
	{key: "diffie-hellman", section: secIKE, label: "IKE Diffie-Hellman", required: true, set: func(t *Tunnel, v string) error {
		return setGroups(&t.IKE.DHGroups, v)
	}},
	{key: "perfect forward secrecy", section: secIKE, label: "IKE Diffie-Hellman", set: func(t *Tunnel, v string) error {
		return setGroups(&t.IKE.DHGroups, v)
	}},

	{key: "protocol", section: secIPsec, label: "IPSec Protocol", set: func(t *Tunnel, v string) error {
		if !strings.EqualFold(v, "esp") {
			return fmt.Errorf("only ESP is supported, got %q", v)
		}
		t.IPsec.Protocol = "esp"
		return nil
	}},
	{key: "authentication algorithm", section: secIPsec, label: "IPSec Authentication Algorithm", required: true, set: func(t *Tunnel, v string) error {
		return setAlgorithms(&t.IPsec.Integrity, v, espIntegrity)
	}},
	{key: "encryption algorithm", section: secIPsec, label: "IPSec Encryption Algorithm", required: true, set: func(t *Tunnel, v string) error {
		return setAlgorithms(&t.IPsec.Encryption, v, encryption)
	}},
	{key: "lifetime", section: secIPsec, label: "IPSec Lifetime", required: true, set: func(t *Tunnel, v string) error {
		return setSeconds(&t.IPsec.Lifetime, v)
	}},
	{key: "mode", section: secIPsec, label: "IPSec Mode", set: func(t *Tunnel, v string) error {
		if !strings.EqualFold(v, "tunnel") {
			return fmt.Errorf("only tunnel mode is supported, got %q", v)
		}
		t.IPsec.Mode = "tunnel"
		return nil
	}},
	{key: "perfect forward secrecy", section: secIPsec, label: "IPSec Perfect Forward Secrecy", set: func(t *Tunnel, v string) error {
		if l := strings.ToLower(v); l == "none" || l == "disabled" {
			t.IPsec.PFSGroups = nil
			return nil
		}
		return setGroups(&t.IPsec.PFSGroups, v)
	}},
	{key: "dpd interval", section: secIPsec, label: "DPD Interval", required: true, set: func(t *Tunnel, v string) error {
		return setSeconds(&t.DPDInterval, v)
	}},
	{key: "dpd retries", section: secIPsec, label: "DPD Retries", required: true, set: func(t *Tunnel, v string) error {
		return setInt(&t.DPDRetries, v, "", 1, 100)
	}},
	{key: "tcp mss adjustment", section: secIPsec, label: "TCP MSS Adjustment", set: func(t *Tunnel, v string) error {
		return setInt(&t.MSS, v, "bytes", 500, 9000)
	}},

	{key: "customer gateway", section: secInterface, block: "outside", label: "Outside IP Addresses: Customer Gateway", required: true, placeholder: true, set: func(t *Tunnel, v string) error {
		return setAddr(&t.CGWOutside, v)
	}},
	{key: "virtual private gateway", section: secInterface, block: "outside", label: "Outside IP Addresses: Virtual Private Gateway", required: true, set: func(t *Tunnel, v string) error {
		return setAddr(&t.VGWOutside, v)
	}},
	{key: "customer gateway", section: secInterface, block: "inside", label: "Inside IP Addresses: Customer Gateway", required: true, set: func(t *Tunnel, v string) error {
		return setInside(&t.CGWInside, v)
	}},
	{key: "virtual private gateway", section: secInterface, block: "inside", label: "Inside IP Addresses: Virtual Private Gateway", required: true, set: func(t *Tunnel, v string) error {
		return setInside(&t.VGWInside, v)
	}},
	{key: "tunnel interface mtu", section: secInterface, label: "Tunnel interface MTU", set: func(t *Tunnel, v string) error {
		return setInt(&t.MTU, v, "bytes", 576, 9000)
	}},

	{key: "next hop", section: secRouting, label: "Next hop", set: func(t *Tunnel, v string) error {
		t.Routing = "static"
		return setAddr(&t.NextHop, v)
	}},
	{key: "customer gateway asn", section: secRouting, label: "Customer Gateway ASN", placeholder: true, set: func(t *Tunnel, v string) error {
		t.Routing = "bgp"
		return setInt(&t.CGWASN, v, "", 1, 4294967295)
	}},
	{key: "virtual private gateway asn", section: secRouting, label: "Virtual Private Gateway ASN", set: func(t *Tunnel, v string) error {
		t.Routing = "bgp"
		return setInt(&t.VGWASN, v, "", 1, 4294967295)
	}},
}

// headerFields are read before the first tunnel.
var headerFields = map[string]func(g *Generic, v string){
	"your vpn connection id":          func(g *Generic, v string) { g.VPNConnectionID = v },
	"your virtual private gateway id": func(g *Generic, v string) { g.GatewayID = v },
	"your transit gateway id":         func(g *Generic, v string) { g.GatewayID = v },
	"your customer gateway id":        func(g *Generic, v string) { g.CustomerGateway = v },
}

// tunnelState follows one tunnel while its lines are read.
type tunnelState struct {
	t       *Tunnel
	end     int            // last line of the tunnel's text
	seen    map[string]int // field label -> line it was read on
	section int
	block   string
}

// ParseGeneric reads an AWS Generic VPN configuration. name is used in
// error messages (the file name). Unknown lines are skipped, since the
// layout carries prose between the values; every value opsdrill needs must
// be present and valid for both tunnels, or the error lists each problem
// with its line number. Errors never quote a pre-shared key.
func ParseGeneric(r io.Reader, name string) (*Generic, error) {
	g := &Generic{}
	var errs ParseErrors
	fail := func(line int, format string, args ...any) {
		errs = append(errs, ParseError{File: name, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	var states []*tunnelState
	var cur *tunnelState
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if vendor, cmd := foreignFormat(line); vendor != "" {
			return nil, ParseErrors{{File: name, Line: n, Msg: fmt.Sprintf(
				"this is AWS's %s configuration download, not the Generic one (a line starts %q); download the configuration again choosing Vendor \"Generic\"",
				vendor, cmd)}}
		}
		if cur != nil && strings.TrimSpace(line) != "" {
			cur.end = n
		}
		if m := tunnelHeading.FindStringSubmatch(line); m != nil {
			num, _ := strconv.Atoi(m[1])
			switch {
			case num < 1 || num > 2:
				fail(n, "tunnel #%d: an AWS VPN connection has tunnels #1 and #2 only", num)
			case len(states) > 0 && states[len(states)-1].t.Number >= num:
				fail(n, "tunnel #%d: out of order after tunnel #%d", num, states[len(states)-1].t.Number)
			}
			cur = &tunnelState{t: &Tunnel{Number: num, Line: n, IKE: IKE{Version: 1}}, end: n, seen: map[string]int{}}
			states = append(states, cur)
			continue
		}
		if cur != nil {
			if m := sectionHeading.FindStringSubmatch(line); m != nil {
				cur.section, _ = strconv.Atoi(m[1])
				cur.block = ""
				continue
			}
			switch norm(strings.TrimSuffix(strings.TrimSpace(line), ":")) {
			case "outside ip addresses":
				cur.block = "outside"
				continue
			case "inside ip addresses":
				cur.block = "inside"
				continue
			}
		}
		m := keyValue.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key, value := norm(m[1]), strings.TrimSpace(m[2])
		if cur == nil {
			if set, ok := headerFields[key]; ok {
				set(g, value)
			}
			continue
		}
		f, ok := lookupField(key, cur.section, cur.block)
		if !ok {
			continue
		}
		if first, dup := cur.seen[f.label]; dup {
			fail(n, "tunnel #%d: %s given twice (first on line %d)", cur.t.Number, f.label, first)
			continue
		}
		cur.seen[f.label] = n
		if value == "" {
			fail(n, "tunnel #%d: %s: empty value", cur.t.Number, f.label)
			continue
		}
		if placeholder.MatchString(value) {
			switch {
			case !f.placeholder:
				fail(n, "tunnel #%d: %s: %s is a placeholder of AWS's examples, not a value; use the file downloaded for your VPN connection", cur.t.Number, f.label, value)
			case f.section == secRouting:
				cur.t.Routing = "bgp"
			default:
				cur.t.CGWOutsidePlaceholder = n
			}
			continue
		}
		if f.key == "pre-shared key" {
			if msg := pskRuleBroken(value); msg != "" {
				g.Warnings = append(g.Warnings, ParseError{File: name, Line: n,
					Msg: fmt.Sprintf("tunnel #%d: Pre-Shared Key %s, so AWS would not have issued it (an example's key?); used as given", cur.t.Number, msg)})
			}
		}
		if err := f.set(cur.t, value); err != nil {
			fail(n, "tunnel #%d: %s: %v", cur.t.Number, f.label, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(states) == 0 {
		fail(max(n, 1), "not an AWS VPN Generic configuration: no \"IPSec Tunnel #1\" heading")
	}
	for _, st := range states {
		t := st.t
		for _, f := range tunnelFields {
			if f.required {
				if _, ok := st.seen[f.label]; !ok {
					fail(st.end, "tunnel #%d: missing %s (section %s); the tunnel's text runs from line %d to here",
						t.Number, f.label, sectionNames[f.section], t.Line)
				}
			}
		}
		if t.CGWInside.IsValid() && t.VGWInside.IsValid() {
			if t.CGWInside.Masked() != t.VGWInside.Masked() || t.CGWInside.Addr() == t.VGWInside.Addr() {
				fail(st.seen["Inside IP Addresses: Virtual Private Gateway"],
					"tunnel #%d: inside addresses %s and %s are not two addresses of one /30", t.Number, t.CGWInside, t.VGWInside)
			}
		}
		if t.Routing == "" {
			t.Routing = "static"
		}
		if t.IPsec.Protocol == "" {
			t.IPsec.Protocol = "esp"
		}
		if t.IPsec.Mode == "" {
			t.IPsec.Mode = "tunnel"
		}
		if t.IKE.Mode == "" {
			t.IKE.Mode = "main"
		}
		if t.IKE.AuthMethod == "" {
			t.IKE.AuthMethod = "psk"
		}
		g.Tunnels = append(g.Tunnels, *t)
	}
	if len(states) == 1 {
		fail(max(n, 1), "only tunnel #%d found: an AWS VPN connection has two tunnels; is the file complete?", states[0].t.Number)
	}
	if g.VPNConnectionID == "" && len(states) > 0 {
		fail(states[0].t.Line, "missing \"Your VPN Connection ID\" before the first tunnel")
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return g, nil
}

// vendorFormats are lines only another vendor's download holds: device
// commands, which the Generic text, all prose and "- Key : value" lines,
// never has. The first line that matches names the format.
var vendorFormats = []struct {
	name string
	line *regexp.Regexp
}{
	{"Cisco (IOS or ASA)", regexp.MustCompile(`^\s*crypto\s+(isakmp|ikev1|ikev2|ipsec|keyring|map)\b`)},
	{"Juniper JunOS", regexp.MustCompile(`^\s*set\s+security\s+(ike|ipsec)\b`)},
	{"Juniper ScreenOS", regexp.MustCompile(`^\s*set\s+ike\s+(gateway|p1-proposal)\b`)},
	{"Vyatta", regexp.MustCompile(`^\s*set\s+vpn\s+ipsec\b`)},
	{"strongSwan or Openswan (ipsec.conf)", regexp.MustCompile(`^\s*(leftid|rightid|leftsubnet|rightsubnet|authby|keyexchange|phase2alg)\s*=`)},
	{"Fortinet FortiGate", regexp.MustCompile(`^\s*config\s+vpn\s+ipsec\b`)},
	{"Palo Alto Networks", regexp.MustCompile(`^\s*set\s+network\s+ike\b`)},
	{"MikroTik RouterOS", regexp.MustCompile(`^\s*/ip\s+ipsec\b`)},
}

// foreignFormat names the vendor whose download line is, and the command
// that tells (only the matched start: the rest may hold a key), or "".
func foreignFormat(line string) (vendor, cmd string) {
	for _, f := range vendorFormats {
		if m := f.line.FindString(line); m != "" {
			return f.name, strings.TrimSpace(m)
		}
	}
	return "", ""
}

// Tunnel returns tunnel number n (1 or 2).
func (g *Generic) Tunnel(n int) (Tunnel, bool) {
	for _, t := range g.Tunnels {
		if t.Number == n {
			return t, true
		}
	}
	return Tunnel{}, false
}

func lookupField(key string, section int, block string) (field, bool) {
	for _, f := range tunnelFields {
		if f.key == key && f.section == section && (f.block == "" || f.block == block) {
			return f, true
		}
	}
	return field{}, false
}

func norm(s string) string {
	return strings.ToLower(spaces.ReplaceAllString(strings.TrimSpace(s), " "))
}

func setIKEVersion(t *Tunnel, v string) error {
	switch strings.ToLower(strings.ReplaceAll(v, " ", "")) {
	case "ikev1", "1":
		t.IKE.Version = 1
	case "ikev2", "2":
		t.IKE.Version = 2
	default:
		return fmt.Errorf("expected IKEv1 or IKEv2, got %q", v)
	}
	return nil
}

// setPSK checks the key against AWS's rules (8 to 64 characters, not
// starting with 0) without ever quoting it. AWS's third rule, letters,
// digits, '.' and '_' only, is pskRuleBroken's warning: AWS's documented
// examples print keys such as plain-text-password1 that break it, and IKE
// accepts any key. Quotes and backslashes are refused: swanctl.conf could
// not carry them.
func setPSK(t *Tunnel, v string) error {
	switch {
	case len(v) < 8 || len(v) > 64:
		return fmt.Errorf("must be 8 to 64 characters long, got %d", len(v))
	case v[0] == '0':
		return fmt.Errorf("must not start with 0")
	case strings.ContainsAny(v, "\"\\"):
		return fmt.Errorf("holds a quote or a backslash, which swanctl.conf cannot carry")
	}
	t.PSK = v
	return nil
}

// pskRuleBroken says how a key breaks AWS's character rule, or "".
func pskRuleBroken(v string) string {
	if !pskChars.MatchString(v) {
		return "holds characters other than letters, digits, '.' and '_'"
	}
	return ""
}

func setAlgorithms(dst *[]string, v string, known map[string]string) error {
	var out []string
	for _, a := range splitList(v) {
		if _, ok := known[strings.ToLower(a)]; !ok {
			return fmt.Errorf("unknown algorithm %q (known: %s)", a, strings.Join(sortedKeys(known), ", "))
		}
		out = append(out, strings.ToLower(a))
	}
	*dst = out
	return nil
}

// setGroups reads "Group 2", "Diffie-Hellman Group 2" or "2, 14".
func setGroups(dst *[]int, v string) error {
	s := strings.ToLower(v)
	s = strings.ReplaceAll(s, "diffie-hellman", "")
	s = strings.ReplaceAll(s, "groups", "")
	s = strings.ReplaceAll(s, "group", "")
	var out []int
	for _, p := range splitList(s) {
		g, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("expected a Diffie-Hellman group such as \"Group 2\", got %q", v)
		}
		if _, ok := dhGroups[g]; !ok {
			return fmt.Errorf("unsupported Diffie-Hellman group %d (supported: %s)", g, groupList())
		}
		out = append(out, g)
	}
	if len(out) == 0 {
		return fmt.Errorf("expected a Diffie-Hellman group such as \"Group 2\", got %q", v)
	}
	*dst = out
	return nil
}

func setSeconds(dst *time.Duration, v string) error {
	var n int
	if err := setInt(&n, v, "seconds", 1, 7*24*3600); err != nil {
		return err
	}
	*dst = time.Duration(n) * time.Second
	return nil
}

// setInt reads "1379 bytes" or "28800 seconds" (the unit is optional).
func setInt(dst *int, v, unit string, lo, hi int) error {
	s := strings.TrimSpace(v)
	if unit != "" {
		s = strings.TrimSpace(strings.TrimSuffix(strings.ToLower(s), unit))
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		if unit != "" {
			return fmt.Errorf("expected a number of %s, got %q", unit, v)
		}
		return fmt.Errorf("expected a number, got %q", v)
	}
	if n < lo || n > hi {
		return fmt.Errorf("%d is out of range %d..%d", n, lo, hi)
	}
	*dst = n
	return nil
}

func setAddr(dst *netip.Addr, v string) error {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return fmt.Errorf("expected an IPv4 address, got %q", v)
	}
	*dst = a
	return nil
}

// setInside reads an inside address with its /30, which AWS always gives
// within 169.254.0.0/16.
func setInside(dst *netip.Prefix, v string) error {
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("expected an IPv4 address with its prefix length such as 169.254.10.2/30, got %q", v)
	}
	if p.Bits() != 30 {
		return fmt.Errorf("expected a /30, got /%d", p.Bits())
	}
	network := p.Masked().Addr()
	if p.Addr() == network || p.Addr() == network.Next().Next().Next() {
		return fmt.Errorf("%s is the network or broadcast address of its /30", p.Addr())
	}
	*dst = p
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
