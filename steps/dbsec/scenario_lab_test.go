package dbsec

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/runner"
	"github.com/opsdrill/opsdrill/steps/host"
)

const scenarioFile = "../../scenarios/db-encryption.yaml"

// TestScenarioDBEncryption runs scenarios/db-encryption.yaml against the
// lab's pair with the vars make demo passes: it passes, and with the pair
// accepting plaintext clients (a fault on the failover drill's database)
// it fails at the in-transit check.
func TestScenarioDBEncryption(t *testing.T) {
	f := upPair(t)
	run := func(overSSH bool) *reports.Scenario {
		target := runner.NewTarget()
		require.NoError(t, target.LoadVarsFile("../../scenarios/targets/lab.yaml"))
		target.Merge(f.l.Vars())
		ctx := context.Background()
		if overSSH {
			// As make demo runs it: the data folder and the key backup
			// reached as ssh://NAME?sudo=true through the lab's ssh_config.
			target.Merge(f.l.SSHVars())
			p := &host.Pool{SSHConfig: f.l.SSHConfig()}
			defer p.Close()
			ctx = host.WithPool(ctx, p)
		}
		sc, err := runner.LoadFile(scenarioFile, runner.LoadOptions{ExtraVars: target.Names()})
		require.NoError(t, err)
		res, err := runner.Run(ctx, []*runner.Scenario{sc}, runner.Options{
			ReportDir: t.TempDir(), Vars: target.Vars, Secrets: target.Secrets,
		})
		require.NoError(t, err)
		return res.Run.Scenarios[0]
	}

	for _, overSSH := range []bool{false, true} {
		got := run(overSSH)
		require.Equal(t, "passed", got.Status, "over ssh %v: %s", overSSH, got.Error)
		byID := map[string]string{}
		for _, s := range got.Steps {
			byID[s.ID] = s.Status
		}
		assert.Equal(t, map[string]string{"in_transit": "passed", "at_rest_rds": "skipped", "at_rest": "passed"}, byID)
		if overSSH {
			assert.Equal(t, "ssh://db-a?sudo=true", got.Steps[2].Outputs["datadir_host"])
		}
	}

	sh(t, f.host(t, "db-a"), "mariadb -e 'SET GLOBAL require_secure_transport = OFF'")
	t.Cleanup(func() { sh(t, f.host(t, "db-a"), "mariadb -e 'SET GLOBAL require_secure_transport = ON'") })
	got := run(false)
	assert.Equal(t, "failed", got.Status)
	assert.Equal(t, "in_transit", got.Steps[0].ID)
	assert.Equal(t, "failed", got.Steps[0].Status)
	assert.Contains(t, got.Steps[0].Expectations[len(got.Steps[0].Expectations)-1].Expr, "plaintext_refused")
	assert.False(t, got.Steps[0].Expectations[len(got.Steps[0].Expectations)-1].OK)
}
