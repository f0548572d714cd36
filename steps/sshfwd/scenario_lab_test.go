package sshfwd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/runner"
	_ "github.com/opsdrill/opsdrill/steps/all"
	"github.com/opsdrill/opsdrill/steps/host"
)

const scenarioFile = "../../scenarios/ssh-port-forward.yaml"

// TestScenarioPortForward runs scenarios/ssh-port-forward.yaml against the
// lab over SSH, as make demo does: it passes with the runbook's server;
// with GatewayPorts no on the server the policy check fails, and without
// the policy check it is the third host's own check that fails.
func TestScenarioPortForward(t *testing.T) {
	l := labtest.Up(t, lab.ForwardEnv)
	run := func(extra map[string]any) *reports.Scenario {
		t.Helper()
		p := &host.Pool{SSHConfig: l.SSHConfig()}
		defer p.Close()
		target := runner.NewTarget()
		require.NoError(t, target.LoadVarsFile("../../scenarios/targets/lab.yaml"))
		target.Merge(l.Vars())
		target.Merge(l.SSHVars())
		target.Merge(extra)
		sc, err := runner.LoadFile(scenarioFile, runner.LoadOptions{ExtraVars: target.Names()})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(host.WithPool(context.Background(), p), 3*time.Minute)
		defer cancel()
		res, err := runner.Run(ctx, []*runner.Scenario{sc}, runner.Options{ReportDir: t.TempDir(), Vars: target.Vars, Secrets: target.Secrets})
		require.NoError(t, err)
		return res.Run.Scenarios[0]
	}
	step := func(sc *reports.Scenario, id string) *reports.Step {
		for _, s := range sc.Steps {
			if s.ID == id {
				return s
			}
		}
		t.Fatalf("no step %s", id)
		return nil
	}

	got := run(nil)
	require.Equal(t, "passed", got.Status, "%s", got.Error)
	for _, id := range []string{"policy", "before", "tunnel", "reachable", "after"} {
		assert.Equal(t, "passed", step(got, id).Status, id)
	}
	tun := step(got, "tunnel").Outputs
	assert.Equal(t, "0.0.0.0:9090", tun["bound_address"])
	assert.Contains(t, tun["listening"], "0.0.0.0:9090", "GatewayPorts yes: every interface")
	assert.Equal(t, "duration elapsed", tun["down_reason"])

	// The fault: GatewayPorts no on the server.
	server, err := l.Host(lab.ForwardServer)
	require.NoError(t, err)
	ctx := context.Background()
	res, err := server.Exec(ctx, "sh", "-c", "sed -i 's/^GatewayPorts yes/GatewayPorts no/' "+lab.ForwardServerConf+" && kill -HUP $(cat /run/sshd.pid)")
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.Eventually(t, func() bool {
		r, err := server.Exec(ctx, "sh", "-c", "sshd -T | grep -x 'gatewayports no'")
		return err == nil && r.ExitCode == 0
	}, 10*time.Second, 200*time.Millisecond)

	got = run(nil)
	assert.Equal(t, "failed", got.Status)
	pol := step(got, "policy")
	assert.Equal(t, "failed", pol.Status)
	assert.Contains(t, pol.Error, "gatewayports is no, required clientspecified or yes")

	got = run(map[string]any{"fwd_check_policy": false})
	assert.Equal(t, "failed", got.Status)
	assert.Equal(t, "skipped", step(got, "policy").Status)
	reach := step(got, "reachable")
	assert.Equal(t, "failed", reach.Status, "the third host cannot reach the port the server bound on loopback only")
	tun = step(got, "tunnel").Outputs
	if l, ok := tun["listening"].([]any); ok {
		for _, a := range l {
			assert.False(t, strings.HasPrefix(a.(string), "0.0.0.0:"), "GatewayPorts no binds loopback: %v", l)
		}
	}
}
