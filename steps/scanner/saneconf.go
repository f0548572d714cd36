package scanner

import (
	"path"
	"regexp"
	"slices"
	"strings"
)

// confLine is one non-blank line of a SANE configuration file.
type confLine struct {
	N    int    // line number, from 1
	Text string // the line as written, trimmed
	// Active is what SANE acts on: the text before any '#', whitespace
	// collapsed to single spaces; empty for comment lines.
	Active string
	// Disabled is the setting a comment line turns off ("#usb 04b8 08a1"
	// gives "usb 04b8 08a1"), whitespace collapsed; empty otherwise.
	Disabled string
}

// parseConf reads a SANE configuration file (dll.conf, a dll.d entry,
// <backend>.conf): one setting per line, '#' starts a comment (also after a
// setting, as sane-dll(5) says for dll.conf), blank lines are ignored, and
// DOS line ends are tolerated.
func parseConf(data []byte) []confLine {
	var out []confLine
	for i, raw := range strings.Split(string(data), "\n") {
		text := strings.TrimSpace(strings.ToValidUTF8(raw, "\uFFFD"))
		if text == "" {
			continue
		}
		l := confLine{N: i + 1, Text: text}
		before, comment, hasComment := strings.Cut(text, "#")
		l.Active = collapse(before)
		if l.Active == "" && hasComment {
			l.Disabled = collapse(strings.TrimLeft(comment, "#"))
		}
		out = append(out, l)
	}
	return out
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// activeLines returns the lines SANE acts on.
func activeLines(lines []confLine) []confLine {
	var out []confLine
	for _, l := range lines {
		if l.Active != "" {
			out = append(out, l)
		}
	}
	return out
}

// usbLineID reads a backend's USB id line, "usb 0x04b8 0x08a1" or, as the
// runbook writes it, "usb 04b8 08a1".
func usbLineID(setting string) (usbID, bool) {
	f := strings.Fields(setting)
	if len(f) != 3 || f[0] != "usb" {
		return usbID{}, false
	}
	v, vok := parseHex16(f[1])
	p, pok := parseHex16(f[2])
	return usbID{v, p}, vok && pok
}

// colonID reports a usb line that copied lsusb's "04b8:08a1" as is; the
// runbook warns the colon must go.
func colonID(setting string, want usbID) bool {
	f := strings.Fields(setting)
	if len(f) != 2 || f[0] != "usb" {
		return false
	}
	id, err := parseUSBID(f[1])
	return err == nil && id == want
}

// kernelDevice matches the device nodes of the deprecated kernel USB scanner
// driver (/dev/usb/scanner0, /dev/usbscanner).
var kernelDevice = regexp.MustCompile(`^/dev/usb/?scanner[0-9]*$`)

// kernelDeviceLine reports a setting that names a kernel scanner device
// rather than a USB vendor/product id.
func kernelDeviceLine(setting string) bool {
	return slices.ContainsFunc(strings.Fields(setting), kernelDevice.MatchString)
}

// dllEntry is a backend enabled in dll.conf or a dll.d file.
type dllEntry struct {
	Backend string
	File    string // full path
	N       int
}

// dllEntries lists the backends a dll.conf or dll.d file enables, read as
// sane-backends' dll.c read_config does: the first word of each line
// (sanei_config_get_string: a "quoted string" or a run of non-blanks)
// names a backend unless it starts with '#'; a '#' inside the word ends it.
func dllEntries(file string, data []byte) []dllEntry {
	var out []dllEntry
	for i, raw := range strings.Split(string(data), "\n") {
		name := dllBackendName(raw)
		if name == "" {
			continue
		}
		out = append(out, dllEntry{Backend: name, File: file, N: i + 1})
	}
	return out
}

// dllBackendName is the backend a dll.conf line names, or "".
func dllBackendName(line string) string {
	s := strings.TrimLeft(strings.ToValidUTF8(line, "\uFFFD"), cSpace)
	var word string
	if rest, ok := strings.CutPrefix(s, `"`); ok {
		word, _, _ = strings.Cut(rest, `"`)
	} else {
		end := strings.IndexAny(s, cSpace)
		if end < 0 {
			end = len(s)
		}
		word = s[:end]
	}
	if strings.HasPrefix(word, "#") {
		return ""
	}
	word, _, _ = strings.Cut(word, "#")
	return word
}

// dllDSkipped reports dll.d entries dll.c's read_dlld ignores: names
// starting with '.' (dot files, "." and "..") and editor backups ending in
// '~' or '#'. It also skips anything that is not a regular file (stat, so
// a symlink to a file counts); the file listing holds regular files only.
func dllDSkipped(name string) bool {
	return name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") || strings.HasSuffix(name, "#")
}

// saneConfig is what the step read of a SANE configuration folder.
type saneConfig struct {
	Dir     string
	DirOK   bool                  // the folder exists
	Files   map[string][]confLine // by base name: dll.conf, epkowa.conf, ...
	Enabled []dllEntry            // dll.d entries first, then dll.conf, like SANE
}

// sanePatterns are the paths and globs to read in a SANE config folder.
func sanePatterns(dir, backend string, conflicting []string) []string {
	globs := []string{
		path.Join(dir, "dll.conf"),
		path.Join(dir, "dll.d", "*"),
		path.Join(dir, backend+".conf"),
		path.Join(dir, "epson*.conf"),
	}
	for _, b := range conflicting {
		globs = append(globs, path.Join(dir, b+".conf"))
	}
	return globs
}

// parseSANEConfig builds a saneConfig from files read in dir (full paths to
// contents).
func parseSANEConfig(dir string, dirOK bool, files map[string][]byte) saneConfig {
	c := saneConfig{Dir: dir, DirOK: dirOK, Files: map[string][]confLine{}}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var dllD []string
	for p := range files {
		rel, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		if name, ok := strings.CutPrefix(rel, "dll.d/"); ok {
			if !dllDSkipped(name) && !strings.Contains(name, "/") {
				dllD = append(dllD, p)
			}
			continue
		}
		if !strings.Contains(rel, "/") {
			c.Files[rel] = parseConf(files[p])
		}
	}
	slices.Sort(dllD)
	for _, p := range dllD {
		c.Enabled = append(c.Enabled, dllEntries(p, files[p])...)
	}
	if data, ok := files[prefix+"dll.conf"]; ok {
		c.Enabled = append(c.Enabled, dllEntries(prefix+"dll.conf", data)...)
	}
	return c
}

// enabled returns where backend is enabled, if anywhere.
func (c saneConfig) enabled(backend string) []dllEntry {
	var out []dllEntry
	for _, e := range c.Enabled {
		if e.Backend == backend {
			out = append(out, e)
		}
	}
	return out
}

// path returns the full path of a file in the folder.
func (c saneConfig) path(name string) string { return path.Join(c.Dir, name) }
