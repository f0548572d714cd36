package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsdrill/opsdrill/lab"
)

func init() { subcommands = append(subcommands, newLabCmd) }

func newLabCmd() *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the local lab: real hosts in containers to rehearse drills on",
		Long: `The lab runs the services drills need (hosts, databases, VPN gateways, ...)
in containers on a private Docker network, so a scenario can be rehearsed on a
laptop or in CI before it runs against production: only the vars file differs.

The lab never pulls an image. Build its image once with ` + "`make lab-images`" + `
(debootstrap from the machine's apt mirror; no registry needed).

State lives in the state folder (default .lab): state.json for later
` + "`lab status`/`lab down`" + `, and vars.yaml for ` + "`opsdrill run --vars`" + `.`,
		Example: `  opsdrill lab up hosts
  opsdrill run --vars .lab/vars.yaml scenarios/
  opsdrill lab status
  opsdrill lab down`,
	}
	cmd.PersistentFlags().StringVar(&stateDir, "state-dir", lab.DefaultStateDir, "`DIR` holding the lab state and vars file")
	_ = cmd.MarkPersistentFlagDirname("state-dir")
	cmd.AddCommand(newLabUpCmd(&stateDir), newLabStatusCmd(&stateDir), newLabDownCmd(&stateDir))
	return cmd
}

func newLabUpCmd(stateDir *string) *cobra.Command {
	var varsFile, subnet, image string
	var envHelp strings.Builder
	w := tabwriter.NewWriter(&envHelp, 0, 0, 2, ' ', 0)
	for _, e := range lab.Envs() {
		var hosts []string
		for _, h := range e.Hosts {
			hosts = append(hosts, h.Name)
		}
		fmt.Fprintf(w, "  %s\t%s (%s)\n", e.Name, e.Doc, strings.Join(hosts, ", "))
	}
	w.Flush()
	cmd := &cobra.Command{
		Use:   "up [ENV...]",
		Short: "Start lab environments and write the vars file",
		Long: `Up starts the named environments (all of them when none is named) on a new
private network, waits until every host is ready, and writes the vars file
(default .lab/vars.yaml) with what scenarios need: addresses, ports, DSNs,
and credentials under "secrets". The containers keep running after it exits;
stop them with ` + "`opsdrill lab down`" + `.

On failure or Ctrl-C, everything it created is removed.

Environments:
` + envHelp.String(),
		Example: `  opsdrill lab up hosts
  opsdrill lab up --vars-file /tmp/lab.yaml hosts
  opsdrill lab up --subnet 10.99.0.0/24 hosts`,
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return lab.EnvNames(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := lab.Options{
				Envs:     args,
				Image:    image,
				StateDir: *stateDir,
				VarsFile: varsFile,
				Logf: func(format string, a ...any) {
					fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...)
				},
			}
			if subnet != "" {
				p, err := netip.ParsePrefix(subnet)
				if err != nil || !p.Addr().Is4() || p.Bits() > 28 {
					return &exitError{code: exitBadInput, err: fmt.Errorf("--subnet %q: want an IPv4 network of /28 or larger, such as 10.99.0.0/24", subnet)}
				}
				opts.Subnet = p
			}
			for _, name := range args {
				if _, ok := lab.LookupEnv(name); !ok {
					return &exitError{code: exitBadInput, err: fmt.Errorf("unknown lab environment %q (known: %s)", name, strings.Join(lab.EnvNames(), ", "))}
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			l, err := lab.Up(ctx, opts)
			if err != nil {
				return labError(ctx, err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "lab %s is up: %s on %s (%s)\n", l.ID, strings.Join(l.Envs, ", "), l.Network, l.Subnet)
			printHosts(out, l)
			fmt.Fprintf(out, "vars: %s\n", l.VarsFile())
			fmt.Fprintf(out, "next: opsdrill run --vars %s SCENARIO...   then: opsdrill lab down\n", l.VarsFile())
			fmt.Fprintf(out, "ssh:  ssh -F %s HOST; over SSH: opsdrill run --ssh-config %s --vars %s --vars %s SCENARIO...\n",
				l.SSHConfig(), l.SSHConfig(), l.VarsFile(), filepath.Join(l.SSHDir(), lab.SSHVarsFile))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&varsFile, "vars-file", "", "`FILE` to write the vars to (default STATE-DIR/vars.yaml)")
	fl.StringVar(&subnet, "subnet", "", "IPv4 `CIDR` of the lab network (default: a free /24 of 10.213.0.0/16)")
	fl.StringVar(&image, "image", "", "lab image `REF` (default: $OPSDRILL_LAB_IMAGE, or the one 'make lab-images' builds)")
	_ = cmd.MarkFlagFilename("vars-file", "yaml", "yml")
	return cmd
}

func newLabStatusCmd(stateDir *string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's hosts and any leftover lab containers",
		Long: `Status shows each host of the lab in the state folder with its address and
container state, and lists lab containers and networks not belonging to it
(other labs, leftovers of a crashed run).

Exit code 0 when a lab is up and all its hosts run, 1 otherwise.`,
		Example: `  opsdrill lab status
  opsdrill lab status --json | jq '.hosts[] | select(.state != "running")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			report, err := labStatus(ctx, *stateDir)
			if err != nil {
				return labError(ctx, err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else {
				report.print(out, *stateDir)
			}
			if !report.healthy() {
				return &exitError{code: exitFailed}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func newLabDownCmd(stateDir *string) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove the lab and leftovers of crashed runs",
		Long: `Down removes the lab of the state folder (containers, network, state and
vars files) and every lab left behind by a process that is gone: a crashed
` + "`run --lab`" + `, a lab whose state file was lost. Labs of processes still
running (tests, another run) and labs other state folders hold are kept;
--all removes every lab container and network on the engine.`,
		Example: `  opsdrill lab down
  opsdrill lab down --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			start := time.Now()
			down := lab.DownAll
			if all {
				down = lab.Purge
			}
			removed, err := down(ctx, *stateDir)
			if err != nil {
				return labError(ctx, err)
			}
			out := cmd.OutOrStdout()
			if len(removed) == 0 {
				fmt.Fprintln(out, "nothing to remove: no lab is up")
				return nil
			}
			byLab := map[string][2]int{}
			for _, r := range removed {
				n := byLab[r.Lab]
				if r.Kind == "container" {
					n[0]++
				} else {
					n[1]++
				}
				byLab[r.Lab] = n
			}
			for _, id := range sortedKeys(byLab) {
				fmt.Fprintf(out, "removed lab %s: %d containers, %d networks\n", id, byLab[id][0], byLab[id][1])
			}
			fmt.Fprintf(out, "done in %s\n", time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every lab on the engine, also labs in use")
	return cmd
}

// labReport is what `lab status` prints.
type labReport struct {
	Lab    *labSummary      `json:"lab"`
	Hosts  []lab.HostStatus `json:"hosts"`
	Others []lab.Resource   `json:"others"`
}

type labSummary struct {
	ID       string   `json:"id"`
	Envs     []string `json:"envs"`
	Network  string   `json:"network"`
	Subnet   string   `json:"subnet"`
	Created  string   `json:"created"`
	VarsFile string   `json:"vars_file"`
}

func labStatus(ctx context.Context, stateDir string) (*labReport, error) {
	report := &labReport{Hosts: []lab.HostStatus{}, Others: []lab.Resource{}}
	l, err := lab.Open(ctx, stateDir)
	switch {
	case errors.Is(err, lab.ErrNoLab):
	case err != nil:
		return nil, err
	default:
		report.Lab = &labSummary{
			ID: l.ID, Envs: l.Envs, Network: l.Network, Subnet: l.Subnet.String(),
			Created: l.Created.Local().Format(time.DateTime), VarsFile: l.VarsFile(),
		}
		if report.Hosts, err = l.Status(ctx); err != nil {
			return nil, err
		}
	}
	all, err := lab.ListResources(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range all {
		if report.Lab == nil || r.Lab != report.Lab.ID {
			report.Others = append(report.Others, r)
		}
	}
	return report, nil
}

func (r *labReport) healthy() bool {
	if r.Lab == nil {
		return false
	}
	for _, h := range r.Hosts {
		if h.State != "running" {
			return false
		}
	}
	return true
}

func (r *labReport) print(out io.Writer, stateDir string) {
	if r.Lab == nil {
		fmt.Fprintf(out, "no lab is up in %s\n", stateDir)
	} else {
		fmt.Fprintf(out, "lab %s: %s on %s (%s), up since %s\n",
			r.Lab.ID, strings.Join(r.Lab.Envs, ", "), r.Lab.Network, r.Lab.Subnet, r.Lab.Created)
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "  HOST\tENV\tIP\tSTATE\tCONTAINER")
		for _, h := range r.Hosts {
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", h.Name, h.Env, h.IP, h.State, h.Container)
		}
		w.Flush()
		fmt.Fprintf(out, "vars: %s\n", r.Lab.VarsFile)
	}
	if len(r.Others) > 0 {
		fmt.Fprintf(out, "other lab resources on this engine (%d):\n", len(r.Others))
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, o := range r.Others {
			fmt.Fprintf(w, "  %s\t%s\tlab %s\t%s\towner %s\n", o.Kind, o.Name, o.Lab, o.State, o.Owner)
		}
		w.Flush()
		fmt.Fprintln(out, "`opsdrill lab down` removes those left by gone processes; --all removes all")
	}
}

func printHosts(out io.Writer, l *lab.Lab) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, h := range l.Hosts() {
		var ports []string
		for _, p := range h.Ports {
			ports = append(ports, fmt.Sprintf("127.0.0.1:%d->%d", p.Host, p.Container))
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", h.Name, h.Env, h.IP, strings.Join(ports, " "))
	}
	w.Flush()
}

// labError maps lab errors to exit codes: interrupted 130, a bad
// environment name 2, anything else (no engine, image missing, ...) 1.
func labError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted: %w", err)}
	case errors.Is(err, lab.ErrUnknownEnv), errors.Is(err, lab.ErrConflict):
		return &exitError{code: exitBadInput, err: err}
	}
	return &exitError{code: exitFailed, err: err}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
