package lab

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/db/failoverdriver"
)

// The lab failover driver: `db.failover` with `driver: lab` kills,
// partitions or switches over the mariadb-pair's writer. It is registered
// here, as the lab: host transport is, so steps/db never depends on the
// lab; programs that want it link this package.
func init() { failoverdriver.Register("lab", pairFailover{}) }

// PairActions are the faults the lab failover driver injects.
var PairActions = []string{"kill", "partition", "switchover"}

type pairFailover struct{}

func (pairFailover) Check(p failoverdriver.Params) error {
	if !slices.Contains(PairActions, p.Action) {
		return fmt.Errorf("action: must be one of %s, got %q", strings.Join(PairActions, ", "), p.Action)
	}
	if p.PartitionFor < 0 {
		return fmt.Errorf("partition_for: must not be negative, got %s", p.PartitionFor)
	}
	return nil
}

func (pairFailover) Open(ctx context.Context, env *steps.Env, p failoverdriver.Params) (failoverdriver.Driver, error) {
	pair, err := OpenMariaDBPair(ctx, p.Lab)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	pair.Logf = env.Logf
	pair.OnFault = func(what string, at time.Time) { env.Note(failoverdriver.MomentFault, what, at) }
	// A fault needs a standby to fail over to: one left behind by an
	// earlier fault of the scenario is made whole first.
	if err := pair.EnsureStandby(ctx); err != nil {
		return nil, fmt.Errorf("lab: no standby to fail over to: %w", err)
	}
	return &pairDriver{pair: pair, action: p.Action, fence: p.Fence, partitionFor: p.PartitionFor, replace: p.ReplaceStandby, logf: env.Logf}, nil
}

// pairDriver fails the lab's mariadb-pair over directly.
type pairDriver struct {
	pair         *MariaDBPair
	action       string
	fence        bool
	partitionFor time.Duration
	replace      bool // rebuild a killed writer as the standby at once
	killed       bool
	done         bool
	old          *Host // a switched-over writer, to rejoin when the step ends
	cutOff       *Host // a partitioned writer, to reconnect
	cutAt        time.Time
	logf         func(format string, args ...any)
}

func (d *pairDriver) State(ctx context.Context) (failoverdriver.Writer, bool, error) {
	h, err := d.pair.Writer(ctx)
	if err != nil {
		return failoverdriver.Writer{}, false, err
	}
	id, err := d.pair.Identity(ctx, h)
	if err != nil {
		return failoverdriver.Writer{}, false, err
	}
	status := "available"
	if !id.Running {
		status = "down"
	}
	return failoverdriver.Writer{Host: h.Name, AZ: id.AZ, SecondaryAZ: d.pair.AZ(d.pair.Other(h)), ServerID: int64(id.ServerID), Hostname: h.Name, Status: status,
		ReadOnly: id.ReadOnly, Address: net.JoinHostPort(h.IP.String(), strconv.Itoa(PairPort))}, d.done && id.Running, nil
}

func (d *pairDriver) Trigger(ctx context.Context, env *steps.Env) error {
	var old, promoted *Host
	var err error
	switch d.action {
	case "switchover":
		old, promoted, err = d.pair.Switchover(ctx)
		d.old = old
	case "partition":
		old, promoted, err = d.pair.Partition(ctx, d.fence)
		if old != nil {
			d.cutOff, d.cutAt = old, time.Now()
			env.Undo("heal the partition and rebuild "+old.Name+" as the standby", d.pair.EnsureStandby)
		}
	default:
		old, promoted, err = d.pair.FailOver(ctx)
		d.killed = old != nil
		if old != nil {
			// The killed host stays down for the rest of the drill (its
			// data may hold writes the new writer never got); afterwards
			// it is rebuilt as the standby, so the pair is whole again.
			env.Undo("rebuild "+old.Name+" as the standby", d.pair.EnsureStandby)
		}
	}
	if err != nil {
		return fmt.Errorf("lab %s: %w", d.action, err)
	}
	d.done = true
	env.Logf("lab %s: %s -> %s", d.action, old.Name, promoted.Name)
	return nil
}

// Close lets a switched-over writer rejoin as the standby, as RDS's
// reboot with failover ends, and heals a partition after partition_for; a
// killed writer stays down (EnsureStandby at the scenario's end).
func (d *pairDriver) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if d.cutOff != nil && d.partitionFor > 0 {
		if wait := time.Until(d.cutAt.Add(d.partitionFor)); wait > 0 {
			d.logf("the partition heals in %s", wait.Round(100*time.Millisecond))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		return d.pair.Heal(ctx, d.cutOff)
	}
	if d.killed && d.replace {
		return d.pair.EnsureStandby(ctx)
	}
	if d.old == nil {
		return nil
	}
	return d.pair.Rejoin(ctx, d.old)
}
