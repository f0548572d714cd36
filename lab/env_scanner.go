package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The scanner environment is the lab's stand-in for the machine of the
// runbook "Use Epson L350 (or L300 / L200 Series Scanner) on Ubuntu
// 16.04/Linux Mint 18 and above", as it is once the runbook is done:
//
//   - SANE (sane-utils) configured in its own folder, ScannerSANEDir
//     (SANE_CONFIG_DIR): iscan's epkowa backend enabled in dll.d/iscan,
//     epkowa.conf naming the L350 (`usb 0x04b8 0x08a1` after the
//     `#usb 0x04b8 0x0110` example: iscan's parser rejects the runbook's
//     own `usb 04b8 08a1`, so the lab holds the form that works), the
//     stock epson2 backend still listed
//     in dll.conf but every line of epson*.conf commented out;
//   - SANE's `test` backend enabled too, standing in for the scanner
//     itself: scanimage lists test:0 and test:1 (the epkowa library is not
//     in the lab, so SANE skips it). test:0 is listed whatever the USB bus
//     holds, so scanner.visible reports the lab's listing as "listed by
//     the test backend; USB listing not exercised in the lab", not as a
//     pass. A SANE backend enumerating the fixture's device through
//     umockdev was not built: epkowa is not in Debian, and epson2 would
//     need the scanner's ESC/I replies recorded to identify it;
//   - the sysfs attributes of a plugged-in L350 (ID 04b8:08a1, bus 2
//     device 6) at ScannerSysfsDir, copied from the repository's fixture
//     scenarios/fixtures/epson-l350-sysfs.
//
// scenarios/epson-scanner.yaml checks it with scanner.visible; the lab's
// vars point the step at the host, the folders and test:0, where a
// production target checks /sys, /etc/sane.d and the epkowa device.
const (
	// ScannerEnv is the environment's name.
	ScannerEnv = "scanner"
	// ScannerHost is its one host.
	ScannerHost = "scanhost"
	// ScannerSANEDir is the host's SANE config folder.
	ScannerSANEDir = "/etc/opsdrill-sane"
	// ScannerSysfsDir holds the L350 sysfs fixture in the host.
	ScannerSysfsDir = "/opt/opsdrill/epson-l350-sysfs"
	// ScannerFixture is the fixture's place in the repository; it is found
	// from the working folder (or the executable's) upwards.
	ScannerFixture = "scenarios/fixtures/epson-l350-sysfs"
	// ScannerSysfsEnv names another folder to copy in as the host's sysfs
	// (e.g. a snapshot of a real machine's), instead of the fixture.
	ScannerSysfsEnv = "OPSDRILL_SCANNER_SYSFS"
)

var scannerSANEFiles = map[string]string{
	"dll.conf": `# SANE backends, as the runbook leaves them: the stock list (epson2
# included) plus the lab's stand-in for the scanner.
test
#epson
epson2
`,
	"dll.d/iscan": `# Image Scan! for Linux (iscan) enables its backend.
epkowa
`,
	"epkowa.conf": `# epkowa.conf -- configuration of the epkowa backend (Image Scan! for Linux)
#
# Attach all USB devices the backend knows.
usb

# Other USB devices, by vendor and product id:
#usb 0x04b8 0x0110
usb 0x04b8 0x08a1

# SCSI and parallel devices are not used here.
#scsi EPSON
#pio 0x378
`,
	"epson2.conf": `# epson2.conf -- every line commented out (runbook step 7), so the epson2
# backend leaves the scanner to epkowa.
#scsi EPSON
#usb
#usb 0x4b8 0x110
#net autodiscovery
`,
	"epson.conf": `# epson.conf -- every line commented out (runbook step 7).
#scsi EPSON
#usb /dev/usb/scanner0
`,
}

func scannerHostSpec() HostSpec {
	var files []File
	for _, name := range slices.Sorted(maps.Keys(scannerSANEFiles)) {
		files = append(files, File{Path: ScannerSANEDir + "/" + name, Content: []byte(scannerSANEFiles[name])})
	}
	return HostSpec{
		Name:  ScannerHost,
		Env:   map[string]string{"SANE_CONFIG_DIR": ScannerSANEDir},
		Files: files,
		Ready: &Probe{Cmd: []string{"sh", "-c", "scanimage -L | grep -q 'test:0'"}, Timeout: 2 * time.Minute, Interval: time.Second},
	}
}

func init() {
	RegisterEnv(Env{
		Name:  ScannerEnv,
		Doc:   "Epson L350 runbook end state: SANE (epkowa configured, epson2 off, test backend as the scanner) and the L350's sysfs",
		Hosts: []HostSpec{scannerHostSpec()},
		Setup: setupScanner,
		Vars:  scannerVars,
	})
}

// scannerVars are the names scenarios/epson-scanner.yaml reads; usb and
// backend are the runbook's own (04b8:08a1, epkowa) and stay the defaults.
func scannerVars(l *Lab) (map[string]any, map[string]string) {
	return map[string]any{
		"scanner_host":            "lab:" + l.ID + "/" + ScannerHost,
		"scanner_sysfs_root":      ScannerSysfsDir,
		"scanner_sane_config_dir": ScannerSANEDir,
		"scanner_expect_device":   "^test:0$",
	}, nil
}

func setupScanner(ctx context.Context, l *Lab) error {
	src, err := scannerSysfsSource()
	if err != nil {
		return err
	}
	archive, err := tarTree(src)
	if err != nil {
		return fmt.Errorf("pack %s: %w", src, err)
	}
	h, err := l.Host(ScannerHost)
	if err != nil {
		return err
	}
	res, err := h.ExecCommand(ctx, Command{
		Args:  []string{"sh", "-c", `mkdir -p "$1" && tar -x --no-same-owner -C "$1" -f -`, "sh", ScannerSysfsDir},
		Stdin: archive,
	})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("copy %s into %s:%s: %w", src, ScannerHost, ScannerSysfsDir, err)
	}
	return nil
}

// scannerSysfsSource finds the folder to copy in as the host's sysfs.
func scannerSysfsSource() (string, error) {
	if dir := os.Getenv(ScannerSysfsEnv); dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("%s=%q: not a folder", ScannerSysfsEnv, dir)
		}
		return dir, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, start := range starts {
		if dir, ok := findUp(start, ScannerFixture); ok {
			return dir, nil
		}
	}
	return "", fmt.Errorf("the Epson L350 sysfs fixture %s is not in %v or above: run from the opsdrill checkout, or set %s", ScannerFixture, starts, ScannerSysfsEnv)
}

// findUp looks for rel in dir and its parents.
func findUp(dir, rel string) (string, bool) {
	for {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// tarTree packs a folder with its symlinks kept as links (sysfs's
// bus/usb/devices entries are links into devices/).
func tarTree(root string) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
