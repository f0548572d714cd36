package runner

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opsdrill/opsdrill/reports"
)

// reportNames are the files opsdrill writes at the top of a report folder.
var reportNames = []string{JournalFile, JSONFile, JUnitFile, HTMLFile, PDFFile, reports.ManifestName, reports.SignatureName}

// prepareReportDir makes dir ready for a run: it creates it, and removes
// the files a previous run wrote there, so the evidence of two runs never
// mixes. It removes only opsdrill's own files: its fixed report names, and
// the files the previous run's manifest.json (or, for a run killed before
// it wrote one, its journal) lists, except those it marks kept. Anything
// else in the folder stays. It returns what it removed, for the user to be
// told, and the files that stay (kept: the next manifest marks them so).
func prepareReportDir(dir string) (removed, kept []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("report folder: %w", err)
	}
	own := map[string]bool{}
	for _, name := range reportNames {
		own[name] = true
	}
	for _, p := range previousFiles(dir) {
		own[p] = true
	}
	for _, p := range sortedSet(own) {
		abs := filepath.Join(dir, filepath.FromSlash(p))
		info, err := os.Lstat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("report folder: %w", err)
		}
		if !info.Mode().IsRegular() {
			continue // not a file opsdrill wrote
		}
		if err := os.Remove(abs); err != nil {
			return nil, nil, fmt.Errorf("report folder: %w", err)
		}
		removed = append(removed, p)
		removeEmptyParents(dir, filepath.Dir(abs))
	}
	kept, err = remainingFiles(dir)
	return removed, kept, err
}

// previousFiles lists the files, relative to dir and slash-separated, that
// the run which last wrote dir produced.
func previousFiles(dir string) []string {
	var out []string
	if data, err := os.ReadFile(filepath.Join(dir, reports.ManifestName)); err == nil {
		var m reports.Manifest
		if json.Unmarshal(data, &m) == nil {
			for _, f := range m.Files {
				if !f.Kept {
					out = append(out, f.Path)
				}
			}
		}
	}
	if f, err := os.Open(filepath.Join(dir, JournalFile)); err == nil {
		if paths, err := journalEvidencePaths(f); err == nil {
			out = append(out, paths...)
		}
		f.Close()
	}
	// Only plain paths inside the folder: a manifest is data, not orders.
	kept := out[:0]
	for _, p := range out {
		clean := path.Clean(p)
		if clean == p && filepath.IsLocal(filepath.FromSlash(p)) {
			kept = append(kept, p)
		}
	}
	return kept
}

// journalEvidencePaths lists the evidence files a journal names. It reads
// the journal as reports.ReadJournal does (only the last line may be torn;
// an empty journal is an error) but decodes only the evidence paths: a
// report folder written again is read before every run and every merge,
// and building the whole run from its journal cost more than the rest of
// getting the folder ready.
func journalEvidencePaths(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64*1024*1024)
	var out []string
	var pending error
	line, events := 0, 0
	for sc.Scan() {
		line++
		if pending != nil {
			return nil, pending
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		var ev struct {
			Result *struct {
				Evidence []struct {
					Path string `json:"path"`
				} `json:"evidence"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			pending = fmt.Errorf("journal line %d: %w", line, err)
			continue
		}
		events++
		if ev.Result == nil {
			continue
		}
		for _, e := range ev.Result.Evidence {
			if e.Path != "" {
				out = append(out, e.Path)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if events == 0 {
		return nil, errors.New("journal is empty")
	}
	return out, nil
}

// removeEmptyParents removes folders left empty between d and dir (not dir
// itself): the artifacts/<scenario>/ folders of a previous run.
func removeEmptyParents(dir, d string) {
	root := filepath.Clean(dir)
	for d = filepath.Clean(d); d != root && strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
		if os.Remove(d) != nil { // fails when not empty: stop there
			return
		}
	}
}

// remainingFiles lists the files left in dir (slash-separated, relative),
// and refuses, before anything runs, a folder the manifest could not list
// at the end: a report folder holds plain files only.
func remainingFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("report folder: %w", err)
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("report folder %s: %s is not a regular file; a report folder holds plain files only (choose another --report-dir)", dir, p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	return out, err
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// notOwn lists the files of dir that are neither a report name nor
// evidence run cites: files opsdrill did not write.
func notOwn(dir string, run *reports.Run) ([]string, error) {
	own := map[string]bool{}
	for _, name := range reportNames {
		own[name] = true
	}
	for _, sc := range run.Scenarios {
		for _, st := range sc.Steps {
			for _, ev := range st.Evidence {
				own[ev.Path] = true
			}
		}
	}
	files, err := remainingFiles(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		if !own[f] {
			out = append(out, f)
		}
	}
	return out, nil
}

// replacedNotice says what a run replaces in its report folder.
func replacedNotice(dir string, removed []string) string {
	if len(removed) == 0 {
		return ""
	}
	var names, artifacts []string
	for _, p := range removed {
		if strings.Contains(p, "/") {
			artifacts = append(artifacts, p)
		} else {
			names = append(names, p)
		}
	}
	msg := fmt.Sprintf("%s holds a previous run's reports; replacing %s", dir, strings.Join(names, ", "))
	if len(artifacts) > 0 {
		if len(names) > 0 {
			msg += " and "
		}
		msg += fmt.Sprintf("%d artifact(s) it listed", len(artifacts))
	}
	return msg + " (other files in the folder are kept)"
}
