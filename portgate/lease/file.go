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

// Change is one journal record: what one open, close or expiry changed.
type Change struct {
	Add    []Lease           `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
	Floors map[string]uint64 `json:"replay_floors,omitempty"`
}

// File persists a State as a snapshot (Path) plus a journal of changes
// (Path + ".journal"), so an open or a close costs one appended line and
// one fsync however many leases are live, not a rewrite of them all.
//
// The snapshot is written atomically: a temporary file in the same folder
// is written, synced and renamed over the old one, and the folder is
// synced, so it is always either the old or the new one. Each change is
// one write(2) of one line, synced before the caller goes on; a crash can
// at worst tear the last line, which Load then ignores (that change was
// never acknowledged). Replaying is idempotent (adds replace by id, removes
// of unknown ids are no-ops, floors only rise), so a crash between a new
// snapshot and the journal's truncation loses nothing.
type File struct {
	Path string

	journal *os.File
	records int
}

// JournalPath is where changes since the snapshot go.
func (f *File) JournalPath() string { return f.Path + ".journal" }

// Load reads the snapshot and replays the journal. Missing files are an
// empty state.
func (f *File) Load() (State, error) {
	s := State{Version: StateVersion}
	b, err := os.ReadFile(f.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return State{}, fmt.Errorf("state file: %w", err)
	default:
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return State{}, fmt.Errorf("state file %s: %w", f.Path, err)
		}
		if s.Version != StateVersion {
			return State{}, fmt.Errorf("state file %s: version %d, this portgate reads version %d", f.Path, s.Version, StateVersion)
		}
	}
	for i, l := range s.Leases {
		if err := checkLease(l); err != nil {
			return State{}, fmt.Errorf("state file %s: lease %d: %w", f.Path, i, err)
		}
	}
	jb, err := os.ReadFile(f.JournalPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return State{}, fmt.Errorf("state journal: %w", err)
	}
	lines := bytes.Split(jb, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var c Change
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		err := dec.Decode(&c)
		if err == nil {
			for _, l := range c.Add {
				if err = checkLease(l); err != nil {
					break
				}
			}
		}
		if err != nil {
			if i == len(lines)-1 {
				// A torn last write: that change was never acknowledged.
				break
			}
			return State{}, fmt.Errorf("state journal %s: line %d: %w", f.JournalPath(), i+1, err)
		}
		s = s.apply(c)
	}
	return s, nil
}

func checkLease(l Lease) error {
	if l.ID == "" || !l.IP.IsValid() || l.Port == 0 || l.Expires.IsZero() {
		return errors.New("incomplete lease")
	}
	return nil
}

// apply returns s with c applied.
func (s State) apply(c Change) State {
	drop := map[string]bool{}
	for _, id := range c.Remove {
		drop[id] = true
	}
	for _, l := range c.Add {
		drop[l.ID] = true
	}
	kept := s.Leases[:0:0]
	for _, l := range s.Leases {
		if !drop[l.ID] {
			kept = append(kept, l)
		}
	}
	s.Leases = append(kept, c.Add...)
	for u, v := range c.Floors {
		if s.Floors == nil {
			s.Floors = map[string]uint64{}
		}
		if v > s.Floors[u] {
			s.Floors[u] = v
		}
	}
	return s
}

// Save writes s as the new snapshot, atomically and readable by the owner
// only (it holds token hashes and who connects from where), then empties
// the journal.
func (f *File) Save(s State) error {
	s.Version = StateVersion
	if s.Leases == nil {
		s.Leases = []Lease{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := WriteFileAtomic(f.Path, append(b, '\n')); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	// The snapshot holds everything: start the journal afresh.
	if f.journal != nil {
		if err := f.journal.Truncate(0); err != nil {
			return fmt.Errorf("state journal: %w", err)
		}
		if err := f.journal.Sync(); err != nil {
			return fmt.Errorf("state journal: %w", err)
		}
	} else if err := os.Remove(f.JournalPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state journal: %w", err)
	}
	f.records = 0
	return nil
}

// Append records c in the journal and syncs it. It returns how many
// records the journal holds, so the caller can decide to Save a snapshot.
func (f *File) Append(c Change) (int, error) {
	if f.journal == nil {
		j, err := os.OpenFile(f.JournalPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return 0, fmt.Errorf("state journal: %w", err)
		}
		if err := syncDir(filepath.Dir(f.Path)); err != nil {
			j.Close()
			return 0, err
		}
		f.journal = j
	}
	b, err := json.Marshal(c)
	if err != nil {
		return 0, fmt.Errorf("state journal: %w", err)
	}
	if _, err := f.journal.Write(append(b, '\n')); err != nil {
		return 0, fmt.Errorf("state journal: %w", err)
	}
	if err := f.journal.Sync(); err != nil {
		return 0, fmt.Errorf("state journal: %w", err)
	}
	f.records++
	return f.records, nil
}

// Close releases the journal.
func (f *File) Close() error {
	if f.journal == nil {
		return nil
	}
	err := f.journal.Close()
	f.journal = nil
	return err
}

// WriteFileAtomic replaces path with b, readable by the owner only: a
// temporary file in the same folder is written, synced and renamed over
// it, and the folder is synced, so path is always either the old or the new
// content.
func WriteFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	done = true
	return syncDir(dir)
}

func syncDir(dir string) error {
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
