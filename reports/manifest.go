package reports

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Integrity files of a report folder.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
)

// Manifest lists every file of a report folder with its SHA-256, so any
// change, addition or removal after the run is detected. Signed with an
// ed25519 key, it also proves who produced the folder.
type Manifest struct {
	Version   int            `json:"version"`
	RunID     string         `json:"run_id,omitempty"`
	Created   time.Time      `json:"created"`
	Algorithm string         `json:"algorithm"`
	Files     []ManifestFile `json:"files"`
	// PublicKey is the signer's key (base64), for information only:
	// verification uses the key the auditor trusts, not this one.
	PublicKey string `json:"public_key,omitempty"`
}

// ManifestFile is one file of the folder, by its slash-separated path.
type ManifestFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Kept marks a file that was in the folder before the run and is not
	// opsdrill's: it is covered by the manifest, but a later run into the
	// folder leaves it alone.
	Kept bool `json:"kept,omitempty"`
}

// BuildManifest hashes every regular file below dir except the manifest
// and its signature. Links and other special files are refused: a report
// folder holds plain files only.
func BuildManifest(dir, runID string) (*Manifest, error) {
	m := &Manifest{Version: 1, RunID: runID, Created: time.Now().UTC(), Algorithm: "sha256", Files: []ManifestFile{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return nil
		case rel == ManifestName || rel == SignatureName:
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file (a report folder holds plain files only)", rel)
		}
		sum, size, err := hashFile(p)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, ManifestFile{Path: rel, Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return m, nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// WriteManifest writes manifest.json for dir and, with a key, manifest.sig
// (the base64 ed25519 signature of manifest.json's exact bytes). Without a
// key, a stale signature is removed so it cannot vouch for new content.
// Files the folder's current manifest marks kept stay marked.
func WriteManifest(dir, runID string, key ed25519.PrivateKey) error {
	var kept []string
	if data, err := os.ReadFile(filepath.Join(dir, ManifestName)); err == nil {
		var old Manifest
		if json.Unmarshal(data, &old) == nil {
			for _, f := range old.Files {
				if f.Kept {
					kept = append(kept, f.Path)
				}
			}
		}
	}
	return WriteManifestKept(dir, runID, key, kept)
}

// WriteManifestKept is WriteManifest with the files that are not
// opsdrill's (they were in the folder before the run) given.
func WriteManifestKept(dir, runID string, key ed25519.PrivateKey, kept []string) error {
	m, err := BuildManifest(dir, runID)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	isKept := make(map[string]bool, len(kept))
	for _, p := range kept {
		isKept[p] = true
	}
	for i := range m.Files {
		m.Files[i].Kept = isKept[m.Files[i].Path]
	}
	if key != nil {
		m.PublicKey = base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := os.WriteFile(filepath.Join(dir, ManifestName), data, 0o644); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	sigPath := filepath.Join(dir, SignatureName)
	if key == nil {
		if err := os.Remove(sigPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, data)) + "\n"
	return os.WriteFile(sigPath, []byte(sig), 0o644)
}

// Verification is the outcome of VerifyManifest.
type Verification struct {
	Changed, Added, Removed []string
	// Signature is "valid", "invalid", "missing" (a key was given but the
	// folder is unsigned) or "" (no key given).
	Signature string
}

// OK reports whether nothing changed and any requested signature holds.
func (v *Verification) OK() bool {
	return len(v.Changed)+len(v.Added)+len(v.Removed) == 0 && (v.Signature == "" || v.Signature == "valid")
}

// Problems lists what failed, one line each.
func (v *Verification) Problems() []string {
	var out []string
	for _, p := range v.Changed {
		out = append(out, "changed: "+p)
	}
	for _, p := range v.Added {
		out = append(out, "added: "+p)
	}
	for _, p := range v.Removed {
		out = append(out, "removed: "+p)
	}
	switch v.Signature {
	case "invalid":
		out = append(out, "signature: does not match manifest.json for this key")
	case "missing":
		out = append(out, "signature: manifest.sig is missing")
	}
	return out
}

// VerifyManifest checks dir against its manifest, and the signature when
// pub is given.
func VerifyManifest(dir string, pub ed25519.PublicKey) (*Verification, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var want Manifest
	if err := json.Unmarshal(data, &want); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if want.Version != 1 || want.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s: unsupported manifest version %d / algorithm %q", ManifestName, want.Version, want.Algorithm)
	}
	v := &Verification{}
	if pub != nil {
		sig, err := os.ReadFile(filepath.Join(dir, SignatureName))
		switch {
		case errors.Is(err, os.ErrNotExist):
			v.Signature = "missing"
		case err != nil:
			return nil, err
		default:
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sig)))
			if err == nil && ed25519.Verify(pub, data, raw) {
				v.Signature = "valid"
			} else {
				v.Signature = "invalid"
			}
		}
	}
	got, err := BuildManifest(dir, want.RunID)
	if err != nil {
		return nil, err
	}
	have := map[string]ManifestFile{}
	for _, f := range got.Files {
		have[f.Path] = f
	}
	for _, f := range want.Files {
		g, ok := have[f.Path]
		switch {
		case !ok:
			v.Removed = append(v.Removed, f.Path)
		case g.SHA256 != f.SHA256 || g.Size != f.Size:
			v.Changed = append(v.Changed, f.Path)
		}
		delete(have, f.Path)
	}
	for p := range have {
		v.Added = append(v.Added, p)
	}
	sort.Strings(v.Added)
	return v, nil
}

// GenerateKey returns a new ed25519 key pair as PEM: PKCS#8 private key and
// PKIX public key, the forms `openssl genpkey -algorithm ed25519` uses.
func GenerateKey() (private, public []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), nil
}

// ParsePrivateKey reads a PEM PKCS#8 ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("expected a PEM \"PRIVATE KEY\" block (PKCS#8 ed25519)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("expected an ed25519 key, got %T", k)
	}
	return ek, nil
}

// ParsePublicKey reads a PEM PKIX ed25519 public key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("expected a PEM \"PUBLIC KEY\" block (ed25519)")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("expected an ed25519 key, got %T", k)
	}
	return ek, nil
}
