package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/runner"
	"github.com/opsdrill/opsdrill/steps"
	_ "github.com/opsdrill/opsdrill/steps/flow"
	"github.com/opsdrill/opsdrill/steps/port"
	_ "github.com/opsdrill/opsdrill/steps/tcp"
)

func TestPortgateEnvRegistered(t *testing.T) {
	e, ok := lab.LookupEnv(lab.PortgateEnv)
	require.True(t, ok)
	var names []string
	for _, h := range e.Hosts {
		names = append(names, h.Name)
	}
	assert.Equal(t, []string{lab.PortgateGate, lab.PortgateClient1, lab.PortgateClient2, lab.PortgateInner}, names)
	assert.True(t, e.Hosts[0].NetAdmin, "the gate manages its firewall")
	// Host names must not clash with any other environment: `make demo`
	// brings them all up together.
	for _, other := range lab.Envs() {
		if other.Name == lab.PortgateEnv {
			continue
		}
		for _, h := range other.Hosts {
			assert.NotContains(t, names, h.Name, "host %s is also in environment %s", h.Name, other.Name)
		}
	}
}

// TestPortgateEnv brings the environment up and runs the drill
// (scenarios/open-port.yaml) against it, then kills portgate with a lease
// live and checks the lease still ends on time after a restart.
func TestPortgateEnv(t *testing.T) {
	l := labtest.Up(t, lab.PortgateEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gate, err := l.Host(lab.PortgateGate)
	require.NoError(t, err)
	vars := l.Vars()
	pg, ok := vars["portgate"].(map[string]any)
	require.True(t, ok, "vars: %v", vars)
	assert.Equal(t, fmt.Sprintf("https://%s:%d", gate.IP, lab.PortgateAPIPort), pg["url"])
	assert.Equal(t, "lab:"+l.ID+"/"+lab.PortgateClient1, pg["client"])
	secrets := map[string]string{}
	for k, v := range vars[lab.SecretsKey].(map[string]any) {
		secrets[k] = v.(string)
	}
	delete(vars, lab.SecretsKey)
	secret := secrets[lab.PortgateSecretName]
	require.Len(t, secret, 32, "a 160-bit key in base32")

	t.Run("scenario", func(t *testing.T) {
		sc, err := runner.LoadFile("../scenarios/open-port.yaml", runner.LoadOptions{})
		require.NoError(t, err)
		dir := t.TempDir()
		res, err := runner.Run(ctx, []*runner.Scenario{sc}, runner.Options{ReportDir: dir, Vars: vars, Secrets: secrets})
		require.NoError(t, err)
		require.Len(t, res.Run.Scenarios, 1)
		got := res.Run.Scenarios[0]
		for _, st := range got.Steps {
			assert.Equal(t, "passed", st.Status, "step %s: %s %+v", st.ID, st.Error, st.Expectations)
		}
		assert.Equal(t, "passed", got.Status)
		for _, f := range []string{runner.JSONFile, runner.JournalFile, runner.JUnitFile} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			require.NoError(t, err)
			assert.NotContains(t, string(b), secret, "%s holds the key", f)
		}
		// The gate's audit log tells the same story, without a code.
		out, err := gate.Exec(ctx, "cat", "/var/log/portgate/audit.jsonl")
		require.NoError(t, err)
		var denies []string
		for _, line := range strings.Split(strings.TrimSpace(out.Stdout), "\n") {
			var e struct{ Event, Reason string }
			require.NoError(t, json.Unmarshal([]byte(line), &e))
			if e.Event == "deny" {
				denies = append(denies, e.Reason)
			}
		}
		require.GreaterOrEqual(t, len(denies), 3)
		assert.Equal(t, []string{"bad_code", "port_not_allowed", "replay"}, denies[:3])
		assert.NotContains(t, out.Stdout, secret)
	})

	t.Run("scenario steps", func(t *testing.T) {
		// The lab case of the throttle: 12 wrong codes from pgclient2, then
		// the user's fresh code from pgclient1 opens (both are steps of the
		// scenario above; here, the gate's own record of them).
		out, err := gate.Exec(ctx, "cat", "/var/log/portgate/audit.jsonl")
		require.NoError(t, err)
		var opensFromClient, lockouts int
		for _, line := range strings.Split(strings.TrimSpace(out.Stdout), "\n") {
			var e struct{ Event, Source, Scope string }
			require.NoError(t, json.Unmarshal([]byte(line), &e))
			switch {
			case e.Event == "lockout" && e.Scope == "user" && e.Source == pg["other_ip"]:
				lockouts++
			case e.Event == "open" && e.Source == pg["client_ip"]:
				opensFromClient++
			}
		}
		assert.Positive(t, lockouts, "the guessing client was backed off")
		assert.Equal(t, 2, opensFromClient, "the drill's open, and the one after the attack")
	})

	t.Run("crash", func(t *testing.T) {
		open := newStep[*port.Open](t, "port.open")
		open.URL, open.CACert, open.User = pg["url"].(string), lab.PortgateCAPath, lab.PortgateUser
		open.Secret, open.Port, open.Duration, open.Host = secret, lab.PortgateSSHPort, 12*time.Second, pg["client"].(string)
		require.NoError(t, open.Validate())
		env := steps.NewEnv("crash", "open", t.TempDir(), steps.Hooks{})
		require.NoError(t, open.Run(ctx, env))
		out := env.Outputs()

		pid, err := gate.Exec(ctx, "pidof", "portgate")
		require.NoError(t, err)
		require.NoError(t, pid.Err())
		res, err := gate.Exec(ctx, "kill", "-KILL", strings.TrimSpace(pid.Stdout))
		require.NoError(t, err)
		require.NoError(t, res.Err())
		client, err := l.Host(lab.PortgateClient1)
		require.NoError(t, err)
		probe, err := client.Exec(ctx, "nc", "-z", "-w", "2", gate.IP.String(), fmt.Sprint(lab.PortgateSSHPort))
		require.NoError(t, err)
		assert.Equal(t, 0, probe.ExitCode, "the lease outlives the crash")

		_, err = gate.ExecCommand(ctx, lab.Command{Detach: true, Args: []string{
			"/usr/local/bin/portgate", "--config", "/etc/portgate/config.yaml", "--log-file", "/var/log/portgate/portgate.log"}})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			r, err := client.Exec(ctx, "curl", "-sf", "--cacert", lab.PortgateCAPath, pg["url"].(string)+"/healthz")
			return err == nil && r.ExitCode == 0
		}, time.Minute, 250*time.Millisecond)

		exp := newStep[*port.Expiry](t, "port.expiry")
		exp.Address = fmt.Sprintf("%s:%d", gate.IP, lab.PortgateSSHPort)
		exp.Expires, exp.Host, exp.Tolerance = out["expires"].(string), pg["client"].(string), 2*time.Second
		require.NoError(t, exp.Validate())
		env = steps.NewEnv("crash", "expiry", t.TempDir(), steps.Hooks{})
		require.NoError(t, exp.Run(ctx, env), "the lease still ends on time")
		t.Logf("closed %v ms after the lease end", env.Outputs()["closed_after_ms"])
	})
}

// newStep returns the parameters of step name with their defaults.
func newStep[T steps.Step](t *testing.T, name string) T {
	t.Helper()
	s, ok := steps.Lookup(name)
	require.True(t, ok, name)
	return s.New().(T)
}

// brokenGate is a misconfiguration of the lab's gate and where the drill
// must catch it.
type brokenGate struct {
	name string
	// config rewrites portgate's configuration; fw runs on the gate before
	// portgate restarts; vars changes the drill's vars.
	config func(string) string
	fw     []string
	vars   func(map[string]any)
	// during runs while the drill does (a crash after the open).
	during func(ctx context.Context, t *testing.T, gate *lab.Host)
	// step is the step that must fail, and say what contains; status is
	// the scenario's (default failed).
	step, say, status string
}

// TestPortgateEnvBrokenGates runs scenarios/open-port.yaml against a gate
// misconfigured in each way the drill exists to catch, and checks the drill
// fails at the step that names it.
func TestPortgateEnvBrokenGates(t *testing.T) {
	l := labtest.Up(t, lab.PortgateEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	gate, err := l.Host(lab.PortgateGate)
	require.NoError(t, err)
	orig, err := gate.Exec(ctx, "cat", "/etc/portgate/config.yaml")
	require.NoError(t, err)
	require.NoError(t, orig.Err())
	cases := []brokenGate{
		{
			// The steady state (SSH closed from both clients) fails: the
			// drill does not even start.
			name: "guard missing", step: "ssh_closed", say: "is open, expected closed", status: "not_started",
			// SSH opened in the host firewall, trusting a gate that does
			// not guard it.
			config: func(c string) string { return strings.Replace(c, "ports: [22]", "ports: [2222]", 1) },
			fw:     []string{"nft", "insert", "rule", "inet", "labfw", "input", "tcp", "dport", "22", "accept"},
		},
		{
			name: "allow-list too wide", step: "disallowed_port", say: "expected a refusal",
			config: func(c string) string {
				return strings.Replace(c, "ports: [22]", fmt.Sprintf("ports: [22, %d]", lab.PortgateEchoPort), 1)
			},
		},
		{
			name: "lockout off", step: "guessing_from_other", say: "outputs.throttled",
			config: func(c string) string {
				return strings.Replace(c, "lockout: {max_failures: 5, base: 30s, max: 15m}", "lockout: {off: true}", 1)
			},
		},
		{
			// The step fails, and SSH left open makes the steady state
			// after the drill fail too: deviated.
			name: "lease never ends", step: "closes_on_time", say: "still open", status: "deviated",
			// Once the port is open, the gate keeps it so "like forever", as
			// the seed's page did: something on the gate keeps the lease's
			// element there with no timeout (portgate itself deletes it at
			// the lease end, and its reconcile sets the end again).
			during: func(ctx context.Context, t *testing.T, gate *lab.Host) {
				var client string
				require.Eventually(t, func() bool {
					r, err := gate.Exec(ctx, "sh", "-c", `grep '"event":"open"' /var/log/portgate/audit.jsonl | head -n1`)
					if err != nil || r.Stdout == "" {
						return false
					}
					var e struct{ IP string }
					if json.Unmarshal([]byte(r.Stdout), &e) != nil {
						return false
					}
					client = e.IP
					return client != ""
				}, time.Minute, 200*time.Millisecond)
				// One nft transaction, atomic: the element is there with no
				// end, whatever portgate did to it. A plain re-add is not
				// enough: portgate's reconcile gives a hand-added element its
				// lease's end again, the kernel then expires it, and adding
				// an element that is still there changes nothing.
				elem := fmt.Sprintf("{ %s . tcp . %d }", client, lab.PortgateSSHPort)
				batch := fmt.Sprintf("add element inet portgate lease4 %s\ndelete element inet portgate lease4 %s\nadd element inet portgate lease4 %s\n", elem, elem, elem)
				r, err := gate.ExecCommand(ctx, lab.Command{Args: []string{"sh", "-c", "cat > /run/reopen.nft && nft -f /run/reopen.nft"}, Stdin: []byte(batch)})
				assert.NoError(t, err)
				assert.NoError(t, r.Err())
				_, err = gate.ExecCommand(ctx, lab.Command{Detach: true, Args: []string{"sh", "-c",
					"echo $$ > /run/reopener.pid; while :; do nft -f /run/reopen.nft 2>/dev/null; sleep 0.05; done"}})
				assert.NoError(t, err)
				t.Cleanup(func() {
					_, _ = gate.Exec(context.Background(), "sh", "-c", "kill $(cat /run/reopener.pid); rm -f /run/reopener.pid /run/reopen.nft")
				})
			},
		},
		{
			name: "other is the client", step: "other_reaches_gate", say: "vars.portgate.other != vars.portgate.client",
			vars: func(v map[string]any) { v["other"] = v["client"] },
		},
		{
			name: "other cannot reach the gate", step: "other_reaches_gate", say: "is not open",
			vars: func(v map[string]any) {
				v["reach"] = strings.Replace(v["reach"].(string), fmt.Sprint(lab.PortgateAPIPort), "8444", 1)
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config := orig.Stdout
			if c.config != nil {
				config = c.config(config)
				require.NotEqual(t, orig.Stdout, config, "the case must change the configuration")
			}
			restartPortgate(ctx, t, l, gate, config, c.fw)
			t.Cleanup(func() { restartPortgate(ctx, t, l, gate, orig.Stdout, []string{"nft", "-f", "/etc/labfw.nft"}) })
			vars := l.Vars()
			secrets := map[string]string{}
			for k, v := range vars[lab.SecretsKey].(map[string]any) {
				secrets[k] = v.(string)
			}
			delete(vars, lab.SecretsKey)
			if c.vars != nil {
				c.vars(vars["portgate"].(map[string]any))
			}
			sc, err := runner.LoadFile("../scenarios/open-port.yaml", runner.LoadOptions{})
			require.NoError(t, err)
			if c.during != nil {
				go c.during(ctx, t, gate)
			}
			res, err := runner.Run(ctx, []*runner.Scenario{sc}, runner.Options{ReportDir: t.TempDir(), Vars: vars, Secrets: secrets})
			require.NoError(t, err)
			got := res.Run.Scenarios[0]
			want := c.status
			if want == "" {
				want = "failed"
			}
			assert.Equal(t, want, got.Status)
			// The step's own error and failed expectations, and those of
			// the steps inside it (a step file's iterations).
			var failed []string
			text := ""
			for _, st := range got.Steps {
				if st.Status != "failed" && st.Status != "errored" {
					continue
				}
				failed = append(failed, st.ID)
				if st.ID == c.step || strings.HasPrefix(st.ID, c.step+"/") {
					text += " " + st.Error
					for _, e := range st.Expectations {
						if !e.OK {
							text += " " + e.Expr
						}
					}
				}
			}
			assert.Contains(t, text, c.say, "step %s", c.step)
			require.NotEmpty(t, failed)
			assert.Equal(t, c.step, failed[0], "the first failing step names the fault")
		})
	}
}

// restartPortgate stops portgate, forgets its state, installs config, runs
// fw on the gate and starts portgate again, ready when a client reaches it.
func restartPortgate(ctx context.Context, t *testing.T, l *lab.Lab, gate *lab.Host, config string, fw []string) {
	t.Helper()
	_, _ = gate.Exec(ctx, "sh", "-c", "pkill -x portgate; for i in $(seq 50); do pidof portgate >/dev/null || break; sleep 0.1; done; rm -f /var/lib/portgate/state.json* /var/log/portgate/audit.jsonl*; iptables -F 2>/dev/null; iptables -X 2>/dev/null; iptables -P INPUT ACCEPT; nft delete table inet portgate 2>/dev/null; true")
	r, err := gate.ExecCommand(ctx, lab.Command{Args: []string{"sh", "-c", "cat > /etc/portgate/config.yaml"}, Stdin: []byte(config)})
	require.NoError(t, err)
	require.NoError(t, r.Err())
	if len(fw) > 0 {
		r, err := gate.Exec(ctx, fw...)
		require.NoError(t, err)
		require.NoError(t, r.Err(), "%v", fw)
	}
	_, err = gate.ExecCommand(ctx, lab.Command{Detach: true, Args: []string{
		"/usr/local/bin/portgate", "--config", "/etc/portgate/config.yaml", "--log-file", "/var/log/portgate/portgate.log"}})
	require.NoError(t, err)
	client, err := l.Host(lab.PortgateClient1)
	require.NoError(t, err)
	url := fmt.Sprintf("https://%s/healthz", gate.Addr(lab.PortgateAPIPort))
	require.Eventually(t, func() bool {
		r, err := client.Exec(ctx, "curl", "-sf", "--cacert", lab.PortgateCAPath, url)
		return err == nil && r.ExitCode == 0
	}, time.Minute, 250*time.Millisecond)
}
