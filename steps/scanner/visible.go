package scanner

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// readTimeout bounds reading the sysfs and SANE files.
const readTimeout = 30 * time.Second

func init() {
	steps.Register(steps.Spec{
		Name:    "scanner.visible",
		Summary: "Check that a USB scanner is present, configured for its SANE backend, unhindered by other backends, and listed",
		Doc: "Four findings, each with its evidence and, when it fails, the fix: " +
			"(1) the USB device `usb` is present (idVendor/idProduct under `<sysfs_root>/bus/usb/devices/*`, what lsusb reads); " +
			"(2) the SANE `backend` is enabled in dll.conf or dll.d/ (read as sane-backends' dll.c does: dll.d names starting with '.' " +
			"or ending in '~' or '#' are skipped) and its `<backend>.conf` has an active line naming the device, read as the backend reads it: " +
			"for epkowa, Image Scan!'s own parser (cfg-obj.c, iscan 2.29/2.30) takes only `usb 0xVVVV 0xPPPP`, so the runbook's `usb VVVV PPPP` " +
			"is reported as ignored; for other backends `usb 0xVVVV 0xPPPP` or `usb VVVV PPPP` counts; " +
			"(3) no conflicting backend (`conflicting_backends`, default epson and epson2) is enabled with an active config, " +
			"no other epson*.conf has an active line, and the backend's config names no kernel scanner device next to the USB id; " +
			"(4) `scanimage -f` (the machine-readable `scanimage -L`), run with SANE_CONFIG_DIR=`sane_config_dir`, lists a device " +
			"matching `expect_device` within `timeout` (it is killed after); a match from SANE's test backend (test:0) is reported " +
			"`not exercised` (\"" + testBackendNote + "\"), visible is then false, never a plain pass. " +
			"Without `usb` the USB checks are skipped; with `list: false` scanimage is not run (to check a mounted image). " +
			"`host: lab:NAME` checks a lab host: its files are read and scanimage runs there. " +
			"The step fails when a finding fails, naming each failed finding and its fix.",
		New: func() steps.Step {
			return &Visible{
				Backend:             "epkowa",
				SysfsRoot:           "/sys",
				SANEConfigDir:       "/etc/sane.d",
				ConflictingBackends: []string{"epson", "epson2"},
				List:                true,
				Timeout:             30 * time.Second,
			}
		},
		Outputs: []steps.Output{
			{Name: "usb_present", Type: "bool", Doc: "the USB device is in sysfs (false when usb is not given)"},
			{Name: "backend_configured", Type: "bool", Doc: "the backend is enabled and its config names the device"},
			{Name: "conflicts", Type: "list", Doc: "what conflicts with the backend, one sentence each; empty when none"},
			{Name: "devices", Type: "list", Doc: "devices scanimage lists: maps with name, vendor, model, type"},
			{Name: "visible", Type: "bool", Doc: "scanimage lists a device matching expect_device, from a real backend (false for SANE's test backend)"},
			{Name: "listing_exercised", Type: "bool", Doc: "the listing finding tested the scanner: false when it was skipped or only SANE's test backend matched"},
			{Name: "listing_note", Type: "string", Doc: "set when the device that matched is SANE's test backend's: \"" + testBackendNote + "\""},
		},
		Figures: visibleFigures,
		Examples: []steps.Example{
			{Title: "The runbook's Epson L350 on this machine", YAML: "- uses: scanner.visible\n  with: { usb: \"04b8:08a1\", backend: epkowa, expect_device: \"^epkowa:\" }"},
			{Title: "A lab host with the SANE test backend", YAML: "- uses: scanner.visible\n  with:\n    host: lab:scanhost\n    sane_config_dir: /etc/opsdrill-sane\n    expect_device: \"^test:0$\""},
			{Title: "Files only, in a mounted system image", YAML: "- uses: scanner.visible\n  with: { usb: \"04b8:08a1\", sane_config_dir: /mnt/image/etc/sane.d, list: false }"},
		},
	})
}

// Visible checks that a scanner is visible to SANE.
type Visible struct {
	USB                 string        `yaml:"usb" doc:"USB vendor:product id as lsusb prints it, e.g. 04b8:08a1; empty skips the USB checks"`
	Backend             string        `yaml:"backend" doc:"SANE backend that drives the scanner; <sane_config_dir>/<backend>.conf is checked"`
	ExpectDevice        string        `yaml:"expect_device" doc:"regular expression matched against each listed device's name, vendor, model and \"vendor model\"; empty: any device"`
	SysfsRoot           string        `yaml:"sysfs_root" doc:"sysfs to read USB devices from; another folder checks a mounted image or a fixture"`
	SANEConfigDir       string        `yaml:"sane_config_dir" doc:"SANE config folder; scanimage runs with SANE_CONFIG_DIR set to it"`
	ConflictingBackends []string      `yaml:"conflicting_backends" doc:"backends that must not drive the scanner too"`
	List                bool          `yaml:"list" doc:"run scanimage to list devices; false checks files only"`
	Timeout             time.Duration `yaml:"timeout" doc:"scanimage is killed after this long"`
	Host                string        `yaml:"host" doc:"where the scanner is: local (default), ssh://[user@]name?sudo=true or lab:NAME"`

	id     *usbID
	expect *regexp.Regexp
}

var backendName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Validate checks the parameters.
func (p *Visible) Validate() error {
	p.id = nil
	if p.USB != "" {
		id, err := parseUSBID(p.USB)
		if err != nil {
			return fmt.Errorf("usb: %w", err)
		}
		p.id = &id
	}
	if !backendName.MatchString(p.Backend) {
		return fmt.Errorf("backend: %q is not a SANE backend name (like epkowa or epson2)", p.Backend)
	}
	for i, b := range p.ConflictingBackends {
		switch {
		case !backendName.MatchString(b):
			return fmt.Errorf("conflicting_backends[%d]: %q is not a SANE backend name", i, b)
		case b == p.Backend:
			return fmt.Errorf("conflicting_backends[%d]: %q is the backend itself", i, b)
		}
	}
	p.expect = nil
	if p.ExpectDevice != "" {
		re, err := regexp.Compile(p.ExpectDevice)
		if err != nil {
			return fmt.Errorf("expect_device: %w", err)
		}
		p.expect = re
	}
	if err := hostexec.Validate(p.Host); err != nil {
		return err
	}
	for _, f := range []struct{ name, value string }{{"sysfs_root", p.SysfsRoot}, {"sane_config_dir", p.SANEConfigDir}} {
		switch {
		case f.value == "":
			return fmt.Errorf("%s: must not be empty", f.name)
		case strings.ContainsAny(f.value, "*?[\n"):
			return fmt.Errorf("%s: %q holds a glob or newline character", f.name, f.value)
		case !hostexec.IsLocal(p.Host) && !path.IsAbs(f.value):
			return fmt.Errorf("%s: must be an absolute path on %s, got %q", f.name, p.Host, f.value)
		}
	}
	if p.Timeout <= 0 {
		return fmt.Errorf("timeout: must be positive, got %s", p.Timeout)
	}
	return nil
}

// Run checks the scanner and reports every finding, then fails if any did.
func (p *Visible) Run(ctx context.Context, env *steps.Env) error {
	if err := p.Validate(); err != nil {
		return err
	}
	t := newTarget(p.Host)
	sysfs, saneDir := p.SysfsRoot, p.SANEConfigDir
	if hostexec.IsLocal(p.Host) {
		sysfs, saneDir = env.Path(sysfs), env.Path(saneDir)
	}
	sysfs, saneDir = path.Clean(sysfs), path.Clean(saneDir)

	req := request{Dirs: []string{saneDir}, Globs: sanePatterns(saneDir, p.Backend, p.ConflictingBackends)}
	usbDir, usbGlobs := usbPatterns(sysfs)
	if p.id != nil {
		req.Dirs = append(req.Dirs, usbDir)
		req.Globs = append(req.Globs, usbGlobs...)
	}
	// `timeout` is scanimage's; reading a few config files gets its own
	// bound, generous enough for a loaded lab host.
	rctx, cancel := context.WithTimeout(ctx, max(p.Timeout, readTimeout))
	snap, err := t.read(rctx, req)
	cancel()
	if err != nil {
		return err
	}
	env.Logf("read %d files on %s", len(snap.Files), t)

	// The findings table comes first in the evidence: it is the verdict,
	// the rest is what it was decided on.
	var findings []finding
	var evidence []steps.Evidence
	usbPresent := false
	if p.id == nil {
		findings = append(findings, skipped(findUSB, "no usb id given"))
	} else {
		devs := parseUSBDevices(usbDir, snap.Files)
		f, dev := checkUSB(*p.id, usbDir, snap.Dirs[usbDir], devs)
		findings = append(findings, f)
		usbPresent = dev != nil
		evidence = append(evidence, usbEvidence(usbDir, devs, *p.id))
	}

	conf := parseSANEConfig(saneDir, snap.Dirs[saneDir], snap.Files)
	fb := checkBackend(p.Backend, p.id, conf)
	fc, conflicts := checkConflicts(p.Backend, p.ConflictingBackends, p.id, conf)
	findings = append(findings, fb, fc)
	evidence = append(evidence, configEvidence(conf, p.Backend, p.ConflictingBackends))

	listed, err := p.list(ctx, env, t, saneDir)
	if err != nil {
		return err
	}
	fl := listed.finding
	findings = append(findings, fl)
	evidence = append(evidence, listed.evidence...)

	out := make([]any, 0, len(listed.devices))
	for _, d := range listed.devices {
		out = append(out, d.output())
	}
	env.SetOutput("usb_present", usbPresent)
	env.SetOutput("backend_configured", fb.Status == statusOK)
	env.SetOutput("conflicts", conflicts)
	env.SetOutput("devices", out)
	env.SetOutput("visible", fl.Status == statusOK)
	env.SetOutput("listing_exercised", fl.Status == statusOK || fl.Status == statusFailed)
	if fl.Status == statusNotExercised {
		env.SetOutput("listing_note", testBackendNote)
		env.Logf("scanner listed: %s", testBackendNote)
	}

	rows := make([][]string, 0, len(findings))
	var bad []string
	for _, f := range findings {
		rows = append(rows, []string{f.Name, f.Status, f.Detail, f.Fix})
		if f.Status == statusFailed {
			bad = append(bad, fmt.Sprintf("%s: %s (fix: %s)", f.Name, f.Detail, f.Fix))
		}
	}
	env.AddEvidence(steps.TableEvidence("findings", []string{"finding", "ok", "detail", "fix"}, rows))
	for _, ev := range evidence {
		env.AddEvidence(ev)
	}
	if len(bad) > 0 {
		return steps.Failf("scanner not visible on %s: %d of %d findings failed: %s", t, len(bad), len(findings), strings.Join(bad, "; "))
	}
	return nil
}

// listing is the outcome of running scanimage.
type listing struct {
	finding  finding
	devices  []saneDevice
	evidence []steps.Evidence
}

// list runs scanimage and decides the "scanner listed" finding. An error
// is for failing to run anything on the host at all.
func (p *Visible) list(ctx context.Context, env *steps.Env, t target, saneDir string) (listing, error) {
	if !p.List {
		return listing{finding: skipped(findListed, "list: false")}, nil
	}
	if err := t.lookPath(ctx, "scanimage"); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return listing{finding: failed(findListed, fmt.Sprintf("scanimage is not installed on %s", t),
				"install sane-utils (apt-get install sane-utils), which provides scanimage")}, nil
		}
		return listing{}, fmt.Errorf("look for scanimage on %s: %w", t, err)
	}
	argv := []string{"scanimage", "-f", listFormat}
	envv := []string{"SANE_CONFIG_DIR=" + saneDir}
	env.Progress("scanimage -f")
	res, err := t.run(ctx, argv, envv, p.Timeout)
	if err != nil {
		return listing{}, err
	}
	devices, other := parseDeviceList(res.Stdout)
	l := listing{devices: devices, evidence: []steps.Evidence{listEvidence(saneDir, res, devices, other, p.expect)}}
	switch {
	case res.TimedOut:
		l.finding = failed(findListed, fmt.Sprintf("scanimage did not finish within %s and was killed", p.Timeout),
			"a backend hangs probing the device: disconnect and reconnect the scanner (runbook step 8), fix the other findings, then try `scanimage -L` by hand")
	case res.ExitCode != 0:
		l.finding = failed(findListed, fmt.Sprintf("scanimage exited %d: %s", res.ExitCode, tail(res.Stderr)),
			"run `scanimage -L` on the host and fix what it reports")
	case len(devices) == 0:
		l.finding = failed(findListed, noScanners+": scanimage lists no device",
			"disconnect and reconnect the scanner, then run `sudo scanimage -L` (runbook step 8); if only sudo lists it, give the user access to the USB device (scanner group)")
	default:
		l.finding = p.match(devices)
	}
	return l, nil
}

// match decides the finding for a non-empty device list.
func (p *Visible) match(devices []saneDevice) finding {
	var names []string
	for _, d := range devices {
		if p.matches(d) {
			if strings.HasPrefix(d.Name, "test:") {
				return finding{Name: findListed, Status: statusNotExercised,
					Detail: "device " + d.label() + ": " + testBackendNote + " (SANE's test backend lists it whatever is on the USB bus; it proves scanimage and SANE_CONFIG_DIR work, not that " + p.Backend + " finds the scanner)"}
			}
			return okFinding(findListed, "device "+d.label())
		}
		names = append(names, d.Name)
	}
	return failed(findListed, fmt.Sprintf("scanimage lists %d devices (%s), none matches `%s`", len(devices), strings.Join(names, ", "), p.ExpectDevice),
		"fix the other findings, reconnect the scanner (runbook step 8), or correct expect_device")
}

func (p *Visible) matches(d saneDevice) bool {
	if p.expect == nil {
		return true
	}
	for _, s := range []string{d.Name, d.Vendor, d.Model, d.Vendor + " " + d.Model} {
		if p.expect.MatchString(s) {
			return true
		}
	}
	return false
}

// tail returns the last line of a command's stderr, or "no message".
func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return last
	}
	return "no message"
}

func usbEvidence(dir string, devs []usbDevice, want usbID) steps.Evidence {
	rows := make([][]string, 0, len(devs))
	for _, d := range devs {
		match := ""
		if d.ID == want {
			match = "yes"
		}
		rows = append(rows, []string{d.Dir, fmt.Sprintf("%03d", d.Bus), fmt.Sprintf("%03d", d.Dev), d.ID.String(),
			d.Manufacturer, d.Product, d.Serial, d.Speed, match})
	}
	return steps.TableEvidence("USB devices in "+dir, []string{"device", "bus", "dev", "id", "manufacturer", "product", "serial", "speed (Mbit/s)", "wanted"}, rows)
}

// configEvidence quotes the lines that decided the backend and conflict
// findings: where backends are enabled, and the non-blank lines of the
// backend's and the Epson backends' config files.
func configEvidence(c saneConfig, backend string, conflicting []string) steps.Evidence {
	var rows [][]string
	for _, e := range c.Enabled {
		if e.Backend == backend || slices.Contains(conflicting, e.Backend) {
			rows = append(rows, []string{e.File + ":" + strconv.Itoa(e.N), e.Backend, "enabled"})
		}
	}
	names := []string{backend + ".conf"}
	for _, b := range conflicting {
		names = append(names, b+".conf")
	}
	for name := range c.Files {
		if strings.HasPrefix(name, "epson") && strings.HasSuffix(name, ".conf") && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		for _, l := range c.Files[name] {
			state := "active"
			if l.Active == "" {
				if l.Disabled == "" || !strings.HasPrefix(l.Disabled, "usb") {
					continue // prose comments say nothing about the verdict
				}
				state = "commented out"
			}
			rows = append(rows, []string{c.path(name) + ":" + strconv.Itoa(l.N), l.Text, state})
		}
	}
	return steps.TableEvidence("SANE configuration in "+c.Dir, []string{"where", "line", "state"}, rows)
}

func listEvidence(saneDir string, res cmdResult, devices []saneDevice, other []string, expect *regexp.Regexp) steps.Evidence {
	var b strings.Builder
	fmt.Fprintf(&b, "$ SANE_CONFIG_DIR=%s scanimage -f %q\n", saneDir, listFormat)
	for _, d := range devices {
		fmt.Fprintf(&b, "device %s\n", d.label())
	}
	if len(devices) == 0 && !res.TimedOut && res.ExitCode == 0 {
		b.WriteString(noScanners + ".\n")
	}
	for _, o := range other {
		fmt.Fprintf(&b, "(stdout) %s\n", o)
	}
	if s := strings.TrimSpace(res.Stderr); s != "" {
		fmt.Fprintf(&b, "(stderr) %s\n", strings.ReplaceAll(s, "\n", "\n(stderr) "))
	}
	switch {
	case res.TimedOut:
		b.WriteString("killed: timed out\n")
	default:
		fmt.Fprintf(&b, "exit %d\n", res.ExitCode)
	}
	if expect != nil {
		fmt.Fprintf(&b, "expect_device: %s\n", expect)
	}
	return steps.Evidence{Kind: "log", Title: "scanimage device list", Text: b.String()}
}
