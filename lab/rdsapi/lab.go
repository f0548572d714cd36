package rdsapi

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/opsdrill/opsdrill/lab"
)

// Pair is what the Lab backend acts on: the lab's mariadb-pair, as
// lab.MariaDBPair drives it (in the lab-rdsapi service, from db-dns over
// SSH: lab.ServicePair).
type Pair interface {
	// Writer is the host the endpoint names.
	Writer(ctx context.Context) (*lab.Host, error)
	// Nodes are both database hosts; Other the one that is not h.
	Nodes() []*lab.Host
	Other(h *lab.Host) *lab.Host
	// AZ is the zone of a database host.
	AZ(h *lab.Host) string
	// Serving says whether h's mariadbd answers.
	Serving(ctx context.Context, h *lab.Host) (bool, error)
	// Reboot restarts the writer in place.
	Reboot(ctx context.Context) error
	// Switchover moves the writer to the standby; the old writer stays
	// down until Rejoin.
	Switchover(ctx context.Context) (old, promoted *lab.Host, err error)
	// Rejoin boots old and makes it the standby.
	Rejoin(ctx context.Context, old *lab.Host) error
}

// Lab is the Backend of the lab's mariadb-pair. It serves the Multi-AZ
// instance lab.PairInstance (its endpoint is lab.PairEndpoint, its zone is
// the writer's, its secondary zone the standby's) and the same pair as
// the Multi-AZ DB cluster lab.PairCluster, whose members are
// PairInstance-db-a and PairInstance-db-b.
//
// RebootDBInstance with ForceFailover and FailoverDBCluster run the pair's
// switchover (the writer stops taking writes, the standby catches up and
// is promoted, the endpoint moves, the old writer boots and rejoins as the
// standby) in the background, as RDS does; the instance reports
// "rebooting" (the cluster "failing-over") until it is done. A reboot
// without failover restarts the writer in place. As on AWS, the instance's
// AvailabilityZone and SecondaryAvailabilityZone lag the new writer (by
// AZLag), and the reboot's events (DescribeEvents) carry RDS's messages.
//
// Operations run one at a time, each with what follows it: a reboot asked
// for while the old writer still rejoins is accepted (the instance reports
// "rebooting") and starts once the rejoin is done. While any runs, BusyFile
// (when set) exists, so the lab's own control plane can wait for it.
type Lab struct {
	Pair Pair
	// BusyFile, when set, exists while an operation or its rejoin runs:
	// the process id, then the operation (lab.PairAPIBusyFile).
	BusyFile string
	// Timeout bounds one reboot or failover (default 5m).
	Timeout time.Duration
	// AZLag is how long after a failover the zones still show the old
	// writer's (default 3s; AWS: "within a few seconds to <10 minutes").
	AZLag time.Duration

	mu      sync.Mutex
	status  string // "" when available
	err     error  // the last operation's failure
	wg      sync.WaitGroup
	pending int        // operations started and not finished, rejoins included
	serial  sync.Mutex // held by the operation running
	// The zones reported until staleUntil, after a failover.
	staleAZ, staleSecondary string
	staleUntil              time.Time
	events                  EventLog
}

// NewLab returns the backend of a pair.
func NewLab(p Pair) *Lab {
	return &Lab{Pair: p, Timeout: 5 * time.Minute, AZLag: 3 * time.Second}
}

func (b *Lab) event(msg, category string) {
	b.events.Add(Event{SourceID: lab.PairInstance, SourceType: "db-instance", Message: msg, Categories: []string{category}, Date: time.Now()})
}

// Events implements Backend.
func (b *Lab) Events(_ context.Context, sourceID, sourceType string, start, end time.Time) ([]Event, error) {
	return b.events.Select(sourceID, sourceType, start, end), nil
}

// Wait waits for the operation in progress and returns the error of the
// last one.
func (b *Lab) Wait() error {
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func memberID(h *lab.Host) string { return lab.PairInstance + "-" + h.Name }

func (b *Lab) state() (status string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.status != "":
		return b.status, nil
	case b.err != nil:
		return "failed", b.err
	}
	return "available", nil
}

// Instances implements Backend.
func (b *Lab) Instances(ctx context.Context, id string) ([]Instance, error) {
	w, err := b.Pair.Writer(ctx)
	if err != nil {
		return nil, err
	}
	status, _ := b.state()
	az, secondary := b.Pair.AZ(w), b.Pair.AZ(b.Pair.Other(w))
	b.mu.Lock()
	if time.Now().Before(b.staleUntil) {
		az, secondary = b.staleAZ, b.staleSecondary
	}
	b.mu.Unlock()
	main := Instance{ID: lab.PairInstance, Status: status, Engine: "mariadb", Version: "10.11", AZ: az,
		SecondaryAZ: secondary, MultiAZ: true, Address: lab.PairEndpoint, Port: lab.PairPort}
	all := []Instance{main}
	for _, h := range b.Pair.Nodes() {
		serving, err := b.Pair.Serving(ctx, h)
		if err != nil {
			return nil, err
		}
		ms := "available"
		if !serving {
			ms = "stopped"
		}
		all = append(all, Instance{ID: memberID(h), Status: ms, Engine: "mariadb", Version: "10.11", AZ: b.Pair.AZ(h),
			ClusterID: lab.PairCluster, Address: lab.PairEndpoint, Port: lab.PairPort})
	}
	if id == "" {
		return all, nil
	}
	for _, i := range all {
		if i.ID == id {
			return []Instance{i}, nil
		}
	}
	return nil, errInstanceNotFound(id)
}

// Reboot implements Backend.
func (b *Lab) Reboot(ctx context.Context, id string, forceFailover bool) (Instance, error) {
	if id != lab.PairInstance {
		return Instance{}, errInstanceNotFound(id)
	}
	op := b.switchover
	if !forceFailover {
		op = func(ctx context.Context) (func(context.Context) error, error) {
			b.event(MsgRebootRequested, "availability")
			err := b.Pair.Reboot(ctx)
			if err == nil {
				b.event(MsgRestarted, "availability")
			}
			return nil, err
		}
	}
	if err := b.start("rebooting", op); err != nil {
		return Instance{}, errInstanceState(id, err.Error())
	}
	list, err := b.Instances(ctx, id)
	if err != nil {
		return Instance{}, err
	}
	return list[0], nil
}

// switchover moves the writer; the old one rejoins afterwards, while the
// instance is available again (RDS reports the new writer as soon as it
// serves, and replaces the standby behind the scenes).
func (b *Lab) switchover(ctx context.Context) (func(context.Context) error, error) {
	b.event(MsgFailoverStarted, "failover")
	old, promoted, err := b.Pair.Switchover(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.staleAZ, b.staleSecondary, b.staleUntil = b.Pair.AZ(old), b.Pair.AZ(promoted), time.Now().Add(b.AZLag)
	b.mu.Unlock()
	b.event(MsgRestarted, "availability")
	b.event(MsgFailoverCompleted, "failover")
	return func(ctx context.Context) error { return b.Pair.Rejoin(ctx, old) }, nil
}

// start runs op in the background unless one is running; the status is
// available again when op returns, and then what op left to do (then) runs.
// An op started while the previous one's then runs waits for it.
func (b *Lab) start(status string, op func(context.Context) (then func(context.Context) error, err error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status != "" {
		return fmt.Errorf("%s", b.status)
	}
	b.status, b.err = status, nil
	b.busy(1, status)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			b.mu.Lock()
			b.busy(-1, "")
			b.mu.Unlock()
		}()
		b.serial.Lock()
		defer b.serial.Unlock()
		// The request that started it returns at once; the operation
		// must finish whatever happens to it.
		ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
		defer cancel()
		then, err := op(ctx)
		b.mu.Lock()
		b.status, b.err = "", err
		b.mu.Unlock()
		if then == nil {
			return
		}
		if err := then(ctx); err != nil {
			b.mu.Lock()
			b.err = err
			b.mu.Unlock()
		}
	}()
	return nil
}

// busy counts operations in and out; BusyFile exists while there are any.
// The file is written before the request that started the operation
// returns, so whoever reads it after the API answered sees it. The caller
// holds b.mu.
func (b *Lab) busy(delta int, what string) {
	b.pending += delta
	if b.BusyFile == "" {
		return
	}
	switch {
	case b.pending == 0:
		_ = os.Remove(b.BusyFile)
	case delta > 0:
		_ = os.WriteFile(b.BusyFile, fmt.Appendf(nil, "%d\n%s %s since %s\n", os.Getpid(), lab.PairInstance, what, time.Now().UTC().Format(time.RFC3339)), 0o644)
	}
}

// Clusters implements Backend.
func (b *Lab) Clusters(ctx context.Context, id string) ([]Cluster, error) {
	if id != "" && id != lab.PairCluster {
		return nil, errClusterNotFound(id)
	}
	w, err := b.Pair.Writer(ctx)
	if err != nil {
		return nil, err
	}
	status, _ := b.state()
	if status == "rebooting" {
		status = "failing-over"
	}
	c := Cluster{ID: lab.PairCluster, Status: status, Engine: "mariadb", Endpoint: lab.PairEndpoint, Port: lab.PairPort, MultiAZ: true}
	for _, h := range b.Pair.Nodes() {
		c.Members = append(c.Members, Member{InstanceID: memberID(h), Writer: h.Name == w.Name})
	}
	return []Cluster{c}, nil
}

// FailoverCluster implements Backend.
func (b *Lab) FailoverCluster(ctx context.Context, id, target string) (Cluster, error) {
	if id != lab.PairCluster {
		return Cluster{}, errClusterNotFound(id)
	}
	w, err := b.Pair.Writer(ctx)
	if err != nil {
		return Cluster{}, err
	}
	switch target {
	case "", memberID(b.Pair.Other(w)):
	case memberID(w):
		return Cluster{}, &Error{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: target + " is already the writer."}
	default:
		return Cluster{}, errInstanceNotFound(target)
	}
	if err := b.start("failing-over", b.switchover); err != nil {
		return Cluster{}, errClusterState(id, err.Error())
	}
	list, err := b.Clusters(ctx, id)
	if err != nil {
		return Cluster{}, err
	}
	return list[0], nil
}
