package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Lab services written in this repository (cmd/portgate, cmd/lab-rdsapi)
// are built from the source tree at lab up (go build with CGO_ENABLED=0,
// so they run in the Debian image) and copied into their host; an
// environment variable per program names a prebuilt static binary instead.

// Each binary is built once per process and kept in memory: tests bring up
// several labs.
var labBins struct {
	sync.Mutex
	data map[string][]byte
}

// labBinary returns a static linux build of cmd/NAME for the lab's image:
// the file envVar names when set, else built from the source tree found
// from the working folder or the executable upwards.
func labBinary(ctx context.Context, name, envVar string) ([]byte, error) {
	if p := os.Getenv(envVar); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envVar, err)
		}
		return b, nil
	}
	labBins.Lock()
	defer labBins.Unlock()
	if b, ok := labBins.data[name]; ok {
		return b, nil
	}
	hint := fmt.Sprintf("or set %s to a static build (CGO_ENABLED=0 go build ./cmd/%s)", envVar, name)
	src, err := sourceTree(name)
	if err != nil {
		return nil, fmt.Errorf("the lab builds cmd/%s from the opsdrill source tree: %w; run from the checkout, %s", name, err, hint)
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the lab builds cmd/%s at lab up and needs Go (not found: %v); %s", name, err, hint)
	}
	tmp, err := os.MkdirTemp("", "opsdrill-"+name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, name)
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-o", out, "./cmd/"+name)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s for the lab (in %s): %w: %s", name, src, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if labBins.data == nil {
		labBins.data = map[string][]byte{}
	}
	labBins.data[name] = b
	return b, nil
}

// sourceTree finds the opsdrill source tree: a folder with go.mod and
// cmd/NAME, from the working folder or the executable's upwards.
func sourceTree(name string) (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "cmd", name, "main.go")); err == nil {
				if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
					return dir, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("not found from " + strings.Join(starts, " or "))
}

// labFile is a file to copy into a host.
type labFile struct {
	path string // relative to /
	data []byte
	mode int64
}

// unpackFiles copies files into h in one tar stream (no shell).
func unpackFiles(ctx context.Context, h *Host, files []labFile) error {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.path, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := h.ExecCommand(ctx, Command{Args: []string{"tar", "-x", "--no-same-owner", "-C", "/", "-f", "-"}, Stdin: b.Bytes()})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("copy files into %s: %w", h.Name, err)
	}
	return nil
}
