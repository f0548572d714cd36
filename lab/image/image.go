// Package image names the opsdrill lab image and checks that it is present.
//
// The image is built offline by build.sh in this folder (make lab-images):
// debootstrap a Debian bookworm root file system from the apt mirror the
// machine already uses, install packages.txt, docker import. Its tag is a hash
// of the build inputs, embedded here, so a binary always asks for the image
// built from the sources it was compiled with, and a stale image is reported
// instead of silently used.
package image

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"strings"
)

// Repository is the local repository name of the lab image.
const Repository = "opsdrill-lab"

// EnvImage names an environment variable that overrides the image reference,
// for an image built elsewhere.
const EnvImage = "OPSDRILL_LAB_IMAGE"

// BuildHint tells a user how to get the image.
const BuildHint = "run `make lab-images` (or lab/image/build.sh) to build it; no registry is needed"

// inputs are hashed in this order; build.sh's image_hash must agree.
var inputs = []string{"packages.txt", "build.sh", "Dockerfile", "lab-init"}

//go:embed packages.txt build.sh Dockerfile lab-init
var files embed.FS

// Hash returns the 12 hex digit hash of the build inputs.
func Hash() string {
	h := sha256.New()
	for _, name := range inputs {
		b, err := files.ReadFile(name)
		if err != nil {
			panic("image: embedded file missing: " + name) // caught by any test
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Ref returns the image reference the lab uses: opsdrill-lab:<hash>.
func Ref() string { return Repository + ":" + Hash() }

// Packages returns the Debian packages installed in the image.
func Packages() []string {
	b, err := files.ReadFile("packages.txt")
	if err != nil {
		panic("image: embedded packages.txt missing")
	}
	var pkgs []string
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			pkgs = append(pkgs, line)
		}
	}
	return pkgs
}
