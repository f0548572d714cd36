package scanner

import "strings"

// iscanRule names the rule iscanLine mirrors, for findings.
const iscanRule = "the epkowa backend reads epkowa.conf with Image Scan!'s own parser " +
	"(backend/cfg-obj.c, the same in iscan 2.29.1 and 2.30.4), which takes `usb` alone or " +
	"`usb 0xVVVV 0xPPPP`: each id 0x- or 0X-prefixed, 1 to 4 hex digits, nothing after; " +
	"any other usb line is rejected as invalid and skipped"

// iscanKeys are cfg-obj.c's configuration keys in its order: a line
// belongs to the first key it starts with ("usbfoo" is a bad usb line).
var iscanKeys = []string{"net", "pio", "scsi", "usb", "interpreter", "fs-blacklist", "option"}

// iscanEntry is one epkowa.conf line as iscan's backend sees it.
type iscanEntry struct {
	Key   string // the key the line starts with, "" for none
	Valid bool   // the backend accepts the line
	Bare  bool   // a lone "usb": probe every USB device iscan supports
	ID    usbID  // the ids of a valid "usb 0xVVVV 0xPPPP" line
}

// iscanLine reads a line the way cfg-obj.c's _cfg_getline does: cut at
// the first '#' anywhere, trim C-locale white space, skip what is left
// empty (ok false), match the key by prefix in iscanKeys order, then
// validate. usb lines are checked exactly as _cfg_is_valid_usb_entry's
// sscanf(s, "%*s 0%1[xX]%4x 0%1[xX]%4x%1s") == 4; the other keys get
// the backend's own lighter checks.
func iscanLine(raw string) (e iscanEntry, ok bool) {
	s, _, _ := strings.Cut(raw, "#")
	s = strings.Trim(s, cSpace)
	if s == "" {
		return e, false
	}
	for _, k := range iscanKeys {
		if strings.HasPrefix(s, k) {
			e.Key = k
			break
		}
	}
	keyThenSpace := len(s) > len(e.Key) && isCSpace(s[len(e.Key)])
	switch e.Key {
	case "usb":
		if s == "usb" {
			e.Valid, e.Bare = true, true
			break
		}
		if keyThenSpace {
			e.ID, e.Valid = scanUSBIDs(s)
		}
	case "pio":
		e.Valid = s == "pio"
	case "scsi", "net", "interpreter", "fs-blacklist", "option":
		// Their detailed formats do not matter to the finding; what the
		// backend needs at least is the key, white space, a value.
		e.Valid = keyThenSpace
	}
	return e, true
}

// cSpace is isspace() in the C locale.
const cSpace = " \t\n\v\f\r"

func isCSpace(c byte) bool { return strings.IndexByte(cSpace, c) >= 0 }

// scanUSBIDs is sscanf(s, "%*s 0%1[xX]%4x 0%1[xX]%4x%1s") == 4.
func scanUSBIDs(s string) (usbID, bool) {
	sc := cScanner{s: s}
	sc.token() // %*s: the key
	var ids [2]uint32
	for i := range ids {
		sc.space()
		if !sc.literal('0') || !(sc.literal('x') || sc.literal('X')) {
			return usbID{}, false
		}
		v, ok := sc.hex(4)
		if !ok {
			return usbID{}, false
		}
		ids[i] = v
	}
	sc.space()
	if !sc.done() { // %1s matched: trailing content, five conversions
		return usbID{}, false
	}
	// The backend then stores the ids with sscanf("%*s %x %x") into
	// unsigned ints, which the USB layer compares as 16-bit ids.
	return usbID{uint16(ids[0]), uint16(ids[1])}, true
}

// cScanner follows glibc's scanf over a string, for the directives
// scanUSBIDs needs.
type cScanner struct {
	s string
	i int
}

func (c *cScanner) done() bool { return c.i >= len(c.s) }

// space is a white-space directive: any amount, none included.
func (c *cScanner) space() {
	for !c.done() && isCSpace(c.s[c.i]) {
		c.i++
	}
}

// token is %*s: skip white space, then a run of non-space.
func (c *cScanner) token() {
	c.space()
	for !c.done() && !isCSpace(c.s[c.i]) {
		c.i++
	}
}

// literal matches one ordinary character of the format.
func (c *cScanner) literal(b byte) bool {
	if !c.done() && c.s[c.i] == b {
		c.i++
		return true
	}
	return false
}

// hex is %Nx: skip white space, then at most width characters of an
// optional sign, an optional 0x prefix and hex digits (strtoul's base-16
// syntax); it fails when no digit is read ("0x" alone reads as 0).
func (c *cScanner) hex(width int) (uint32, bool) {
	c.space()
	neg := false
	if width > 0 && !c.done() && (c.s[c.i] == '+' || c.s[c.i] == '-') {
		neg = c.s[c.i] == '-'
		c.i++
		width--
	}
	digits := 0
	if width >= 2 && c.i+1 < len(c.s) && c.s[c.i] == '0' && (c.s[c.i+1] == 'x' || c.s[c.i+1] == 'X') {
		c.i += 2
		width -= 2
		digits++ // the prefix's 0 is a digit if nothing follows
	}
	var v uint32
	for ; width > 0 && !c.done(); width-- {
		d, ok := hexDigit(c.s[c.i])
		if !ok {
			break
		}
		v = v<<4 | uint32(d)
		c.i++
		digits++
	}
	if neg {
		v = -v
	}
	return v, digits > 0
}

func hexDigit(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}
