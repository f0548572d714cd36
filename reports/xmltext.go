package reports

import (
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// xmlText makes s safe for any XML text, attribute or CDATA section: what
// commands print (ANSI colours, \x01, BEL, invalid UTF-8) must never make
// junit.xml malformed. ANSI escape sequences are dropped (they are
// presentation, not content); any other character XML 1.0 does not allow
// is shown escaped as \xNN, and bytes that are not UTF-8 become U+FFFD.
func xmlText(s string) string {
	if isXMLText(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if n := ansiSequence(s[i:]); n > 0 {
			i += n
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case allowedInXML(r):
			b.WriteString(s[i : i+size])
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

func isXMLText(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !allowedInXML(r) {
			return false
		}
	}
	return true
}

// allowedInXML is XML 1.0's Char production.
func allowedInXML(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// ansiSequence returns the length of the ANSI escape sequence (CSI, such as
// colours, or OSC, such as terminal titles) s starts with, or 0.
func ansiSequence(s string) int {
	if len(s) < 2 || s[0] != 0x1b {
		return 0
	}
	switch s[1] {
	case '[': // CSI: parameters and intermediates, then a final byte @ to ~
		for i := 2; i < len(s); i++ {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
			if s[i] < 0x20 || s[i] > 0x3f && s[i] < 0x40 {
				return 0
			}
		}
	case ']': // OSC: up to BEL or ESC \
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
	}
	return 0
}

// cleanXMLStrings applies xmlText to every string reachable from v, a
// pointer to the JUnit document: one pass, so no field is ever missed.
func cleanXMLStrings(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			cleanXMLStrings(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				cleanXMLStrings(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			cleanXMLStrings(v.Index(i))
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(xmlText(v.String()))
		}
	}
}
