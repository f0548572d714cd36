package scanner

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

func benchStep(b *testing.B, p *Visible) {
	b.Helper()
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for b.Loop() {
		env := steps.NewEnv("scanner", "visible", dir, steps.Hooks{})
		if err := p.Run(context.Background(), env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVisibleFiles is the step without scanimage (list: false): read
// the L350 sysfs fixture and a SANE folder, parse, decide.
func BenchmarkVisibleFiles(b *testing.B) {
	p := benchL350(b, writeConfig(b, runbookConfig()))
	p.List = false
	benchStep(b, p)
}

// BenchmarkVisibleLocal is the whole step on this machine, with the real
// scanimage listing the SANE test backend's devices.
func BenchmarkVisibleLocal(b *testing.B) {
	if _, err := exec.LookPath("scanimage"); err != nil {
		b.Skip("scanimage not installed")
	}
	benchStep(b, benchL350(b, writeConfig(b, runbookConfig())))
}

// BenchmarkVisibleLabHost is the whole step against the scanner lab host:
// a docker exec each to read the files, find scanimage and run it.
func BenchmarkVisibleLabHost(b *testing.B) {
	l := labtest.Up(b, lab.ScannerEnv)
	p := benchL350(b, lab.ScannerSANEDir)
	p.SysfsRoot, p.Host = lab.ScannerSysfsDir, "lab:"+l.ID+"/"+lab.ScannerHost
	benchStep(b, p)
}

func benchL350(b *testing.B, saneDir string) *Visible {
	return &Visible{
		USB: "04b8:08a1", Backend: "epkowa", ExpectDevice: "^test:0$",
		SysfsRoot: fixture, SANEConfigDir: saneDir,
		ConflictingBackends: []string{"epson", "epson2"}, List: true, Timeout: time.Minute,
	}
}
