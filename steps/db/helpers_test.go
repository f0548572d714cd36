package db

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps"
)

// pairLab is a running mariadb-pair for a test.
type pairLab struct {
	lab      *lab.Lab
	pair     *lab.MariaDBPair
	password string
	resolver string
	// The lab's RDS API service, from the vars.
	apiURL, apiKeyID, apiSecret string
}

func upPair(t testing.TB) *pairLab {
	t.Helper()
	l := labtest.Up(t, lab.PairEnv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := lab.OpenMariaDBPair(ctx, l.ID)
	require.NoError(t, err)
	vars := l.Vars()
	secrets := vars[lab.SecretsKey].(map[string]any)
	return &pairLab{lab: l, pair: p, password: secrets["rds_password"].(string), resolver: vars["rds_resolver"].(string),
		apiURL: vars["rds_api_endpoint"].(string), apiKeyID: vars["rds_api_access_key_id"].(string), apiSecret: secrets["rds_api_secret_access_key"].(string)}
}

// viaAPI points an aws-rds failover at the lab's RDS API service, as
// scenarios/rds-multi-az-failover.yaml does with the lab's vars.
func (pl *pairLab) viaAPI(f *Failover) {
	f.Driver, f.Region, f.EndpointURL, f.AccessKeyID, f.SecretAccessKey = "aws-rds", lab.PairRegion, pl.apiURL, pl.apiKeyID, pl.apiSecret
}

// dsn is the drill user's DSN through the endpoint (host "" ) or to a host.
func (pl *pairLab) dsn(host string) string {
	if host == "" {
		host = lab.PairEndpoint
	}
	// The pair refuses plaintext (require_secure_transport).
	return fmt.Sprintf("%s:%s@tcp(%s:%d)/%s?tls=preferred", lab.PairUser, pl.password, host, lab.PairPort, lab.PairDatabase)
}

func (pl *pairLab) conn() Conn {
	c := defaultConn()
	c.DSN = pl.dsn("")
	c.Resolver = pl.resolver
	return c
}

// sql runs statements as root on the current writer.
func (pl *pairLab) sql(t testing.TB, stmts string) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := pl.pair.Writer(ctx)
	require.NoError(t, err)
	rows, err := pl.pair.SQL(ctx, w, stmts)
	require.NoError(t, err)
	return rows
}

// recorder is a steps.Env whose log lines and secrets a test can inspect.
type recorder struct {
	mu      sync.Mutex
	lines   []string
	secrets []string
	t       testing.TB
}

// timelines gives the steps of one test "scenario" (one report folder) the
// same timeline, as the runner does.
var (
	timelinesMu sync.Mutex
	timelines   = map[string]*steps.Timeline{}
)

func timelineFor(dir string) *steps.Timeline {
	timelinesMu.Lock()
	defer timelinesMu.Unlock()
	tl := timelines[dir]
	if tl == nil {
		tl = &steps.Timeline{}
		timelines[dir] = tl
	}
	return tl
}

func newEnv(t testing.TB, dir, scenario, step string) (*steps.Env, *recorder) {
	r := &recorder{t: t}
	env := steps.NewEnv(scenario, step, dir, steps.Hooks{
		Timeline: timelineFor(dir),
		Log: func(line string) {
			r.mu.Lock()
			r.lines = append(r.lines, line)
			r.mu.Unlock()
			t.Log(step + ": " + line)
		},
		Secret: func(v string) {
			r.mu.Lock()
			r.secrets = append(r.secrets, v)
			r.mu.Unlock()
		},
	})
	return env, r
}

// assertNoSecret checks that no log line, output or error quotes secret.
func (r *recorder) assertNoSecret(t *testing.T, env *steps.Env, err error, secret string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		require.NotContains(t, l, secret)
	}
	require.NotContains(t, fmt.Sprint(env.Outputs()), secret)
	if err != nil {
		require.NotContains(t, err.Error(), secret)
	}
	require.Contains(t, r.secrets, secret, "the step marks the password secret")
}

// run validates and runs a step.
func run(t *testing.T, s interface {
	steps.Step
	steps.Validator
}, env *steps.Env) error {
	t.Helper()
	require.NoError(t, s.Validate())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return s.Run(ctx, env)
}

func intOut(t *testing.T, out map[string]any, name string) int64 {
	t.Helper()
	v, ok := out[name].(int64)
	require.True(t, ok, "output %s is %T (%v)", name, out[name], out[name])
	return v
}

func writerOut(t *testing.T, out map[string]any, cycle string) map[string]any {
	t.Helper()
	ws, ok := out["writers"].(map[string]any)
	require.True(t, ok)
	w, ok := ws[cycle].(map[string]any)
	require.True(t, ok, "writer %s in %v", cycle, keys(ws))
	return w
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return strings.Join(ks, ",")
}
