// Package sshd provides sshd.config: read a host's effective OpenSSH
// server configuration (`sshd -T`, with `-C user=…,addr=…,host=…` so that
// Match blocks apply) and check it against a policy in the step.
//
// The runbook "Port Forwarding in AWS LightSail or EC2 machines via SSH"
// changes sshd_config to GatewayPorts yes, ClientAliveInterval 180,
// ClientAliveCountMax 3, UseDNS no — and PermitRootLogin yes with a root
// password, which its author himself flags as risky. The step's `require`
// holds what the drill needs; what no policy should allow (root logins by
// password, empty passwords) is forbidden by default and reported as
// findings with their fix. The effective configuration excerpt is the
// evidence: what sshd would really do, after includes, defaults and
// Match blocks, not what a file seems to say.
package sshd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/hostexec"
)

func init() {
	steps.Register(steps.Spec{
		Name:    "sshd.config",
		Summary: "Check a host's effective sshd configuration (sshd -T) against required and forbidden values",
		Doc: "Runs `sshd -T` on `host` (root is needed to read the host keys: lab:NAME, or ssh://user@host?sudo=true), with " +
			"`-C` built from `match` (user, host, addr, laddr, lport) so Match blocks apply, and with `-f config_file` to check a " +
			"candidate file before it is installed. `require` maps a keyword (lower case, as sshd -T prints it) to the value wanted: " +
			"a value, a list of accepted values (`gatewayports: [clientspecified, yes]`), or a numeric comparison (`\">= 60\"`, `\"> 0\"`). " +
			"Forbidden by default, each reported as a finding with its fix: `permitrootlogin yes`, `permitemptypasswords yes`, and " +
			"password logins for root (evaluated again with `-C user=root`: passwordauthentication yes while permitrootlogin lets a " +
			"password in). `allow_root_password: true` drops the root checks for a host that needs them (say why in a waiver). " +
			"Every required value not met and every finding fails the step; the effective configuration excerpt is the evidence.",
		New: func() steps.Step { return &Config{Sshd: "sshd"} },
		Outputs: []steps.Output{
			{Name: "config", Type: "map", Doc: "the effective value of every keyword the policy reads and of the runbook's keywords"},
			{Name: "root_config", Type: "map", Doc: "the same, evaluated for user root"},
			{Name: "findings", Type: "list", Doc: "what the policy refuses, each with its fix"},
			{Name: "unmet", Type: "list", Doc: "required keywords whose value is not accepted"},
			{Name: "compliant", Type: "bool", Doc: "no finding and every requirement met"},
		},
		Examples: []steps.Example{
			{Title: "The runbook's server, without its risky root login", YAML: "- uses: sshd.config\n  with:\n    host: ssh://ops@lightsail?sudo=true\n    match: { user: ops, addr: 203.0.113.7 }\n    require:\n      gatewayports: [clientspecified, yes]\n      clientaliveinterval: \"> 0\"\n      clientalivecountmax: 3\n      allowtcpforwarding: [yes, remote]"},
		},
	})
}

// runbookKeys are always in the evidence: what the runbook changes and
// what forwarding depends on.
var runbookKeys = []string{"gatewayports", "clientaliveinterval", "clientalivecountmax", "usedns", "permitrootlogin",
	"passwordauthentication", "kbdinteractiveauthentication", "permitemptypasswords", "pubkeyauthentication",
	"allowtcpforwarding", "permitlisten", "permitopen", "disableforwarding", "x11forwarding", "maxauthtries"}

// matchKeys are the -C criteria sshd accepts.
var matchKeys = []string{"user", "host", "addr", "laddr", "lport", "rdomain"}

// Config is sshd.config.
type Config struct {
	Host              string            `yaml:"host" doc:"where sshd runs: lab:NAME, ssh://user@host?sudo=true, local (root needed)"`
	Match             map[string]string `yaml:"match" doc:"the connection Match blocks are evaluated for: user, host, addr, laddr, lport, rdomain (sshd -T -C)"`
	Require           map[string]any    `yaml:"require" doc:"keyword -> accepted value, list of values, or numeric comparison (\">= 60\")"`
	ConfigFile        string            `yaml:"config_file" doc:"sshd_config to evaluate instead of the installed one (sshd -f), on the host"`
	Sshd              string            `yaml:"sshd" doc:"the sshd binary on the host (default sshd, found in PATH or /usr/sbin)"`
	AllowRootPassword bool              `yaml:"allow_root_password" doc:"do not report root password logins (permitrootlogin yes, passwordauthentication yes for root)"`
}

// Validate checks the parameters.
func (c *Config) Validate() error {
	if err := hostexec.Validate(c.Host); err != nil {
		return err
	}
	for k, v := range c.Match {
		if !slices.Contains(matchKeys, k) {
			return fmt.Errorf("match: unknown criterion %q (known: %s)", k, strings.Join(matchKeys, ", "))
		}
		if v == "" || strings.ContainsAny(v, ", \t") {
			return fmt.Errorf("match: %s: %q must be one word without commas", k, v)
		}
	}
	if len(c.Match) > 0 && c.Match["user"] == "" {
		return errors.New("match: user is required when match is given (sshd -T -C needs it)")
	}
	for k, v := range c.Require {
		if k != strings.ToLower(k) || strings.ContainsAny(k, " \t") || k == "" {
			return fmt.Errorf("require: keyword %q: use sshd -T's lower-case keyword, e.g. gatewayports", k)
		}
		if _, err := parseRule(v); err != nil {
			return fmt.Errorf("require: %s: %w", k, err)
		}
	}
	return nil
}

// rule is one requirement: accepted values, or a numeric comparison.
type rule struct {
	values []string
	op     string
	num    float64
}

func (r rule) String() string {
	if r.op != "" {
		return r.op + " " + strconv.FormatFloat(r.num, 'f', -1, 64)
	}
	return strings.Join(r.values, " or ")
}

func parseRule(v any) (rule, error) {
	switch t := v.(type) {
	case []any:
		var r rule
		for _, x := range t {
			s, err := scalar(x)
			if err != nil {
				return rule{}, err
			}
			r.values = append(r.values, strings.ToLower(s))
		}
		if len(r.values) == 0 {
			return rule{}, errors.New("an empty list accepts nothing")
		}
		return r, nil
	default:
		s, err := scalar(v)
		if err != nil {
			return rule{}, err
		}
		for _, op := range []string{">=", "<=", "!=", ">", "<", "=="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(s), op); ok {
				n, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err != nil {
					return rule{}, fmt.Errorf("%q: a comparison needs a number", s)
				}
				return rule{op: op, num: n}, nil
			}
		}
		return rule{values: []string{strings.ToLower(s)}}, nil
	}
}

func scalar(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		// YAML reads yes/no as booleans; sshd spells them yes/no.
		if t {
			return "yes", nil
		}
		return "no", nil
	case int, int64, uint64, float64:
		return fmt.Sprint(t), nil
	}
	return "", fmt.Errorf("%v: expected a value, a list of values or a comparison", v)
}

// accepts reports whether an effective value meets the rule.
func (r rule) accepts(got string) bool {
	if r.op == "" {
		return slices.Contains(r.values, strings.ToLower(got))
	}
	n, err := strconv.ParseFloat(got, 64)
	if err != nil {
		return false
	}
	switch r.op {
	case ">=":
		return n >= r.num
	case "<=":
		return n <= r.num
	case ">":
		return n > r.num
	case "<":
		return n < r.num
	case "!=":
		return n != r.num
	}
	return n == r.num
}

// Run reads the effective configuration and judges it.
func (c *Config) Run(ctx context.Context, env *steps.Env) error {
	cfg, err := c.effective(ctx, c.Match)
	if err != nil {
		return err
	}
	rootMatch := map[string]string{"user": "root"}
	for k, v := range c.Match {
		if k != "user" {
			rootMatch[k] = v
		}
	}
	rootCfg, err := c.effective(ctx, rootMatch)
	if err != nil {
		return err
	}

	var unmet []string
	var rows [][]string
	keys := slices.Clone(runbookKeys)
	for k := range c.Require {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys[len(runbookKeys):])
	for _, k := range keys {
		got, ok := cfg[k]
		verdict := ""
		if v, req := c.Require[k]; req {
			r, _ := parseRule(v)
			switch {
			case !ok:
				verdict = "REQUIRED " + r.String() + ": sshd does not know this keyword"
				unmet = append(unmet, fmt.Sprintf("%s: unknown to this sshd (required %s)", k, r))
			case r.accepts(got):
				verdict = "ok (required " + r.String() + ")"
			default:
				verdict = "REQUIRED " + r.String()
				unmet = append(unmet, fmt.Sprintf("%s is %s, required %s", k, got, r))
			}
		}
		if ok || verdict != "" {
			rows = append(rows, []string{k, got, rootCfg[k], verdict})
		}
	}
	findings := c.forbidden(cfg, rootCfg)

	env.SetOutput("config", excerpt(cfg, keys))
	env.SetOutput("root_config", excerpt(rootCfg, keys))
	env.SetOutput("findings", steps.List(findingTexts(findings)))
	env.SetOutput("unmet", steps.List(unmet))
	env.SetOutput("compliant", len(unmet) == 0 && len(findings) == 0)
	title := "Effective sshd configuration (sshd -T" + matchArg(c.Match) + ")"
	env.AddEvidence(steps.TableEvidence(title, []string{"keyword", "value", "value for root", "policy"}, rows))
	if len(findings) > 0 {
		var fr [][]string
		for _, f := range findings {
			fr = append(fr, []string{f.what, f.fix})
		}
		env.AddEvidence(steps.TableEvidence("Findings", []string{"finding", "fix"}, fr))
	}
	problems := append(unmet, findingTexts(findings)...)
	if len(problems) > 0 {
		return steps.Failf("sshd on %s: %s", hostName(c.Host), strings.Join(problems, "; "))
	}
	return nil
}

type finding struct{ what, fix string }

func findingTexts(fs []finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.what
	}
	return out
}

// forbidden finds the values no policy should allow.
func (c *Config) forbidden(cfg, root map[string]string) []finding {
	var out []finding
	if strings.EqualFold(cfg["permitemptypasswords"], "yes") {
		out = append(out, finding{"permitemptypasswords yes: an account without a password logs in", "PermitEmptyPasswords no"})
	}
	if c.AllowRootPassword {
		return out
	}
	if strings.EqualFold(root["permitrootlogin"], "yes") {
		out = append(out, finding{"permitrootlogin yes: root logs in directly, with a password too",
			"PermitRootLogin no (or prohibit-password): log in as a user with a key and use sudo"})
	}
	pw := strings.EqualFold(root["passwordauthentication"], "yes") || strings.EqualFold(root["kbdinteractiveauthentication"], "yes")
	if pw && strings.EqualFold(root["permitrootlogin"], "yes") {
		out = append(out, finding{"password authentication is on for root: root's password can be guessed over the network",
			"PasswordAuthentication no (and KbdInteractiveAuthentication no), at least in a Match User root block"})
	}
	return out
}

func excerpt(cfg map[string]string, keys []string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := cfg[k]; ok {
			out[k] = v
		}
	}
	return out
}

func hostName(h string) string {
	if h == "" {
		return "local"
	}
	return h
}

func matchArg(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range matchKeys {
		if v, ok := m[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return " -C " + strings.Join(parts, ",")
}

// effective runs sshd -T and parses its "keyword value" lines; keywords
// printed several times (hostkey, listenaddress) keep every value,
// space-separated.
func (c *Config) effective(ctx context.Context, match map[string]string) (map[string]string, error) {
	args := []string{c.Sshd, "-T"}
	if c.ConfigFile != "" {
		args = append(args, "-f", c.ConfigFile)
	}
	if m := matchArg(match); m != "" {
		args = append(args, "-C", strings.TrimPrefix(m, " -C "))
	}
	// sshd lives in /usr/sbin, often not in a user's PATH; -T needs the
	// privilege separation folder that a running sshd creates.
	script := `mkdir -p /run/sshd 2>/dev/null; PATH="$PATH:/usr/sbin:/usr/local/sbin"; exec "$@"`
	res, err := hostexec.Run(ctx, c.Host, append([]string{"sh", "-c", script, "sh"}, args...), nil)
	if err != nil {
		return nil, fmt.Errorf("sshd -T on %s: %w", hostName(c.Host), err)
	}
	if res.ExitCode != 0 {
		msg := strings.TrimSpace(res.Stderr)
		hint := ""
		if strings.Contains(msg, "no hostkeys") || strings.Contains(msg, "Permission denied") {
			hint = " (sshd -T needs root: use lab:NAME or ssh://user@host?sudo=true)"
		}
		return nil, fmt.Errorf("sshd -T on %s exited %d: %s%s", hostName(c.Host), res.ExitCode, msg, hint)
	}
	return parseEffective(res.Stdout), nil
}

func parseEffective(out string) map[string]string {
	cfg := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || k == "" {
			continue
		}
		if prev, dup := cfg[k]; dup {
			cfg[k] = prev + " " + v
		} else {
			cfg[k] = v
		}
	}
	return cfg
}
