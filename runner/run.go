package runner

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/runner/redact"
	"github.com/opsdrill/opsdrill/steps"
)

// Options configure a run.
type Options struct {
	// ReportDir receives journal.jsonl, report.json, junit.xml and
	// artifacts/. Default "out". Only opsdrill's own files in it are
	// replaced (see prepareReportDir).
	ReportDir string
	// Notice receives messages for the user before the run starts, such
	// as what a run replaces in the report folder.
	Notice func(msg string)
	// Parallel is how many scenarios run at once. Default 1.
	Parallel int
	// Vars override scenario vars (vars files, then --var).
	Vars map[string]any
	// Secrets gives secret values directly (vars files' secrets:); they win
	// over the scenario's env/file sources.
	Secrets map[string]string
	// Sinks receive every (redacted) event, e.g. the console.
	Sinks []reports.Sink
	// Progress receives live status lines of running steps.
	Progress func(scenario int, phase, id, status string)
	// Skip decides which scenarios are filtered out (tags); the reason is
	// reported.
	Skip func(*Scenario) (bool, string)
	// ToolVersion, ToolCommit and Args are recorded in the report.
	ToolVersion string
	ToolCommit  string
	// VarsFiles are the vars files read, with their hashes, for the report.
	VarsFiles []reports.FileRef
	Args      []string
	// CleanupTimeout bounds each scenario's cleanup phase. Default 5m.
	CleanupTimeout time.Duration
	// HardStop, when cancelled, aborts cleanup too (a second Ctrl-C).
	HardStop context.Context
	// StopGrace is how long a cancelled step may take to return before it
	// is abandoned. Default 10s.
	StopGrace time.Duration
	// Waivers excuse known failures until they expire.
	Waivers []reports.Waiver
	// SignKey, when set, signs the report folder's manifest.
	SignKey ed25519.PrivateKey
	// Shard is recorded when the scenarios are one shard of a split run
	// (SelectShard).
	Shard *reports.Shard
	// Reaper is recorded: what kills the processes a run leaves, even
	// when opsdrill is killed (runner/reaper: cgroup or environment).
	Reaper string
}

// Result is what a run produced.
type Result struct {
	Run       *reports.Run
	Redactor  *redact.Redactor
	ReportDir string
}

// Files written into the report folder.
const (
	JournalFile = "journal.jsonl"
	JSONFile    = "report.json"
	JUnitFile   = "junit.xml"
	HTMLFile    = "report.html"
	PDFFile     = "report.pdf"
	ArtifactDir = "artifacts"
)

// Run executes the scenarios and writes the reports. It returns an error
// only when nothing could be run (bad input, unwritable report folder); a
// run whose checks fail is a successful call with a failed Run.
func Run(ctx context.Context, scenarios []*Scenario, opts Options) (*Result, error) {
	if opts.ReportDir == "" {
		opts.ReportDir = "out"
	}
	if opts.Parallel < 1 {
		opts.Parallel = 1
	}
	if opts.CleanupTimeout <= 0 {
		opts.CleanupTimeout = 5 * time.Minute
	}
	if opts.HardStop == nil {
		opts.HardStop = context.Background()
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	red := &redact.Redactor{}
	// Scenarios filtered out (tags) run nothing: their secrets are not
	// needed, so not required.
	skipped := make([]bool, len(scenarios))
	for i, sc := range scenarios {
		if opts.Skip != nil {
			skipped[i], _ = opts.Skip(sc)
		}
	}
	secretVals, err := resolveSecrets(scenarios, skipped, opts.Secrets, red)
	if err != nil {
		return nil, err
	}
	replaced, kept, err := prepareReportDir(opts.ReportDir)
	if err != nil {
		return nil, err
	}
	if msg := replacedNotice(opts.ReportDir, replaced); msg != "" && opts.Notice != nil {
		opts.Notice(msg)
	}
	journal, err := reports.OpenJournal(filepath.Join(opts.ReportDir, JournalFile))
	if err != nil {
		return nil, fmt.Errorf("report folder: %w", err)
	}
	// Evidence that cannot be written stops the run at once, as an
	// interrupt would (cleanup still runs), instead of being found missing
	// at the end.
	ctx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	journal.OnError(func(err error) { stopRun(&EvidenceError{Err: err}) })
	builder := reports.NewBuilder()
	em := &emitter{red: red, sinks: append([]reports.Sink{journal, builder}, opts.Sinks...)}
	host, _ := os.Hostname()
	runID := newRunID()
	userName, uid := currentUser()
	em.emit(&reports.Event{Type: reports.EventRunStart, Run: &reports.RunInfo{
		ToolVersion: opts.ToolVersion, ToolCommit: opts.ToolCommit, RunID: runID, Host: host, User: userName, UID: uid,
		Args: opts.Args, VarsFiles: opts.VarsFiles, Waivers: opts.Waivers, Shard: opts.Shard, Reaper: opts.Reaper,
	}})
	hosts := &hostRecord{}
	// Where the scenario files stand in git is asked beside the run.
	gitDone := make(chan map[string]*reports.GitRef, 1)
	go func() {
		files := make([]string, len(scenarios))
		for i, sc := range scenarios {
			files[i] = sc.File
		}
		gitDone <- gitRefs(context.WithoutCancel(ctx), files)
	}()

	env := environMap()
	absDir, _ := filepath.Abs(opts.ReportDir)
	statuses := make([]string, len(scenarios))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < opts.Parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				sr := &scenarioRun{
					ctx: ctx, opts: &opts, em: em, red: red, idx: i, sc: scenarios[i],
					secrets: secretVals[i], env: env, reportDir: absDir, runID: runID, hosts: hosts,
				}
				statuses[i] = sr.run()
			}
		}()
	}
	for i := range scenarios {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	status := reports.StatusPassed
	for _, s := range statuses {
		switch s {
		case reports.StatusInterrupted:
			status = reports.StatusInterrupted
		case reports.StatusFailed, reports.StatusDeviated, reports.StatusNotStarted:
			if status != reports.StatusInterrupted {
				status = reports.StatusFailed
			}
		}
	}
	if ctx.Err() != nil {
		status = reports.StatusInterrupted
	}
	em.emit(&reports.Event{Type: reports.EventRunEnd, Status: status, Hosts: hosts.hosts(ctx), Git: <-gitDone})
	jerr := journal.Close()
	run := builder.Run(time.Now())
	// The reports are written even when the journal failed: they may be
	// all the evidence left.
	werr := writeReports(opts.ReportDir, run, opts.SignKey, kept)
	if jerr != nil {
		return nil, errors.Join(&EvidenceError{Err: jerr}, werr)
	}
	if werr != nil {
		return nil, &EvidenceError{Err: werr}
	}
	return &Result{Run: run, Redactor: red, ReportDir: opts.ReportDir}, nil
}

// EvidenceError is a report file that could not be written. The run stops
// as soon as it happens; what was written before is kept.
type EvidenceError struct{ Err error }

func (e *EvidenceError) Error() string {
	return "evidence could not be written, the run was stopped: " + e.Err.Error()
}

func (e *EvidenceError) Unwrap() error { return e.Err }

// WriteReports writes report.json, junit.xml and report.html for run into
// dir, each atomically (temp file and rename), so a reader never sees half
// a report, then manifest.json over every file of the folder, signed when
// key is given.
func WriteReports(dir string, run *reports.Run, key ed25519.PrivateKey) error {
	return writeReports(dir, run, key, nil)
}

// writeReports is WriteReports for a run that knows which files of the
// folder are not its own (kept).
func writeReports(dir string, run *reports.Run, key ed25519.PrivateKey, kept []string) error {
	if key != nil {
		run.Signer = reports.KeyFingerprint(key.Public().(ed25519.PublicKey))
	}
	if err := writeAtomic(filepath.Join(dir, JSONFile), func(f *os.File) error { return reports.WriteJSON(f, run) }); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, JUnitFile), func(f *os.File) error { return reports.WriteJUnit(f, run) }); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, HTMLFile), func(f *os.File) error {
		return reports.WriteHTML(f, run, reports.HTMLOptions{Dir: dir})
	}); err != nil {
		return err
	}
	if kept == nil {
		if _, err := os.Stat(filepath.Join(dir, reports.ManifestName)); err == nil {
			// The folder's manifest knows which files are not opsdrill's.
			return reports.WriteManifest(dir, run.RunID, key)
		}
		// No manifest (the run was killed before writing one): what the
		// run neither names nor cites as evidence is not its own.
		var err error
		if kept, err = notOwn(dir, run); err != nil {
			return err
		}
	}
	return reports.WriteManifestKept(dir, run.RunID, key, kept)
}

func writeAtomic(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// resolveSecrets reads every scenario's secrets before anything runs, so a
// missing secret is bad input rather than a failure half-way through a drill.
func resolveSecrets(scenarios []*Scenario, skipped []bool, given map[string]string, red *redact.Redactor) ([]map[string]any, error) {
	out := make([]map[string]any, len(scenarios))
	var probs Problems
	for _, v := range given {
		red.Add(v)
	}
	for i, sc := range scenarios {
		vals := map[string]any{}
		if skipped[i] {
			out[i] = vals
			continue
		}
		for name, src := range sc.Secrets {
			v, ok := given[name]
			switch {
			case ok:
			case src.Env != "":
				v, ok = os.LookupEnv(src.Env)
				if (!ok || v == "") && src.Optional {
					vals[name] = ""
					continue
				}
				if !ok || v == "" {
					probs = append(probs, src.Pos.problem("secrets.%s: environment variable %s is not set", name, src.Env))
					continue
				}
			default:
				b, err := os.ReadFile(src.File)
				if errors.Is(err, os.ErrNotExist) && src.Optional {
					vals[name] = ""
					continue
				}
				if err != nil {
					probs = append(probs, src.Pos.problem("secrets.%s: %s", name, err))
					continue
				}
				v = strings.TrimRight(string(b), "\r\n")
			}
			if !redact.Acceptable(v) {
				probs = append(probs, src.Pos.problem("secrets.%s: value is shorter than %d characters and could not be redacted reliably", name, redact.MinLen))
				continue
			}
			red.Add(v)
			vals[name] = v
		}
		out[i] = vals
	}
	if len(probs) > 0 {
		probs.Sort()
		return nil, probs
	}
	return out, nil
}

// emitter serialises events, numbers and redacts them, and fans them out.
type emitter struct {
	mu    sync.Mutex
	seq   int64
	red   *redact.Redactor
	sinks []reports.Sink
}

func (e *emitter) emit(ev *reports.Event) {
	reports.PlainEvent(ev)
	redactEvent(e.red, ev)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	ev.Seq = e.seq
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	for _, s := range e.sinks {
		s.Emit(ev)
	}
}

func redactEvent(r *redact.Redactor, ev *reports.Event) {
	if r.Len() == 0 {
		return
	}
	for i := range ev.Hosts {
		h := &ev.Hosts[i]
		h.Ref, h.Address = r.String(h.Ref), r.String(h.Address)
		for j := range h.Steps {
			h.Steps[j] = r.String(h.Steps[j])
		}
	}
	ev.Line = r.String(ev.Line)
	ev.Error = r.String(ev.Error)
	if ri := ev.Run; ri != nil {
		// The command line may carry a secret (--var token=...).
		args := make([]string, len(ri.Args))
		for i, a := range ri.Args {
			args[i] = r.String(a)
		}
		ri.Args = args
	}
	if si := ev.ScenarioInfo; si != nil && si.Vars != nil {
		si.Vars, _ = r.Value(si.Vars).(map[string]any)
	}
	if res := ev.Result; res != nil {
		res.Error = r.String(res.Error)
		res.SkipReason = r.String(res.SkipReason)
		for i := range res.AttemptLog {
			res.AttemptLog[i].Error = r.String(res.AttemptLog[i].Error)
		}
		if res.Outputs != nil {
			res.Outputs, _ = r.Value(res.Outputs).(map[string]any)
		}
		for i := range res.Expectations {
			x := &res.Expectations[i]
			x.Expr = r.String(x.Expr)
			x.Error = r.String(x.Error)
			for k, v := range x.Values {
				x.Values[k] = r.String(v)
			}
		}
		for i := range res.Evidence {
			redactEvidence(r, &res.Evidence[i])
		}
		for i := range res.Figures {
			redactFigure(r, &res.Figures[i])
		}
	}
}

func redactFigure(r *redact.Redactor, f *reports.Figure) {
	f.Text = r.String(f.Text)
	f.Phrase = r.String(f.Phrase)
	f.Value = r.Value(f.Value)
	for i := range f.Limits {
		l := &f.Limits[i]
		l.Expr = r.String(l.Expr)
		l.Text = r.String(l.Text)
		l.Value = r.Value(l.Value)
	}
}

func redactEvidence(r *redact.Redactor, ev *steps.Evidence) {
	ev.Title = r.String(ev.Title)
	ev.Text = r.String(ev.Text)
	if ev.Table != nil {
		t := &steps.Table{Columns: make([]string, len(ev.Table.Columns)), Rows: make([][]string, len(ev.Table.Rows))}
		for i, c := range ev.Table.Columns {
			t.Columns[i] = r.String(c)
		}
		for i, row := range ev.Table.Rows {
			t.Rows[i] = make([]string, len(row))
			for j, c := range row {
				t.Rows[i][j] = r.String(c)
			}
		}
		ev.Table = t
	}
	for i := range ev.Series {
		ev.Series[i].Name = r.String(ev.Series[i].Name)
	}
	for i := range ev.Marks {
		ev.Marks[i].Label = r.String(ev.Marks[i].Label)
	}
}

var runCounter atomic.Int64

func newRunID() string {
	return fmt.Sprintf("%s-%d-%d", time.Now().UTC().Format("20060102T150405Z"), os.Getpid(), runCounter.Add(1))
}

func environMap() map[string]any {
	out := map[string]any{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// stack returns a short panic trace for a step that panicked.
func stack() string {
	lines := strings.Split(string(debug.Stack()), "\n")
	if len(lines) > 16 {
		lines = lines[:16]
	}
	return strings.Join(lines, "\n")
}
