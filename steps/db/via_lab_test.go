package db

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/steps/host"
)

// TestFloodViaBastionLab: db.flood and db.verify through the lab's bastion
// over real SSH, the endpoint's name resolved by the pair's resolver asked
// through the tunnel, and a host name only the far side knows (the lab
// network's DNS) dialled by name.
func TestFloodViaBastionLab(t *testing.T) {
	l := labtest.Up(t, lab.PairEnv, lab.BastionEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pair, err := lab.OpenMariaDBPair(ctx, l.ID)
	require.NoError(t, err)
	vars := l.Vars()
	pl := &pairLab{lab: l, pair: pair, password: vars[lab.SecretsKey].(map[string]any)["rds_password"].(string), resolver: vars["rds_resolver"].(string)}
	p := &host.Pool{SSHConfig: l.SSHConfig()}
	t.Cleanup(func() { _ = p.Close() })
	ctx = host.WithPool(ctx, p)
	writer, err := pair.Writer(ctx)
	require.NoError(t, err)
	_, err = net.DefaultResolver.LookupHost(ctx, writer.Name)
	require.Error(t, err, "the writer's name is unknown on this machine")

	for _, tc := range []struct {
		name string
		conn func() Conn
	}{
		{name: "endpoint via the resolver, through the tunnel", conn: func() Conn {
			c := pl.conn()
			c.Via = "ssh://" + lab.BastionHost
			return c
		}},
		{name: "a name resolved on the bastion", conn: func() Conn {
			c := defaultConn()
			c.DSN = pl.dsn(writer.Name)
			c.Via = "ssh://" + lab.BastionHost
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := newFlood().(*Flood)
			f.Conn = tc.conn()
			f.Writers, f.Count, f.Duration, f.Table = 2, 50, time.Minute, "via_test"
			require.NoError(t, f.Validate())
			env, rec := newEnv(t, dir, "drill", "flood")
			err := f.Run(ctx, env)
			require.NoError(t, err)
			rec.assertNoSecret(t, env, err, pl.password)
			out := env.Outputs()
			assert.Equal(t, int64(100), intOut(t, out, "acknowledged"))

			v := newVerify().(*Verify)
			v.Conn = tc.conn()
			v.OpLog = out["oplog"].(string)
			v.RequireFailover = false
			require.NoError(t, v.Validate())
			venv, _ := newEnv(t, dir, "drill", "verify")
			require.NoError(t, v.Run(ctx, venv))
			assert.Equal(t, int64(0), intOut(t, venv.Outputs(), "lost"))
		})
	}
}
