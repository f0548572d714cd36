package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	// The lab package brings the lab: transport and the lab failover
	// driver; its RDS API is a service inside the lab, reached by URL.
	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/runner"
	"github.com/opsdrill/opsdrill/runner/reaper"
	_ "github.com/opsdrill/opsdrill/steps/all"
	"github.com/opsdrill/opsdrill/steps/host"
)

func init() { subcommands = append(subcommands, newRunCmd) }

type runFlags struct {
	vars      []string
	setVars   []string
	tags      []string
	skipTags  []string
	parallel  int
	reportDir string
	waivers   string
	signKey   string
	summary   string
	labEnvs   []string
	sshConfig string
	shard     string
}

func newRunCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [flags] PATH...",
		Short: "Run scenarios and write reports",
		Long: `Run executes scenario files (or every *.yaml in a folder) and writes
journal.jsonl, report.json and junit.xml to the report folder.

Exit codes: 0 every scenario passed, 1 a check failed, 2 bad input or usage
(nothing was run), 130 interrupted (cleanup still ran).`,
		Example: `  opsdrill run scenarios/totp-freeotp.yaml
  opsdrill run --vars scenarios/targets/lab.yaml --vars .lab/vars.yaml scenarios/
  opsdrill run --var writers=8 --tags nightly -j 2 --report-dir out/nightly scenarios/
  opsdrill run --lab all --vars scenarios/targets/lab.yaml scenarios/
  opsdrill run --shard 2/4 --report-dir out/shard-2 scenarios/   # then: opsdrill report merge`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScenarios(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.vars, "vars", nil, "vars file (repeatable; later files win)")
	fl.StringArrayVar(&f.setVars, "var", nil, "set a var: name=value (value read as YAML; repeatable)")
	fl.StringSliceVar(&f.tags, "tags", nil, "run only scenarios with one of these tags")
	fl.StringSliceVar(&f.skipTags, "skip-tags", nil, "skip scenarios with any of these tags")
	fl.IntVarP(&f.parallel, "jobs", "j", 1, "scenarios to run at once")
	fl.StringVar(&f.reportDir, "report-dir", "out", "folder for journal.jsonl, report.json, junit.xml, report.html, manifest.json")
	fl.StringVar(&f.waivers, "waivers", "", "waiver file: known failures excused, with a justification, until they expire")
	fl.StringVar(&f.signKey, "sign-key", "", "ed25519 private key (PEM) to sign manifest.json with")
	fl.StringVar(&f.summary, "summary", "", "append a Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)")
	fl.StringSliceVar(&f.labEnvs, "lab", nil, "bring these lab environments up for the run (\"all\" for every one) and down after it; their vars apply after --vars files")
	addSSHConfigFlag(cmd, &f.sshConfig)
	fl.StringVar(&f.shard, "shard", "", "run shard K of N (1-based) of the scenarios: a stable split by hash of each scenario's path and name; merge the shards' folders with `report merge`")
	_ = cmd.MarkFlagFilename("vars", "yaml", "yml")
	_ = cmd.MarkFlagDirname("report-dir")
	_ = cmd.MarkFlagFilename("waivers", "yaml", "yml")
	_ = cmd.MarkFlagFilename("sign-key", "pem", "key")
	return cmd
}

// loadInput reads vars files and scenarios; every problem is reported at once.
func loadInput(paths, varsFiles, setVars []string) ([]*runner.Scenario, *runner.Target, error) {
	return loadInputWith(paths, varsFiles, nil, setVars)
}

// loadInputWith also applies a running lab's vars, after the vars files and
// before --var flags.
func loadInputWith(paths, varsFiles []string, labVars map[string]any, setVars []string) ([]*runner.Scenario, *runner.Target, error) {
	target := runner.NewTarget()
	var probs runner.Problems
	for _, vf := range varsFiles {
		if err := target.LoadVarsFile(vf); err != nil {
			probs = appendProblems(probs, err)
		}
	}
	target.Merge(labVars)
	for _, kv := range setVars {
		if err := target.SetVar(kv); err != nil {
			return nil, nil, &exitError{code: exitBadInput, err: err}
		}
	}
	files, err := scenarioFiles(paths)
	if err != nil {
		return nil, nil, &exitError{code: exitBadInput, err: err}
	}
	var scenarios []*runner.Scenario
	for _, file := range files {
		sc, err := runner.LoadFile(file, runner.LoadOptions{ExtraVars: target.Names()})
		if err != nil {
			probs = appendProblems(probs, err)
			continue
		}
		scenarios = append(scenarios, sc)
	}
	if len(probs) > 0 {
		return nil, nil, &exitError{code: exitBadInput, err: probs}
	}
	return scenarios, target, nil
}

func appendProblems(probs runner.Problems, err error) runner.Problems {
	if ps, ok := err.(runner.Problems); ok {
		return append(probs, ps...)
	}
	return append(probs, runner.Problem{Msg: err.Error()})
}

// scenarioFiles expands folders to the *.yaml and *.yml files directly in
// them (not below: scenarios/targets/ holds vars files, not scenarios).
func scenarioFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var found []string
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				found = append(found, filepath.Join(p, e.Name()))
			}
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("no scenario selected: %s has no scenario files (*.yaml, *.yml) directly in it", p)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

func runScenarios(cmd *cobra.Command, f *runFlags, args []string) error {
	if f.parallel < 1 {
		return &exitError{code: exitBadInput, err: fmt.Errorf("-j: must be at least 1")}
	}
	shardK, shardN := 0, 0
	if f.shard != "" {
		var err error
		if shardK, shardN, err = runner.ParseShard(f.shard); err != nil {
			return &exitError{code: exitBadInput, err: err}
		}
	}
	// Nothing the run starts may outlive it, even when it is killed.
	reaperMethod := ""
	if self, err := os.Executable(); err == nil {
		if r, err := reaper.Start(self); err == nil {
			reaperMethod = r.Method()
			defer func() {
				if err := r.Close(10 * time.Second); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "opsdrill: warning:", err)
				}
			}()
		} else {
			fmt.Fprintln(cmd.ErrOrStderr(), "opsdrill: warning:", err)
		}
	}
	ctx, stop := context.WithCancel(cmd.Context())
	defer stop()
	hard, hardStop := context.WithCancel(context.Background())
	defer hardStop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintln(cmd.ErrOrStderr(), "opsdrill: interrupted; running cleanup (interrupt again to abort cleanup)")
				stop()
				continue
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "opsdrill: aborting cleanup")
			hardStop()
		}
	}()

	if err := useSSHConfig(f.sshConfig); err != nil {
		return err
	}
	// One connection per host for the whole run, closed at its end.
	defer host.Default.Close()

	var labVars map[string]any
	var labRef *reports.FileRef
	if len(f.labEnvs) > 0 {
		l, owned, err := upLab(ctx, cmd, f.labEnvs)
		if err != nil {
			return err
		}
		if owned {
			defer func() {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(hard), 2*time.Minute)
				defer cancel()
				if err := l.Down(dctx); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "opsdrill: lab down:", err)
				}
			}()
		}
		labVars = l.Vars()
		ref, err := runner.HashLabVars(l.ID, labVars, lab.SecretsKey)
		if err != nil {
			return err
		}
		labRef = &ref
	}
	scenarios, target, err := loadInputWith(args, f.vars, labVars, f.setVars)
	if err != nil {
		return err
	}
	var shard *reports.Shard
	if shardN > 0 {
		scenarios, shard = runner.SelectShard(scenarios, shardK, shardN)
		fmt.Fprintf(cmd.ErrOrStderr(), "shard %d/%d: %d of %d scenarios\n", shardK, shardN, len(scenarios), shard.SetSize)
	}
	filter := tagFilter(f.tags, f.skipTags)
	selected := selectedScenarios(scenarios, filter)
	if len(selected) == 0 && shardN == 0 {
		return &exitError{code: exitBadInput, err: noneSelected(scenarios, f.tags, f.skipTags)}
	}
	if err := target.ApplyFlags(selected); err != nil {
		return &exitError{code: exitBadInput, err: err}
	}
	var waivers []reports.Waiver
	if f.waivers != "" {
		if waivers, err = runner.LoadWaivers(f.waivers); err != nil {
			return &exitError{code: exitBadInput, err: err}
		}
	}
	key, err := loadSignKey(f.signKey)
	if err != nil {
		return err
	}
	var varsFiles []reports.FileRef
	for _, vf := range f.vars {
		ref, err := runner.HashFile(vf)
		if err != nil {
			return &exitError{code: exitBadInput, err: fmt.Errorf("--vars: %w", err)}
		}
		varsFiles = append(varsFiles, ref)
	}
	if labRef != nil {
		// Merged after the vars files (loadInputWith): listed after them.
		varsFiles = append(varsFiles, *labRef)
	}
	stdout := cmd.OutOrStdout()
	console := reports.NewConsole(stdout, consoleOptions(stdout, f.parallel > 1))
	defer console.Close()

	res, err := runner.Run(ctx, scenarios, runner.Options{
		ReportDir:   f.reportDir,
		Parallel:    f.parallel,
		Vars:        target.Vars,
		Secrets:     target.Secrets,
		Sinks:       []reports.Sink{console},
		Progress:    console.Progress,
		Skip:        filter,
		ToolVersion: version(),
		ToolCommit:  commit(),
		VarsFiles:   varsFiles,
		Args:        os.Args[1:],
		HardStop:    hard,
		Waivers:     waivers,
		SignKey:     key,
		Notice:      func(msg string) { fmt.Fprintln(cmd.ErrOrStderr(), "opsdrill:", msg) },
		Shard:       shard,
		Reaper:      reaperMethod,
	})
	if err != nil {
		if _, ok := err.(runner.Problems); ok {
			return &exitError{code: exitBadInput, err: err}
		}
		return &exitError{code: exitBadInput, err: err}
	}
	console.Close()
	printSummary(stdout, res)
	if f.summary != "" {
		if err := appendSummary(f.summary, res.Run); err != nil {
			return &exitError{code: exitBadInput, err: err}
		}
	}
	return runExit(res.Run.Status)
}

// runExit maps a run's status to the exit code.
func runExit(status string) error {
	switch status {
	case reports.StatusPassed:
		return nil
	case reports.StatusInterrupted:
		return &exitError{code: exitInterrupted}
	default:
		return &exitError{code: exitFailed}
	}
}

func printSummary(w io.Writer, res *runner.Result) {
	c := res.Run.ScenarioCounts()
	steady := ""
	if c.Deviated > 0 || c.NotStarted > 0 {
		steady = fmt.Sprintf(", %d deviated, %d not started", c.Deviated, c.NotStarted)
	}
	fmt.Fprintf(w, "\n%s: %d scenarios, %d passed, %d failed, %d errored, %d skipped%s\n",
		strings.ToUpper(res.Run.Status), c.Total, c.Passed, c.Failed, c.Errored, c.Skipped, steady)
	for _, wv := range res.Run.Waivers {
		fmt.Fprintf(w, "waiver %s/%s (until %s): %s\n", wv.Scenario, wv.Step, wv.Expires, wv.State)
	}
	fmt.Fprintf(w, "report: %s\n", filepath.Join(res.ReportDir, runner.HTMLFile))
	fmt.Fprintf(w, "also: %s\n", strings.Join([]string{
		filepath.Join(res.ReportDir, runner.JSONFile),
		filepath.Join(res.ReportDir, runner.JUnitFile),
		filepath.Join(res.ReportDir, runner.JournalFile),
		filepath.Join(res.ReportDir, reports.ManifestName),
	}, ", "))
}

// appendSummary appends the Markdown summary to path (CI job summaries
// collect several runs in one file).
func appendSummary(path string, run *reports.Run) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("--summary: %w", err)
	}
	if err := reports.WriteMarkdown(f, run); err != nil {
		f.Close()
		return fmt.Errorf("--summary: %w", err)
	}
	return f.Close()
}

func loadSignKey(path string) (ed25519.PrivateKey, error) {
	return loadKey("--sign-key", path, reports.ParsePrivateKey)
}

// loadKey reads the PEM key a flag names; no path, no key.
func loadKey[K any](flag, path string, parse func([]byte) (K, error)) (K, error) {
	var zero K
	if path == "" {
		return zero, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return zero, &exitError{code: exitBadInput, err: fmt.Errorf("%s: %w", flag, err)}
	}
	key, err := parse(data)
	if err != nil {
		return zero, &exitError{code: exitBadInput, err: fmt.Errorf("%s %s: %w", flag, path, err)}
	}
	return key, nil
}

// consoleOptions picks live or plain output: plain when not a terminal, in
// CI, or with NO_COLOR set.
func consoleOptions(w io.Writer, parallel bool) reports.ConsoleOptions {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	live := tty && os.Getenv("CI") == "" && !noColor && os.Getenv("TERM") != "dumb"
	return reports.ConsoleOptions{Live: live, Color: live, Parallel: parallel}
}

// upLab gives a run the lab environments it asks for: the lab `opsdrill lab
// up` left running in .lab when it has them all (used as is, and left
// running), else a lab of its own, started now and owned by the run.
func upLab(ctx context.Context, cmd *cobra.Command, envs []string) (l *lab.Lab, owned bool, err error) {
	if len(envs) == 1 && envs[0] == "all" {
		envs = lab.EnvNames()
	}
	if running, err := lab.Open(ctx, lab.DefaultStateDir); err == nil && hasAll(running.Envs, envs) {
		fmt.Fprintf(cmd.ErrOrStderr(), "lab: using lab %s, already up in %s\n", running.ID, lab.DefaultStateDir)
		return running, false, nil
	}
	l, err = lab.Up(ctx, lab.Options{Envs: envs, Logf: func(format string, args ...any) {
		fmt.Fprintf(cmd.ErrOrStderr(), "lab: "+format+"\n", args...)
	}})
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, &exitError{code: exitInterrupted, err: err}
		}
		return nil, false, &exitError{code: exitBadInput, err: fmt.Errorf("--lab: %w", err)}
	}
	return l, true, nil
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// selectedScenarios are the scenarios filter lets run.
func selectedScenarios(scenarios []*runner.Scenario, filter func(*runner.Scenario) (bool, string)) []*runner.Scenario {
	var out []*runner.Scenario
	for _, sc := range scenarios {
		if filter != nil {
			if skip, _ := filter(sc); skip {
				continue
			}
		}
		out = append(out, sc)
	}
	return out
}

// noneSelected says why no scenario is left to run, like pytest's "no
// tests collected": a run that runs nothing must not pass.
func noneSelected(scenarios []*runner.Scenario, tags, skip []string) error {
	seen := map[string]bool{}
	var all []string
	for _, sc := range scenarios {
		for _, t := range sc.Tags {
			if !seen[t] {
				seen[t] = true
				all = append(all, t)
			}
		}
	}
	sort.Strings(all)
	have := "they have no tags"
	if len(all) > 0 {
		have = "their tags: " + strings.Join(all, ", ")
	}
	var by []string
	if len(tags) > 0 {
		by = append(by, "--tags "+strings.Join(tags, ","))
	}
	if len(skip) > 0 {
		by = append(by, "--skip-tags "+strings.Join(skip, ","))
	}
	return fmt.Errorf("no scenario selected: %s leave none of the %d scenarios (%s)", strings.Join(by, " and "), len(scenarios), have)
}

func tagFilter(tags, skip []string) func(*runner.Scenario) (bool, string) {
	if len(tags) == 0 && len(skip) == 0 {
		return nil
	}
	return func(sc *runner.Scenario) (bool, string) {
		for _, t := range sc.Tags {
			if slices.Contains(skip, t) {
				return true, "tag " + t + " is in --skip-tags"
			}
		}
		if len(tags) == 0 {
			return false, ""
		}
		for _, t := range sc.Tags {
			if slices.Contains(tags, t) {
				return false, ""
			}
		}
		return true, "no tag in --tags " + strings.Join(tags, ",")
	}
}
