package scanner

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

// TestVisibleOnLabHost runs the step against the scanner lab host (files
// read and scanimage run inside it) and injects each fault there: every
// fault is made on its own copy of the SANE folder or sysfs, except those
// that change the host's scanimage, which are undone after.
func TestVisibleOnLabHost(t *testing.T) {
	l := labtest.Up(t, lab.ScannerEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h, err := l.Host(lab.ScannerHost)
	require.NoError(t, err)
	sh := func(t *testing.T, script string) {
		t.Helper()
		res, err := h.Exec(ctx, "sh", "-c", script)
		require.NoError(t, err)
		require.NoError(t, res.Err())
	}
	host := "lab:" + l.ID + "/" + lab.ScannerHost
	step := func() *Visible {
		return &Visible{
			USB: "04b8:08a1", Backend: "epkowa", ExpectDevice: "^test:0$",
			SysfsRoot: lab.ScannerSysfsDir, SANEConfigDir: lab.ScannerSANEDir,
			ConflictingBackends: []string{"epson", "epson2"}, List: true, Timeout: time.Minute, Host: host,
		}
	}
	// saneCopy copies the host's SANE folder and runs edit in the copy.
	saneCopy := func(t *testing.T, name, edit string) string {
		dir := "/tmp/sane-" + name
		sh(t, "rm -rf "+dir+" && cp -a "+lab.ScannerSANEDir+" "+dir+" && cd "+dir+" && "+edit)
		return dir
	}

	t.Run("runbook state", func(t *testing.T) {
		r := run(t, step())
		require.NoError(t, r.err)
		assert.Equal(t, true, r.out["usb_present"])
		assert.Equal(t, true, r.out["backend_configured"])
		assert.Equal(t, []string{}, r.out["conflicts"])
		// test:0 is SANE's test backend: listed whatever the USB bus
		// holds, so the listing is reported as not exercised, not passed.
		assert.Equal(t, false, r.out["visible"])
		assert.Equal(t, false, r.out["listing_exercised"])
		assert.Equal(t, testBackendNote, r.out["listing_note"])
		assert.Len(t, r.out["devices"], 2)
		f := r.findings(t)
		assert.Contains(t, f[findUSB][1], "Bus 002 Device 006: ID 04b8:08a1 EPSON L350 Series ("+lab.ScannerSysfsDir+"/bus/usb/devices/2-1.4)")
		assert.Contains(t, f[findBackend][1], "`usb 0x04b8 0x08a1` at "+lab.ScannerSANEDir+"/epkowa.conf:8")
		assert.Equal(t, statusNotExercised, f[findListed][0])
		assert.Contains(t, f[findListed][1], "device `test:0'")
		assert.Contains(t, f[findListed][1], testBackendNote)
	})

	for _, tc := range []struct {
		name   string
		edit   func(t *testing.T, p *Visible)
		failed string
		detail string
	}{
		{"epkowa line commented out", func(t *testing.T, p *Visible) {
			p.SANEConfigDir = saneCopy(t, "commented", "sed -i 's/^usb 0x04b8 0x08a1/#usb 0x04b8 0x08a1/' epkowa.conf")
		}, findBackend, "line 8 has it commented out: `#usb 0x04b8 0x08a1`"},
		{"epkowa line as the runbook writes it", func(t *testing.T, p *Visible) {
			p.SANEConfigDir = saneCopy(t, "runbook-form", "sed -i 's/^usb 0x04b8 0x08a1/usb 04b8 08a1/' epkowa.conf")
		}, findBackend, "line 8 `usb 04b8 08a1` is ignored: the epkowa backend reads epkowa.conf with Image Scan!'s own parser (backend/cfg-obj.c"},
		{"epkowa line missing", func(t *testing.T, p *Visible) {
			p.SANEConfigDir = saneCopy(t, "missing", "sed -i '/^usb 0x04b8 0x08a1/d' epkowa.conf")
		}, findBackend, "no active `usb 0x04b8 0x08a1` line in /tmp/sane-missing/epkowa.conf"},
		{"iscan entry in dll.d is an editor backup", func(t *testing.T, p *Visible) {
			p.SANEConfigDir = saneCopy(t, "backup", "mv dll.d/iscan 'dll.d/iscan#'")
		}, findBackend, "epkowa is not enabled in /tmp/sane-backup/dll.conf or /tmp/sane-backup/dll.d/"},
		{"epson2 backend still enabled", func(t *testing.T, p *Visible) {
			p.SANEConfigDir = saneCopy(t, "epson2", "printf 'scsi EPSON\\nusb\\n' > epson2.conf")
		}, findConflicts, "epson2 enabled in /tmp/sane-epson2/dll.conf:5 and /tmp/sane-epson2/epson2.conf has 2 active lines"},
		{"USB ids absent", func(t *testing.T, p *Visible) {
			sh(t, "rm -rf /tmp/sys-unplugged && cp -a "+lab.ScannerSysfsDir+" /tmp/sys-unplugged && rm /tmp/sys-unplugged/bus/usb/devices/2-1.4")
			p.SysfsRoot = "/tmp/sys-unplugged"
		}, findUSB, "no USB device 04b8:08a1 among the 5 in /tmp/sys-unplugged/bus/usb/devices"},
		{"scanner list empty", func(t *testing.T, p *Visible) {
			p.SANEConfigDir = saneCopy(t, "empty", "sed -i 's/^test/#test/' dll.conf")
		}, findListed, "No scanners were identified"},
		{"scanimage missing", func(t *testing.T, _ *Visible) {
			sh(t, "mv /usr/bin/scanimage /usr/bin/scanimage.off")
			t.Cleanup(func() { sh(t, "mv /usr/bin/scanimage.off /usr/bin/scanimage") })
		}, findListed, "scanimage is not installed on " + host},
		{"scanimage hangs", func(t *testing.T, p *Visible) {
			// /usr/local/bin comes first on the host's PATH.
			sh(t, "printf '#!/bin/sh\\nsleep 600 &\\nwait\\n' > /usr/local/bin/scanimage && chmod +x /usr/local/bin/scanimage")
			t.Cleanup(func() { sh(t, "rm -f /usr/local/bin/scanimage") })
			p.Timeout = 2 * time.Second
		}, findListed, "scanimage did not finish within 2s and was killed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := step()
			tc.edit(t, p)
			r := run(t, p)
			require.Error(t, r.err)
			require.True(t, steps.IsFailure(r.err), "%v", r.err)
			f := r.findings(t)
			for name, row := range f {
				want := statusOK
				switch name {
				case tc.failed:
					want = statusFailed
				case findListed:
					want = statusNotExercised // test:0 still matches
				}
				assert.Equal(t, want, row[0], "%s: %v", name, row)
			}
			assert.Contains(t, f[tc.failed][1], tc.detail)
			assert.Contains(t, r.err.Error(), "scanner not visible on "+host+": 1 of 4 findings failed: "+tc.failed+": ")
		})
	}

	// The hung scanimage and its child were killed inside the host, not
	// only abandoned by docker exec.
	res, err := h.Exec(ctx, "pgrep", "-f", "sleep 600")
	require.NoError(t, err)
	assert.Equal(t, 1, res.ExitCode, "left running: %s", res.Stdout)
}
