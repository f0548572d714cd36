package dbsec

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/runner"
)

const scenarioFile = "../../scenarios/db-encryption.yaml"

// TestScenarioDBEncryption runs scenarios/db-encryption.yaml against the
// lab's pair with the vars make demo passes: it passes, and with the pair
// accepting plaintext clients (a fault on the failover drill's database)
// it fails at the in-transit check.
func TestScenarioDBEncryption(t *testing.T) {
	f := upPair(t)
	run := func() *reports.Scenario {
		target := runner.NewTarget()
		require.NoError(t, target.LoadVarsFile("../../scenarios/targets/lab.yaml"))
		target.Merge(f.l.Vars())
		sc, err := runner.LoadFile(scenarioFile, runner.LoadOptions{ExtraVars: target.Names()})
		require.NoError(t, err)
		res, err := runner.Run(context.Background(), []*runner.Scenario{sc}, runner.Options{
			ReportDir: t.TempDir(), Vars: target.Vars, Secrets: target.Secrets,
		})
		require.NoError(t, err)
		return res.Run.Scenarios[0]
	}

	got := run()
	require.Equal(t, "passed", got.Status, "%s", got.Error)
	byID := map[string]string{}
	for _, s := range got.Steps {
		byID[s.ID] = s.Status
	}
	assert.Equal(t, map[string]string{"in_transit": "passed", "at_rest_rds": "skipped", "at_rest": "passed"}, byID)

	sh(t, f.host(t, "db-a"), "mariadb -e 'SET GLOBAL require_secure_transport = OFF'")
	got = run()
	assert.Equal(t, "failed", got.Status)
	assert.Equal(t, "in_transit", got.Steps[0].ID)
	assert.Equal(t, "failed", got.Steps[0].Status)
	assert.Contains(t, got.Steps[0].Expectations[len(got.Steps[0].Expectations)-1].Expr, "plaintext_refused")
	assert.False(t, got.Steps[0].Expectations[len(got.Steps[0].Expectations)-1].OK)
}
