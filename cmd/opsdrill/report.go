package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/reports/browser"
	"github.com/opsdrill/opsdrill/runner"
)

func init() { subcommands = append(subcommands, newReportCmd) }

func newReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Work with report folders: merge, render, pdf, verify, trend, keygen",
		Example: `  opsdrill report render out/
  opsdrill report merge --report-dir out/nightly out/shard-*/
  opsdrill report pdf out/
  opsdrill report verify --pub drill.pub out/
  opsdrill report trend nightly/*/`,
	}
	cmd.AddCommand(newReportMergeCmd(), newReportRenderCmd(), newReportPDFCmd(), newReportVerifyCmd(), newReportTrendCmd(), newReportKeygenCmd())
	return cmd
}

func readRun(dir string) (*reports.Run, error) {
	f, err := os.Open(filepath.Join(dir, runner.JournalFile))
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: err}
	}
	defer f.Close()
	run, err := reports.ReadJournal(f)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: fmt.Errorf("%s: %w", f.Name(), err)}
	}
	return run, nil
}

func newReportRenderCmd() *cobra.Command {
	var signKey, summary string
	cmd := &cobra.Command{
		Use:   "render DIR",
		Short: "Rebuild report.json, junit.xml, report.html and the manifest from journal.jsonl",
		Long: `Render rebuilds the reports of a run from its journal alone. A run that was
killed (even with SIGKILL) leaves a journal; render turns it into reports
where unfinished steps and scenarios show as interrupted. Waivers in force
for the run were recorded in the journal and apply again.`,
		Example: "  opsdrill report render out/\n  opsdrill report render --sign-key drill.key --summary summary.md out/",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			key, err := loadSignKey(signKey)
			if err != nil {
				return err
			}
			run, err := readRun(dir)
			if err != nil {
				return err
			}
			if err := runner.WriteReports(dir, run, key); err != nil {
				return err
			}
			if summary != "" {
				if err := appendSummary(summary, run); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rendered %s (run %s)\n", filepath.Join(dir, runner.HTMLFile), run.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&signKey, "sign-key", "", "ed25519 private key (PEM) to sign manifest.json with")
	cmd.Flags().StringVar(&summary, "summary", "", "append a Markdown summary to this file")
	return cmd
}

func newReportMergeCmd() *cobra.Command {
	var out, signKey, summary string
	var force bool
	cmd := &cobra.Command{
		Use:   "merge --report-dir OUT [--sign-key KEY] [--force] DIR...",
		Short: "Combine the report folders of a split run (run --shard K/N) into one report",
		Long: `Merge combines the report folders of the shards of one run (run --shard K/N
on the jobs of a CI matrix, GitLab parallel: or a Kubernetes Indexed Job)
into one report folder: journal.jsonl, report.json, junit.xml, report.html,
the shards' artifacts and manifest.json (signed with --sign-key). Scenarios
are ordered by file and name; the run's status is the worst of the shards'.

Folders from different scenario sets or tool versions, shards missing,
unsharded runs and folders that do not match their manifest are refused
unless --force (a forced merge with shards missing never passes); two
folders of the same shard never merge. Exit codes as for run: 0 passed,
1 failed, 2 bad input, 130 a shard was interrupted.`,
		Example: `  opsdrill report merge --report-dir out/nightly out/shard-1 out/shard-2 out/shard-3 out/shard-4
  opsdrill report merge --report-dir out/nightly --sign-key drill.key out/shard-*/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := loadSignKey(signKey)
			if err != nil {
				return err
			}
			res, err := runner.MergeReports(out, args, runner.MergeOptions{Force: force, SignKey: key, Args: os.Args[1:]})
			if err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "opsdrill: forced:", w)
			}
			if summary != "" {
				if err := appendSummary(summary, res.Run); err != nil {
					return &exitError{code: exitBadInput, err: err}
				}
			}
			printSummary(cmd.OutOrStdout(), &runner.Result{Run: res.Run, ReportDir: out})
			return runExit(res.Run.Status)
		},
	}
	cmd.Flags().StringVar(&out, "report-dir", "out", "folder for the merged report")
	cmd.Flags().StringVar(&signKey, "sign-key", "", "ed25519 private key (PEM) to sign manifest.json with")
	cmd.Flags().StringVar(&summary, "summary", "", "append a Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)")
	cmd.Flags().BoolVar(&force, "force", false, "merge folders of different scenario sets or tool versions, with shards missing, or not matching their manifest")
	_ = cmd.MarkFlagRequired("report-dir")
	return cmd
}

func newReportPDFCmd() *cobra.Command {
	var signKey string
	cmd := &cobra.Command{
		Use:   "pdf DIR",
		Short: "Print report.html to report.pdf with headless Chromium",
		Long: `PDF prints the folder's report.html to report.pdf through headless Chromium
(Debian's chromium package; set OPSDRILL_CHROMIUM to use another binary),
with a header naming the run and page x/y on every page. The manifest is
rewritten to include the PDF (signed again with --sign-key).`,
		Example: "  opsdrill report pdf out/\n  opsdrill report pdf --sign-key drill.key out/",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			key, err := loadSignKey(signKey)
			if err != nil {
				return err
			}
			run, err := readRun(dir)
			if err != nil {
				return err
			}
			htmlPath := filepath.Join(dir, runner.HTMLFile)
			// Rendered again when signing, so the cover names the signer.
			if _, err := os.Stat(htmlPath); err != nil || key != nil {
				if err := runner.WriteReports(dir, run, key); err != nil {
					return err
				}
			}
			pdfPath := filepath.Join(dir, runner.PDFFile)
			if err := browser.PrintPDF(context.Background(), htmlPath, pdfPath, run.RunID); err != nil {
				return err
			}
			if err := reports.WriteManifest(dir, run.RunID, key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", pdfPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&signKey, "sign-key", "", "ed25519 private key (PEM) to sign manifest.json with")
	return cmd
}

func newReportVerifyCmd() *cobra.Command {
	var pub string
	cmd := &cobra.Command{
		Use:   "verify [--pub KEY] DIR",
		Short: "Check a report folder against its manifest (and signature)",
		Long: `Verify recomputes the SHA-256 of every file in the folder and compares them
with manifest.json: any changed, added or removed file is reported. With
--pub, manifest.sig must be a valid ed25519 signature of manifest.json by
that key. Exit 0 when intact, 1 when not, 2 on bad input.`,
		Example: "  opsdrill report verify out/\n  opsdrill report verify --pub drill.pub out/",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := loadKey("--pub", pub, reports.ParsePublicKey)
			if err != nil {
				return err
			}
			v, err := reports.VerifyManifest(args[0], key)
			if err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			if !v.OK() {
				for _, p := range v.Problems() {
					fmt.Fprintln(cmd.OutOrStdout(), p)
				}
				return &exitError{code: exitFailed, err: fmt.Errorf("%s: report folder does not match its manifest", args[0])}
			}
			msg := "intact: every file matches manifest.json"
			if v.Signature == "valid" {
				msg += "; signature valid (key " + reports.KeyFingerprint(key) + ")"
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		},
	}
	cmd.Flags().StringVar(&pub, "pub", "", "ed25519 public key (PEM) the manifest must be signed with")
	return cmd
}

func newReportTrendCmd() *cobra.Command {
	var out string
	var controls []string
	cmd := &cobra.Command{
		Use:   "trend [-o FILE] DIR...",
		Short: "Compare runs: pass/fail history and metrics over time, as HTML",
		Long: `Trend reads report.json from each report folder (e.g. one per nightly run)
and writes a small self-contained HTML page: per scenario, the controls it
evidences, the pass/fail history, and every numeric output that varies
(downtime, drift, RTT, ...) with a chart over the runs and its numbers.
--control keeps the drills that evidence a control (exit 2 when none does).`,
		Example: "  opsdrill report trend -o trend.html nightly/2026-11-*/\n  opsdrill report trend --control SOC2:CC6.1 --control 'ISO27001:A.8.*' -o access.html nightly/*/",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var runs []reports.TrendRun
			for _, dir := range args {
				run, err := readReportJSON(dir)
				if err != nil {
					return &exitError{code: exitBadInput, err: err}
				}
				runs = append(runs, reports.TrendRun{Dir: dir, Run: run})
			}
			// Rendered first, so a bad --control leaves any existing file alone.
			var page bytes.Buffer
			if err := reports.WriteTrend(&page, runs, reports.TrendOptions{Controls: controls}); err != nil {
				if errors.Is(err, reports.ErrNoControl) {
					return &exitError{code: exitBadInput, err: err}
				}
				return err
			}
			if err := os.WriteFile(out, page.Bytes(), 0o644); err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d runs)\n", out, len(runs))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "trend.html", "HTML file to write")
	cmd.Flags().StringArrayVar(&controls, "control", nil, "only drills that evidence this control (repeatable; patterns such as ISO27001:A.8.* allowed)")
	return cmd
}

func readReportJSON(dir string) (*reports.Run, error) {
	f, err := os.Open(filepath.Join(dir, runner.JSONFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return reports.ReadJSON(f)
}

func newReportKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen PREFIX",
		Short: "Create an ed25519 key pair for signing report manifests",
		Long: `Keygen writes PREFIX.key (private, PKCS#8 PEM, mode 0600) and PREFIX.pub
(public, PEM). Sign with ` + "`run --sign-key PREFIX.key`" + `; auditors verify with
` + "`report verify --pub PREFIX.pub`" + `. openssl genpkey -algorithm ed25519 keys work too.`,
		Example: "  opsdrill report keygen drill",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, pub, err := reports.GenerateKey()
			if err != nil {
				return err
			}
			keyPath, pubPath := args[0]+".key", args[0]+".pub"
			if _, err := os.Stat(keyPath); err == nil {
				return &exitError{code: exitBadInput, err: fmt.Errorf("%s exists; not overwriting a key", keyPath)}
			}
			if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", keyPath, pubPath)
			return nil
		},
	}
}
