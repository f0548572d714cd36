package scanner

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// usbID is a USB vendor and product id pair, what lsusb prints as
// "ID 04b8:08a1".
type usbID struct {
	Vendor, Product uint16
}

func (id usbID) String() string { return fmt.Sprintf("%04x:%04x", id.Vendor, id.Product) }

// confLine is how the runbook's fix spells the id in a backend's config.
func (id usbID) confLine() string { return fmt.Sprintf("usb 0x%04x 0x%04x", id.Vendor, id.Product) }

// parseUSBID reads "vendor:product" in hex as lsusb prints it (04b8:08a1);
// a 0x prefix and upper case are accepted.
func parseUSBID(s string) (usbID, error) {
	v, p, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return usbID{}, fmt.Errorf("want vendor:product in hex as lsusb prints it, e.g. 04b8:08a1, got %q", s)
	}
	vendor, vok := parseHex16(v)
	product, pok := parseHex16(p)
	if !vok || !pok {
		return usbID{}, fmt.Errorf("want vendor:product in hex as lsusb prints it, e.g. 04b8:08a1, got %q", s)
	}
	return usbID{vendor, product}, nil
}

// parseHex16 reads 1 to 4 hex digits with an optional 0x prefix, the way
// sysfs (idVendor: "04b8") and SANE config files ("0x04b8") write ids.
func parseHex16(s string) (uint16, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s) == 0 || len(s) > 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 16, 16)
	if err != nil {
		return 0, false
	}
	return uint16(n), true
}

// usbDevice is one USB device as sysfs describes it under
// bus/usb/devices/<Dir>. Interface entries (2-1.4:1.0) have no ids and are
// not devices.
type usbDevice struct {
	Dir          string // e.g. 2-1.4 (bus 2, port 1, port 4)
	ID           usbID
	Manufacturer string
	Product      string
	Serial       string
	Bus, Dev     int // 0 when sysfs did not say
	Speed        string
}

// lsusb renders the device the way lsusb lists it, so the evidence reads
// like the runbook's step 4.
func (d usbDevice) lsusb() string {
	name := strings.TrimSpace(d.Manufacturer + " " + d.Product)
	return strings.TrimSpace(fmt.Sprintf("Bus %03d Device %03d: ID %s %s", d.Bus, d.Dev, d.ID, name))
}

// usbDevicesDir is where sysfs lists USB devices, below the sysfs root.
const usbDevicesDir = "bus/usb/devices"

// usbAttrs are the attribute files read from each device's folder.
var usbAttrs = []string{"idVendor", "idProduct", "manufacturer", "product", "serial", "busnum", "devnum", "speed"}

// parseUSBDevices builds the USB devices found in files, a map of paths
// below devicesDir (devicesDir/<dev>/<attribute>) to their contents. Entries
// without a valid idVendor and idProduct (interfaces, unreadable devices)
// are left out. The result is sorted by bus and device number.
func parseUSBDevices(devicesDir string, files map[string][]byte) []usbDevice {
	attrs := map[string]map[string]string{}
	prefix := strings.TrimSuffix(devicesDir, "/") + "/"
	for p, content := range files {
		rel, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		dir, attr, ok := strings.Cut(rel, "/")
		if !ok || dir == "" || strings.Contains(attr, "/") || !slices.Contains(usbAttrs, attr) {
			continue
		}
		if attrs[dir] == nil {
			attrs[dir] = map[string]string{}
		}
		attrs[dir][attr] = attrValue(content)
	}
	var out []usbDevice
	for dir, a := range attrs {
		vendor, vok := parseHex16(a["idVendor"])
		product, pok := parseHex16(a["idProduct"])
		if !vok || !pok {
			continue
		}
		d := usbDevice{
			Dir: dir, ID: usbID{vendor, product},
			Manufacturer: a["manufacturer"], Product: a["product"], Serial: a["serial"], Speed: a["speed"],
		}
		d.Bus, _ = strconv.Atoi(a["busnum"])
		d.Dev, _ = strconv.Atoi(a["devnum"])
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b usbDevice) int {
		if a.Bus != b.Bus {
			return a.Bus - b.Bus
		}
		if a.Dev != b.Dev {
			return a.Dev - b.Dev
		}
		return strings.Compare(a.Dir, b.Dir)
	})
	return out
}

// attrValue turns a sysfs attribute's content into one printable line:
// sysfs ends values with a newline and pads some (version: " 2.00"); USB
// string descriptors come from the device and may hold anything.
func attrValue(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// usbPatterns are the paths and globs to read below a sysfs root.
func usbPatterns(sysfsRoot string) (dir string, globs []string) {
	dir = path.Join(sysfsRoot, usbDevicesDir)
	for _, a := range usbAttrs {
		globs = append(globs, path.Join(dir, "*", a))
	}
	return dir, globs
}
