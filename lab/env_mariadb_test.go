package lab_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
)

// TestMariaDBPair brings the pair up and drives it through what the drills
// do: the endpoint CNAME names the primary, writes replicate, a switchover
// (RDS reboot with failover) swaps the roles and keeps every row, an abrupt
// failover kills the writer and promotes the standby, and a rebuild gives
// the pair a standby again.
func TestMariaDBPair(t *testing.T) {
	l := labtest.Up(t, lab.PairEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	vars := l.Vars()
	assert.Equal(t, lab.PairEndpoint, vars["rds_endpoint"])
	dns, err := l.Host(lab.PairDNSHost)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("http://%s:%d", dns.IP, lab.PairAPIPort), vars["rds_api_endpoint"])
	assert.Regexp(t, `^AKIALAB[0-9A-F]{13}$`, vars["rds_api_access_key_id"])
	assert.NotEmpty(t, vars["rds_resolver"])
	assert.Contains(t, vars[lab.SecretsKey], "rds_password")
	assert.Contains(t, vars[lab.SecretsKey], "rds_api_secret_access_key")

	p, err := lab.OpenMariaDBPair(ctx, l.ID)
	require.NoError(t, err)
	w, err := p.Writer(ctx)
	require.NoError(t, err)
	assert.Equal(t, "db-a", w.Name)
	mode, err := p.Replication(ctx)
	require.NoError(t, err)
	assert.Equal(t, lab.SemiSync, mode)

	resolve := func() string {
		res, err := p.DNS().Exec(ctx, "dig", "+short", "@127.0.0.1", lab.PairEndpoint)
		require.NoError(t, err)
		require.NoError(t, res.Err())
		return res.Stdout
	}
	assert.Contains(t, resolve(), "db-a.lab-1a.compute.lab.")

	id, err := p.Identity(ctx, w)
	require.NoError(t, err)
	assert.Equal(t, lab.PairIdentity{Host: "db-a", AZ: "lab-1a", DNSName: "db-a.lab-1a.compute.lab", ServerID: 1, Running: true}, id)
	standby := p.Other(w)
	id, err = p.Identity(ctx, standby)
	require.NoError(t, err)
	assert.True(t, id.ReadOnly, "the standby is read-only")

	insert := func(h *lab.Host, n int) {
		_, err := p.SQL(ctx, h, fmt.Sprintf("CREATE TABLE IF NOT EXISTS drill.pairtest (n INT PRIMARY KEY); INSERT INTO drill.pairtest VALUES (%d)", n))
		require.NoError(t, err)
	}
	count := func(h *lab.Host) string {
		rows, err := p.SQL(ctx, h, "SELECT COUNT(*) FROM drill.pairtest")
		require.NoError(t, err)
		return rows[0][0]
	}
	insert(w, 1)
	require.NoError(t, p.WaitReplicating(ctx))
	assert.Equal(t, "1", count(standby))

	// Reboot with failover: roles swap, the old writer rejoins read-only.
	old, promoted, err := p.Switchover(ctx)
	require.NoError(t, err)
	assert.Equal(t, "db-a", old.Name)
	assert.Equal(t, "db-b", promoted.Name)
	assert.Contains(t, resolve(), "db-b.lab-1b.compute.lab.")
	st, err := old.State(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, "running", st, "the old writer is down until it rejoins")
	require.NoError(t, p.Rejoin(ctx, old))
	insert(promoted, 2)
	require.NoError(t, p.WaitReplicating(ctx))
	assert.Equal(t, "2", count(old))
	id, err = p.Identity(ctx, old)
	require.NoError(t, err)
	assert.True(t, id.ReadOnly)

	// Asynchronous replication, then the abrupt failover.
	require.NoError(t, p.SetReplication(ctx, lab.Async))
	mode, err = p.Replication(ctx)
	require.NoError(t, err)
	assert.Equal(t, lab.Async, mode)
	killed, promoted, err := p.FailOver(ctx)
	require.NoError(t, err)
	assert.Equal(t, "db-b", killed.Name)
	assert.Equal(t, "db-a", promoted.Name)
	st, err = killed.State(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, "running", st)
	id, err = p.Identity(ctx, killed)
	require.NoError(t, err)
	assert.False(t, id.Running)
	assert.True(t, strings.Contains(resolve(), "db-a.lab-1a.compute.lab."))
	insert(promoted, 3)

	// A new process finds the pair, killed host included, and rebuilds it.
	p2, err := lab.OpenMariaDBPair(ctx, "")
	if err != nil { // several labs run (parallel tests): name this one
		p2, err = lab.OpenMariaDBPair(ctx, l.ID)
	}
	require.NoError(t, err)
	require.NoError(t, p2.Rebuild(ctx, killed))
	assert.Equal(t, "3", count(killed))
	require.NoError(t, p2.SetReplication(ctx, lab.SemiSync))
	insert(promoted, 4)
	require.NoError(t, p2.WaitReplicating(ctx))
	assert.Equal(t, "4", count(killed))

	// The lab's RDS API shuts mariadbd down and leaves its host running:
	// such a host does not serve, and making the pair whole starts
	// mariadbd in it, not just the container.
	res, err := killed.Exec(ctx, "mariadb-admin", "shutdown")
	require.NoError(t, err)
	require.NoError(t, res.Err())
	st, err = killed.State(ctx)
	require.NoError(t, err)
	assert.Equal(t, "running", st)
	id, err = p2.Identity(ctx, killed)
	require.NoError(t, err)
	assert.False(t, id.Running, "mariadbd down in a running host")
	require.NoError(t, p2.EnsureStandby(ctx))
	id, err = p2.Identity(ctx, killed)
	require.NoError(t, err)
	assert.True(t, id.Running && id.ReadOnly, "%+v", id)
	insert(promoted, 5)
	require.NoError(t, p2.WaitReplicating(ctx))
	assert.Equal(t, "5", count(killed))
}
