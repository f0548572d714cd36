package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// MaxBody is the largest request body read.
const MaxBody = 4096

// OpenRequest asks for a lease. Fields are checked for form only; the
// service decides what is allowed.
type OpenRequest struct {
	User string
	Code string
	// Password is the second factor, for users who have one.
	Password string
	Port     uint16
	// Proto is "tcp" or "udp"; empty means TCP when the port is allowed
	// over TCP, else UDP.
	Proto string
	// IP is the address to let in; invalid means the request's source.
	IP netip.Addr
	// Duration is the lease length; 0 means the configured default.
	Duration time.Duration
}

var (
	userRE  = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
	codeRE  = regexp.MustCompile(`^[0-9]{6,8}$`)
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
	idRE    = regexp.MustCompile(`^pg-[0-9a-f]{16}$`)
)

// BadRequest is a request that is malformed; Field names the culprit.
type BadRequest struct {
	Field string
	Msg   string
}

func (e *BadRequest) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func bad(field, format string, args ...any) error {
	return &BadRequest{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ParseOpenRequest reads the JSON body of POST /v1/leases strictly: one
// object; keys user, code, port (required), ip, duration (optional); no
// unknown or repeated key; exact types; nothing after the object. Messages
// never quote the code.
func ParseOpenRequest(body []byte) (OpenRequest, error) {
	var r OpenRequest
	if len(body) > MaxBody {
		return r, bad("", "body larger than %d bytes", MaxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return r, bad("", "body must be a JSON object")
	}
	seen := map[string]bool{}
	var ipText, durText string
	var havePort bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return r, bad("", "body must be a JSON object")
		}
		key, ok := tok.(string)
		if !ok {
			return r, bad("", "body must be a JSON object")
		}
		if seen[key] {
			return r, bad(key, "given twice")
		}
		seen[key] = true
		switch key {
		case "user":
			err = decodeString(dec, &r.User)
		case "code":
			err = decodeString(dec, &r.Code)
		case "password":
			err = decodeString(dec, &r.Password)
		case "ip":
			err = decodeString(dec, &ipText)
		case "duration":
			err = decodeString(dec, &durText)
		case "proto":
			err = decodeString(dec, &r.Proto)
		case "port":
			havePort = true
			var raw json.RawMessage
			if err = dec.Decode(&raw); err == nil {
				r.Port, err = parsePort(string(raw))
			}
		default:
			return r, bad(safeKey(key), "unknown field (known: user, code, password, port, proto, ip, duration)")
		}
		if err != nil {
			return r, bad(key, "%v", err)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return r, bad("", "body must be a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, bad("", "unexpected data after the JSON object")
	}
	if !userRE.MatchString(r.User) {
		return r, bad("user", "required: 1 to 64 letters, digits, '.', '_', '@' or '-'")
	}
	if !codeRE.MatchString(r.Code) {
		return r, bad("code", "required: 6 to 8 digits")
	}
	if len(r.Password) > 1024 {
		return r, bad("password", "at most 1024 bytes")
	}
	if !havePort {
		return r, bad("port", "required")
	}
	if r.Proto != "" && r.Proto != "tcp" && r.Proto != "udp" {
		return r, bad("proto", "must be tcp or udp")
	}
	if ipText != "" {
		if r.IP, err = ParseIP(ipText); err != nil {
			return r, bad("ip", "%v", err)
		}
	}
	if durText != "" {
		if r.Duration, err = ParseDuration(durText); err != nil {
			return r, bad("duration", "%v", err)
		}
	}
	return r, nil
}

// decodeString decodes a JSON string; anything else is refused without
// quoting it (it may be a mistyped code).
func decodeString(dec *json.Decoder, into *string) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return errors.New("malformed value")
	}
	if len(raw) == 0 || raw[0] != '"' {
		return errors.New("must be a string")
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return errors.New("malformed string")
	}
	return nil
}

// parsePort accepts a bare JSON integer only: no string, sign, fraction,
// exponent or leading zero.
func parsePort(s string) (uint16, error) {
	if len(s) == 0 || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("must be an integer from 1 to 65535")
	}
	var v int
	for _, c := range s {
		v = v*10 + int(c-'0')
	}
	if v < 1 || v > 65535 {
		return 0, errors.New("must be an integer from 1 to 65535")
	}
	return uint16(v), nil
}

// ParseIP parses one unicast address that a lease can be for: no prefix,
// no zone, not unspecified, loopback, multicast or link-local.
// IPv4-mapped IPv6 addresses are taken as IPv4.
func ParseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, errors.New("not an IP address")
	}
	if a.Zone() != "" {
		return netip.Addr{}, errors.New("zones are not allowed")
	}
	a = a.Unmap()
	switch {
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(),
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, fmt.Errorf("%s is not a unicast host address", a)
	}
	return a, nil
}

// ParseDuration parses a lease length: a Go duration ("90s", "5m") from
// 1s to 168h, in whole seconds.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New(`not a duration; use e.g. "90s" or "5m"`)
	}
	if d < time.Second || d > 168*time.Hour {
		return 0, errors.New("must be from 1s to 168h")
	}
	if d%time.Second != 0 {
		return 0, errors.New("must be a whole number of seconds")
	}
	return d, nil
}

// Credentials identify who lists or closes leases.
type Credentials struct {
	// Token is a bearer token: a lease's own token or an admin token.
	Token string
	// User and Code are TOTP credentials (HTTP Basic, the code as the
	// password, followed by ":" and the user's password when they have
	// one).
	User, Code, Password string
}

// ParseAuthorization reads an Authorization header: "Bearer TOKEN" or
// "Basic base64(user:code)".
func ParseAuthorization(h string) (Credentials, error) {
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return Credentials{}, bad("Authorization", `expected "Bearer TOKEN" or "Basic" credentials`)
	}
	switch strings.ToLower(scheme) {
	case "bearer":
		if !tokenRE.MatchString(rest) {
			return Credentials{}, bad("Authorization", "malformed bearer token")
		}
		return Credentials{Token: rest}, nil
	case "basic":
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return Credentials{}, bad("Authorization", "malformed Basic credentials")
		}
		u, rest, ok := strings.Cut(string(b), ":")
		c, pw, _ := strings.Cut(rest, ":")
		if !ok || !userRE.MatchString(u) || !codeRE.MatchString(c) || len(pw) > 1024 {
			return Credentials{}, bad("Authorization", "Basic credentials must be user:code or user:code:password")
		}
		return Credentials{User: u, Code: c, Password: pw}, nil
	}
	return Credentials{}, bad("Authorization", `expected "Bearer TOKEN" or "Basic" credentials`)
}

// ValidLeaseID reports whether id has the form of a lease id.
func ValidLeaseID(id string) bool { return idRE.MatchString(id) }

// safeKey keeps an unknown key printable and short in messages.
func safeKey(k string) string {
	if len(k) > 32 {
		k = k[:32] + "…"
	}
	return fmt.Sprintf("%q", k)
}
