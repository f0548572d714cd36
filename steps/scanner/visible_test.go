package scanner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

// The SANE configuration a machine has after the runbook: iscan's epkowa
// backend enabled, the L350's id added after the `#usb 0x04b8 0x0110`
// example, the stock epson2 backend still in dll.conf but its config all
// commented out (step 7). The `test` backend stands in for the scanner:
// real scanimage lists test:0 and test:1.
const (
	dllConf = `# dll.conf - backends SANE loads
test
#epson
epson2
`
	epkowaConf = `# epkowa.conf -- Image Scan! for Linux configuration
#
# Attach all supported USB devices.
usb

# Devices the backend does not know yet, by vendor and product id:
#usb 0x04b8 0x0110
usb 0x04b8 0x08a1

#scsi EPSON
`
	epson2Commented = `# epson2.conf
#scsi EPSON
#usb
# usb 0x4b8 0x110
#net autodiscovery
`
	// As shipped, except that `net autodiscovery` stays off: it would
	// broadcast on the machine's network.
	epson2Stock = `# epson2.conf
scsi EPSON
usb
# usb 0x4b8 0x110
#net autodiscovery
`
)

func runbookConfig() map[string]string {
	return map[string]string{
		"dll.conf":    dllConf,
		"dll.d/iscan": "# added by iscan\nepkowa\n",
		"epkowa.conf": epkowaConf,
		"epson2.conf": epson2Commented,
		"epson.conf":  "# epson.conf\n#usb\n",
		"test.conf":   "# test backend: defaults (two devices)\n",
	}
}

// writeConfig writes a SANE config folder.
func writeConfig(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sane.d")
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return dir
}

// fixtureRoot is the absolute path of the L350 sysfs fixture.
func fixtureRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs(fixture)
	require.NoError(t, err)
	return abs
}

// sysfsWithout copies the fixture and unplugs a device from the copy.
func sysfsWithout(t *testing.T, dev string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "sys")
	require.NoError(t, os.CopyFS(root, os.DirFS(fixture)))
	require.NoError(t, os.Remove(filepath.Join(root, usbDevicesDir, dev)))
	return root
}

// requireScanimage skips outside CI when sane-utils is missing (CI installs
// it with scripts/install-deps.sh).
func requireScanimage(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("scanimage"); err != nil {
		if labtest.InCI() {
			t.Fatalf("scanimage is required in CI (sane-utils): %v", err)
		}
		t.Skipf("scanimage not installed (apt-get install sane-utils): %v", err)
	}
}

// l350Step is the step as the scenario runs it in the lab: the L350's id
// and backend, the sysfs fixture, expecting the test backend's first
// device.
func l350Step(t *testing.T, saneDir string) *Visible {
	return &Visible{
		USB: "04b8:08a1", Backend: "epkowa", ExpectDevice: "^test:0$",
		SysfsRoot: fixtureRoot(t), SANEConfigDir: saneDir,
		ConflictingBackends: []string{"epson", "epson2"}, List: true, Timeout: 60 * time.Second,
	}
}

type stepRun struct {
	out      map[string]any
	evidence []steps.Evidence
	err      error
}

func run(t *testing.T, p *Visible) stepRun {
	t.Helper()
	require.NoError(t, p.Validate())
	env := steps.NewEnv("scanner", "visible", t.TempDir(), steps.Hooks{})
	err := p.Run(context.Background(), env)
	return stepRun{out: env.Outputs(), evidence: env.Evidence(), err: err}
}

// findings returns the findings table as finding name -> [ok, detail, fix].
func (r stepRun) findings(t *testing.T) map[string][]string {
	t.Helper()
	for _, ev := range r.evidence {
		if ev.Title == "findings" {
			m := map[string][]string{}
			for _, row := range ev.Table.Rows {
				m[row[0]] = row[1:]
			}
			return m
		}
	}
	t.Fatal("no findings table")
	return nil
}

func TestVisibleRunbookState(t *testing.T) {
	requireScanimage(t)
	r := run(t, l350Step(t, writeConfig(t, runbookConfig())))
	require.NoError(t, r.err)
	assert.Equal(t, true, r.out["usb_present"])
	assert.Equal(t, true, r.out["backend_configured"])
	assert.Equal(t, []string{}, r.out["conflicts"])
	assert.Equal(t, false, r.out["visible"], "test:0 is the test backend's")
	assert.Equal(t, false, r.out["listing_exercised"])
	assert.Equal(t, testBackendNote, r.out["listing_note"])
	assert.Equal(t, []any{
		map[string]any{"name": "test:0", "vendor": "Noname", "model": "frontend-tester", "type": "virtual device"},
		map[string]any{"name": "test:1", "vendor": "Noname", "model": "frontend-tester", "type": "virtual device"},
	}, r.out["devices"])

	f := r.findings(t)
	require.Len(t, f, 4)
	for name, row := range f {
		want := statusOK
		if name == findListed {
			want = statusNotExercised
		}
		assert.Equal(t, want, row[0], name)
		assert.Empty(t, row[2], name)
	}
	assert.Contains(t, f[findUSB][1], "Bus 002 Device 006: ID 04b8:08a1 EPSON L350 Series")
	assert.Contains(t, f[findBackend][1], "dll.d/iscan:2")
	assert.Contains(t, f[findBackend][1], "`usb 0x04b8 0x08a1` at ")
	assert.Contains(t, f[findConflicts][1], "epson2 is enabled in")
	assert.Contains(t, f[findListed][1], "`test:0' is a Noname frontend-tester virtual device")

	var titles []string
	for _, ev := range r.evidence {
		titles = append(titles, ev.Title)
	}
	assert.Len(t, titles, 4)
	assert.Contains(t, titles, "scanimage device list")
}

// TestVisibleFaults injects each fault the runbook fixes and checks the
// step fails on the right finding, with the runbook's fix.
func TestVisibleFaults(t *testing.T) {
	requireScanimage(t)
	for _, tc := range []struct {
		name   string
		config func(map[string]string)
		step   func(*testing.T, *Visible)
		failed string   // the one finding that fails
		detail []string // in its detail
		fix    string   // in its fix
		out    map[string]any
	}{
		{
			name: "epkowa line missing",
			config: func(c map[string]string) {
				c["epkowa.conf"] = strings.Replace(epkowaConf, "usb 0x04b8 0x08a1\n", "", 1)
			},
			failed: findBackend,
			detail: []string{"no active `usb 0x04b8 0x08a1` line in", "epkowa.conf"},
			fix:    "add `usb 0x04b8 0x08a1` to ",
			out:    map[string]any{"backend_configured": false, "usb_present": true, "visible": false},
		},
		{
			name: "epkowa line as the runbook writes it, without 0x",
			config: func(c map[string]string) {
				c["epkowa.conf"] = strings.Replace(epkowaConf, "usb 0x04b8 0x08a1", "usb 04b8 08a1", 1)
			},
			failed: findBackend,
			detail: []string{"line 8 `usb 04b8 08a1` is ignored: the epkowa backend reads epkowa.conf with Image Scan!'s own parser (backend/cfg-obj.c, the same in iscan 2.29.1 and 2.30.4)"},
			fix:    "add `usb 0x04b8 0x08a1` to ",
			out:    map[string]any{"backend_configured": false},
		},
		{
			name: "epkowa line commented out",
			config: func(c map[string]string) {
				c["epkowa.conf"] = strings.Replace(epkowaConf, "usb 0x04b8 0x08a1", "# usb  0x04b8 0x08a1", 1)
			},
			failed: findBackend,
			detail: []string{"line 8 has it commented out: `# usb  0x04b8 0x08a1`"},
			fix:    "epkowa.conf after line 7 `#usb 0x04b8 0x0110`, where the runbook adds its line",
			out:    map[string]any{"backend_configured": false},
		},
		{
			name: "epkowa line with lsusb's colon",
			config: func(c map[string]string) {
				c["epkowa.conf"] = strings.Replace(epkowaConf, "usb 0x04b8 0x08a1", "usb 04b8:08a1", 1)
			},
			failed: findBackend,
			detail: []string{"line 8 `usb 04b8:08a1` keeps lsusb's colon"},
			fix:    "add `usb 0x04b8 0x08a1`",
		},
		{
			name:   "epkowa.conf missing (iscan not installed)",
			config: func(c map[string]string) { delete(c, "epkowa.conf") },
			failed: findBackend,
			detail: []string{"epkowa.conf is missing"},
			fix:    "install Image Scan! for Linux (iscan",
		},
		{
			name:   "epkowa not enabled",
			config: func(c map[string]string) { delete(c, "dll.d/iscan") },
			failed: findBackend,
			detail: []string{"epkowa is not enabled in"},
			fix:    "add a line `epkowa` to ",
		},
		{
			name:   "epson2 backend still enabled",
			config: func(c map[string]string) { c["epson2.conf"] = epson2Stock },
			failed: findConflicts,
			detail: []string{"epson2 enabled in ", "dll.conf:4 and ", "epson2.conf has 2 active lines (line 2: `scsi EPSON`)"},
			fix:    "comment out every line of ",
			out:    map[string]any{"backend_configured": true, "visible": false},
		},
		{
			name: "epson2 enabled from dll.d",
			config: func(c map[string]string) {
				c["dll.conf"] = "test\n"
				c["dll.d/epson"] = "epson2\n"
				c["epson2.conf"] = "usb\n"
			},
			failed: findConflicts,
			detail: []string{"epson2 enabled in ", "dll.d/epson:1"},
			fix:    "or disable `epson2` in ",
		},
		{
			name:   "active line in another epson file",
			config: func(c map[string]string) { c["epsonds.conf"] = "# epsonds\nusb\n" },
			failed: findConflicts,
			detail: []string{"epsonds.conf has 1 active line (line 2: `usb`)"},
			fix:    "(or remove the file)",
		},
		{
			name:   "kernel scanner device next to the usb id",
			config: func(c map[string]string) { c["epkowa.conf"] = epkowaConf + "usb /dev/usb/scanner0\n" },
			failed: findConflicts,
			detail: []string{"epkowa.conf:11 `usb /dev/usb/scanner0` names a kernel scanner device"},
			fix:    "not both",
		},
		{
			name:   "USB ids absent",
			step:   func(t *testing.T, p *Visible) { p.SysfsRoot = sysfsWithout(t, "2-1.4") },
			failed: findUSB,
			detail: []string{"no USB device 04b8:08a1 among the 5 in ", "1d6b:0002, 8087:0024, 046d:c077"},
			fix:    "`lsusb` must show ID 04b8:08a1",
			out:    map[string]any{"usb_present": false, "backend_configured": true},
		},
		{
			name:   "no sysfs at sysfs_root",
			step:   func(t *testing.T, p *Visible) { p.SysfsRoot = t.TempDir() },
			failed: findUSB,
			detail: []string{"bus/usb/devices does not exist"},
			fix:    "connect the scanner",
		},
		{
			name:   "scanner list empty",
			config: func(c map[string]string) { c["dll.conf"] = "# nothing enabled\n#test\n" },
			failed: findListed,
			detail: []string{"No scanners were identified"},
			fix:    "`sudo scanimage -L` (runbook step 8)",
			out:    map[string]any{"visible": false, "devices": []any{}},
		},
		{
			name:   "listed device does not match",
			step:   func(_ *testing.T, p *Visible) { p.ExpectDevice = "^epkowa:" },
			failed: findListed,
			detail: []string{"scanimage lists 2 devices (test:0, test:1), none matches `^epkowa:`"},
			fix:    "correct expect_device",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := runbookConfig()
			if tc.config != nil {
				tc.config(cfg)
			}
			p := l350Step(t, writeConfig(t, cfg))
			if tc.step != nil {
				tc.step(t, p)
			}
			r := run(t, p)
			require.Error(t, r.err)
			require.True(t, steps.IsFailure(r.err), "a fault fails the step, it does not error: %v", r.err)
			f := r.findings(t)
			for name, row := range f {
				switch name {
				case tc.failed:
					assert.Equal(t, statusFailed, row[0], name)
				case findListed: // test:0 stands in for the scanner
					assert.Equal(t, statusNotExercised, row[0], "%s: %v", name, row)
				default:
					assert.Equal(t, statusOK, row[0], "%s: %v", name, row)
				}
			}
			for _, d := range tc.detail {
				assert.Contains(t, f[tc.failed][1], d)
			}
			assert.Contains(t, f[tc.failed][2], tc.fix)
			msg := r.err.Error()
			assert.Contains(t, msg, "1 of 4 findings failed: "+tc.failed+": ")
			assert.Contains(t, msg, "(fix: "+f[tc.failed][2]+")")
			for k, v := range tc.out {
				assert.Equal(t, v, r.out[k], k)
			}
		})
	}
}

func TestVisibleSeveralFaults(t *testing.T) {
	requireScanimage(t)
	cfg := runbookConfig()
	cfg["epkowa.conf"] = "#usb 0x04b8 0x0110\n"
	cfg["epson2.conf"] = epson2Stock
	p := l350Step(t, writeConfig(t, cfg))
	p.SysfsRoot = sysfsWithout(t, "2-1.4")
	r := run(t, p)
	require.True(t, steps.IsFailure(r.err))
	msg := r.err.Error()
	assert.Contains(t, msg, "3 of 4 findings failed: ")
	for _, name := range []string{findUSB, findBackend, findConflicts} {
		assert.Contains(t, msg, name+": ")
	}
	assert.NotContains(t, msg, findListed+": ")
	assert.Len(t, r.out["conflicts"], 1)
}

func TestVisibleEpson2RunbookRemedy(t *testing.T) {
	requireScanimage(t)
	// epson2 in dll.conf with a config file that was removed (step 7: "or
	// remove those files altogether") is off too.
	cfg := runbookConfig()
	delete(cfg, "epson2.conf")
	r := run(t, l350Step(t, writeConfig(t, cfg)))
	require.NoError(t, r.err)
}

func TestVisibleSkips(t *testing.T) {
	requireScanimage(t)
	// Without usb, sysfs is not read and the usb line is not required; any
	// device counts without expect_device.
	cfg := runbookConfig()
	cfg["epkowa.conf"] = "usb\n"
	p := l350Step(t, writeConfig(t, cfg))
	p.USB, p.ExpectDevice, p.SysfsRoot = "", "", "/nonexistent"
	r := run(t, p)
	require.NoError(t, r.err)
	assert.Equal(t, statusSkipped, r.findings(t)[findUSB][0])
	assert.Equal(t, false, r.out["usb_present"])
	assert.Equal(t, false, r.out["visible"], "only the test backend listed")
	assert.Equal(t, statusNotExercised, r.findings(t)[findListed][0])

	// list: false checks the files only (a mounted image).
	p = l350Step(t, writeConfig(t, runbookConfig()))
	p.List = false
	t.Setenv("PATH", t.TempDir())
	r = run(t, p)
	require.NoError(t, r.err)
	assert.Equal(t, statusSkipped, r.findings(t)[findListed][0])
	assert.Equal(t, false, r.out["visible"])
	assert.Equal(t, []any{}, r.out["devices"])
}

func TestVisibleScanimageMissing(t *testing.T) {
	p := l350Step(t, writeConfig(t, runbookConfig()))
	t.Setenv("PATH", t.TempDir())
	r := run(t, p)
	require.True(t, steps.IsFailure(r.err), "%v", r.err)
	f := r.findings(t)
	assert.Equal(t, statusFailed, f[findListed][0])
	assert.Contains(t, f[findListed][1], "scanimage is not installed on this machine")
	assert.Contains(t, f[findListed][2], "install sane-utils")
	assert.Contains(t, r.err.Error(), "1 of 4 findings failed: scanner listed: ")
}

// TestVisibleScanimageHangs puts a scanimage on PATH that never answers and
// forks a child holding its output open, as a backend stuck on USB would:
// the step fails on the timeout and nothing of it is left running.
func TestVisibleScanimageHangs(t *testing.T) {
	bin := t.TempDir()
	pids := filepath.Join(t.TempDir(), "pids")
	script := "#!/bin/sh\necho $$ > " + pids + ".tmp\nsleep 600 &\necho $! >> " + pids + ".tmp\nmv " + pids + ".tmp " + pids + "\nwait\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "scanimage"), []byte(script), 0o755))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	p := l350Step(t, writeConfig(t, runbookConfig()))
	p.Timeout = time.Second
	r := run(t, p)
	require.True(t, steps.IsFailure(r.err), "%v", r.err)
	f := r.findings(t)
	assert.Equal(t, statusFailed, f[findListed][0])
	assert.Equal(t, "scanimage did not finish within 1s and was killed", f[findListed][1])
	assert.Contains(t, f[findListed][2], "reconnect the scanner (runbook step 8)")
	assert.Equal(t, false, r.out["visible"])

	b, err := os.ReadFile(pids)
	require.NoError(t, err, "the fake scanimage ran")
	for _, s := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(s)
		require.NoError(t, err)
		assert.Eventually(t, func() bool { return gone(pid) }, 30*time.Second, 50*time.Millisecond, "process %d still runs", pid)
	}
}

// gone reports whether pid has exited (a zombie waiting for its reaper
// counts as gone).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z")
}

func TestVisibleScanimageFails(t *testing.T) {
	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, "scanimage"), []byte("#!/bin/sh\necho 'scanimage: open of device failed' >&2\nexit 3\n"), 0o755))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	r := run(t, l350Step(t, writeConfig(t, runbookConfig())))
	require.True(t, steps.IsFailure(r.err), "%v", r.err)
	assert.Equal(t, "scanimage exited 3: scanimage: open of device failed", r.findings(t)[findListed][1])
}

// TestVisibleCancelled interrupts the step while scanimage runs (Ctrl-C of
// a drill): the step returns the cancellation, not a verdict, and the
// process is killed.
func TestVisibleCancelled(t *testing.T) {
	bin := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "pid")
	script := "#!/bin/sh\necho $$ > " + pidFile + ".tmp\nmv " + pidFile + ".tmp " + pidFile + "\nexec sleep 600\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "scanimage"), []byte(script), 0o755))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	p := l350Step(t, writeConfig(t, runbookConfig()))
	p.Timeout = 10 * time.Minute
	require.NoError(t, p.Validate())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			if _, err := os.Stat(pidFile); err == nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	err := p.Run(ctx, steps.NewEnv("scanner", "visible", t.TempDir(), steps.Hooks{}))
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, steps.IsFailure(err))
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return gone(pid) }, 30*time.Second, 50*time.Millisecond, "scanimage %d still runs", pid)
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Visible)
		want string
	}{
		{"usb without colon", func(p *Visible) { p.USB = "04b8 08a1" }, "usb: want vendor:product in hex as lsusb prints it, e.g. 04b8:08a1, got \"04b8 08a1\""},
		{"usb not hex", func(p *Visible) { p.USB = "epson:l350" }, "usb: want vendor:product"},
		{"empty backend", func(p *Visible) { p.Backend = "" }, "backend: \"\" is not a SANE backend name"},
		{"backend path", func(p *Visible) { p.Backend = "../epkowa" }, "backend: \"../epkowa\" is not a SANE backend name"},
		{"conflicting bad", func(p *Visible) { p.ConflictingBackends = []string{"epson", "Epson 2"} }, "conflicting_backends[1]: \"Epson 2\" is not a SANE backend name"},
		{"conflicting self", func(p *Visible) { p.ConflictingBackends = []string{"epkowa"} }, "conflicting_backends[0]: \"epkowa\" is the backend itself"},
		{"bad regexp", func(p *Visible) { p.ExpectDevice = "test:(" }, "expect_device: error parsing regexp"},
		{"empty sysfs", func(p *Visible) { p.SysfsRoot = "" }, "sysfs_root: must not be empty"},
		{"glob in sane dir", func(p *Visible) { p.SANEConfigDir = "/etc/sane*" }, "sane_config_dir: \"/etc/sane*\" holds a glob or newline character"},
		{"relative on lab host", func(p *Visible) { p.Host = "lab:scanhost"; p.SysfsRoot = "fixtures/sys" }, "sysfs_root: must be an absolute path on lab:scanhost, got \"fixtures/sys\""},
		{"bad host", func(p *Visible) { p.Host = "scanhost" }, "host: \"scanhost\" is not a host reference"},
		{"zero timeout", func(p *Visible) { p.Timeout = 0 }, "timeout: must be positive, got 0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, ok := steps.Lookup("scanner.visible")
			require.True(t, ok)
			p := spec.New().(*Visible)
			require.NoError(t, p.Validate(), "defaults are valid")
			tc.edit(p)
			err := p.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDefaults(t *testing.T) {
	spec, ok := steps.Lookup("scanner.visible")
	require.True(t, ok)
	p := spec.New().(*Visible)
	assert.Equal(t, "epkowa", p.Backend)
	assert.Equal(t, "/sys", p.SysfsRoot)
	assert.Equal(t, "/etc/sane.d", p.SANEConfigDir)
	assert.Equal(t, []string{"epson", "epson2"}, p.ConflictingBackends)
	assert.True(t, p.List)
	assert.Equal(t, 30*time.Second, p.Timeout)
	for _, o := range []string{"usb_present", "backend_configured", "conflicts", "devices", "visible"} {
		_, ok := spec.Output(o)
		assert.True(t, ok, o)
	}
}
