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
	assert.Equal(t, []string{lab.PortgateGate, lab.PortgateClient1, lab.PortgateClient2}, names)
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
