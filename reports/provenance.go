package reports

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
)

// Provenance: who ran a drill, with what, from where. An auditor reads it
// to tie a report to the people, code and hosts behind it.

// FileRef is an input file of the run with its SHA-256.
type FileRef struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// GitRef places a scenario file in its repository: the commit checked
// out, and whether the file differs from it.
type GitRef struct {
	Commit string `json:"commit"`
	// State of the file against Commit: clean, modified or untracked.
	State string `json:"state"`
	// Path of the file inside the repository.
	Path string `json:"path,omitempty"`
}

// HostRef is a host the run acted from or through.
type HostRef struct {
	// Ref is the host reference as scenarios name it (local, lab:cgw,
	// ssh://ops@cgw).
	Ref       string `json:"ref"`
	Transport string `json:"transport"`
	// Address is where the transport connected (host:port, a container).
	Address string `json:"address,omitempty"`
	// HostKey is the fingerprint of the host key verified (SSH).
	HostKey string `json:"host_key,omitempty"`
	// Steps are the steps that named the host, as scenario/step.
	Steps []string `json:"steps,omitempty"`
}

// KeyFingerprint names a signing key the way the report's cover shows it:
// "ed25519 SHA256:" and the unpadded base64 of the SHA-256 of the public
// key's 32 bytes.
func KeyFingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519 SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}
