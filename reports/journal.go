package reports

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// journalSyncEvery bounds how long an event may sit in the page cache before
// it is fsynced. Each event is written with its own write(2) as it happens,
// so a process killed with SIGKILL loses nothing; the periodic fsync covers a
// machine that loses power, without paying a disk flush per event.
const journalSyncEvery = 200 * time.Millisecond

// Journal appends events to journal.jsonl as they happen.
type Journal struct {
	mu    sync.Mutex
	f     *os.File
	buf   []byte
	size  int64 // bytes of whole events written
	dirty bool
	err   error
	onErr func(error)
	stop  chan struct{}
	done  chan struct{}
}

// OpenJournal creates (truncating) the journal file at path.
func OpenJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	j := &Journal{f: f, stop: make(chan struct{}), done: make(chan struct{})}
	go j.syncLoop()
	return j, nil
}

func (j *Journal) syncLoop() {
	defer close(j.done)
	t := time.NewTicker(journalSyncEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			j.mu.Lock()
			if j.dirty && j.err == nil {
				j.fail(j.f.Sync())
				j.dirty = false
			}
			j.mu.Unlock()
		}
	}
}

// OnError sets a function called once, with the first error, when the
// journal cannot be written: the runner stops the run at once rather than
// discover at the end that its evidence was lost. Set it before the first
// event.
func (j *Journal) OnError(fn func(error)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.onErr = fn
}

// fail records the first error; j.mu is held.
func (j *Journal) fail(err error) {
	if err == nil || j.err != nil {
		return
	}
	j.err = fmt.Errorf("%s: %w", filepath.Base(j.f.Name()), err)
	if j.onErr != nil {
		j.onErr(j.err)
	}
}

// Emit writes one event as a JSON line. Scenario and run ends are synced
// at once: they are the events an auditor most needs to survive. After a
// failed write nothing more is written: the file keeps every event before
// the failure, whole.
func (j *Journal) Emit(ev *Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return
	}
	b, err := json.Marshal(ev)
	if err != nil {
		j.fail(fmt.Errorf("event %d (%s): %w", ev.Seq, ev.Type, err))
		return
	}
	j.buf = append(append(j.buf[:0], b...), '\n')
	if n, err := j.f.Write(j.buf); err != nil {
		// A short write leaves part of a line: take it back (best
		// effort), so the file ends with the last whole event.
		if n > 0 {
			_ = j.f.Truncate(j.size)
		}
		j.fail(err)
		return
	}
	j.size += int64(len(j.buf))
	j.dirty = true
	if ev.Type == EventScenarioEnd || ev.Type == EventRunEnd {
		j.fail(j.f.Sync())
		j.dirty = false
	}
}

// Err returns the first write error, if any.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Close syncs and closes the journal.
func (j *Journal) Close() error {
	close(j.stop)
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.fail(j.f.Sync())
	}
	if err := j.f.Close(); err != nil {
		j.fail(err)
	}
	return j.err
}
