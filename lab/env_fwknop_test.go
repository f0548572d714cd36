package lab_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/runner"
)

func TestFwknopEnvRegistered(t *testing.T) {
	e, ok := lab.LookupEnv(lab.FwknopEnv)
	require.True(t, ok)
	var names []string
	for _, h := range e.Hosts {
		names = append(names, h.Name)
	}
	assert.Equal(t, []string{lab.FwknopGate, lab.FwknopClient1, lab.FwknopClient2}, names)
	for _, other := range lab.Envs() {
		if other.Name == lab.FwknopEnv {
			continue
		}
		for _, h := range other.Hosts {
			assert.NotContains(t, names, h.Name, "host %s is also in environment %s", h.Name, other.Name)
		}
	}
}

// TestFwknopEnv runs scenarios/open-port.yaml, unchanged, against fwknopd:
// the fwknop environment's vars given as the drill's portgate section.
// Closed by default, open only for the sender of a valid SPA packet, a
// packet under wrong keys or for a port fwknopd does not open refused, the
// same packet replayed from the other client refused, closed again after
// its timeout.
func TestFwknopEnv(t *testing.T) {
	l := labtest.Up(t, lab.FwknopEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vars := l.Vars()
	fw, ok := vars["fwknop"].(map[string]any)
	require.True(t, ok, "vars: %v", vars)
	assert.Equal(t, "fwknop", fw["driver"])
	delete(vars, lab.SecretsKey)
	vars["portgate"] = fw

	sc, err := runner.LoadFile("../scenarios/open-port.yaml", runner.LoadOptions{})
	require.NoError(t, err)
	res, err := runner.Run(ctx, []*runner.Scenario{sc}, runner.Options{ReportDir: t.TempDir(), Vars: vars})
	require.NoError(t, err)
	got := res.Run.Scenarios[0]
	ran := map[string]string{}
	for _, st := range got.Steps {
		ran[st.ID] = st.Status
		if st.ID == "guessing_from_other" || st.ID == "user_not_locked_out" || st.ID == "user_closes_lease" {
			assert.Equal(t, "skipped", st.Status, "%s is portgate's (fwknopd has no throttle)", st.ID)
			continue
		}
		assert.Equal(t, "passed", st.Status, "step %s: %s %+v", st.ID, st.Error, st.Expectations)
		if st.Uses == "port.open" {
			assert.Equal(t, "fwknop", st.Outputs["driver"], st.ID)
		}
	}
	assert.Equal(t, "passed", got.Status)
	for _, id := range []string{"wrong_code", "replayed_code", "open", "closes_on_time"} {
		assert.Equal(t, "passed", ran[id])
	}

	// The gate's firewall was fwknopd's doing: its chain exists and is
	// empty again.
	gate, err := l.Host(lab.FwknopGate)
	require.NoError(t, err)
	out, err := gate.Exec(ctx, "iptables", "-S", "FWKNOP_INPUT")
	require.NoError(t, err)
	require.NoError(t, out.Err())
	assert.NotContains(t, out.Stdout, "-j ACCEPT", "no access left behind:\n%s", out.Stdout)
	in, err := gate.Exec(ctx, "iptables", "-S", "INPUT")
	require.NoError(t, err)
	assert.True(t, strings.Contains(in.Stdout, "-P INPUT DROP"), "default deny:\n%s", in.Stdout)
}
