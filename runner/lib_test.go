package runner

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/reports"
)

// TestShippedPortClosedStepFile runs scenarios/lib/port-closed.yaml, the
// piece the port drill's steady state and checks share, against real
// sockets on loopback: a closed port passes from every host, a listening
// one fails the step and names the iteration that reached it.
func TestShippedPortClosedStepFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := free.Addr().String()
	free.Close()

	lib, err := filepath.Abs("../scenarios/lib/port-closed.yaml")
	require.NoError(t, err)
	for _, tc := range []struct {
		name, address, status string
	}{
		{"closed everywhere", closedAddr, reports.StatusPassed},
		{"open: the fault is caught", ln.Addr().String(), reports.StatusFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rel, err := filepath.Rel(dir, lib)
			require.NoError(t, err)
			src := fmt.Sprintf(`
steady_state:
  - id: closed
    uses: %s
    with: { address: %q, from: [local, local], timeout: 1s }
steps:
  - uses: assert
    expect: steps.closed.outputs.hosts == 2
`, rel, tc.address)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "drill.yaml"), []byte(src), 0o644))
			h := runFile(t, Options{}, filepath.Join(dir, "drill.yaml"))
			sc := h.res.Run.Scenarios[0]
			var before *reports.Step
			for _, st := range sc.Steps {
				if st.ID == "closed/probe[1]" && st.Phase == reports.PhaseSteadyBefore {
					before = st
				}
			}
			require.NotNil(t, before, "iterations are reported under the step file: %v", stepIDs(sc))
			if tc.status == reports.StatusPassed {
				assert.Equal(t, reports.StatusPassed, sc.Status, sc.Error)
				assert.Equal(t, "refused", before.Outputs["state"])
				return
			}
			assert.Equal(t, reports.StatusNotStarted, sc.Status)
			assert.Equal(t, reports.StatusFailed, before.Status)
			assert.Equal(t, true, before.Outputs["open"])
			assert.Contains(t, sc.Error, "closed/probe")
		})
	}
}
