package scanner

import (
	"encoding/base64"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// Seeds beyond these inline ones are in testdata/fuzz/<target>/.

// FuzzParseUSBID: an accepted id prints as lsusb does and parses back.
func FuzzParseUSBID(f *testing.F) {
	for _, s := range []string{"04b8:08a1", "0x04B8:0X08A1", "4b8:8a1", ":", "04b8", "ffff:ffff", "0x:0x", "+4b8:8a1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseUSBID(s)
		if err != nil {
			return
		}
		str := id.String()
		if len(str) != 9 || strings.ToLower(str) != str {
			t.Fatalf("%q prints as %q", s, str)
		}
		if again, err := parseUSBID(str); err != nil || again != id {
			t.Fatalf("%q does not round-trip: %v", str, err)
		}
		if again, ok := usbLineID(id.confLine()); !ok || again != id {
			t.Fatalf("%q: config line %q does not read back", s, id.confLine())
		}
	})
}

// FuzzParseUSBDevices: whatever sysfs attributes hold, at most one device
// per folder comes out, with printable strings and the ids it was given.
func FuzzParseUSBDevices(f *testing.F) {
	f.Add("04b8\n", "08a1\n", "2\n", "6\n", "EPSON\n", "L350 Series\n")
	f.Add("1d6b", "0002", "1", "1", "Linux 4.15.0-20-generic ehci_hcd", "EHCI Host Controller")
	f.Add("0x04B8", "8a1", "-1", "99999999999999999999", "\x00\x1b[31m", "\xff\xfe")
	f.Fuzz(func(t *testing.T, vendor, product, busnum, devnum, manufacturer, productName string) {
		dir := "/sys/bus/usb/devices"
		files := map[string][]byte{
			dir + "/2-1.4/idVendor": []byte(vendor), dir + "/2-1.4/idProduct": []byte(product),
			dir + "/2-1.4/busnum": []byte(busnum), dir + "/2-1.4/devnum": []byte(devnum),
			dir + "/2-1.4/manufacturer": []byte(manufacturer), dir + "/2-1.4/product": []byte(productName),
		}
		devs := parseUSBDevices(dir, files)
		if len(devs) > 1 {
			t.Fatalf("one folder gave %d devices", len(devs))
		}
		for _, d := range devs {
			v, vok := parseHex16(attrValue([]byte(vendor)))
			p, pok := parseHex16(attrValue([]byte(product)))
			if !vok || !pok || d.ID != (usbID{v, p}) {
				t.Fatalf("ids %q:%q gave %s", vendor, product, d.ID)
			}
			for _, s := range []string{d.Manufacturer, d.Product, d.lsusb()} {
				if strings.IndexFunc(s, unicode.IsControl) >= 0 || strings.TrimSpace(s) != s {
					t.Fatalf("unprintable or untrimmed %q", s)
				}
			}
		}
	})
}

// FuzzParseConf: line numbers grow, active settings hold no comment and
// single spaces only, a line is either active or disabled, and a usb id
// line reads back through its canonical spelling.
func FuzzParseConf(f *testing.F) {
	for _, s := range []string{
		"usb 0x04b8 0x08a1\n", "#usb 0x04b8 0x0110\nusb 04b8 08a1\n", "  usb\t04B8  08A1 # L350\r\n",
		"net\n#epson\nepson2\n", "usb /dev/usb/scanner0\n", "###\n\n\n# #usb 1 2\n", "usb 04b8:08a1", "\x00#\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := parseConf(data)
		prev := 0
		for _, l := range lines {
			if l.N <= prev {
				t.Fatalf("line numbers not increasing: %d after %d", l.N, prev)
			}
			prev = l.N
			if l.Text == "" {
				t.Fatal("blank line kept")
			}
			for _, s := range []string{l.Active, l.Disabled} {
				if strings.Contains(s, "  ") || strings.TrimSpace(s) != s || strings.ContainsAny(s, "\t\r\n") {
					t.Fatalf("not collapsed: %q", s)
				}
			}
			if strings.Contains(l.Active, "#") {
				t.Fatalf("comment in active setting %q", l.Active)
			}
			if l.Active != "" && l.Disabled != "" {
				t.Fatalf("line %d both active and disabled", l.N)
			}
			if id, ok := usbLineID(l.Active); ok {
				if again, ok := usbLineID(id.confLine()); !ok || again != id {
					t.Fatalf("%q: canonical %q does not read back", l.Active, id.confLine())
				}
			}
			kernelDeviceLine(l.Active)
			colonID(l.Active, l350)
		}
		entries := dllEntries("/c/dll.conf", data)
		if len(entries) > len(lines) {
			t.Fatalf("%d dll entries for %d lines", len(entries), len(lines))
		}
		for _, e := range entries {
			if e.Backend == "" || strings.Contains(e.Backend, "#") {
				t.Fatalf("bad backend name %q", e.Backend)
			}
		}
		c := parseSANEConfig("/c", true, map[string][]byte{"/c/dll.conf": data, "/c/epkowa.conf": data, "/c/epson2.conf": data, "/c/dll.d/x": data})
		id := l350
		checkBackend("epkowa", &id, c)
		checkConflicts("epkowa", []string{"epson", "epson2"}, &id, c)
	})
}

// FuzzParseDeviceList: every device has a name and no field holds a tab
// or line break; nothing is lost (devices and other lines account for
// every non-blank line).
func FuzzParseDeviceList(f *testing.F) {
	for _, s := range []string{
		"test:0\tNoname\tfrontend-tester\tvirtual device\ntest:1\tNoname\tfrontend-tester\tvirtual device\n",
		"epkowa:interpreter:002:006\tEpson\tL350\tflatbed scanner\r\n", "", "\n\n", "\t\t\t\n", "a\tb\tc\n", "a\tb\tc\td\te\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		devs, other := parseDeviceList(out)
		for _, d := range devs {
			if d.Name == "" {
				t.Fatal("device without a name")
			}
			for _, s := range []string{d.Name, d.Vendor, d.Model, d.Type} {
				if strings.ContainsAny(s, "\t\n") {
					t.Fatalf("field %q holds a separator", s)
				}
			}
		}
		nonBlank := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.TrimSpace(l) != "" {
				nonBlank++
			}
		}
		if len(devs)+len(other) != nonBlank {
			t.Fatalf("%d devices + %d other lines for %d non-blank lines", len(devs), len(other), nonBlank)
		}
	})
}

// encodeDump writes a snapshot the way dumpScript does.
func encodeDump(s *snapshot) string {
	var b strings.Builder
	var dirs, files []string
	for d := range s.Dirs {
		dirs = append(dirs, d)
	}
	for f := range s.Files {
		files = append(files, f)
	}
	sort.Strings(dirs)
	sort.Strings(files)
	enc := base64.StdEncoding.EncodeToString
	for _, d := range dirs {
		b.WriteString("D " + enc([]byte(d)) + "\n")
	}
	for _, f := range files {
		b.WriteString("F " + enc([]byte(f)) + " " + enc(s.Files[f]) + "\n")
	}
	return b.String()
}

// FuzzParseDump: a listing that parses encodes back to one that parses to
// the same snapshot.
func FuzzParseDump(f *testing.F) {
	for _, s := range []string{"D L2M=\nF L2MvYQ== aGkK\nF L2MvZW1wdHk= \n", "", "D\n", "F a b c\n", "F L2M= ====\n", "\n\nD L2M=\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		s, err := parseDump(out)
		if err != nil {
			return
		}
		again, err := parseDump(encodeDump(s))
		if err != nil {
			t.Fatalf("re-encoded listing does not parse: %v", err)
		}
		if len(again.Files) != len(s.Files) || len(again.Dirs) != len(s.Dirs) {
			t.Fatal("re-encoded listing differs")
		}
		for p, c := range s.Files {
			if string(again.Files[p]) != string(c) || len(c) > maxFileBytes {
				t.Fatalf("file %q differs or is too long", p)
			}
		}
	})
}
