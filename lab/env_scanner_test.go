package lab_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
)

func TestScannerEnvRegistered(t *testing.T) {
	e, ok := lab.LookupEnv(lab.ScannerEnv)
	require.True(t, ok)
	require.Len(t, e.Hosts, 1)
	h := e.Hosts[0]
	assert.Equal(t, lab.ScannerHost, h.Name)
	assert.Equal(t, lab.ScannerSANEDir, h.Env["SANE_CONFIG_DIR"])
	var paths []string
	for _, f := range h.Files {
		paths = append(paths, f.Path)
	}
	assert.ElementsMatch(t, []string{
		lab.ScannerSANEDir + "/dll.conf", lab.ScannerSANEDir + "/dll.d/iscan", lab.ScannerSANEDir + "/epkowa.conf",
		lab.ScannerSANEDir + "/epson2.conf", lab.ScannerSANEDir + "/epson.conf",
	}, paths)
}

// TestScannerEnv brings the environment up and checks what the drill
// relies on: scanimage lists the test backend's devices with the host's
// SANE_CONFIG_DIR, the SANE files are the runbook's end state, and the L350
// is in the copied sysfs behind the same symlink as in /sys.
func TestScannerEnv(t *testing.T) {
	l := labtest.Up(t, lab.ScannerEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h, err := l.Host(lab.ScannerHost)
	require.NoError(t, err)
	sh := func(script string) string {
		t.Helper()
		res, err := h.Exec(ctx, "sh", "-c", script)
		require.NoError(t, err)
		require.NoError(t, res.Err())
		return res.Stdout
	}

	out := sh("scanimage -L")
	assert.Contains(t, out, "device `test:0' is a Noname frontend-tester virtual device")
	assert.Contains(t, out, "device `test:1' is a Noname frontend-tester virtual device")

	conf := sh("cd " + lab.ScannerSANEDir + " && grep -n . epkowa.conf dll.d/iscan && grep -c '^#' epson2.conf")
	assert.Contains(t, conf, "epkowa.conf:7:#usb 0x04b8 0x0110\nepkowa.conf:8:usb 0x04b8 0x08a1\n")
	assert.Contains(t, conf, "dll.d/iscan:2:epkowa\n")

	dev := sh("cd " + lab.ScannerSysfsDir + "/bus/usb/devices && readlink 2-1.4 && cat 2-1.4/idVendor 2-1.4/idProduct 2-1.4/manufacturer 2-1.4/product 2-1.4/busnum 2-1.4/devnum")
	assert.Equal(t, "../../../devices/pci0000:00/0000:00:1d.0/usb2/2-1/2-1.4\n04b8\n08a1\nEPSON\nL350 Series\n2\n6\n", dev)
	assert.Equal(t, "13\n", sh("ls "+lab.ScannerSysfsDir+"/bus/usb/devices | wc -l"))

	vars := l.Vars()
	assert.Equal(t, "lab:"+l.ID+"/"+lab.ScannerHost, vars["scanner_host"])
	assert.Equal(t, lab.ScannerSysfsDir, vars["scanner_sysfs_root"])
	assert.Equal(t, lab.ScannerSANEDir, vars["scanner_sane_config_dir"])
	assert.Equal(t, "^test:0$", vars["scanner_expect_device"])
}

// TestScannerEnvBadSysfs: a sysfs folder that does not exist stops `lab up`
// with an error naming the variable, and leaves nothing behind.
func TestScannerEnvBadSysfs(t *testing.T) {
	labtest.Require(t)
	missing := filepath.Join(t.TempDir(), "no-such-sysfs")
	t.Setenv(lab.ScannerSysfsEnv, missing)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Envs: []string{lab.ScannerEnv}})
	require.Error(t, err)
	assert.Nil(t, l)
	assert.True(t, strings.Contains(err.Error(), lab.ScannerSysfsEnv+"=\""+missing+"\": not a folder"), err.Error())
}
