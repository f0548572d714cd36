package db

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/steps"
)

// runningFlood is a flood a test ends when it has seen what it needs.
type runningFlood struct {
	acked  atomic.Int64 // acknowledged so far, from the progress line
	cancel context.CancelFunc
	done   chan error
	env    *steps.Env
}

// floodUntilStopped starts a flood through the endpoint that runs until
// stop (as a cancelled scenario would end it: in-flight writes become
// unknown, the op log is complete).
func (pl *pairLab) floodUntilStopped(t *testing.T, dir string, writers int) *runningFlood {
	t.Helper()
	f := newFlood().(*Flood)
	f.Conn = pl.conn()
	f.ReadTimeout, f.WriteTimeout = 2*time.Second, 2*time.Second
	f.Writers, f.Duration, f.ProgressEvery = writers, 5*time.Minute, 50*time.Millisecond
	require.NoError(t, f.Validate())
	rf := &runningFlood{done: make(chan error, 1)}
	rf.env = steps.NewEnv("drill", "flood", dir, steps.Hooks{
		Timeline: timelineFor(dir),
		Progress: func(status string) {
			var n, errs int64
			if _, err := fmt.Sscanf(status, "%d acknowledged, %d errors", &n, &errs); err == nil {
				rf.acked.Store(n)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	rf.cancel = cancel
	go func() { rf.done <- f.Run(ctx, rf.env) }()
	return rf
}

// resumed waits until writes are acknowledged again, more after than before.
func (rf *runningFlood) resumed(t *testing.T) {
	t.Helper()
	from := rf.acked.Load()
	require.Eventually(t, func() bool { return rf.acked.Load() > from+20 }, time.Minute, 20*time.Millisecond, "writes never resumed on the new writer")
}

func (rf *runningFlood) stop(t *testing.T) map[string]any {
	t.Helper()
	rf.cancel()
	require.ErrorIs(t, <-rf.done, context.Canceled)
	return rf.env.Outputs()
}

// backgroundFlood starts a flood through the endpoint and returns a
// function that waits for it and returns its outputs.
func (pl *pairLab) backgroundFlood(t *testing.T, dir string, writers int, d time.Duration) func() map[string]any {
	t.Helper()
	f := newFlood().(*Flood)
	f.Conn = pl.conn()
	f.ReadTimeout, f.WriteTimeout = 2*time.Second, 2*time.Second
	f.Writers, f.Duration = writers, d
	require.NoError(t, f.Validate())
	env, _ := newEnv(t, dir, "drill", "flood")
	done := make(chan error, 1)
	go func() { done <- f.Run(context.Background(), env) }()
	return func() map[string]any {
		require.NoError(t, <-done)
		return env.Outputs()
	}
}

func (pl *pairLab) failover(t *testing.T, dir string, mutate func(f *Failover)) (map[string]any, error) {
	t.Helper()
	f := newFailover().(*Failover)
	f.DSN, f.Resolver = pl.dsn(""), pl.resolver
	f.Poll, f.CompleteWithin = 100*time.Millisecond, 3*time.Minute
	mutate(f)
	env, rec := newEnv(t, dir, "drill", "failover")
	err := run(t, f, env)
	rec.assertNoSecret(t, env, err, pl.password)
	if f.SecretAccessKey != "" {
		rec.assertNoSecret(t, env, err, f.SecretAccessKey)
	}
	return env.Outputs(), err
}

// TestFailoverLab drives db.failover against the lab: a "failover" that
// does nothing and a reboot without failover fail the check; the lab's
// RDS API (real SDK: reboot with failover, cluster failover) and the lab
// driver (SIGKILL) move the writer, and under a semi-sync flood through
// the endpoint no acknowledged write is lost.
func TestFailoverLab(t *testing.T) {
	pl := upPair(t)

	t.Run("a failover that leaves the same writer fails", func(t *testing.T) {
		out, err := pl.failover(t, t.TempDir(), func(f *Failover) {
			f.Driver, f.Command, f.CompleteWithin = "command", []string{"true"}, 2*time.Second
		})
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), "%v", err)
		assert.Contains(t, err.Error(), "did not switch writers: before db-a (server_id 1)")
		assert.Equal(t, false, out["switched"])
	})

	t.Run("reboot with failover through the lab's RDS API, under load", func(t *testing.T) {
		dir := t.TempDir()
		wait := pl.backgroundFlood(t, dir, 5, 25*time.Second)
		time.Sleep(2 * time.Second) // let the load build up
		out, err := pl.failover(t, dir, func(f *Failover) {
			pl.viaAPI(f)
			f.Instance = lab.PairInstance
		})
		require.NoError(t, err)
		assert.Equal(t, true, out["switched"])
		assert.Equal(t, "lab-1a", out["az_before"])
		assert.Equal(t, "lab-1b", out["secondary_az_before"])
		assert.Equal(t, "lab-1b", out["az_after"])
		assert.Equal(t, "lab-1a", out["secondary_az_after"], "the old writer rejoined as the standby")
		// The lab's RDS API lags the zones 3 s behind the new writer, as
		// AWS does: the step waited for them instead of reporting stale ones.
		assert.Greater(t, out["az_lag_ms"], int64(500))
		assert.Contains(t, fmt.Sprint(out["platform_events"]), "Multi-AZ instance failover completed")
		assert.Equal(t, int64(1), out["writer_before"].(map[string]any)["server_id"])
		assert.Equal(t, int64(2), out["writer_after"].(map[string]any)["server_id"])

		flood := wait()
		assert.Positive(t, intOut(t, flood, "acknowledged"))
		v, err := pl.verifyFailover(t, dir, flood["oplog"].(string))
		require.NoError(t, err, "a graceful failover loses no acknowledged write")
		assert.Equal(t, int64(0), intOut(t, v, "lost"))
		assert.Equal(t, true, v["fault_in_load"])
		assert.Equal(t, true, v["verified_new_writer"])
		assert.Equal(t, false, v["split_brain"])
		assert.Equal(t, true, v["writes_resumed"], "the writers followed the endpoint to the new primary")
		assert.Equal(t, "db-b", v["verified_on"].(map[string]any)["hostname"])
		t.Logf("reboot with failover: write downtime %.0f ms, %d acknowledged, %d failed, %d unknown (%d recovered)",
			v["write_downtime_ms"], v["acknowledged"], v["failed"], v["unknown"], v["recovered"])

		// The timeline carries the failover's marks.
		ev := findEvidence(t, timelineOf(t, pl, dir, flood), "series")
		labels := ""
		for _, m := range ev.Marks {
			labels += m.Label + ";"
		}
		assert.Contains(t, labels, "failover triggered")
		assert.Contains(t, labels, "new writer serves")
	})

	t.Run("a reboot without failover through the lab's RDS API fails the check", func(t *testing.T) {
		out, err := pl.failover(t, t.TempDir(), func(f *Failover) {
			pl.viaAPI(f)
			f.Instance = lab.PairInstance
			f.ForceFailover, f.CompleteWithin = false, 15*time.Second
		})
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err), "%v", err)
		assert.Contains(t, err.Error(), "did not switch writers: before db-b (server_id 2) in lab-1b, still db-b (server_id 2) in lab-1b")
		assert.Equal(t, false, out["switched"])
	})

	t.Run("cluster failover through the lab's RDS API", func(t *testing.T) {
		out, err := pl.failover(t, t.TempDir(), func(f *Failover) {
			pl.viaAPI(f)
			f.Cluster = lab.PairCluster
		})
		require.NoError(t, err)
		assert.Equal(t, lab.PairInstance+"-db-b", out["writer_before"].(map[string]any)["host"])
		assert.Equal(t, lab.PairInstance+"-db-a", out["writer_after"].(map[string]any)["host"])
		assert.Equal(t, "lab-1a", out["az_after"])
	})

	// Right after the API's failover returned, its service still rejoins
	// the old writer in the background: the lab driver waits for it
	// (lab.MariaDBPair.WaitAPIIdle) instead of racing it.
	t.Run("the lab driver pulls the plug", func(t *testing.T) {
		out, err := pl.failover(t, t.TempDir(), func(f *Failover) { f.Driver, f.Lab = "lab", pl.lab.ID })
		require.NoError(t, err)
		assert.Equal(t, "db-a", out["writer_before"].(map[string]any)["host"])
		assert.Equal(t, "db-b", out["writer_after"].(map[string]any)["host"])
		ctx := context.Background()
		killed := nodeNamed(t, pl, "db-a")
		st, err := killed.State(ctx)
		require.NoError(t, err)
		assert.NotEqual(t, "running", st, "db-a was killed")
		require.NoError(t, pl.pair.Rebuild(ctx, killed))
	})
}

// verifyFailover judges a flood that met a failover.
func (pl *pairLab) verifyFailover(t *testing.T, dir, oplog string) (map[string]any, error) {
	t.Helper()
	v := newVerify().(*Verify)
	v.Conn = pl.conn()
	v.OpLog = oplog
	env, rec := newEnv(t, dir, "drill", "verify")
	err := run(t, v, env)
	rec.assertNoSecret(t, env, err, pl.password)
	return env.Outputs(), err
}

// timelineOf re-runs db.verify to get its evidence.
func timelineOf(t *testing.T, pl *pairLab, dir string, flood map[string]any) []steps.Evidence {
	t.Helper()
	v := newVerify().(*Verify)
	v.Conn = pl.conn()
	v.OpLog = flood["oplog"].(string)
	env, _ := newEnv(t, dir, "drill", "verify")
	require.NoError(t, run(t, v, env))
	return env.Evidence()
}

func findEvidence(t *testing.T, evs []steps.Evidence, kind string) steps.Evidence {
	t.Helper()
	for _, e := range evs {
		if e.Kind == kind {
			return e
		}
	}
	t.Fatalf("no %s evidence in %d items", kind, len(evs))
	return steps.Evidence{}
}

// trials is how many kills the semi-sync test makes: 10 (the bar), or
// OPSDRILL_FAILOVER_TRIALS.
func trials() int {
	if n, err := strconv.Atoi(os.Getenv("OPSDRILL_FAILOVER_TRIALS")); err == nil && n > 0 {
		return n
	}
	return 10
}

// TestKillUnderLoadLab pulls the plug on the primary while ten writers
// flood it through the endpoint, a few seconds per trial. Ground truth
// comes from both servers: the killed primary, booted again (InnoDB and
// binlog crash recovery, both synced at every commit), must hold every
// acknowledged write the promoted standby lacks, and db.verify's lost
// count must be exactly the number of those.
//
// Semi-synchronous replication waiting AFTER_SYNC must never lose an
// acknowledged write, over at least ten kills. Asynchronous replication
// loses writes when the standby lags; the test makes it lag for sure (its
// replication I/O thread stopped shortly before the kill) and the checker
// must catch every write lost.
func TestKillUnderLoadLab(t *testing.T) {
	pl := upPair(t)
	ctx := context.Background()

	t.Run("semi-sync: no acknowledged write lost", func(t *testing.T) {
		require.NoError(t, pl.pair.SetReplication(ctx, lab.SemiSync))
		var losses []int64
		for trial := 1; trial <= trials(); trial++ {
			losses = append(losses, pl.killTrial(t, lab.SemiSync, trial, false))
		}
		t.Logf("semi-sync AFTER_SYNC, primary SIGKILLed under a 10-writer flood %d times: lost per trial %v", len(losses), losses)
		for i, l := range losses {
			assert.Zero(t, l, "trial %d lost acknowledged writes", i+1)
		}
	})

	t.Run("async with a lagging standby: every loss caught", func(t *testing.T) {
		require.NoError(t, pl.pair.SetReplication(ctx, lab.Async))
		t.Cleanup(func() { require.NoError(t, pl.pair.SetReplication(ctx, lab.SemiSync)) })
		for trial := 1; trial <= 2; trial++ {
			lost := pl.killTrial(t, lab.Async, trial, true)
			assert.Positive(t, lost, "writes acknowledged while the standby did not receive were lost, and db.verify says so")
		}
	})
}

// killTrial runs one kill under load and returns how many acknowledged
// writes were lost, after checking that number against the ground truth.
// With lagStandby the standby stops receiving 300 ms before the kill.
func (pl *pairLab) killTrial(t *testing.T, mode string, trial int, lagStandby bool) int64 {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	t0 := time.Now()
	phase := func(what string) {
		t.Logf("%s trial %d: %s at +%s", mode, trial, what, time.Since(t0).Round(10*time.Millisecond))
	}
	fl := pl.floodUntilStopped(t, dir, 10)
	require.Eventually(t, func() bool { return fl.acked.Load() > 50 }, time.Minute, 10*time.Millisecond)
	if lagStandby {
		w, err := pl.pair.Writer(ctx)
		require.NoError(t, err)
		_, err = pl.pair.SQL(ctx, pl.pair.Other(w), "STOP SLAVE IO_THREAD")
		require.NoError(t, err)
		time.Sleep(300 * time.Millisecond)
	}
	out, err := pl.failover(t, dir, func(f *Failover) { f.Driver, f.Lab = "lab", pl.lab.ID })
	require.NoError(t, err)
	phase("failed over")
	fl.resumed(t)
	flood := fl.stop(t)
	phase("flood done")
	run := flood["run"].(string)

	v := newVerify().(*Verify)
	v.Conn = pl.conn()
	v.ConnectTimeout = 500 * time.Millisecond // the killed server does not answer
	v.OpLog = flood["oplog"].(string)
	v.ReportOnly = true
	env, _ := newEnv(t, dir, "drill", "verify")
	require.NoError(t, runStep(v, env), "report_only: the fault met the load, the right server, no split brain")
	res := env.Outputs()
	lost := intOut(t, res, "lost")
	assert.Equal(t, true, res["fault_in_load"])
	assert.Equal(t, true, res["verified_new_writer"])
	assert.Equal(t, false, res["split_brain"])
	assert.Equal(t, true, res["writes_resumed"])
	assert.Equal(t, int64(0), intOut(t, res, "unexpected"))
	assert.Equal(t, int64(0), intOut(t, res, "duplicates"))

	phase("verified")
	// Ground truth: the killed primary, booted again.
	killed := nodeNamed(t, pl, out["writer_before"].(map[string]any)["host"].(string))
	require.NoError(t, killed.Start(ctx))
	phase("killed primary booted")
	onOld := rowsOf(t, pl, killed, run)
	promoted := pl.pair.Other(killed)
	onNew := rowsOf(t, pl, promoted, run)
	f, err := os.Open(flood["oplog"].(string))
	require.NoError(t, err)
	h, err := loadHistory(f)
	f.Close()
	require.NoError(t, err)
	var acked, missing, nowhere int64
	var firstNowhere string
	for _, w := range h.writers {
		for c := 1; c < len(w.state); c++ {
			if w.state[c]&stMask != stOK {
				continue
			}
			acked++
			key := fmt.Sprintf("%s/%d", w.cycle, c)
			if onNew[key] {
				continue
			}
			missing++
			// Acknowledged before the kill and not replicated: it must
			// still be on the killed primary, or the acknowledgement lied.
			if !onOld[key] {
				nowhere++
				if firstNowhere == "" {
					firstNowhere = key
				}
			}
		}
	}
	assert.Zero(t, nowhere, "acknowledged writes on neither primary (first: %s)", firstNowhere)
	assert.Equal(t, missing, lost, "db.verify's lost count is exactly the acknowledged writes the new primary lacks")
	t.Logf("%s trial %d: %d acknowledged, %d lost, %d unknown (%d recovered), write downtime %.0f ms",
		mode, trial, acked, lost, intOut(t, res, "unknown"), intOut(t, res, "recovered"), res["write_downtime_ms"])

	require.NoError(t, pl.pair.EnsureStandby(ctx))
	phase("standby rebuilt")
	return lost
}

func runStep(s steps.Step, env *steps.Env) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return s.Run(ctx, env)
}

func nodeNamed(t *testing.T, pl *pairLab, name string) *lab.Host {
	t.Helper()
	for _, h := range pl.pair.Nodes() {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no node %s", name)
	return nil
}

// rowsOf returns the run's rows on h as "cycle/counter".
func rowsOf(t *testing.T, pl *pairLab, h *lab.Host, run string) map[string]bool {
	t.Helper()
	rows, err := pl.pair.SQL(context.Background(), h, fmt.Sprintf("SELECT cycle, counter FROM drill.failover_test WHERE cycle LIKE '%s-%%'", run))
	require.NoError(t, err)
	out := make(map[string]bool, len(rows))
	for _, r := range rows {
		out[r[0]+"/"+r[1]] = true
	}
	return out
}

// TestPartitionLab cuts the primary off the network under a flood: writes
// stop, the standby is promoted and the endpoint moves. Fenced by the
// lab's control plane, the old primary is read-only when the partition
// heals and db.verify passes; left writable, db.verify fails with split
// brain naming both servers.
func TestPartitionLab(t *testing.T) {
	pl := upPair(t)
	ctx := context.Background()
	cases := []struct {
		name  string
		fence bool
	}{
		{"not fenced: split brain caught", false},
		{"fenced: no split brain", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, pl.pair.EnsureStandby(ctx))
			dir := t.TempDir()
			fl := pl.floodUntilStopped(t, dir, 5)
			require.Eventually(t, func() bool { return fl.acked.Load() > 50 }, time.Minute, 10*time.Millisecond)
			out, err := pl.failover(t, dir, func(f *Failover) {
				f.Driver, f.Lab, f.Action, f.Fence, f.PartitionFor = "lab", pl.lab.ID, "partition", tc.fence, 3*time.Second
			})
			require.NoError(t, err)
			old := out["writer_before"].(map[string]any)["hostname"].(string)
			promoted := out["writer_after"].(map[string]any)["hostname"].(string)
			assert.NotEqual(t, old, promoted, "the standby was promoted")
			fl.resumed(t)
			flood := fl.stop(t)
			assert.Positive(t, intOut(t, flood, "errors"), "writes stopped while the primary was cut off")

			v := newVerify().(*Verify)
			v.Conn = pl.conn()
			v.OpLog = flood["oplog"].(string)
			env, _ := newEnv(t, dir, "drill", "verify")
			err = run(t, v, env)
			res := env.Outputs()
			assert.Equal(t, true, res["fault_in_load"])
			assert.Equal(t, int64(0), intOut(t, res, "lost"))
			assert.Positive(t, res["write_downtime_ms"].(float64))
			servers := findEvidenceTitled(t, env.Evidence(), "split brain")
			if tc.fence {
				require.NoError(t, err)
				assert.Equal(t, false, res["split_brain"])
				assert.Contains(t, fmt.Sprint(servers.Table.Rows), "read-only (read_only)", "the healed old writer was checked and is fenced")
			} else {
				require.Error(t, err)
				assert.True(t, steps.IsFailure(err), "%v", err)
				assert.Equal(t, true, res["split_brain"])
				assert.Contains(t, err.Error(), "split brain: ")
				assert.Contains(t, err.Error(), old)
				assert.Contains(t, err.Error(), promoted)
				assert.Len(t, res["writable_servers"], 2)
				assert.Contains(t, res["headline"], "SPLIT BRAIN")
			}
			t.Logf("partition (fence %t): %s", tc.fence, res["headline"])
			require.NoError(t, pl.pair.EnsureStandby(ctx))
		})
	}
}

func findEvidenceTitled(t *testing.T, evs []steps.Evidence, part string) steps.Evidence {
	t.Helper()
	for _, e := range evs {
		if strings.Contains(e.Title, part) {
			return e
		}
	}
	t.Fatalf("no evidence titled *%s* in %d items", part, len(evs))
	return steps.Evidence{}
}
