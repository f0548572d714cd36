package vpn_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/runner"
	_ "github.com/opsdrill/opsdrill/steps/flow"
)

const scenarioFile = "../../scenarios/aws-vpn-tunnel.yaml"

// runScenario runs scenarios/aws-vpn-tunnel.yaml against the drill's lab
// with the vars `make demo` uses, plus overrides.
func (d *drill) runScenario(overrides map[string]any) (*runner.Result, string) {
	d.t.Helper()
	target := runner.NewTarget()
	require.NoError(d.t, target.LoadVarsFile("../../scenarios/targets/lab.yaml"))
	target.Merge(d.l.Vars())
	for k, v := range overrides {
		target.Vars[k] = v
	}
	extra := map[string]bool{}
	for k := range target.Vars {
		extra[k] = true
	}
	sc, err := runner.LoadFile(scenarioFile, runner.LoadOptions{ExtraVars: extra})
	require.NoError(d.t, err)
	dir := d.t.TempDir()
	res, err := runner.Run(d.ctx, []*runner.Scenario{sc}, runner.Options{ReportDir: dir, Vars: target.Vars, Secrets: target.Secrets})
	require.NoError(d.t, err)
	require.Len(d.t, res.Run.Scenarios, 1)
	return res, dir
}

// assertNoSecrets checks no key of the fixture nor the lab's AWS secret is
// anywhere in the report folder.
func (d *drill) assertNoSecrets(dir string) {
	d.t.Helper()
	secrets := []string{"opsdrill_fixture_tunnel1_psk_k7Hq", "opsdrill_fixture_tunnel2_psk_Qm3v",
		d.vars["secrets"].(map[string]any)["vpn_aws_secret_access_key"].(string)}
	files := 0
	require.NoError(d.t, filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		require.NoError(d.t, err)
		for _, s := range secrets {
			assert.NotContains(d.t, string(b), s, "%s holds a secret", path)
		}
		return nil
	}))
	assert.GreaterOrEqual(d.t, files, 3)
}

// TestScenarioAgainstTheLab is `make demo` for the VPN drill: the runbook
// end to end against the lab, every step passing, nothing secret in the
// reports, the customer gateway clean afterwards.
func TestScenarioAgainstTheLab(t *testing.T) {
	d := newDrill(t)
	res, dir := d.runScenario(nil)
	got := res.Run.Scenarios[0]
	byID := map[string]map[string]any{}
	for _, st := range got.Steps {
		assert.Contains(t, []string{"passed"}, st.Status, "step %s (%s): %s %+v", st.ID, st.Uses, st.Error, st.Expectations)
		byID[st.ID] = st.Outputs
	}
	require.Equal(t, "passed", got.Status)
	for _, id := range []string{"config", "up", "up/tunnel", "up/ping", "keepalive", "reach_ec2", "ping_ec2", "status", "down", "ping_after_down"} {
		require.Contains(t, byID, id)
	}
	assert.Equal(t, "***", byID["config"]["psk"])
	assert.EqualValues(t, 0, byID["keepalive"]["lost"])
	assert.EqualValues(t, 20, byID["keepalive"]["sent"])
	assert.Equal(t, "aes128-sha1-modp1024", byID["up"]["ike_proposal"])
	assert.EqualValues(t, 1, byID["status"]["up_count"])
	assert.EqualValues(t, 0, byID["ping_after_down"]["received"])
	assert.Equal(t, true, byID["reach_ec2"]["reachable"])
	d.assertNoSecrets(dir)
	d.cleanup()

	// The same drill with the VPC's route table missing the propagated
	// route: the report names Route Propagation with the runbook's fix.
	t.Run("without route propagation", func(t *testing.T) {
		d.t = t
		d.breakLab(t, "no-route-propagation")
		res, _ := d.runScenario(nil)
		got := res.Run.Scenarios[0]
		assert.Equal(t, "failed", got.Status)
		var reach bool
		for _, st := range got.Steps {
			if st.ID == "reach_ec2" {
				reach = true
				assert.Equal(t, "failed", st.Status)
				assert.Equal(t, "route_propagation", st.Outputs["cause"])
				assert.Contains(t, st.Error, "enable Route Propagation")
			}
		}
		assert.True(t, reach)
		d.cleanup()
	})
}

// TestScenarioCatchesAPSKMismatch runs the same scenario with a Generic
// file whose key AWS does not know: the drill fails at tunnel.up with the
// reason, skips the rest, and still cleans up.
func TestScenarioCatchesAPSKMismatch(t *testing.T) {
	d := newDrill(t)
	res, dir := d.runScenario(map[string]any{
		"vpn_generic_config": d.generic("opsdrill_fixture_tunnel1_psk_k7Hq", "opsdrill_fixture_tunnel1_psk_other"),
	})
	got := res.Run.Scenarios[0]
	assert.Equal(t, "failed", got.Status)
	status := map[string]string{}
	for _, st := range got.Steps {
		status[st.ID] = st.Status
		if st.ID == "up" {
			assert.Contains(t, st.Error, "pre-shared key mismatch")
		}
	}
	assert.Equal(t, "passed", status["config"])
	assert.Equal(t, "failed", status["up"])
	assert.Equal(t, "failed", status["up/tunnel"])
	for _, id := range []string{"up/ping", "ping_ec2", "status", "down"} {
		assert.Equal(t, "skipped", status[id], id)
	}
	var undone bool
	for id, s := range status {
		if strings.HasPrefix(id, "tunnel.down") {
			undone = true
			assert.Equal(t, "passed", s)
		}
	}
	assert.True(t, undone, "tunnel.up's undo ran: %v", status)
	d.assertNoSecrets(dir)
	d.cleanup()
}
