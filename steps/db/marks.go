package db

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// Drill marks are instants several steps of one scenario must line up:
// when the failover was triggered and completed, when the endpoint's DNS
// switched. A step appends them as JSON lines to marks.jsonl in the
// scenario's artifact folder; db.verify draws them on its timeline and
// dns.watch (steps/dns) measures its switch from the latest trigger. The
// file is the whole contract: {"kind","label","step","unix_us","at"}.
type mark struct {
	Kind   string `json:"kind"` // failover.trigger, failover.complete, dns.switch
	Label  string `json:"label"`
	Step   string `json:"step"`
	UnixUS int64  `json:"unix_us"`
	At     string `json:"at"`
}

// Mark kinds.
const (
	markTrigger  = "failover.trigger"
	markComplete = "failover.complete"
)

const marksFile = "marks.jsonl"

func marksPath(env *steps.Env) (string, error) {
	abs, _, err := env.ArtifactPath(marksFile)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(abs), marksFile), nil
}

// addMark appends a mark; one write(2) of one line with O_APPEND, so
// concurrent steps never interleave.
func addMark(env *steps.Env, kind, label string, at time.Time) error {
	path, err := marksPath(env)
	if err != nil {
		return err
	}
	line, err := json.Marshal(mark{Kind: kind, Label: label, Step: env.StepID, UnixUS: at.UnixMicro(), At: at.UTC().Format(time.RFC3339Nano)})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(line, '\n'))
	return errors.Join(err, f.Close())
}

// readMarks returns the scenario's marks so far; none when there is no
// file yet.
func readMarks(env *steps.Env) ([]mark, error) {
	path, err := marksPath(env)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mark
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m mark
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Kind != "" {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}
