package db

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	rdstypes "github.com/aws/aws-sdk-go-v2/service/rds/types"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/db/failoverdriver"
)

// rdsDriver fails over through the RDS API: AWS's, or an RDS-compatible
// one (the lab's service).
type rdsDriver struct {
	api           *rds.Client
	instance      string
	cluster       string
	target        string
	forceFailover bool
	triggered     bool
}

// newRDS builds the client with the AWS configuration: access_key_id and
// secret_access_key when given, else profile or the SDK's default chain
// (environment, shared files, roles); endpoint_url, when set, as
// BaseEndpoint (the lab's RDS API service, or any RDS-compatible API).
func (f *Failover) newRDS(ctx context.Context) (failoverDriver, error) {
	d := &rdsDriver{instance: f.Instance, cluster: f.Cluster, target: f.TargetInstance, forceFailover: f.ForceFailover}
	var opts []func(*config.LoadOptions) error
	if f.Region != "" {
		opts = append(opts, config.WithRegion(f.Region))
	}
	if f.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(f.Profile))
	}
	if f.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(f.AccessKeyID, f.SecretAccessKey, "")))
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

func (d *rdsDriver) close() error { return nil }

// registeredDriver is a platform driver that joined failoverdriver.
type registeredDriver struct{ d failoverdriver.Driver }

func (r registeredDriver) state(ctx context.Context) (writer, bool, error) {
	w, settled, err := r.d.State(ctx)
	return writer(w), settled, err
}

func (r registeredDriver) trigger(ctx context.Context, env *steps.Env) error {
	return r.d.Trigger(ctx, env)
}

func (r registeredDriver) close() error { return r.d.Close() }

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
