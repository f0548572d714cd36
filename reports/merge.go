package reports

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// ShardJournal is one shard's report folder, read for merging: its journal
// events and the run they give.
type ShardJournal struct {
	Dir    string
	Events []*Event
	Run    *Run
}

// ReadShardJournal reads every event of a journal (a torn last line is
// ignored, as by ReadJournal) and folds them into a run.
func ReadShardJournal(dir string, r io.Reader) (*ShardJournal, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64*1024*1024)
	b := NewBuilder()
	var events []*Event
	var last time.Time
	var pending error
	line := 0
	for sc.Scan() {
		line++
		if pending != nil {
			return nil, pending
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		ev := &Event{}
		if err := json.Unmarshal(sc.Bytes(), ev); err != nil {
			pending = fmt.Errorf("journal line %d: %w", line, err)
			continue
		}
		events = append(events, ev)
		b.Emit(ev)
		last = ev.Time
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, errors.New("journal is empty")
	}
	return &ShardJournal{Dir: dir, Events: events, Run: b.Run(last)}, nil
}

// MergeOptions tune Merge.
type MergeOptions struct {
	// Force merges shards of different scenario sets or tool versions,
	// shards missing, and unsharded runs; what was forced is returned as
	// warnings, and a merge with shards missing cannot pass.
	Force bool
	// RunID and Args are the merged run's.
	RunID string
	Args  []string
}

// Merge combines the journals of the shards of one split run into the
// events of one run: one run_start, every scenario of every shard (ordered
// by file, then name, so the order does not depend on how the set was
// split), one run_end whose status is the worst of the shards'. Shards of
// different scenario sets or tool versions are refused unless forced; two
// folders of the same shard never merge.
func Merge(shards []*ShardJournal, opts MergeOptions) ([]*Event, []string, error) {
	if len(shards) == 0 {
		return nil, nil, errors.New("no shard folders given")
	}
	sort.SliceStable(shards, func(i, j int) bool { return shardIndex(shards[i]) < shardIndex(shards[j]) })
	problems, fatal := mergeProblems(shards)
	if len(fatal) > 0 {
		return nil, nil, errors.New(strings.Join(append(fatal, problems...), "\n"))
	}
	if len(problems) > 0 && !opts.Force {
		return nil, nil, errors.New(strings.Join(append(problems, "(--force merges them anyway)"), "\n"))
	}
	first := shards[0].Run
	info := &RunInfo{ToolVersion: first.ToolVersion, ToolCommit: first.ToolCommit, Waivers: first.Waivers, RunID: opts.RunID, Args: opts.Args}
	started, finished := first.Started, first.Finished
	var hosts, users, uids, reapers []string
	var touched []HostRef
	gitRefs := map[string]*GitRef{}
	status := StatusPassed
	type scenarioKey struct {
		file, name string
		shard, idx int
	}
	var order []scenarioKey
	for si, sh := range shards {
		r := sh.Run
		if r.Started.Before(started) {
			started = r.Started
		}
		if r.Finished.After(finished) {
			finished = r.Finished
		}
		hosts = appendNew(hosts, r.Host)
		users = appendNew(users, r.User)
		uids = appendNew(uids, r.UID)
		for _, vf := range r.VarsFiles {
			if !slices.Contains(info.VarsFiles, vf) {
				info.VarsFiles = append(info.VarsFiles, vf)
			}
		}
		touched = mergeHosts(touched, r.Hosts)
		for _, sc := range r.Scenarios {
			if sc.Git != nil {
				gitRefs[sc.File] = sc.Git
			}
		}
		status = worseRun(status, r.Status)
		reapers = appendNew(reapers, r.Reaper)
		info.Merged = append(info.Merged, ShardRef{Dir: sh.Dir, RunID: r.RunID, Index: shardIndex(sh), Host: r.Host,
			Status: r.Status, Scenarios: len(r.Scenarios), Started: r.Started, Finished: r.Finished})
		for _, ev := range sh.Events {
			if ev.Type == EventScenarioStart && ev.ScenarioInfo != nil {
				order = append(order, scenarioKey{ev.ScenarioInfo.File, ev.ScenarioInfo.Name, si, ev.Scenario})
			}
		}
	}
	if len(problems) > 0 && missingShards(shards) != "" && status == StatusPassed {
		status = StatusFailed
	}
	info.Host = strings.Join(hosts, ", ")
	info.User = strings.Join(users, ", ")
	info.UID = strings.Join(uids, ", ")
	// The merged run is as protected as its least protected shard.
	switch {
	case len(reapers) == 1:
		info.Reaper = reapers[0]
	case slices.Contains(reapers, "environment"):
		info.Reaper = "environment"
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.name != b.name {
			return a.name < b.name
		}
		return a.shard < b.shard
	})
	index := make([]map[int]int, len(shards))
	for i := range index {
		index[i] = map[int]int{}
	}
	for n, k := range order {
		index[k.shard][k.idx] = n
	}
	out := make([]*Event, 0, 2+sumEvents(shards))
	out = append(out, &Event{Type: EventRunStart, Time: started, Run: info})
	for si, sh := range shards {
		for _, ev := range sh.Events {
			if ev.Type == EventRunStart || ev.Type == EventRunEnd {
				continue
			}
			n, ok := index[si][ev.Scenario]
			if !ok {
				continue
			}
			cp := *ev
			cp.Scenario = n
			out = append(out, &cp)
		}
	}
	out = append(out, &Event{Type: EventRunEnd, Time: finished, Status: status, Hosts: touched, Git: gitRefs})
	for i, ev := range out {
		ev.Seq = int64(i + 1)
	}
	return out, problems, nil
}

func sumEvents(shards []*ShardJournal) int {
	n := 0
	for _, s := range shards {
		n += len(s.Events)
	}
	return n
}

func shardIndex(s *ShardJournal) int {
	if s.Run.Shard == nil {
		return 0
	}
	return s.Run.Shard.Index
}

// mergeProblems finds what keeps shards from being one run: problems may
// be forced, fatal ones never.
func mergeProblems(shards []*ShardJournal) (problems, fatal []string) {
	first := shards[0]
	seen := map[int]string{}
	for _, sh := range shards {
		r := sh.Run
		if r.Shard == nil {
			problems = append(problems, fmt.Sprintf("%s: not a shard (made without run --shard K/N)", sh.Dir))
			continue
		}
		if prev, dup := seen[r.Shard.Index]; dup {
			fatal = append(fatal, fmt.Sprintf("%s and %s are both shard %d/%d", prev, sh.Dir, r.Shard.Index, r.Shard.Total))
		}
		seen[r.Shard.Index] = sh.Dir
		if f := first.Run.Shard; f != nil && sh != first {
			if r.Shard.Set != f.Set {
				problems = append(problems, fmt.Sprintf("%s: another scenario set (%d scenarios, set %.12s) than %s (%d scenarios, set %.12s): the shards did not run the same files",
					sh.Dir, r.Shard.SetSize, r.Shard.Set, first.Dir, f.SetSize, f.Set))
			}
			if r.Shard.Total != f.Total {
				problems = append(problems, fmt.Sprintf("%s: shard of %d, %s is a shard of %d", sh.Dir, r.Shard.Total, first.Dir, f.Total))
			}
		}
		if r.ToolVersion != first.Run.ToolVersion {
			problems = append(problems, fmt.Sprintf("%s: made by opsdrill %s, %s by %s", sh.Dir, r.ToolVersion, first.Dir, first.Run.ToolVersion))
		}
		if !sameWaivers(r.Waivers, first.Run.Waivers) {
			problems = append(problems, fmt.Sprintf("%s: ran with other waivers than %s", sh.Dir, first.Dir))
		}
	}
	if m := missingShards(shards); m != "" {
		problems = append(problems, m)
	}
	return problems, fatal
}

// missingShards names the shards of a split run no folder was given for.
func missingShards(shards []*ShardJournal) string {
	f := shards[0].Run.Shard
	if f == nil {
		return ""
	}
	have := map[int]bool{}
	for _, sh := range shards {
		if sh.Run.Shard != nil {
			have[sh.Run.Shard.Index] = true
		}
	}
	var missing []string
	for i := 1; i <= f.Total; i++ {
		if !have[i] {
			missing = append(missing, fmt.Sprintf("%d/%d", i, f.Total))
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return "shards missing: " + strings.Join(missing, ", ")
}

func sameWaivers(a, b []Waiver) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Scenario != b[i].Scenario || a[i].Step != b[i].Step || a[i].Expires != b[i].Expires || a[i].Justification != b[i].Justification {
			return false
		}
	}
	return true
}

// worseRun orders run statuses: interrupted, failed, passed.
func worseRun(a, b string) string {
	rank := func(s string) int {
		switch s {
		case StatusPassed:
			return 0
		case StatusInterrupted:
			return 2
		}
		return 1
	}
	if rank(b) > rank(a) {
		if b != StatusPassed && b != StatusInterrupted {
			return StatusFailed
		}
		return b
	}
	return a
}

func appendNew(list []string, s string) []string {
	if s == "" {
		return list
	}
	for _, e := range list {
		if e == s {
			return list
		}
	}
	return append(list, s)
}

// mergeHosts adds hosts to list, one entry per reference: the shards'
// steps that named it together.
func mergeHosts(list, hosts []HostRef) []HostRef {
	for _, h := range hosts {
		i := slices.IndexFunc(list, func(x HostRef) bool { return x.Ref == h.Ref })
		if i < 0 {
			list = append(list, h)
			continue
		}
		list[i].Steps = append(list[i].Steps, h.Steps...)
		if list[i].HostKey == "" {
			list[i].HostKey, list[i].Address = h.HostKey, h.Address
		}
	}
	return list
}
