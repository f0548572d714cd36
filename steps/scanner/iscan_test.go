package scanner

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestIscanLine: epkowa.conf lines as iscan's cfg-obj.c (2.29.1, 2.30.4)
// reads them; each row is what _cfg_getline and _cfg_is_valid_usb_entry's
// sscanf decide for that text (the usb rows were run through glibc's
// sscanf with the backend's format string, which returned 4 exactly for
// the valid ones, with these ids).
func TestIscanLine(t *testing.T) {
	l350 := usbID{0x04b8, 0x08a1}
	cases := []struct {
		line    string
		content bool
		key     string
		valid   bool
		bare    bool
		id      usbID
	}{
		{"usb 0x04b8 0x08a1", true, "usb", true, false, l350},
		{"  usb\t0X04B8   0x08A1  # the L350\r", true, "usb", true, false, l350},
		{"usb 0x4b8 0x8a1", true, "usb", true, false, l350},
		{"usb 0x04b8 0x08a1 ", true, "usb", true, false, l350},
		{"usb 0x 04b8 0x 08a1", true, "usb", true, false, l350},   // %4x skips blanks
		{"usb 0x0x4b8 0x8a1", true, "usb", false, false, usbID{}}, // %4x reads "0x4b", then '8' is not the format's '0'
		{"usb 0x-4b8 0x8a1", true, "usb", true, false, usbID{0xfb48, 0x08a1}},
		{"usb 0x0x 0x8a1", true, "usb", true, false, usbID{0, 0x08a1}}, // "0x" alone reads as 0
		{"usb 0x0xg 0x1", true, "usb", false, false, usbID{}},
		{"usb", true, "usb", true, true, usbID{}},
		{"usb # all supported devices", true, "usb", true, true, usbID{}},
		// The runbook's step 6 writes the ids without 0x: rejected.
		{"usb 04b8 08a1", true, "usb", false, false, usbID{}},
		{"usb 0x04b8 08a1", true, "usb", false, false, usbID{}},
		{"usb 0x04b8:0x08a1", true, "usb", false, false, usbID{}},
		{"usb 04b8:08a1", true, "usb", false, false, usbID{}},
		{"usb 0x04b8 0x08a12", true, "usb", false, false, usbID{}}, // a fifth digit is trailing content
		{"usb 0x04b8 0x08a1 extra", true, "usb", false, false, usbID{}},
		{"usb 0x04b8", true, "usb", false, false, usbID{}},
		{"usb 0xg4b8 0x08a1", true, "usb", false, false, usbID{}},
		{"usb0x04b8 0x08a1", true, "usb", false, false, usbID{}},
		{"usbscanner", true, "usb", false, false, usbID{}},
		{"USB 0x04b8 0x08a1", true, "", false, false, usbID{}}, // keys are case-sensitive
		{"#usb 0x04b8 0x08a1", false, "", false, false, usbID{}},
		{"   # comment", false, "", false, false, usbID{}},
		{"", false, "", false, false, usbID{}},
		{"\v\f", false, "", false, false, usbID{}},
		{"pio", true, "pio", true, false, usbID{}},
		{"scsi EPSON", true, "scsi", true, false, usbID{}},
		{"net 192.0.2.1 1865", true, "net", true, false, usbID{}},
		{"network 192.0.2.1", true, "net", false, false, usbID{}},
		{"option prefer-adf", true, "option", true, false, usbID{}},
	}
	for _, tc := range cases {
		e, content := iscanLine(tc.line)
		assert.Equal(t, tc.content, content, "%q has content", tc.line)
		assert.Equal(t, tc.key, e.Key, "%q key", tc.line)
		assert.Equal(t, tc.valid, e.Valid, "%q valid", tc.line)
		assert.Equal(t, tc.bare, e.Bare, "%q bare", tc.line)
		assert.Equal(t, tc.id, e.ID, "%q ids", tc.line)
	}
}

// TestDllConfLines: backend names as dll.c's read_config takes them.
func TestDllConfLines(t *testing.T) {
	cases := map[string]string{
		"epkowa":             "epkowa",
		"  epkowa  # iscan":  "epkowa",
		"epkowa#iscan":       "epkowa",
		"epkowa extra words": "epkowa",
		`"epkowa"`:           "epkowa",
		"#epkowa":            "",
		"  # epkowa":         "",
		`"#epkowa"`:          "",
		"":                   "",
		"\t\r":               "",
	}
	for line, want := range cases {
		assert.Equal(t, want, dllBackendName(line), "%q", line)
	}
}

// TestDllDSkipped: dll.d names read_dlld ignores.
func TestDllDSkipped(t *testing.T) {
	cases := map[string]bool{
		"iscan": false, "hplip": false, "iscan.conf": false,
		".iscan": true, "iscan~": true, "iscan#": true, "#iscan#": true, "": true,
		"#iscan": false, // only a trailing '#' marks a backup
	}
	for name, want := range cases {
		assert.Equal(t, want, dllDSkipped(name), "%q", name)
	}
}
