package redact

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// minLineLen is the shortest line of a multi-line secret (a PEM key) that
// is redacted on its own: tools print such secrets line by line.
const minLineLen = 8

// escapedForms returns the forms a secret takes when a tool quotes or
// escapes it: JSON (Go's, with and without HTML escaping, and the ASCII-only
// form of Python's json.dumps), Go's %q and %+q, Python's repr with either
// quote, and percent-encoding as Go and Python do it (query and path
// escaping, URL.String() for a password, a path and a fragment,
// urllib.parse.quote and quote_plus, JavaScript's encodeURIComponent), in
// upper and lower case hex. The quotes around a quoted form are left out,
// so the form also matches inside a longer quoted text.
func escapedForms(s string) []string {
	var out []string
	if b, err := json.Marshal(s); err == nil {
		out = append(out, unquote(string(b)))
	}
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if enc.Encode(s) == nil {
		out = append(out, unquote(strings.TrimSuffix(sb.String(), "\n")))
	}
	out = append(out,
		jsonASCII(s),
		unquote(strconv.Quote(s)),
		unquote(strconv.QuoteToASCII(s)),
		pythonRepr(s, '\''),
		pythonRepr(s, '"'),
	)
	for _, p := range percentForms(s) {
		out = append(out, p, lowerHexEscapes(p))
	}
	return out
}

func unquote(q string) string {
	if len(q) >= 2 {
		return q[1 : len(q)-1]
	}
	return q
}

// jsonASCII is Python's json.dumps(s) (ensure_ascii) without the quotes.
func jsonASCII(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r > 0xffff:
				r1, r2 := utf16.EncodeRune(r)
				fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
			case r < 0x20 || r > 0x7e:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// pythonRepr is Python 3's repr(s) inside its quotes, for quote ' or ".
func pythonRepr(s string, quote rune) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == quote || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError:
			b.WriteRune(r)
		case r == ' ' || (r > 0x7f || r >= 0x20 && r < 0x7f) && unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	return b.String()
}

// percentForms are the percent-encodings of s that Go and Python produce.
func percentForms(s string) []string {
	out := []string{
		url.QueryEscape(s),  // Go; Python quote_plus
		url.PathEscape(s),   // Go, one path segment
		percent(s, "/", ""), // Python quote (safe="/")
		percent(s, "", ""),  // Python quote(safe="")
		percent(s, "", "+"), // quote_plus keeping nothing but the space as +
		percent(s, "!'()*", ""),
		strings.TrimPrefix((&url.URL{Path: "/" + s}).EscapedPath(), "/"), // URL.String() of a path
		(&url.URL{Fragment: s}).EscapedFragment(),
	}
	// URL.String() of user:password@host.
	u := url.UserPassword("u", s).String()
	out = append(out, strings.TrimPrefix(u, "u:"))
	out = append(out, url.User(s).String())
	return out
}

// percent escapes every byte of s but letters, digits, "-._~" and the
// bytes in safe; with plus set, a space becomes "+".
func percent(s, safe, plus string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("-._~", c) >= 0, strings.IndexByte(safe, c) >= 0:
			b.WriteByte(c)
		case c == ' ' && plus != "":
			b.WriteString(plus)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// lowerHexEscapes turns %2F into %2f: some encoders write lower case.
func lowerHexEscapes(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			for j := i + 1; j <= i+2; j++ {
				if b[j] >= 'A' && b[j] <= 'F' {
					b[j] += 'a' - 'A'
				}
			}
		}
	}
	return string(b)
}

// lines returns the lines of a multi-line secret long enough to be
// redacted on their own.
func lines(s string) []string {
	if !strings.ContainsAny(s, "\n\r") {
		return nil
	}
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		for _, v := range []string{l, strings.TrimSpace(l)} {
			if len(v) >= minLineLen && v != s {
				out = append(out, v)
			}
		}
	}
	return out
}
