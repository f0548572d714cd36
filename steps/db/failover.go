package db

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
	"github.com/opsdrill/opsdrill/steps/db/failoverdriver"
)

// Failover is db.failover: force the writer to move, then wait until a
// new writer serves, and fail when the writer did not change.
type Failover struct {
	Driver string `yaml:"driver" doc:"aws-rds (RebootDBInstance with ForceFailover, or FailoverDBCluster), lab (SIGKILL the lab's primary, promote the standby, repoint the endpoint) or command (run any script)" required:"true"`

	// Writer identity through SQL (any driver; required for command).
	DSN            string        `yaml:"dsn" doc:"DSN through the endpoint; when given, the writer's identity (@@hostname, @@server_id) is read before and after, and completion waits until a writable server answers"`
	Resolver       string        `yaml:"resolver" doc:"DNS server (ip:port) resolving the DSN's host name; default: the system's"`
	Via            string        `yaml:"via" doc:"connect the DSN through this SSH host (ssh://bastion, direct-tcpip); its host name is resolved there"`
	ConnectTimeout time.Duration `yaml:"connect_timeout" doc:"dial and log-in timeout of identity queries"`
	TLSOptions     `yaml:",inline"`

	// aws-rds.
	Instance        string `yaml:"instance" doc:"aws-rds: DB instance identifier (Multi-AZ instance): RebootDBInstance"`
	Cluster         string `yaml:"cluster" doc:"aws-rds: DB cluster identifier (Multi-AZ DB cluster): FailoverDBCluster"`
	TargetInstance  string `yaml:"target_instance" doc:"aws-rds with cluster: the reader to promote (default: RDS chooses)"`
	Region          string `yaml:"region" doc:"aws-rds: region (default: from the AWS configuration)"`
	EndpointURL     string `yaml:"endpoint_url" doc:"aws-rds: API endpoint (BaseEndpoint) instead of AWS's, e.g. the lab's RDS API service (vars.rds_api_endpoint)"`
	Profile         string `yaml:"profile" doc:"aws-rds: shared configuration profile (default: the SDK's, e.g. AWS_PROFILE)"`
	AccessKeyID     string `yaml:"access_key_id" doc:"aws-rds: access key id; with secret_access_key (default: the SDK's credential chain)"`
	SecretAccessKey string `yaml:"secret_access_key" doc:"aws-rds: secret access key, from the scenario's secrets; redacted from every output"`
	ForceFailover   bool   `yaml:"force_failover" doc:"aws-rds with instance: reboot with failover (false reboots in place, which the check must then catch)"`
	// AWS updates an instance's zones after the writer moved.
	AZWait time.Duration `yaml:"az_wait" doc:"aws-rds with instance: after the writer changed, wait this long for DescribeDBInstances to show the zones swapped (AWS: \"within a few seconds to <10 minutes\"); 0: report the zones as first seen"`

	// lab.
	Lab            string        `yaml:"lab" doc:"lab: the lab id (default: the only lab running mariadb-pair)"`
	Action         string        `yaml:"action" doc:"lab: kill (default: SIGKILL the writer's host, promote, repoint), partition (cut the writer off the network, promote, repoint) or switchover (graceful, like RDS's reboot with failover)"`
	PartitionFor   time.Duration `yaml:"partition_for" doc:"lab partition: heal the partition this long after it began (the old writer is reachable again, so db.verify can check it for split brain); 0: only when the scenario ends"`
	ReplaceStandby bool          `yaml:"replace_standby" doc:"lab kill: once the new writer serves, rebuild the killed host as its standby, as RDS replaces a failed one (default: it stays down until the scenario ends, its data left to inspect)"`
	Fence          bool          `yaml:"fence" doc:"lab partition: the lab's control plane makes the cut-off writer read-only, as RDS fences a failed primary; false leaves it writable (the split brain db.verify must catch)"`

	// command.
	Command []string `yaml:"command" doc:"command: argv of the script that fails over (no shell)"`

	Poll           time.Duration `yaml:"poll" doc:"how often to check for completion"`
	CompleteWithin time.Duration `yaml:"complete_within" doc:"give up waiting for a new writer after this long"`
}

func newFailover() steps.Step {
	return &Failover{ForceFailover: true, Action: "kill", Fence: true, PartitionFor: 10 * time.Second, Poll: time.Second, CompleteWithin: 10 * time.Minute,
		ConnectTimeout: 2 * time.Second, AZWait: 10 * time.Minute}
}

// drivers are the built-in drivers and those registered with
// failoverdriver (the lab's, when the program links the lab).
func drivers() []string {
	return slices.Concat([]string{"aws-rds"}, failoverdriver.Drivers(), []string{"command"})
}

// params are what a registered driver reads of the step.
func (f *Failover) params() failoverdriver.Params {
	return failoverdriver.Params{Lab: f.Lab, Action: f.Action, PartitionFor: f.PartitionFor, ReplaceStandby: f.ReplaceStandby, Fence: f.Fence}
}

// Validate checks the parameters for the chosen driver.
func (f *Failover) Validate() error {
	if all := drivers(); !slices.Contains(all, f.Driver) {
		return fmt.Errorf("driver: must be one of %s, got %q", strings.Join(all, ", "), f.Driver)
	}
	if f.DSN != "" {
		c := f.conn()
		if err := c.Validate(); err != nil {
			return err
		}
	}
	switch {
	case f.Poll <= 0:
		return fmt.Errorf("poll: must be positive, got %s", f.Poll)
	case f.CompleteWithin <= 0:
		return fmt.Errorf("complete_within: must be positive, got %s", f.CompleteWithin)
	case f.AZWait < 0:
		return fmt.Errorf("az_wait: must not be negative, got %s", f.AZWait)
	}
	switch f.Driver {
	case "aws-rds":
		switch {
		case (f.Instance == "") == (f.Cluster == ""):
			return errors.New("instance, cluster: give exactly one (a Multi-AZ instance, or a Multi-AZ DB cluster)")
		case f.TargetInstance != "" && f.Cluster == "":
			return errors.New("target_instance: only with cluster")
		}
		if f.EndpointURL != "" {
			u, err := url.Parse(f.EndpointURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("endpoint_url: expected http(s)://host[:port], got %q", f.EndpointURL)
			}
		}
		if (f.AccessKeyID == "") != (f.SecretAccessKey == "") {
			return errors.New("access_key_id and secret_access_key: give both or neither (neither: profile, or the SDK's credential chain)")
		}
	case "command":
		if len(f.Command) == 0 || f.Command[0] == "" {
			return errors.New("command: required with driver command, e.g. [./failover.sh, primary]")
		}
		if f.DSN == "" {
			return errors.New("dsn: required with driver command: the writer's identity before and after is read from the database")
		}
	default:
		o, _ := failoverdriver.Lookup(f.Driver)
		return o.Check(f.params())
	}
	return nil
}

// conn is the identity connection built from the step's fields.
func (f *Failover) conn() Conn {
	c := defaultConn()
	c.DSN, c.Resolver, c.Via, c.TLSOptions = f.DSN, f.Resolver, f.Via, f.TLSOptions
	if f.ConnectTimeout > 0 {
		c.ConnectTimeout = f.ConnectTimeout
	}
	return c
}

// writer is who writes, as far as the step can tell.
type writer struct {
	Host        string // lab host, or cluster member
	AZ          string
	SecondaryAZ string
	Status      string // the platform's status for the instance or cluster
	Hostname    string // @@hostname
	ServerID    int64  // @@server_id
	ReadOnly    bool
	Address     string // ip:port the server answered on
}

func (w writer) output() map[string]any {
	m := map[string]any{}
	for k, v := range map[string]string{"host": w.Host, "az": w.AZ, "secondary_az": w.SecondaryAZ, "hostname": w.Hostname, "status": w.Status, "address": w.Address} {
		if v != "" {
			m[k] = v
		}
	}
	if w.ServerID != 0 {
		m["server_id"] = w.ServerID
	}
	return m
}

func (w writer) String() string {
	var parts []string
	if w.Hostname != "" {
		parts = append(parts, fmt.Sprintf("%s (server_id %d)", w.Hostname, w.ServerID))
	} else if w.Host != "" {
		parts = append(parts, w.Host)
	}
	if w.AZ != "" {
		parts = append(parts, "in "+w.AZ)
	}
	if len(parts) == 0 {
		return "unknown"
	}
	return strings.Join(parts, " ")
}

// sameAs compares on the strongest identity both sides have: the SQL
// server identity, else the platform's writer host, else the zone.
func (w writer) sameAs(o writer) (same, known bool) {
	switch {
	case w.ServerID != 0 && o.ServerID != 0:
		return w.ServerID == o.ServerID && w.Hostname == o.Hostname, true
	case w.Host != "" && o.Host != "":
		return w.Host == o.Host, true
	case w.AZ != "" && o.AZ != "":
		return w.AZ == o.AZ, true
	}
	return false, false
}

// failoverDriver acts on the platform.
type failoverDriver interface {
	// state returns the writer as the platform sees it, and whether the
	// platform considers the operation finished.
	state(ctx context.Context) (w writer, settled bool, err error)
	// trigger starts the failover; it may return before it is complete.
	trigger(ctx context.Context, env *steps.Env) error
	close() error
}

// Run fails over and watches for the new writer.
func (f *Failover) Run(ctx context.Context, env *steps.Env) error {
	env.Secret(f.SecretAccessKey)
	c := f.conn()
	if f.DSN != "" {
		env.Secret(c.password())
		if err := c.loadCA(env); err != nil {
			return err
		}
	}
	var drv failoverDriver
	var err error
	switch f.Driver {
	case "aws-rds":
		drv, err = f.newRDS(ctx)
	case "command":
		drv = &commandDriver{argv: f.Command}
	default:
		o, ok := failoverdriver.Lookup(f.Driver)
		if !ok {
			return fmt.Errorf("driver: %q is not linked into this program", f.Driver)
		}
		var d failoverdriver.Driver
		if d, err = o.Open(ctx, env, f.params()); err == nil {
			drv = registeredDriver{d}
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := drv.close(); cerr != nil {
			env.Logf("after the failover: %v", cerr)
		}
	}()

	before, _, err := drv.state(ctx)
	if err != nil {
		return err
	}
	if f.DSN != "" {
		id, addr, err := f.sqlIdentity(ctx, c)
		if err != nil {
			return c.explain(err)
		}
		before.Hostname, before.ServerID, before.ReadOnly, before.Address = id.Hostname, id.ServerID, id.ReadOnly, addr
	}
	env.SetOutput("writer_before", before.output())
	env.SetOutput("az_before", before.AZ)
	env.SetOutput("secondary_az_before", before.SecondaryAZ)
	env.Logf("writer before: %s", before)

	triggered := time.Now()
	env.SetOutput("triggered_at", triggered.UTC().Format(time.RFC3339Nano))
	env.Note(MomentTrigger, "failover triggered", triggered)
	if err := drv.trigger(ctx, env); err != nil {
		return err
	}
	env.Logf("failover triggered (%s)", f.Driver)

	after, switched, completed, err := f.await(ctx, env, drv, c, before, triggered)
	if err != nil {
		return err
	}
	var zoneErr error
	if zw, ok := drv.(zoneWaiter); ok && switched && f.AZWait > 0 {
		after, zoneErr = f.awaitZones(ctx, env, zw, before, after, completed)
	}
	env.SetOutput("writer_after", after.output())
	env.SetOutput("az_after", after.AZ)
	env.SetOutput("secondary_az_after", after.SecondaryAZ)
	env.SetOutput("switched", switched)
	if es, ok := drv.(eventSource); ok {
		f.recordEvents(ctx, env, es, triggered)
	}
	if !switched {
		return steps.Failf("the failover did not switch writers: before %s, still %s after %s", before, after, f.CompleteWithin)
	}
	env.SetOutput("completed_at", completed.UTC().Format(time.RFC3339Nano))
	env.SetOutput("duration_ms", completed.Sub(triggered).Milliseconds())
	env.NoteData(MomentComplete, "new writer serves", completed, map[string]any{"writer_before": before.output(), "writer_after": after.output()})
	env.Logf("new writer %s after %s", after, completed.Sub(triggered).Round(time.Millisecond))
	return zoneErr
}

// zoneWaiter is a driver whose platform reports the zones late (RDS).
type zoneWaiter interface {
	// zones returns the instance's zones now; ok false when the platform
	// has no zone pair to swap (a cluster, a reboot without failover).
	zones(ctx context.Context) (az, secondary string, ok bool, err error)
}

// awaitZones waits, up to az_wait after the writer changed, until the
// platform shows the zones swapped: AWS updates AvailabilityZone and
// SecondaryAvailabilityZone "within a few seconds to <10 minutes" after
// the new writer serves, and a drill must not report zones that have not
// caught up.
func (f *Failover) awaitZones(ctx context.Context, env *steps.Env, zw zoneWaiter, before, after writer, changed time.Time) (writer, error) {
	if before.AZ == "" || before.SecondaryAZ == "" {
		return after, nil
	}
	deadline := changed.Add(f.AZWait)
	logged := false
	for {
		az, secondary, ok, err := zw.zones(ctx)
		switch {
		case err != nil:
			env.Logf("checking the zones: %v", err)
		case !ok:
			return after, nil
		case az == before.SecondaryAZ && secondary == before.AZ:
			after.AZ, after.SecondaryAZ = az, secondary
			lag := time.Since(changed)
			env.SetOutput("az_lag_ms", lag.Milliseconds())
			env.Logf("the platform reports the zones swapped (%s, standby in %s) %s after the new writer served", az, secondary, lag.Round(time.Millisecond))
			return after, nil
		default:
			after.AZ, after.SecondaryAZ = az, secondary
			if !logged {
				env.Logf("the new writer serves, but the platform still reports AvailabilityZone %s, SecondaryAvailabilityZone %s: waiting up to %s for them to catch up", az, secondary, f.AZWait)
				logged = true
			}
		}
		if time.Now().After(deadline) {
			env.SetOutput("az_lag_ms", int64(-1))
			return after, steps.Failf("the writer changed, but %s later the platform still reports AvailabilityZone %s, SecondaryAvailabilityZone %s (before: %s, %s)",
				f.AZWait, after.AZ, after.SecondaryAZ, before.AZ, before.SecondaryAZ)
		}
		if !sleep(ctx, f.Poll) {
			return after, ctx.Err()
		}
	}
}

// eventSource is a driver whose platform keeps its own event timeline.
type eventSource interface {
	events(ctx context.Context, since time.Time) ([]platformEvent, error)
}

// platformEvent is one event of the platform's timeline (RDS's
// DescribeEvents).
type platformEvent struct {
	At         time.Time
	Message    string
	Categories []string
}

// recordEvents puts the platform's own event timeline in the evidence,
// beside the drill's moments.
func (f *Failover) recordEvents(ctx context.Context, env *steps.Env, es eventSource, triggered time.Time) {
	evs, err := es.events(ctx, triggered.Add(-time.Minute))
	if err != nil {
		env.Logf("the platform's events: %v", err)
		return
	}
	type line struct {
		at            time.Time
		source, event string
	}
	var lines []line
	out := make([]any, 0, len(evs))
	for _, e := range evs {
		lines = append(lines, line{e.At, "RDS", e.Message + " (" + strings.Join(e.Categories, ", ") + ")"})
		out = append(out, map[string]any{"at": e.At.UTC().Format(time.RFC3339Nano), "message": e.Message, "categories": steps.List(e.Categories)})
	}
	for _, m := range env.Timeline().Moments() {
		if !m.At.Before(triggered.Add(-time.Minute)) {
			lines = append(lines, line{m.At, "opsdrill (" + m.Step + ")", m.Label})
		}
	}
	slices.SortStableFunc(lines, func(a, b line) int { return a.at.Compare(b.at) })
	rows := make([][]string, len(lines))
	for i, l := range lines {
		rows[i] = []string{l.at.UTC().Format("15:04:05.000"), l.source, l.event}
	}
	env.SetOutput("platform_events", out)
	env.AddEvidence(steps.TableEvidence("The platform's events (RDS DescribeEvents) beside the drill's timeline", []string{"at (UTC)", "source", "event"}, rows))
}

// Moments db.failover notes on the scenario's timeline; dns.watch measures
// its switch from MomentTrigger, db.verify draws them all.
const (
	MomentTrigger  = "failover.trigger"
	MomentComplete = "failover.complete"
	// MomentFault is the instant the lab driver's fault struck (the kill,
	// the partition).
	MomentFault = failoverdriver.MomentFault
	// MomentDNSSwitch is what dns.watch notes when the endpoint moved.
	MomentDNSSwitch = "dns.switch"
)

// await polls until the platform is settled and a different writer serves
// (writable, when a DSN is given), or CompleteWithin passes.
func (f *Failover) await(ctx context.Context, env *steps.Env, drv failoverDriver, c Conn, before writer, triggered time.Time) (after writer, switched bool, at time.Time, err error) {
	deadline := triggered.Add(f.CompleteWithin)
	lastStatus, lastErr := "", ""
	for {
		w, settled, err := drv.state(ctx)
		if err != nil {
			// The platform's API may blink during the failover; give up
			// only at the deadline.
			env.Logf("checking the failover: %v", err)
		} else {
			if w.Status != "" && w.Status != lastStatus {
				env.Logf("status: %s", w.Status)
				lastStatus = w.Status
			}
			serving := true
			if f.DSN != "" {
				id, addr, qerr := f.sqlIdentity(ctx, c)
				serving = qerr == nil && !id.ReadOnly
				if qerr != nil && qerr.Error() != lastErr {
					env.Logf("the endpoint's server does not answer yet: %v", shortErr(c.explain(qerr)))
					lastErr = qerr.Error()
				}
				if qerr == nil {
					w.Hostname, w.ServerID, w.ReadOnly, w.Address = id.Hostname, id.ServerID, id.ReadOnly, addr
				}
			}
			after = w
			if settled && serving {
				same, known := w.sameAs(before)
				if known && !same {
					return w, true, time.Now(), nil
				}
			}
		}
		if time.Now().After(deadline) {
			return after, false, time.Time{}, nil
		}
		if !sleep(ctx, f.Poll) {
			return after, false, time.Time{}, ctx.Err()
		}
	}
}

// sqlIdentity asks the server behind the DSN who it is, on a fresh
// connection to the address the endpoint resolves to now, which it
// returns too.
func (f *Failover) sqlIdentity(ctx context.Context, c Conn) (Identity, string, error) {
	addr, err := c.resolvedAddr(ctx)
	if err != nil {
		return Identity{}, "", err
	}
	id, err := probeIdentity(ctx, c.at(addr))
	return id, addr, err
}
