package vpn

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// Down is tunnel.down: terminate a connection's SAs, unload it and undo
// the host commands. tunnel.up registers the same teardown as an undo
// action; both are idempotent, so an explicit tunnel.down followed by the
// undo is harmless.
type Down struct {
	Gateway      `yaml:",inline"`
	Connection   string        `yaml:"connection" doc:"connection to bring down (vpn.config's connection)" required:"true"`
	DownCommands []string      `yaml:"down_commands" doc:"commands run on the gateway host afterwards, e.g. vpn.config's down_commands; an address or route already gone is not an error"`
	Timeout      time.Duration `yaml:"timeout" doc:"how long to wait for each IKE_SA's deletion"`
}

func newDown() steps.Step {
	return &Down{Gateway: Gateway{ConfDir: "/etc/swanctl/conf.d"}, Timeout: 10 * time.Second}
}

// Validate checks the parameters.
func (d *Down) Validate() error {
	if !connName.MatchString(d.Connection) {
		return fmt.Errorf("connection: %q: use letters, digits, '.', '_' and '-'", d.Connection)
	}
	if d.Timeout < time.Second {
		return fmt.Errorf("timeout: must be at least 1s, got %s", d.Timeout)
	}
	for i, c := range d.DownCommands {
		if len(strings.Fields(c)) == 0 {
			return fmt.Errorf("down_commands[%d]: empty command", i)
		}
	}
	return d.validate()
}

// Run brings the tunnel down.
func (d *Down) Run(ctx context.Context, env *steps.Env) error {
	r, err := d.teardown(ctx, env)
	env.SetOutput("terminated", r.terminated > 0)
	env.SetOutput("ike_sas", r.terminated)
	env.SetOutput("config_removed", r.removed)
	return err
}

type teardownResult struct {
	terminated int  // IKE_SAs terminated
	removed    bool // the installed configuration existed and was removed
}

// teardown terminates every IKE_SA of the connection, removes the file
// tunnel.up installed and reloads (which unloads the connection and its
// secret), then runs the down commands. It carries on after a failure and
// reports every one.
func (d *Down) teardown(ctx context.Context, env *steps.Env) (teardownResult, error) {
	var r teardownResult
	var errs []error
	sw := d.swanctl()
	sas, err := sw.sas(ctx, d.Connection)
	if err != nil {
		errs = append(errs, err)
	}
	secs := strconv.Itoa(max(1, int(d.Timeout/time.Second)))
	for _, sa := range sas {
		id := sa.Values["uniqueid"]
		res, err := sw.run(ctx, "--terminate", "--ike-id", id, "--timeout", secs)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("terminate IKE_SA %s[%s]: %s", d.Connection, id, lastLines(res.Stderr+res.Stdout, 2))
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.terminated++
	}
	r.removed, err = sw.removeFile(ctx, d.installedPath(d.Connection))
	if err != nil {
		errs = append(errs, err)
	}
	if r.removed {
		if err := sw.load(ctx, d.SwanctlConf); err != nil {
			errs = append(errs, fmt.Errorf("unload %s: %w", d.Connection, err))
		}
	}
	for _, c := range d.DownCommands {
		if err := runIdempotent(ctx, d.Host, c); err != nil {
			errs = append(errs, fmt.Errorf("down_commands: %w", err))
		}
	}
	if env != nil {
		env.Logf("%s down: %d IKE_SA(s) terminated, configuration removed: %v", d.Connection, r.terminated, r.removed)
	}
	return r, errors.Join(errs...)
}

// absent are ip's messages for deleting what is not there.
var absent = []string{"No such process", "Address not found", "Cannot assign requested address", "Cannot find device", "No such file or directory"}

// runIdempotent runs a down command; removing an address or a route that is
// already gone counts as done.
func runIdempotent(ctx context.Context, host, c string) error {
	argv := strings.Fields(c)
	res, err := hostexec.Run(ctx, host, argv, nil)
	if err != nil {
		return fmt.Errorf("%q on %s: %w", c, hostName(host), err)
	}
	if res.ExitCode == 0 {
		return nil
	}
	out := res.Stderr + res.Stdout
	for _, a := range absent {
		if strings.Contains(out, a) {
			return nil
		}
	}
	return fmt.Errorf("%q on %s exited %d: %s", c, hostName(host), res.ExitCode, lastLines(out, 2))
}
