package vpn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

// Gateway parameters shared by tunnel.up and tunnel.down: where charon runs
// and how to reach it.
type Gateway struct {
	Host        string `yaml:"host" doc:"where the gateway's charon runs: local (default), ssh://ops@cgw?sudo=true or lab:NAME; swanctl and the ip commands run there"`
	Socket      string `yaml:"socket" doc:"charon's VICI socket: a path or a swanctl URI (unix://..., tcp://host:port); default swanctl's own"`
	ConfDir     string `yaml:"conf_dir" doc:"folder swanctl.conf includes, where the connection's file is installed"`
	SwanctlConf string `yaml:"swanctl_conf" doc:"main swanctl.conf to load (default swanctl's own, which includes conf.d/*.conf)"`
}

func (g *Gateway) validate() error {
	if err := hostexec.Validate(g.Host); err != nil {
		return err
	}
	if g.Socket != "" && strings.Contains(g.Socket, "://") &&
		!strings.HasPrefix(g.Socket, "unix://") && !strings.HasPrefix(g.Socket, "tcp://") {
		return fmt.Errorf("socket: %q: use a path, unix://PATH or tcp://HOST:PORT", g.Socket)
	}
	if !path.IsAbs(g.ConfDir) {
		return fmt.Errorf("conf_dir: %q must be an absolute path on the gateway", g.ConfDir)
	}
	if g.SwanctlConf != "" && !path.IsAbs(g.SwanctlConf) {
		return fmt.Errorf("swanctl_conf: %q must be an absolute path on the gateway", g.SwanctlConf)
	}
	return nil
}

func (g *Gateway) swanctl() swanctl { return swanctl{host: g.Host, uri: socketURI(g.Socket)} }

// installedPath is where tunnel.up puts a connection's configuration.
func (g *Gateway) installedPath(conn string) string {
	return path.Join(g.ConfDir, "opsdrill-"+conn+".conf")
}

// Up is tunnel.up: load a swanctl.conf into charon, bring its connection's
// CHILD_SAs up and wait until they are installed.
type Up struct {
	Gateway      `yaml:",inline"`
	Config       string        `yaml:"config" doc:"swanctl.conf holding the connection and its secret (vpn.config's config_file); read on this machine" required:"true"`
	Connection   string        `yaml:"connection" doc:"connection to bring up (vpn.config's connection)" required:"true"`
	Children     []string      `yaml:"children" doc:"CHILD_SAs to initiate, in order (default: every child of the connection)"`
	UpCommands   []string      `yaml:"up_commands" doc:"commands run on the gateway host before initiating, e.g. vpn.config's up_commands (inside address, VPC route)"`
	DownCommands []string      `yaml:"down_commands" doc:"commands run when the tunnel is brought down, e.g. vpn.config's down_commands"`
	Timeout      time.Duration `yaml:"timeout" doc:"how long to wait for every CHILD_SA to be installed"`
}

func newUp() steps.Step {
	return &Up{Gateway: Gateway{ConfDir: "/etc/swanctl/conf.d"}, Timeout: 30 * time.Second}
}

// Validate checks the parameters.
func (u *Up) Validate() error {
	if strings.TrimSpace(u.Config) == "" {
		return errors.New("config: required: the swanctl.conf to load, e.g. ${{ steps.config.outputs.config_file }}")
	}
	if !connName.MatchString(u.Connection) {
		return fmt.Errorf("connection: %q: use letters, digits, '.', '_' and '-'", u.Connection)
	}
	for i, c := range u.Children {
		if !connName.MatchString(c) {
			return fmt.Errorf("children[%d]: %q is not a CHILD_SA name", i, c)
		}
	}
	if u.Timeout < time.Second {
		return fmt.Errorf("timeout: must be at least 1s, got %s", u.Timeout)
	}
	for i, c := range append(slices.Clone(u.UpCommands), u.DownCommands...) {
		if len(strings.Fields(c)) == 0 {
			return fmt.Errorf("up_commands/down_commands: entry %d is empty", i)
		}
	}
	return u.validate()
}

// Run brings the tunnel up.
func (u *Up) Run(ctx context.Context, env *steps.Env) error {
	start := time.Now()
	conf, err := os.ReadFile(env.Path(u.Config))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	sw := u.swanctl()
	if err := sw.ping(ctx); err != nil {
		return err
	}
	down := &Down{Gateway: u.Gateway, Connection: u.Connection, Timeout: 10 * time.Second}
	// Registered before anything changes, so a failure half-way still
	// leaves the gateway as it was. Commands are undone only if they ran.
	env.Undo("tunnel.down "+u.Connection, func(ctx context.Context) error {
		_, err := down.teardown(ctx, nil)
		return err
	})

	dst := u.installedPath(u.Connection)
	if err := sw.writeFile(ctx, dst, conf); err != nil {
		return err
	}
	if err := sw.load(ctx, u.SwanctlConf); err != nil {
		return fmt.Errorf("load %s: %w", dst, err)
	}
	children, err := u.loadedChildren(ctx, sw)
	if err != nil {
		return err
	}
	if len(u.UpCommands) > 0 {
		down.DownCommands = u.DownCommands
		if err := runCommands(ctx, u.Host, u.UpCommands); err != nil {
			return fmt.Errorf("up_commands: %w", err)
		}
	}
	env.Logf("%s loaded on %s; initiating %s", u.Connection, hostName(u.Host), strings.Join(children, ", "))

	initStart := time.Now()
	deadline := initStart.Add(u.Timeout)
	var log strings.Builder
	failed := false
	for _, child := range children {
		secs := max(1, int(time.Until(deadline).Round(time.Second)/time.Second))
		ictx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+15*time.Second)
		res, err := sw.run(ictx, "--initiate", "--child", child, "--ike", u.Connection, "--timeout", strconv.Itoa(secs), "--loglevel", "1")
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(&log, "$ swanctl --initiate --child %s\n%s%s", child, res.Stdout, res.Stderr)
		if res.ExitCode != 0 {
			failed = true
			break
		}
	}
	// swanctl waits for the outcome, so a failed initiation is final:
	// look once instead of polling until the deadline.
	if failed {
		deadline = time.Now()
	}
	sas, installed, err := u.waitInstalled(ctx, sw, children, deadline)
	establish := time.Since(initStart)
	env.AddEvidence(steps.Evidence{Kind: "log", Title: "IKE log of swanctl --initiate", Text: strings.TrimSpace(log.String())})
	if err != nil {
		return err
	}
	if len(sas) > 0 {
		env.AddEvidence(saTable(sas))
	}
	if missing := missingChildren(children, installed); len(missing) > 0 {
		reason, lines := failureReason(log.String())
		if reason == "" {
			reason = "not installed within " + u.Timeout.String()
		}
		msg := fmt.Sprintf("tunnel %s: CHILD_SA %s not established: %s", u.Connection, strings.Join(missing, ", "), reason)
		if len(lines) > 0 {
			msg += "\nIKE: " + strings.Join(lines, "\nIKE: ")
		}
		return steps.Failf("%s", msg)
	}
	u.outputs(env, currentSA(sas, installed), installed, establish, time.Since(start))
	env.Logf("%s up in %s (%d CHILD_SAs installed)", u.Connection, establish.Round(time.Millisecond), len(installed))
	return nil
}

// loadedChildren checks the connection is loaded and returns the children
// to initiate.
func (u *Up) loadedChildren(ctx context.Context, sw swanctl) ([]string, error) {
	conns, err := sw.conns(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(conns, func(c conn) bool { return c.Name == u.Connection })
	if i < 0 {
		var names []string
		for _, c := range conns {
			names = append(names, c.Name)
		}
		return nil, fmt.Errorf("connection %q is not loaded after swanctl --load-all (loaded: %v); does %s define it, and does the main swanctl.conf include %s/*.conf?",
			u.Connection, names, u.Config, u.ConfDir)
	}
	if len(u.Children) == 0 {
		if len(conns[i].Children) == 0 {
			return nil, fmt.Errorf("connection %q has no children", u.Connection)
		}
		return conns[i].Children, nil
	}
	for _, c := range u.Children {
		if !slices.Contains(conns[i].Children, c) {
			return nil, fmt.Errorf("children: connection %q has no child %q (it has %v)", u.Connection, c, conns[i].Children)
		}
	}
	return u.Children, nil
}

// waitInstalled polls charon until every child is INSTALLED or the deadline
// passes, and returns the connection's SAs and its installed children.
func (u *Up) waitInstalled(ctx context.Context, sw swanctl, children []string, deadline time.Time) ([]ikeSA, map[string]childSA, error) {
	for {
		sas, err := sw.sas(ctx, u.Connection)
		if err != nil {
			return nil, nil, err
		}
		installed := map[string]childSA{}
		for _, sa := range sas {
			for _, c := range sa.Children {
				if c.Values["state"] == "INSTALLED" {
					installed[c.name()] = c
				}
			}
		}
		if len(missingChildren(children, installed)) == 0 || time.Now().After(deadline) {
			return sas, installed, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// currentSA is the IKE_SA carrying the installed CHILD_SAs (a connection
// may briefly have an older one being replaced).
func currentSA(sas []ikeSA, installed map[string]childSA) ikeSA {
	for _, sa := range sas {
		for _, c := range sa.Children {
			if ic, ok := installed[c.name()]; ok && ic.ID == c.ID {
				return sa
			}
		}
	}
	return sas[0]
}

func missingChildren(want []string, installed map[string]childSA) []string {
	var out []string
	for _, c := range want {
		if _, ok := installed[c]; !ok {
			out = append(out, c)
		}
	}
	return out
}

func (u *Up) outputs(env *steps.Env, sa ikeSA, installed map[string]childSA, establish, total time.Duration) {
	v := sa.Values
	version, _ := strconv.Atoi(v["version"])
	env.SetOutput("connection", u.Connection)
	env.SetOutput("ike_state", v["state"])
	env.SetOutput("ike_version", version)
	env.SetOutput("ike_algorithms", ikeAlgorithms(v))
	env.SetOutput("ike_proposal", negotiatedProposal(v["encr-alg"], v["encr-keysize"], v["integ-alg"], v["prf-alg"], v["dh-group"]))
	env.SetOutput("ike_spi_initiator", v["initiator-spi"])
	env.SetOutput("ike_spi_responder", v["responder-spi"])
	env.SetOutput("local_host", v["local-host"])
	env.SetOutput("remote_host", v["remote-host"])
	env.SetOutput("local_id", v["local-id"])
	env.SetOutput("remote_id", v["remote-id"])
	env.SetOutput("nat", v["nat-any"] == "yes")

	var list []any
	var spiIn, spiOut []string
	var first childSA
	for _, c := range sa.Children {
		if _, ok := installed[c.name()]; !ok {
			continue
		}
		if first.Values == nil {
			first = c
		}
		cv := c.Values
		spiIn, spiOut = append(spiIn, cv["spi-in"]), append(spiOut, cv["spi-out"])
		list = append(list, map[string]any{
			"name": c.name(), "state": cv["state"], "mode": cv["mode"], "protocol": cv["protocol"],
			"spi_in": cv["spi-in"], "spi_out": cv["spi-out"], "encap": cv["encap"] == "yes",
			"algorithms":   childAlgorithms(cv),
			"esp_proposal": negotiatedProposal(cv["encr-alg"], cv["encr-keysize"], cv["integ-alg"], "", cv["dh-group"]),
			"local_ts":     strings.Join(c.Lists["local-ts"], ","), "remote_ts": strings.Join(c.Lists["remote-ts"], ","),
		})
	}
	fv := first.Values
	env.SetOutput("children", list)
	env.SetOutput("installed", len(list))
	env.SetOutput("esp_algorithms", childAlgorithms(fv))
	env.SetOutput("esp_proposal", negotiatedProposal(fv["encr-alg"], fv["encr-keysize"], fv["integ-alg"], "", fv["dh-group"]))
	env.SetOutput("pfs_group", dhKeyword(fv["dh-group"]))
	env.SetOutput("spi_in", spiIn)
	env.SetOutput("spi_out", spiOut)
	env.SetOutput("establish_ms", establish.Milliseconds())
	env.SetOutput("up_ms", total.Milliseconds())
}

// ikeAlgorithms is swanctl's own rendering: AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024.
func ikeAlgorithms(v map[string]string) string {
	return joinNonEmpty("/", withKeysize(v), v["integ-alg"], v["prf-alg"], v["dh-group"])
}

func childAlgorithms(v map[string]string) string {
	if v == nil {
		return ""
	}
	return strings.ToUpper(v["protocol"]) + ":" + joinNonEmpty("/", withKeysize(v), v["integ-alg"], v["dh-group"])
}

func withKeysize(v map[string]string) string {
	if v["encr-keysize"] == "" {
		return v["encr-alg"]
	}
	return v["encr-alg"] + "-" + v["encr-keysize"]
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

func saTable(sas []ikeSA) steps.Evidence {
	var rows [][]string
	for _, sa := range sas {
		v := sa.Values
		rows = append(rows, []string{"IKE_SA " + sa.Name, v["state"], "IKEv" + v["version"], ikeAlgorithms(v),
			v["initiator-spi"] + " / " + v["responder-spi"],
			v["local-host"] + " [" + v["local-id"] + "]", v["remote-host"] + " [" + v["remote-id"] + "]"})
		for _, c := range sa.Children {
			cv := c.Values
			rows = append(rows, []string{"CHILD_SA " + c.name(), cv["state"], cv["mode"], childAlgorithms(cv),
				cv["spi-in"] + " / " + cv["spi-out"],
				strings.Join(c.Lists["local-ts"], ","), strings.Join(c.Lists["remote-ts"], ",")})
		}
	}
	return steps.TableEvidence("Security associations", []string{"SA", "state", "mode", "algorithms", "SPIs (in / out)", "local", "remote"}, rows)
}
