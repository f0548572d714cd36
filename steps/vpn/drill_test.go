package vpn_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
	_ "github.com/opsdrill/opsdrill/steps/aws"
	_ "github.com/opsdrill/opsdrill/steps/ping"
	_ "github.com/opsdrill/opsdrill/steps/vpn"
)

var fixture, _ = filepath.Abs("../../scenarios/fixtures/aws-vpn-generic.txt")

// drill runs steps against the lab's vpn environment the way the runner
// does: parameters decoded from YAML into the step's own struct, validated,
// run with an Env whose undo actions are kept and run at the end.
type drill struct {
	t    testing.TB
	l    *lab.Lab
	ctx  context.Context
	vars map[string]any
	cgw  string // host reference of the customer gateway

	mu   sync.Mutex
	undo []func(context.Context) error
}

func newDrill(t testing.TB) *drill {
	l := labtest.Up(t, lab.VPNEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return &drill{t: t, l: l, ctx: ctx, vars: l.Vars(), cgw: "lab:" + l.ID + "/cgw"}
}

// step runs uses with the given parameters and returns its outputs,
// evidence and error.
func (d *drill) step(uses string, with map[string]any) (map[string]any, []steps.Evidence, error) {
	d.t.Helper()
	spec, ok := steps.Lookup(uses)
	require.True(d.t, ok, uses)
	st := spec.New()
	b, err := yaml.Marshal(with)
	require.NoError(d.t, err)
	require.NoError(d.t, yaml.Unmarshal(b, st), uses)
	if v, ok := st.(steps.Validator); ok {
		require.NoError(d.t, v.Validate(), uses)
	}
	env := steps.NewEnv("vpn-lab", uses, d.t.TempDir(), steps.Hooks{
		Log: func(l string) { d.t.Logf("%s: %s", uses, l) },
		Undo: func(_ string, fn func(context.Context) error) {
			d.mu.Lock()
			d.undo = append(d.undo, fn)
			d.mu.Unlock()
		},
	})
	env.BaseDir = "../../scenarios"
	err = st.Run(d.ctx, env)
	return env.Outputs(), env.Evidence(), err
}

// cleanup runs the undo actions in reverse, as the runner does after a
// scenario, and checks the customer gateway is as the lab left it.
func (d *drill) cleanup() {
	d.t.Helper()
	d.mu.Lock()
	undo := d.undo
	d.undo = nil
	d.mu.Unlock()
	for i := len(undo) - 1; i >= 0; i-- {
		assert.NoError(d.t, undo[i](context.Background()))
	}
	out := d.exec("cgw", "sh", "-c", "swanctl --list-conns; swanctl --list-sas; ls /etc/swanctl/conf.d; ip -4 addr show dev eth0 | grep -c 169.254 || true")
	assert.Equal(d.t, "0", strings.TrimSpace(out), "cgw has no connection, SA, file or inside address left")
}

func (d *drill) exec(host string, args ...string) string {
	d.t.Helper()
	h, err := d.l.Host(host)
	require.NoError(d.t, err)
	res, err := h.Exec(d.ctx, args...)
	require.NoError(d.t, err)
	require.NoError(d.t, res.Err())
	return res.Stdout
}

// generic writes the fixture with edits applied (old -> new, first
// occurrence of each) and returns its path.
func (d *drill) generic(edits ...string) string {
	d.t.Helper()
	b, err := os.ReadFile(fixture)
	require.NoError(d.t, err)
	text := string(b)
	for i := 0; i+1 < len(edits); i += 2 {
		require.Contains(d.t, text, edits[i])
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	path := filepath.Join(d.t.TempDir(), "generic.txt")
	require.NoError(d.t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// config renders tunnel #1 of a Generic file for the lab's gateways.
func (d *drill) config(file string) map[string]any {
	d.t.Helper()
	out, _, err := d.step("vpn.config", map[string]any{
		"file": file, "tunnel": 1, "vpc_cidr": d.vars["vpn_vpc_cidr"],
		"local_address": d.vars["vpn_local_address"], "remote_address": d.vars["vpn_remote_address"],
	})
	require.NoError(d.t, err)
	return out
}

func (d *drill) up(cfg map[string]any) (map[string]any, []steps.Evidence, error) {
	return d.step("tunnel.up", map[string]any{
		"host": d.cgw, "config": cfg["config_file"], "connection": cfg["connection"],
		"up_commands": cfg["up_commands"], "down_commands": cfg["down_commands"], "timeout": "30s",
	})
}

func (d *drill) ping(address string, extra map[string]any) (map[string]any, error) {
	with := map[string]any{"host": d.cgw, "address": address, "count": 3, "interval": "200ms", "timeout": "1s"}
	for k, v := range extra {
		with[k] = v
	}
	out, _, err := d.step("net.ping", with)
	return out, err
}

func (d *drill) status(requireUp ...string) (map[string]any, error) {
	with := map[string]any{
		"vpn_connection_id": "vpn-0a1b2c3d4e5f60718", "region": d.vars["vpn_aws_region"],
		"endpoint": d.vars["vpn_aws_endpoint"], "access_key_id": d.vars["vpn_aws_access_key_id"],
		"secret_access_key": d.vars["secrets"].(map[string]any)["vpn_aws_secret_access_key"],
		"max_backoff":       "100ms",
	}
	if len(requireUp) > 0 {
		with["require_up"] = requireUp
	}
	out, _, err := d.step("aws.vpn_status", with)
	return out, err
}
