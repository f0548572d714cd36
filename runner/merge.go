package runner

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opsdrill/opsdrill/reports"
)

// MergeOptions configure MergeReports.
type MergeOptions struct {
	// Force merges what Merge would refuse (other scenario sets or tool
	// versions, shards missing, folders that do not match their manifest).
	Force bool
	// SignKey signs the merged folder's manifest.
	SignKey ed25519.PrivateKey
	Args    []string
}

// MergeResult is a merged run and what was forced to make it.
type MergeResult struct {
	Run      *reports.Run
	Warnings []string
}

// MergeReports combines shard report folders (run --shard K/N) into one run
// in out: journal.jsonl, report.json, junit.xml, report.html, the shards'
// artifacts, and manifest.json, signed when a key is given. Nothing is
// written to out unless every shard could be read and merged.
func MergeReports(out string, dirs []string, opts MergeOptions) (*MergeResult, error) {
	absOut, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		if abs == absOut {
			return nil, fmt.Errorf("%s: the merged report folder cannot be one of the shard folders", dir)
		}
	}
	// Shards are read (and checked against their manifests) side by side.
	shards := make([]*reports.ShardJournal, len(dirs))
	checks := make([][]string, len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shards[i], errs[i] = readShard(dir)
			checks[i] = checkManifest(dir)
		}()
	}
	wg.Wait()
	var forced []string
	for i := range dirs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		forced = append(forced, checks[i]...)
	}
	if len(forced) > 0 && !opts.Force {
		return nil, fmt.Errorf("%s\n(--force merges them anyway)", strings.Join(forced, "\n"))
	}
	events, warnings, err := reports.Merge(shards, reports.MergeOptions{Force: opts.Force, RunID: newRunID(), Args: opts.Args})
	if err != nil {
		return nil, err
	}
	artifacts, err := shardArtifacts(dirs)
	if err != nil {
		return nil, err
	}
	_, kept, err := prepareReportDir(out)
	if err != nil {
		return nil, err
	}
	// The shards' journals were written as their runs happened; the merged
	// one is written at once, with one fsync rather than one per scenario.
	b := reports.NewBuilder()
	if err := writeAtomic(filepath.Join(out, JournalFile), func(f *os.File) error {
		w := bufio.NewWriterSize(f, 1<<20)
		enc := json.NewEncoder(w)
		for _, ev := range events {
			if err := enc.Encode(ev); err != nil {
				return err
			}
			b.Emit(ev)
		}
		return w.Flush()
	}); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	for rel, src := range artifacts {
		if err := copyFile(src, filepath.Join(out, rel)); err != nil {
			return nil, err
		}
	}
	run := b.Run(events[len(events)-1].Time)
	if err := writeReports(out, run, opts.SignKey, kept); err != nil {
		return nil, err
	}
	return &MergeResult{Run: run, Warnings: append(forced, warnings...)}, nil
}

// checkManifest says what in a shard folder does not match its manifest
// (the signature is the merged report's business: it is signed again).
func checkManifest(dir string) []string {
	v, err := reports.VerifyManifest(dir, nil)
	if err != nil {
		return []string{fmt.Sprintf("%s: no manifest to check the folder against: %v", dir, err)}
	}
	var out []string
	for _, p := range v.Problems() {
		if !strings.HasPrefix(p, "signature") {
			out = append(out, fmt.Sprintf("%s: %s", dir, p))
		}
	}
	return out
}

func readShard(dir string) (*reports.ShardJournal, error) {
	f, err := os.Open(filepath.Join(dir, JournalFile))
	if err != nil {
		return nil, fmt.Errorf("%s: not a report folder: %w", dir, err)
	}
	defer f.Close()
	sh, err := reports.ReadShardJournal(dir, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return sh, nil
}

// shardArtifacts maps every artifact file of the shards (relative path in
// the report folder) to its source. Artifacts are named after their
// scenario, so shards do not collide; the same path with other content in
// two shards is refused.
func shardArtifacts(dirs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, dir := range dirs {
		root := filepath.Join(dir, ArtifactDir)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) && path == root {
					return filepath.SkipDir
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			if prev, dup := out[rel]; dup {
				same, err := sameContent(prev, path)
				if err != nil {
					return err
				}
				if !same {
					return fmt.Errorf("%s and %s: two shards wrote different %s", prev, path, rel)
				}
				return nil
			}
			out[rel] = path
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func sameContent(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if info, err := os.Stat(src); err == nil {
		return os.Chtimes(dst, time.Now(), info.ModTime())
	}
	return nil
}
