package scanner

import (
	"strings"
)

// listFormat is scanimage's --formatted-device-list: device name, vendor,
// model and type, tab-separated, one device per line. scanimage prints it
// as given (it knows no escapes), so the tab is a real tab; no SANE field
// holds one.
const listFormat = "%d\t%v\t%m\t%t%n"

// noScanners is what `scanimage -L` says when it lists nothing; with -f it
// prints nothing at all, so the step says it in SANE's words.
const noScanners = "No scanners were identified"

// saneDevice is one device scanimage lists.
type saneDevice struct {
	Name, Vendor, Model, Type string
}

// label renders the device the way `scanimage -L` does.
func (d saneDevice) label() string {
	return "`" + d.Name + "' is a " + strings.TrimSpace(d.Vendor+" "+d.Model+" "+d.Type)
}

func (d saneDevice) output() map[string]any {
	return map[string]any{"name": d.Name, "vendor": d.Vendor, "model": d.Model, "type": d.Type}
}

// parseDeviceList reads scanimage -f listFormat output. Lines that are not
// device records (a backend writing to stdout) are returned apart, trimmed,
// for the evidence.
func parseDeviceList(out string) (devices []saneDevice, other []string) {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSuffix(line, "\r")
		f := strings.Split(line, "\t")
		if len(f) == 4 && strings.TrimSpace(f[0]) != "" {
			devices = append(devices, saneDevice{
				Name: strings.TrimSpace(f[0]), Vendor: strings.TrimSpace(f[1]),
				Model: strings.TrimSpace(f[2]), Type: strings.TrimSpace(f[3]),
			})
			continue
		}
		if s := strings.TrimSpace(line); s != "" {
			other = append(other, s)
		}
	}
	return devices, other
}
