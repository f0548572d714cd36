package scanner

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Finding statuses.
const (
	statusOK      = "ok"
	statusFailed  = "failed"
	statusSkipped = "skipped"
	// statusNotExercised: the check ran, but on a stand-in that would
	// pass whatever the real thing does; it is neither a pass nor a failure.
	statusNotExercised = "not exercised"
)

// testBackendNote is what the listing finding says when the device that
// matched belongs to SANE's test backend, which lists test:0 whatever is
// on the USB bus (the lab's stand-in for a scanner a container cannot have).
const testBackendNote = "listed by the test backend; USB listing not exercised in the lab"

// Finding names: what a failure message and the findings table call them.
const (
	findUSB       = "USB device present"
	findBackend   = "backend configured"
	findConflicts = "no conflicting backend"
	findListed    = "scanner listed"
)

// finding is one verdict of the step, with what was seen and, when it
// failed, the runbook's fix.
type finding struct {
	Name   string
	Status string
	Detail string
	Fix    string
}

func okFinding(name, detail string) finding {
	return finding{Name: name, Status: statusOK, Detail: detail}
}
func skipped(name, why string) finding {
	return finding{Name: name, Status: statusSkipped, Detail: why}
}
func failed(name, detail, fix string) finding {
	return finding{Name: name, Status: statusFailed, Detail: detail, Fix: fix}
}

// checkUSB looks for the device in sysfs, the way lsusb would (runbook
// step 4). dirOK tells whether bus/usb/devices exists at all.
func checkUSB(want usbID, dir string, dirOK bool, devs []usbDevice) (finding, *usbDevice) {
	fix := fmt.Sprintf("connect the scanner by USB and switch it on (the printer must print, runbook step 1); `lsusb` must show ID %s", want)
	if !dirOK {
		return failed(findUSB, fmt.Sprintf("%s does not exist: no USB devices (is sysfs_root a sysfs tree?)", dir), fix), nil
	}
	for i, d := range devs {
		if d.ID == want {
			return okFinding(findUSB, fmt.Sprintf("%s (%s)", d.lsusb(), path.Join(dir, d.Dir))), &devs[i]
		}
	}
	var seen []string
	for _, d := range devs {
		seen = append(seen, d.ID.String())
	}
	detail := fmt.Sprintf("no USB device %s among the %d in %s", want, len(devs), dir)
	if len(seen) > 0 {
		detail += " (" + strings.Join(seen, ", ") + ")"
	}
	return failed(findUSB, detail, fix), nil
}

// installHints say where a backend and its config file come from.
var installHints = map[string]string{
	"epkowa": "install Image Scan! for Linux (iscan, from support.epson.net/linux/en/iscan_c.html; runbook steps 2-3), which brings the epkowa backend and epkowa.conf",
}

// checkBackend checks that SANE loads the backend (dll.conf or dll.d) and,
// when want is set, that the backend's config file names the device by
// vendor and product id (runbook steps 5-6).
func checkBackend(backend string, want *usbID, c saneConfig) finding {
	if !c.DirOK {
		return failed(findBackend, fmt.Sprintf("SANE config folder %s does not exist", c.Dir),
			"install SANE (sane-utils), or point sane_config_dir at the host's SANE config folder")
	}
	var good, bad, fixes []string
	if en := c.enabled(backend); len(en) > 0 {
		good = append(good, fmt.Sprintf("%s enabled in %s:%d", backend, en[0].File, en[0].N))
	} else {
		bad = append(bad, fmt.Sprintf("%s is not enabled in %s or %s", backend, c.path("dll.conf"), c.path("dll.d")+"/"))
		fixes = append(fixes, fmt.Sprintf("add a line `%s` to %s", backend, c.path("dll.conf")))
	}
	conf := backend + ".conf"
	lines, ok := c.Files[conf]
	switch {
	case !ok:
		bad = append(bad, fmt.Sprintf("%s is missing", c.path(conf)))
		hint, known := installHints[backend]
		if !known {
			hint = fmt.Sprintf("install the %s backend, which brings %s", backend, conf)
		}
		fixes = append(fixes, hint)
	case want != nil:
		if l, found := findUSBLine(backend, lines, *want); found {
			good = append(good, fmt.Sprintf("`%s` at %s:%d", l.Text, c.path(conf), l.N))
			if backend == "epkowa" {
				good = append(good, "accepted by iscan's parser ("+iscanRule+")")
			}
		} else {
			bad = append(bad, fmt.Sprintf("no active `%s` line in %s%s", want.confLine(), c.path(conf), nearMisses(backend, lines, *want)))
			fixes = append(fixes, addLineFix(lines, *want, c.path(conf)))
		}
	}
	if len(bad) > 0 {
		return failed(findBackend, strings.Join(bad, "; "), strings.Join(fixes, "; "))
	}
	return okFinding(findBackend, strings.Join(good, "; "))
}

// findUSBLine returns the first active line naming want by id, as the
// backend reads it: epkowa with iscan's parser (iscanLine), the others
// with the sanei form usbLineID reads.
func findUSBLine(backend string, lines []confLine, want usbID) (confLine, bool) {
	for _, l := range lines {
		if backend == "epkowa" {
			if e, ok := iscanLine(l.Text); ok && e.Valid && !e.Bare && e.ID == want {
				return l, true
			}
			continue
		}
		if id, ok := usbLineID(l.Active); ok && id == want {
			return l, true
		}
	}
	return confLine{}, false
}

// nearMisses explains lines that almost configure the device: commented
// out, written with lsusb's colon, or (epkowa) in a form iscan's parser
// rejects, such as the runbook's own `usb 04b8 08a1`.
func nearMisses(backend string, lines []confLine, want usbID) string {
	var notes []string
	for _, l := range lines {
		if backend == "epkowa" {
			if e, ok := iscanLine(l.Text); ok && e.Key == "usb" && !e.Valid {
				if id, ok := usbLineID(l.Active); ok && id == want {
					notes = append(notes, fmt.Sprintf("line %d `%s` is ignored: %s", l.N, l.Text, iscanRule))
				}
			}
		}
		if id, ok := usbLineID(l.Disabled); ok && id == want {
			notes = append(notes, fmt.Sprintf("line %d has it commented out: `%s`", l.N, l.Text))
		}
		if colonID(l.Active, want) {
			notes = append(notes, fmt.Sprintf("line %d `%s` keeps lsusb's colon", l.N, l.Text))
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}

// epkowaAnchor is the commented example line the runbook adds the device
// line after.
var epkowaAnchor = usbID{0x04b8, 0x0110}

// addLineFix is the runbook's step 6 for this file.
func addLineFix(lines []confLine, want usbID, file string) string {
	fix := fmt.Sprintf("add `%s` to %s", want.confLine(), file)
	for _, l := range lines {
		if id, ok := usbLineID(l.Disabled); ok && id == epkowaAnchor {
			return fix + fmt.Sprintf(" after line %d `%s`, where the runbook adds its line", l.N, l.Text)
		}
	}
	return fix
}

// checkConflicts finds what the runbook's step 7 and its reason rule out:
// other Epson backends that are enabled and configured, active lines left
// in other epson*.conf files, and a kernel scanner device named next to
// the USB id ("SANE requires either a usb vendor/model code or a scanner
// device created by a kernel module but not both").
func checkConflicts(backend string, conflicting []string, want *usbID, c saneConfig) (finding, []string) {
	conflicts := []string{}
	if !c.DirOK {
		return skipped(findConflicts, fmt.Sprintf("SANE config folder %s does not exist", c.Dir)), conflicts
	}
	var fixes, notes []string
	covered := map[string]bool{backend + ".conf": true}
	for _, b := range conflicting {
		conf := b + ".conf"
		en := c.enabled(b)
		active := activeLines(c.Files[conf])
		switch {
		case len(en) == 0:
			continue
		case len(active) == 0:
			notes = append(notes, fmt.Sprintf("%s is enabled in %s:%d but %s has no active line", b, en[0].File, en[0].N, conf))
			continue
		}
		covered[conf] = true
		conflicts = append(conflicts, fmt.Sprintf("%s enabled in %s:%d and %s has %s", b, en[0].File, en[0].N, c.path(conf), describeActive(active)))
		fixes = append(fixes, fmt.Sprintf("comment out every line of %s with # (runbook step 7), or disable `%s` in %s", c.path(conf), b, en[0].File))
	}
	var epson []string
	for name := range c.Files {
		if strings.HasPrefix(name, "epson") && strings.HasSuffix(name, ".conf") && !covered[name] {
			epson = append(epson, name)
		}
	}
	slices.Sort(epson)
	for _, name := range epson {
		if active := activeLines(c.Files[name]); len(active) > 0 {
			conflicts = append(conflicts, fmt.Sprintf("%s has %s", c.path(name), describeActive(active)))
			fixes = append(fixes, fmt.Sprintf("comment out every line of %s with # (or remove the file), as the runbook's step 7 says", c.path(name)))
		}
	}
	if want != nil {
		conf := backend + ".conf"
		for _, l := range c.Files[conf] {
			if l.Active != "" && kernelDeviceLine(l.Active) {
				conflicts = append(conflicts, fmt.Sprintf("%s:%d `%s` names a kernel scanner device", c.path(conf), l.N, l.Text))
				fixes = append(fixes, fmt.Sprintf("remove line %d of %s: SANE wants a USB vendor/model line or a kernel scanner device, not both", l.N, c.path(conf)))
			}
		}
	}
	if len(conflicts) > 0 {
		return failed(findConflicts, strings.Join(conflicts, "; "), strings.Join(fixes, "; ")), conflicts
	}
	detail := fmt.Sprintf("none of %s is enabled with an active config, and no other epson*.conf has an active line", strings.Join(conflicting, ", "))
	if len(conflicting) == 0 {
		detail = "no other epson*.conf has an active line"
	}
	if len(notes) > 0 {
		detail += " (" + strings.Join(notes, "; ") + ")"
	}
	return okFinding(findConflicts, detail), conflicts
}

func describeActive(active []confLine) string {
	n := "1 active line"
	if len(active) > 1 {
		n = fmt.Sprintf("%d active lines", len(active))
	}
	return fmt.Sprintf("%s (line %d: `%s`)", n, active[0].N, active[0].Text)
}
