package rdsapi_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/aws/aws-sdk-go-v2/service/rds/types"
	"github.com/aws/smithy-go"
	_ "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab"
	"github.com/opsdrill/opsdrill/lab/labtest"
	"github.com/opsdrill/opsdrill/lab/rdsapi"
)

// service is the lab's RDS API as the vars describe it.
type service struct {
	url, keyID, secret string
	resolver, password string
}

func serviceOf(t *testing.T, l *lab.Lab) service {
	t.Helper()
	vars := l.Vars()
	secrets := vars[lab.SecretsKey].(map[string]any)
	s := service{url: vars["rds_api_endpoint"].(string), keyID: vars["rds_api_access_key_id"].(string),
		secret: secrets["rds_api_secret_access_key"].(string), resolver: vars["rds_resolver"].(string), password: secrets["rds_password"].(string)}
	require.NotEmpty(t, s.keyID)
	require.NotEmpty(t, s.secret)
	return s
}

func (s service) client(secret string) *rds.Client {
	return rds.New(rds.Options{Region: lab.PairRegion, BaseEndpoint: aws.String(s.url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(s.keyID, secret, "")})
}

// serverID asks the server the endpoint names, resolved by the lab's
// resolver as the drill's clients resolve it, for its @@server_id.
func (s service) serverID(ctx context.Context) (int, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.resolver)
	}}
	addrs, err := r.LookupHost(ctx, lab.PairEndpoint)
	if err != nil || len(addrs) == 0 {
		return 0, fmt.Errorf("resolve %s: %v", lab.PairEndpoint, err)
	}
	db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/%s?tls=preferred&timeout=2s", lab.PairUser, s.password, net.JoinHostPort(addrs[0], fmt.Sprint(lab.PairPort)), lab.PairDatabase))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var id int
	err = db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id)
	return id, err
}

func instance(ctx context.Context, t *testing.T, c *rds.Client) types.DBInstance {
	t.Helper()
	out, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(lab.PairInstance)})
	require.NoError(t, err)
	require.Len(t, out.DBInstances, 1)
	return out.DBInstances[0]
}

// awsCLI is Debian's aws (scripts/install-deps.sh installs awscli): a
// pyenv shim may come first in PATH.
func awsCLI(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		return "/usr/bin/aws"
	}
	if labtest.InCI() {
		t.Fatal("/usr/bin/aws missing: run scripts/install-deps.sh (awscli)")
	}
	t.Skip("skipping the aws CLI: /usr/bin/aws missing (scripts/install-deps.sh installs awscli)")
	return ""
}

// runCLI runs the aws CLI against the service with only the given
// credentials (no shared files, no profile, no instance metadata).
func (s service) runCLI(t *testing.T, secret string, args ...string) (string, string, error) {
	t.Helper()
	bin := awsCLI(t)
	home := t.TempDir()
	cmd := exec.Command(bin, append([]string{"--endpoint-url", s.url, "--region", lab.PairRegion, "--output", "json"}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "AWS_ACCESS_KEY_ID=" + s.keyID, "AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestLabService drives the lab's RDS API service, on db-dns, with the
// real SDK client and the aws CLI, by the URL and credentials in the
// lab's vars: a wrong secret is refused; a reboot with failover moves the
// writer (the server behind the endpoint changes), its events are
// RDS's, the old writer's host keeps running while its mariadbd is shut
// down and started again, and it rejoins as the standby.
func TestLabService(t *testing.T) {
	l := labtest.Up(t, lab.PairEnv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := serviceOf(t, l)
	dns, err := l.Host(lab.PairDNSHost)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			res, _ := dns.Exec(context.Background(), "tail", "-n", "60", lab.PairAPILog)
			t.Logf("the service's log:\n%s", res.Stdout)
		}
	})
	assert.Equal(t, fmt.Sprintf("http://%s:%d", dns.IP, lab.PairAPIPort), s.url)
	c := s.client(s.secret)

	t.Run("a wrong secret or key is refused", func(t *testing.T) {
		_, err := s.client("not-"+s.secret).DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{})
		var ae smithy.APIError
		require.True(t, errors.As(err, &ae), "%v", err)
		assert.Equal(t, "SignatureDoesNotMatch", ae.ErrorCode())
		other := rds.New(rds.Options{Region: lab.PairRegion, BaseEndpoint: aws.String(s.url), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider("AKIALABNOTTHEKEY0000", s.secret, "")})
		_, err = other.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{})
		require.True(t, errors.As(err, &ae), "%v", err)
		assert.Equal(t, "InvalidClientTokenId", ae.ErrorCode())
	})

	t.Run("the config file is private and the secret is not on the command line", func(t *testing.T) {
		res, err := dns.Exec(ctx, "sh", "-c", `stat -c %a "$0"; cat /proc/$(pgrep -x lab-rdsapi)/cmdline | tr '\0' ' '`, lab.PairAPIConfigPath)
		require.NoError(t, err)
		require.NoError(t, res.Err())
		assert.True(t, strings.HasPrefix(res.Stdout, "600\n"), res.Stdout)
		assert.Contains(t, res.Stdout, "lab-rdsapi --config "+lab.PairAPIConfigPath)
		assert.NotContains(t, res.Stdout, s.secret)
	})

	i := instance(ctx, t, c)
	assert.Equal(t, "available", aws.ToString(i.DBInstanceStatus))
	assert.Equal(t, "lab-1a", aws.ToString(i.AvailabilityZone))
	assert.Equal(t, "lab-1b", aws.ToString(i.SecondaryAvailabilityZone))
	assert.True(t, aws.ToBool(i.MultiAZ))
	assert.Equal(t, lab.PairEndpoint, aws.ToString(i.Endpoint.Address))
	id, err := s.serverID(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, id, "db-a writes")

	pair, err := lab.OpenMariaDBPair(ctx, l.ID)
	require.NoError(t, err)
	dbA := pair.Nodes()[0]

	since := time.Now().Add(-time.Second)
	out, err := c.RebootDBInstance(ctx, &rds.RebootDBInstanceInput{DBInstanceIdentifier: aws.String(lab.PairInstance), ForceFailover: aws.Bool(true)})
	require.NoError(t, err)
	assert.Equal(t, "rebooting", aws.ToString(out.DBInstance.DBInstanceStatus))
	busy, err := dns.Exec(ctx, "cat", lab.PairAPIBusyFile)
	require.NoError(t, err)
	assert.Contains(t, busy.Stdout, "rebooting", "the service says it is busy before the API answers")

	sawDown, hostState := false, "running"
	require.Eventually(t, func() bool {
		if st, err := dbA.State(ctx); err != nil || st != "running" {
			hostState = fmt.Sprint(st, err)
		}
		if serving, err := pair.Serving(ctx, dbA); err == nil && !serving {
			sawDown = true
		}
		out, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(lab.PairInstance)})
		if err != nil || len(out.DBInstances) != 1 || aws.ToString(out.DBInstances[0].DBInstanceStatus) != "available" {
			return false
		}
		id, err := s.serverID(ctx)
		return err == nil && id == 2
	}, 2*time.Minute, 50*time.Millisecond, "the endpoint never reached db-b with the instance available")
	assert.True(t, sawDown, "db-a's mariadbd was shut down for the switchover")
	assert.Equal(t, "running", hostState, "the service stops mariadbd, never the host")

	evs, err := c.DescribeEvents(ctx, &rds.DescribeEventsInput{SourceIdentifier: aws.String(lab.PairInstance), SourceType: types.SourceTypeDbInstance, StartTime: aws.Time(since)})
	require.NoError(t, err)
	var msgs []string
	for _, e := range evs.Events {
		msgs = append(msgs, aws.ToString(e.Message))
	}
	assert.Equal(t, []string{rdsapi.MsgFailoverStarted, rdsapi.MsgRestarted, rdsapi.MsgFailoverCompleted}, msgs)

	// The old writer rejoins as the standby: the lab's side waits for the
	// service to finish, then finds db-a replicating from db-b.
	require.NoError(t, pair.WaitAPIIdle(ctx))
	require.NoError(t, pair.WaitReplicating(ctx))
	ident, err := pair.Identity(ctx, dbA)
	require.NoError(t, err)
	assert.True(t, ident.Running && ident.ReadOnly, "%+v", ident)
	require.Eventually(t, func() bool {
		out, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(lab.PairInstance)})
		return err == nil && len(out.DBInstances) == 1 && aws.ToString(out.DBInstances[0].AvailabilityZone) == "lab-1b" &&
			aws.ToString(out.DBInstances[0].SecondaryAvailabilityZone) == "lab-1a"
	}, 30*time.Second, 200*time.Millisecond, "the zones never swapped")

	t.Run("the aws CLI", func(t *testing.T) {
		stdout, stderr, err := s.runCLI(t, s.secret, "rds", "describe-db-instances", "--db-instance-identifier", lab.PairInstance)
		require.NoError(t, err, stderr)
		var got struct {
			DBInstances []struct {
				DBInstanceIdentifier, DBInstanceStatus, AvailabilityZone, SecondaryAvailabilityZone string
				MultiAZ                                                                             bool
				Endpoint                                                                            struct {
					Address string
					Port    int
				}
			}
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
		require.Len(t, got.DBInstances, 1)
		g := got.DBInstances[0]
		assert.Equal(t, lab.PairInstance, g.DBInstanceIdentifier)
		assert.Equal(t, "available", g.DBInstanceStatus)
		assert.Equal(t, "lab-1b", g.AvailabilityZone)
		assert.Equal(t, "lab-1a", g.SecondaryAvailabilityZone)
		assert.True(t, g.MultiAZ)
		assert.Equal(t, lab.PairEndpoint, g.Endpoint.Address)
		assert.Equal(t, lab.PairPort, g.Endpoint.Port)

		_, stderr, err = s.runCLI(t, "not-"+s.secret, "rds", "describe-db-instances")
		require.Error(t, err)
		assert.Contains(t, stderr, "SignatureDoesNotMatch")
	})

	t.Run("the aws CLI with the lab's profile files", func(t *testing.T) {
		bin := awsCLI(t)
		creds, config := filepath.Join(l.SSHDir(), lab.AWSCredentialsFile), filepath.Join(l.SSHDir(), lab.AWSConfigFile)
		st, err := os.Stat(creds)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the credentials file holds the secret")
		cmd := exec.Command(bin, "--profile", lab.PairAPIProfile, "--endpoint-url", s.url, "rds", "describe-db-clusters")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "AWS_CONFIG_FILE=" + config, "AWS_SHARED_CREDENTIALS_FILE=" + creds,
			"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		var got struct {
			DBClusters []struct {
				DBClusterIdentifier string
				DBClusterMembers    []struct {
					DBInstanceIdentifier string
					IsClusterWriter      bool
				}
			}
		}
		require.NoError(t, json.Unmarshal(out, &got), "%s", out)
		require.Len(t, got.DBClusters, 1)
		assert.Equal(t, lab.PairCluster, got.DBClusters[0].DBClusterIdentifier)
		writers := map[string]bool{}
		for _, m := range got.DBClusters[0].DBClusterMembers {
			writers[m.DBInstanceIdentifier] = m.IsClusterWriter
		}
		assert.Equal(t, map[string]bool{lab.PairInstance + "-db-a": false, lab.PairInstance + "-db-b": true}, writers)
	})

	// A reboot asked for as soon as a failover reports available (the old
	// writer may still be rejoining) is accepted and runs after it; then
	// the service is idle and its busy file gone.
	t.Run("a reboot right after a failover", func(t *testing.T) {
		since := time.Now().Add(-time.Second)
		_, err := c.RebootDBInstance(ctx, &rds.RebootDBInstanceInput{DBInstanceIdentifier: aws.String(lab.PairInstance), ForceFailover: aws.Bool(true)})
		require.NoError(t, err)
		available := func(want int) func() bool {
			return func() bool {
				out, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(lab.PairInstance)})
				if err != nil || len(out.DBInstances) != 1 || aws.ToString(out.DBInstances[0].DBInstanceStatus) != "available" {
					return false
				}
				id, err := s.serverID(ctx)
				return err == nil && id == want
			}
		}
		require.Eventually(t, available(1), 2*time.Minute, 50*time.Millisecond, "the failover back to db-a")
		busy, err := dns.Exec(ctx, "test", "-e", lab.PairAPIBusyFile)
		require.NoError(t, err)
		t.Logf("rejoin still running when the reboot was asked for: %t", busy.ExitCode == 0)
		out, err := c.RebootDBInstance(ctx, &rds.RebootDBInstanceInput{DBInstanceIdentifier: aws.String(lab.PairInstance), ForceFailover: aws.Bool(false)})
		require.NoError(t, err)
		assert.Equal(t, "rebooting", aws.ToString(out.DBInstance.DBInstanceStatus))
		require.Eventually(t, available(1), 2*time.Minute, 50*time.Millisecond, "the reboot in place")
		require.NoError(t, pair.WaitAPIIdle(ctx))
		require.NoError(t, pair.WaitReplicating(ctx))
		w, err := pair.Writer(ctx)
		require.NoError(t, err)
		assert.Equal(t, "db-a", w.Name)
		busy, err = dns.Exec(ctx, "test", "-e", lab.PairAPIBusyFile)
		require.NoError(t, err)
		assert.Equal(t, 1, busy.ExitCode, "no busy file once idle")
		evs, err := c.DescribeEvents(ctx, &rds.DescribeEventsInput{SourceIdentifier: aws.String(lab.PairInstance), SourceType: types.SourceTypeDbInstance, StartTime: aws.Time(since)})
		require.NoError(t, err)
		var msgs []string
		for _, e := range evs.Events {
			msgs = append(msgs, aws.ToString(e.Message))
		}
		assert.Equal(t, []string{rdsapi.MsgFailoverStarted, rdsapi.MsgRestarted, rdsapi.MsgFailoverCompleted, rdsapi.MsgRebootRequested, rdsapi.MsgRestarted}, msgs)
	})

	t.Run("the service starts again with its host", func(t *testing.T) {
		require.NoError(t, dns.Stop(ctx, 10*time.Second))
		require.NoError(t, dns.Start(ctx))
		require.Eventually(t, func() bool {
			out, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String(lab.PairInstance)})
			return err == nil && len(out.DBInstances) == 1 && aws.ToString(out.DBInstances[0].DBInstanceStatus) == "available"
		}, 30*time.Second, 100*time.Millisecond, "the service did not come back with db-dns")
	})
}
