package lease

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// StateVersion is the version of the state file format.
const StateVersion = 1

// State is everything portgate persists.
type State struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
	// Floors is the authenticator's replay floor per user: the highest
	// TOTP counter accepted so far.
	Floors map[string]uint64 `json:"replay_floors,omitempty"`
}

// File is a state file written atomically: a temporary file in the same
// folder is written, synced and renamed over the old one, and the folder
// is synced, so after a crash the file holds either the old or the new
// state.
type File struct {
	Path string
}

// Load reads the state. A missing file is an empty state.
func (f File) Load() (State, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return State{Version: StateVersion}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("state file: %w", err)
	}
	var s State
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return State{}, fmt.Errorf("state file %s: %w", f.Path, err)
	}
	if s.Version != StateVersion {
		return State{}, fmt.Errorf("state file %s: version %d, this portgate reads version %d", f.Path, s.Version, StateVersion)
	}
	for i, l := range s.Leases {
		if l.ID == "" || !l.IP.IsValid() || l.Port == 0 || l.Expires.IsZero() {
			return State{}, fmt.Errorf("state file %s: lease %d is incomplete", f.Path, i)
		}
	}
	return s, nil
}

// Save writes s atomically, readable by the owner only (it holds token
// hashes and who connects from where).
func (f File) Save(s State) error {
	s.Version = StateVersion
	if s.Leases == nil {
		s.Leases = []Lease{}
	}
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	dir := filepath.Dir(f.Path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state file: sync folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("state file: sync folder: %w", err)
	}
	return nil
}
