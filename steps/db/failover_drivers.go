package db

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	rdstypes "github.com/aws/aws-sdk-go-v2/service/rds/types"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/rdsapi"
	"github.com/opsdrill/opsdrill/steps"
)

// rdsDriver fails over through the RDS API: AWS's, or the lab's.
type rdsDriver struct {
	api           *rds.Client
	instance      string
	cluster       string
	target        string
	forceFailover bool
	triggered     bool
	labServer     *rdsapi.Server
	labBackend    *rdsapi.Lab
}

// newRDS builds the client: for endpoint_url lab:LABID, against the lab's
// RDS-compatible API served in this process for the step's duration;
// otherwise with the AWS configuration (environment, shared files, roles)
// and, when set, endpoint_url as BaseEndpoint.
func (f *Failover) newRDS(ctx context.Context, env *steps.Env) (failoverDriver, error) {
	d := &rdsDriver{instance: f.Instance, cluster: f.Cluster, target: f.TargetInstance, forceFailover: f.ForceFailover}
	if labID, ok := strings.CutPrefix(f.EndpointURL, "lab:"); ok {
		pair, err := lab.OpenMariaDBPair(ctx, labID)
		if err != nil {
			return nil, fmt.Errorf("endpoint_url: %w", err)
		}
		pair.Logf = env.Logf
		d.labBackend = rdsapi.NewLab(pair)
		region := f.Region
		if region == "" {
			region = lab.PairRegion
		}
		d.labServer, err = rdsapi.Start(d.labBackend, region)
		if err != nil {
			return nil, err
		}
		d.api = rds.New(rds.Options{Region: region, BaseEndpoint: aws.String(d.labServer.URL), Credentials: d.labServer.Credentials()})
		env.Logf("the lab's RDS API serves at %s (lab %s)", d.labServer.URL, pair.LabID)
		return d, nil
	}
	var opts []func(*config.LoadOptions) error
	if f.Region != "" {
		opts = append(opts, config.WithRegion(f.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("region: not set and none in the AWS configuration (AWS_REGION, ~/.aws/config)")
	}
	d.api = rds.NewFromConfig(cfg, func(o *rds.Options) {
		if f.EndpointURL != "" {
			o.BaseEndpoint = aws.String(f.EndpointURL)
		}
	})
	return d, nil
}

func (d *rdsDriver) state(ctx context.Context) (writer, bool, error) {
	if d.cluster != "" {
		return d.clusterState(ctx)
	}
	out, err := d.api.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(d.instance)})
	if err != nil {
		return writer{}, false, fmt.Errorf("instance: DescribeDBInstances %s: %w", d.instance, err)
	}
	if len(out.DBInstances) != 1 {
		return writer{}, false, fmt.Errorf("instance: DescribeDBInstances %s returned %d instances", d.instance, len(out.DBInstances))
	}
	i := out.DBInstances[0]
	w := writer{AZ: aws.ToString(i.AvailabilityZone), SecondaryAZ: aws.ToString(i.SecondaryAvailabilityZone), Status: aws.ToString(i.DBInstanceStatus)}
	if !d.triggered && d.forceFailover && !aws.ToBool(i.MultiAZ) {
		return w, false, fmt.Errorf("instance: %s is not Multi-AZ: there is no standby to fail over to", d.instance)
	}
	return w, d.settled(w.Status), nil
}

// settled: triggered, and the platform reports the instance or cluster
// available. Right after the trigger it may still say so before it starts;
// the caller waits for a different writer as well.
func (d *rdsDriver) settled(status string) bool {
	return d.triggered && status == "available"
}

func (d *rdsDriver) clusterState(ctx context.Context) (writer, bool, error) {
	out, err := d.api.DescribeDBClusters(ctx, &rds.DescribeDBClustersInput{DBClusterIdentifier: aws.String(d.cluster)})
	if err != nil {
		return writer{}, false, fmt.Errorf("cluster: DescribeDBClusters %s: %w", d.cluster, err)
	}
	if len(out.DBClusters) != 1 {
		return writer{}, false, fmt.Errorf("cluster: DescribeDBClusters %s returned %d clusters", d.cluster, len(out.DBClusters))
	}
	c := out.DBClusters[0]
	w := writer{Status: aws.ToString(c.Status)}
	for _, m := range c.DBClusterMembers {
		if aws.ToBool(m.IsClusterWriter) {
			w.Host = aws.ToString(m.DBInstanceIdentifier)
		}
	}
	if w.Host != "" {
		if mi, err := d.api.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(w.Host)}); err == nil && len(mi.DBInstances) == 1 {
			w.AZ = aws.ToString(mi.DBInstances[0].AvailabilityZone)
		}
	}
	return w, d.settled(w.Status), nil
}

func (d *rdsDriver) trigger(ctx context.Context, env *steps.Env) error {
	if d.cluster != "" {
		in := &rds.FailoverDBClusterInput{DBClusterIdentifier: aws.String(d.cluster)}
		if d.target != "" {
			in.TargetDBInstanceIdentifier = aws.String(d.target)
		}
		out, err := d.api.FailoverDBCluster(ctx, in)
		if err != nil {
			return fmt.Errorf("cluster: FailoverDBCluster %s: %w", d.cluster, err)
		}
		d.triggered = true
		env.Logf("FailoverDBCluster %s: %s", d.cluster, aws.ToString(out.DBCluster.Status))
		return nil
	}
	out, err := d.api.RebootDBInstance(ctx, &rds.RebootDBInstanceInput{DBInstanceIdentifier: aws.String(d.instance), ForceFailover: aws.Bool(d.forceFailover)})
	if err != nil {
		return fmt.Errorf("instance: RebootDBInstance %s: %w", d.instance, err)
	}
	d.triggered = true
	env.Logf("RebootDBInstance %s (ForceFailover %t): %s", d.instance, d.forceFailover, aws.ToString(out.DBInstance.DBInstanceStatus))
	return nil
}

func (d *rdsDriver) zones(ctx context.Context) (az, secondary string, ok bool, err error) {
	if d.cluster != "" || !d.forceFailover {
		return "", "", false, nil
	}
	w, _, err := d.state(ctx)
	return w.AZ, w.SecondaryAZ, true, err
}

func (d *rdsDriver) events(ctx context.Context, since time.Time) ([]platformEvent, error) {
	id, typ := d.instance, rdstypes.SourceTypeDbInstance
	if d.cluster != "" {
		id, typ = d.cluster, rdstypes.SourceTypeDbCluster
	}
	out, err := d.api.DescribeEvents(ctx, &rds.DescribeEventsInput{SourceIdentifier: aws.String(id), SourceType: typ, StartTime: aws.Time(since), EndTime: aws.Time(time.Now().Add(time.Second))})
	if err != nil {
		return nil, fmt.Errorf("DescribeEvents %s: %w", id, err)
	}
	evs := make([]platformEvent, 0, len(out.Events))
	for _, e := range out.Events {
		evs = append(evs, platformEvent{At: aws.ToTime(e.Date), Message: aws.ToString(e.Message), Categories: e.EventCategories})
	}
	return evs, nil
}

func (d *rdsDriver) close() error {
	if d.labServer == nil {
		return nil
	}
	// The lab finishes what it started (the old writer rejoining) before
	// its API goes away.
	err := d.labBackend.Wait()
	return errors.Join(err, d.labServer.Close())
}

// labDriver fails the lab's mariadb-pair over directly.
type labDriver struct {
	pair         *lab.MariaDBPair
	action       string
	fence        bool
	partitionFor time.Duration
	replace      bool // rebuild a killed writer as the standby at once
	killed       bool
	done         bool
	old          *lab.Host // a switched-over writer, to rejoin when the step ends
	cutOff       *lab.Host // a partitioned writer, to reconnect
	cutAt        time.Time
	logf         func(format string, args ...any)
}

func (f *Failover) newLab(ctx context.Context, env *steps.Env) (failoverDriver, error) {
	pair, err := lab.OpenMariaDBPair(ctx, f.Lab)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	pair.Logf = env.Logf
	pair.OnFault = func(what string, at time.Time) { env.Note(MomentFault, what, at) }
	// A fault needs a standby to fail over to: one left behind by an
	// earlier fault of the scenario is made whole first.
	if err := pair.EnsureStandby(ctx); err != nil {
		return nil, fmt.Errorf("lab: no standby to fail over to: %w", err)
	}
	return &labDriver{pair: pair, action: f.Action, fence: f.Fence, partitionFor: f.PartitionFor, replace: f.ReplaceStandby, logf: env.Logf}, nil
}

func (d *labDriver) state(ctx context.Context) (writer, bool, error) {
	h, err := d.pair.Writer(ctx)
	if err != nil {
		return writer{}, false, err
	}
	id, err := d.pair.Identity(ctx, h)
	if err != nil {
		return writer{}, false, err
	}
	status := "available"
	if !id.Running {
		status = "down"
	}
	return writer{Host: h.Name, AZ: id.AZ, SecondaryAZ: d.pair.AZ(d.pair.Other(h)), ServerID: int64(id.ServerID), Hostname: h.Name, Status: status,
		ReadOnly: id.ReadOnly, Address: net.JoinHostPort(h.IP.String(), strconv.Itoa(lab.PairPort))}, d.done && id.Running, nil
}

func (d *labDriver) trigger(ctx context.Context, env *steps.Env) error {
	var old, promoted *lab.Host
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

// close lets a switched-over writer rejoin as the standby, as RDS's
// reboot with failover ends, and heals a partition after partition_for; a
// killed writer stays down (EnsureStandby at the scenario's end).
func (d *labDriver) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if d.cutOff != nil && d.partitionFor > 0 {
		if wait := time.Until(d.cutAt.Add(d.partitionFor)); wait > 0 {
			d.logf("the partition heals in %s", wait.Round(100*time.Millisecond))
			sleep(ctx, wait)
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

// commandDriver runs the user's failover script; the writer's identity
// comes from the database only.
type commandDriver struct {
	argv []string
	done bool
}

func (d *commandDriver) state(context.Context) (writer, bool, error) { return writer{}, d.done, nil }

func (d *commandDriver) trigger(ctx context.Context, env *steps.Env) error {
	cmd := exec.CommandContext(ctx, d.argv[0], d.argv[1:]...)
	cmd.Dir = env.BaseDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if text := strings.TrimSpace(out.String()); text != "" {
		if len(text) > 4000 {
			text = "…" + text[len(text)-4000:]
		}
		env.Logf("%s: %s", d.argv[0], text)
	}
	if err != nil {
		return fmt.Errorf("command: %s: %w", d.argv[0], err)
	}
	d.done = true
	return nil
}

func (d *commandDriver) close() error { return nil }
