package scanner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixture is a hand-written copy of an Epson L350's sysfs attributes (lsusb:
// "Bus 002 Device 006: ID 04b8:08a1 Seiko Epson Corp."), with the symlinks
// of a real /sys/bus/usb/devices.
const fixture = "../../scenarios/fixtures/epson-l350-sysfs"

var l350 = usbID{0x04b8, 0x08a1}

func TestParseUSBID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want usbID
		ok   bool
	}{
		{"04b8:08a1", l350, true},
		{"04B8:08A1", l350, true},
		{"0x04b8:0x08a1", l350, true},
		{" 4b8:8a1 ", l350, true},
		{"ffff:0000", usbID{0xffff, 0}, true},
		{"04b8 08a1", usbID{}, false},
		{"04b8:", usbID{}, false},
		{":08a1", usbID{}, false},
		{"104b8:08a1", usbID{}, false},
		{"04g8:08a1", usbID{}, false},
		{"04b8:08a1:1", usbID{}, false},
		{"", usbID{}, false},
	} {
		got, err := parseUSBID(tc.in)
		if !tc.ok {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	assert.Equal(t, "04b8:08a1", l350.String())
	assert.Equal(t, "usb 0x04b8 0x08a1", l350.confLine())
}

// TestParseUSBDevicesFixture reads the fixture the way the step does
// (symlinks followed) and finds the L350 where lsusb puts it; interface
// entries (2-1.4:1.0) are not devices.
func TestParseUSBDevicesFixture(t *testing.T) {
	dir, globs := usbPatterns(fixture)
	snap, err := localTarget{}.read(context.Background(), request{Dirs: []string{dir}, Globs: globs})
	require.NoError(t, err)
	assert.True(t, snap.Dirs[dir])
	devs := parseUSBDevices(dir, snap.Files)
	require.Len(t, devs, 6)
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.Dir+"="+d.ID.String())
	}
	assert.Equal(t, []string{"usb1=1d6b:0002", "1-1=8087:0024", "1-1.2=046d:c077", "usb2=1d6b:0002", "2-1=8087:0024", "2-1.4=04b8:08a1"}, ids)
	epson := devs[5]
	assert.Equal(t, usbDevice{Dir: "2-1.4", ID: l350, Manufacturer: "EPSON", Product: "L350 Series",
		Serial: "544E594B3031323638", Bus: 2, Dev: 6, Speed: "480"}, epson)
	assert.Equal(t, "Bus 002 Device 006: ID 04b8:08a1 EPSON L350 Series", epson.lsusb())
	assert.Equal(t, "Bus 001 Device 002: ID 8087:0024", devs[1].lsusb(), "a hub without strings")
}

func TestParseUSBDevicesOddValues(t *testing.T) {
	d := "/s/bus/usb/devices"
	files := map[string][]byte{
		d + "/3-1/idVendor":      []byte("04B8\n"),
		d + "/3-1/idProduct":     []byte("08a1"),
		d + "/3-1/manufacturer":  []byte("EP\x01SON\xff\n"),
		d + "/3-1/busnum":        []byte("x"),
		d + "/3-2/idVendor":      []byte("zzzz\n"),
		d + "/3-2/idProduct":     []byte("0001\n"),
		d + "/3-3/idVendor":      []byte("0001\n"), // no idProduct
		d + "/3-1:1.0/idVendor":  []byte("0001\n"),
		d + "/3-1/nested/x/idVe": []byte("0001\n"),
		"/elsewhere/idVendor":    []byte("0001\n"),
	}
	devs := parseUSBDevices(d, files)
	require.Len(t, devs, 1)
	assert.Equal(t, l350, devs[0].ID)
	assert.Equal(t, "EP SON\uFFFD", devs[0].Manufacturer)
	assert.Equal(t, 0, devs[0].Bus)
}

func TestParseConf(t *testing.T) {
	data := "# epkowa.conf\r\n\n  usb\t0x04b8   0x08a1  # the L350\r\n#usb 0x04b8 0x0110\n##  usb 04b8 08a1\n\t\n net host # x\n#\n"
	lines := parseConf([]byte(data))
	assert.Equal(t, []confLine{
		{N: 1, Text: "# epkowa.conf", Disabled: "epkowa.conf"},
		{N: 3, Text: "usb\t0x04b8   0x08a1  # the L350", Active: "usb 0x04b8 0x08a1"},
		{N: 4, Text: "#usb 0x04b8 0x0110", Disabled: "usb 0x04b8 0x0110"},
		{N: 5, Text: "##  usb 04b8 08a1", Disabled: "usb 04b8 08a1"},
		{N: 7, Text: "net host # x", Active: "net host"},
		{N: 8, Text: "#"},
	}, lines)
	assert.Len(t, activeLines(lines), 2)
}

func TestUSBLines(t *testing.T) {
	for _, tc := range []struct {
		setting string
		ok      bool
	}{
		{"usb 0x04b8 0x08a1", true},
		{"usb 04b8 08a1", true},
		{"usb 0X04B8 0X08A1", true},
		{"usb 4b8 8a1", true},
		{"usb 0x04b8", false},
		{"usb", false},
		{"usb 04b8:08a1", false},
		{"usb 0x04b8 0x08a1 extra", false},
		{"scsi 0x04b8 0x08a1", false},
		{"USB 0x04b8 0x08a1", false},
	} {
		id, ok := usbLineID(tc.setting)
		assert.Equal(t, tc.ok, ok, tc.setting)
		if ok {
			assert.Equal(t, l350, id, tc.setting)
		}
	}
	assert.True(t, colonID("usb 04b8:08a1", l350))
	assert.False(t, colonID("usb 04b8:0110", l350))
	assert.False(t, colonID("usb 04b8 08a1", l350))

	for setting, want := range map[string]bool{
		"usb /dev/usb/scanner0": true, "/dev/usbscanner": true, "device /dev/usb/scanner12": true,
		"usb 0x04b8 0x08a1": false, "usb libusb:002:006": false, "scsi /dev/sg0": false,
	} {
		assert.Equal(t, want, kernelDeviceLine(setting), setting)
	}
}

func TestParseSANEConfig(t *testing.T) {
	files := map[string][]byte{
		"/c/dll.conf":          []byte("net\n#epson\nepson2 # stock\ntest\n"),
		"/c/dll.d/iscan":       []byte("epkowa\n"),
		"/c/dll.d/a-first":     []byte("pixma\n"),
		"/c/dll.d/iscan~":      []byte("epson\n"),
		"/c/dll.d/.hidden":     []byte("epson\n"),
		"/c/epkowa.conf":       []byte("usb 04b8 08a1\n"),
		"/c/sub/x.conf":        []byte("usb\n"),
		"/elsewhere/dll.conf":  []byte("epson\n"),
		"/c/dll.d/nested/file": []byte("epson\n"),
	}
	c := parseSANEConfig("/c", true, files)
	var enabled []string
	for _, e := range c.Enabled {
		enabled = append(enabled, e.Backend+"@"+filepath.Base(e.File))
	}
	assert.Equal(t, []string{"pixma@a-first", "epkowa@iscan", "net@dll.conf", "epson2@dll.conf", "test@dll.conf"}, enabled)
	assert.Equal(t, []dllEntry{{Backend: "epson2", File: "/c/dll.conf", N: 3}}, c.enabled("epson2"))
	assert.Empty(t, c.enabled("epson"))
	assert.Contains(t, c.Files, "epkowa.conf")
	assert.Contains(t, c.Files, "dll.conf")
	assert.NotContains(t, c.Files, "x.conf")
}

func TestParseDeviceList(t *testing.T) {
	out := "test:0\tNoname\tfrontend-tester\tvirtual device\n" +
		"epkowa:interpreter:002:006\tEpson\tL350\tflatbed scanner\r\n" +
		"\n[bjnp] junk on stdout\n\tno\tname\there\n"
	devs, other := parseDeviceList(out)
	assert.Equal(t, []saneDevice{
		{Name: "test:0", Vendor: "Noname", Model: "frontend-tester", Type: "virtual device"},
		{Name: "epkowa:interpreter:002:006", Vendor: "Epson", Model: "L350", Type: "flatbed scanner"},
	}, devs)
	assert.Equal(t, []string{"[bjnp] junk on stdout", "no\tname\there"}, other)
	assert.Equal(t, "`test:0' is a Noname frontend-tester virtual device", devs[0].label())
	assert.Equal(t, map[string]any{"name": "test:0", "vendor": "Noname", "model": "frontend-tester", "type": "virtual device"}, devs[0].output())

	devs, other = parseDeviceList("")
	assert.Empty(t, devs)
	assert.Empty(t, other)
}

func TestParseDump(t *testing.T) {
	s, err := parseDump("D L2M=\nF L2MvYQ== aGkK\nF L2MvZW1wdHk= \n\n")
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"/c": true}, s.Dirs)
	assert.Equal(t, map[string][]byte{"/c/a": []byte("hi\n"), "/c/empty": {}}, s.Files)

	for _, bad := range []string{"X abc", "D", "D !!", "F L2M=", "F !! aGk=", "F L2M= !!", "D  ", "F  aGk="} {
		_, err := parseDump(bad + "\n")
		assert.Error(t, err, bad)
	}
}

// TestDumpScriptMatchesLocalRead runs the remote reader (dumpScript) with
// this machine's sh on the fixture, placed below a folder whose name has
// spaces, and checks it reads exactly what the native reader reads: the
// lab host and this machine give the same findings.
func TestDumpScriptMatchesLocalRead(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a dir with spaces")
	require.NoError(t, os.CopyFS(root, os.DirFS(fixture)))
	sane := filepath.Join(root, "sane.d")
	require.NoError(t, os.MkdirAll(filepath.Join(sane, "dll.d"), 0o755))
	for name, content := range map[string]string{
		"dll.conf": "test\n", "dll.d/iscan": "epkowa\n", "dll.d/.hidden": "epson\n", "epkowa.conf": "usb 04b8 08a1\n",
		"epson2.conf": "", "epsonds.conf": "usb\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(sane, name), []byte(content), 0o644))
	}
	usbDir, globs := usbPatterns(root)
	req := request{
		Dirs:  []string{usbDir, sane, filepath.Join(root, "missing")},
		Globs: append(globs, sanePatterns(sane, "epkowa", []string{"epson", "epson2"})...),
	}
	native, err := localTarget{}.read(context.Background(), req)
	require.NoError(t, err)

	out, err := exec.Command("sh", append([]string{"-c", dumpScript, "sh"}, dumpArgs(req)...)...).Output()
	require.NoError(t, err)
	viaShell, err := parseDump(string(out))
	require.NoError(t, err)

	assert.Equal(t, native, viaShell)
	assert.Len(t, parseUSBDevices(usbDir, viaShell.Files), 6)
	assert.Contains(t, viaShell.Files, filepath.Join(sane, "epson2.conf"), "empty files are read too")
	assert.NotContains(t, viaShell.Files, filepath.Join(sane, "dll.d/.hidden"))
}

func TestHiddenMatch(t *testing.T) {
	assert.True(t, hiddenMatch("/c/dll.d/*", "/c/dll.d/.x"))
	assert.False(t, hiddenMatch("/c/dll.d/*", "/c/dll.d/x"))
	assert.False(t, hiddenMatch("/c/dll.d/.*", "/c/dll.d/.x"))
	assert.False(t, hiddenMatch("/.c/dll.conf", "/.c/dll.conf"))
}
