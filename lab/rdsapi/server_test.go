package rdsapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/aws/aws-sdk-go-v2/service/rds/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clock is a settable time source for the Memory backend.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func startMemory(t *testing.T) (*Memory, *Server, *rds.Client, *clock) {
	t.Helper()
	m := NewMemory()
	c := &clock{t: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)}
	m.now = c.now
	m.FailoverTime = 30 * time.Second
	m.AddInstance(Instance{ID: "testrds", Status: "available", Engine: "mysql", Version: "8.0.36", AZ: "ap-south-1b",
		SecondaryAZ: "ap-south-1a", MultiAZ: true, Address: "testrds.cdjw6bxi4s1f.ap-south-1.rds.amazonaws.com", Port: 3306})
	m.AddInstance(Instance{ID: "single", Status: "available", Engine: "mysql", AZ: "ap-south-1a"})
	m.AddCluster(Cluster{ID: "orders", Status: "available", Engine: "mysql", Endpoint: "orders.cluster-x.ap-south-1.rds.amazonaws.com", Port: 3306, MultiAZ: true,
		Members: []Member{{InstanceID: "orders-1", Writer: true}, {InstanceID: "orders-2"}, {InstanceID: "orders-3"}}},
		map[string]string{"orders-1": "ap-south-1a", "orders-2": "ap-south-1b", "orders-3": "ap-south-1c"})
	srv, err := Start(m, "ap-south-1")
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	return m, srv, client(srv, srv.Credentials()), c
}

func client(srv *Server, creds aws.CredentialsProvider) *rds.Client {
	return rds.New(rds.Options{Region: srv.Region, BaseEndpoint: aws.String(srv.URL), Credentials: creds,
		RetryMaxAttempts: 1})
}

// TestRebootWithFailover drives the Memory backend through the real SDK:
// describe, reboot with failover ("rebooting"), then available with the
// zones swapped, the runbook's "Availability Zone ... now ap-south-1a".
func TestRebootWithFailover(t *testing.T) {
	m, _, c, clk := startMemory(t)
	ctx := context.Background()
	out, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String("testrds")})
	require.NoError(t, err)
	require.Len(t, out.DBInstances, 1)
	i := out.DBInstances[0]
	assert.Equal(t, "available", aws.ToString(i.DBInstanceStatus))
	assert.Equal(t, "ap-south-1b", aws.ToString(i.AvailabilityZone))
	assert.Equal(t, "ap-south-1a", aws.ToString(i.SecondaryAvailabilityZone))
	assert.True(t, aws.ToBool(i.MultiAZ))
	assert.Equal(t, "testrds.cdjw6bxi4s1f.ap-south-1.rds.amazonaws.com", aws.ToString(i.Endpoint.Address))
	assert.Equal(t, int32(3306), aws.ToInt32(i.Endpoint.Port))
	assert.Equal(t, "8.0.36", aws.ToString(i.EngineVersion))

	r, err := c.RebootDBInstance(ctx, &rds.RebootDBInstanceInput{DBInstanceIdentifier: aws.String("testrds"), ForceFailover: aws.Bool(true)})
	require.NoError(t, err)
	assert.Equal(t, "rebooting", aws.ToString(r.DBInstance.DBInstanceStatus))

	_, err = c.RebootDBInstance(ctx, &rds.RebootDBInstanceInput{DBInstanceIdentifier: aws.String("testrds")})
	var state *types.InvalidDBInstanceStateFault
	require.ErrorAs(t, err, &state, "a second reboot while rebooting")

	clk.t = clk.t.Add(31 * time.Second)
	out, err = c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String("testrds")})
	require.NoError(t, err)
	i = out.DBInstances[0]
	assert.Equal(t, "available", aws.ToString(i.DBInstanceStatus))
	assert.Equal(t, "ap-south-1a", aws.ToString(i.AvailabilityZone))
	assert.Equal(t, "ap-south-1b", aws.ToString(i.SecondaryAvailabilityZone))
	assert.Equal(t, []string{"DescribeDBInstances testrds", "RebootDBInstance testrds", "RebootDBInstance testrds", "DescribeDBInstances testrds"}, m.Calls())

	all, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{})
	require.NoError(t, err)
	assert.Len(t, all.DBInstances, 5)
}

func TestClusterFailover(t *testing.T) {
	_, _, c, clk := startMemory(t)
	ctx := context.Background()
	writer := func() string {
		out, err := c.DescribeDBClusters(ctx, &rds.DescribeDBClustersInput{DBClusterIdentifier: aws.String("orders")})
		require.NoError(t, err)
		for _, m := range out.DBClusters[0].DBClusterMembers {
			if aws.ToBool(m.IsClusterWriter) {
				return aws.ToString(m.DBInstanceIdentifier)
			}
		}
		return ""
	}
	assert.Equal(t, "orders-1", writer())
	out, err := c.FailoverDBCluster(ctx, &rds.FailoverDBClusterInput{DBClusterIdentifier: aws.String("orders"), TargetDBInstanceIdentifier: aws.String("orders-3")})
	require.NoError(t, err)
	assert.Equal(t, "failing-over", aws.ToString(out.DBCluster.Status))
	assert.Len(t, out.DBCluster.DBClusterMembers, 3)
	clk.t = clk.t.Add(time.Minute)
	assert.Equal(t, "orders-3", writer())

	_, err = c.FailoverDBCluster(ctx, &rds.FailoverDBClusterInput{DBClusterIdentifier: aws.String("orders"), TargetDBInstanceIdentifier: aws.String("orders-3")})
	var api smithy.APIError
	require.ErrorAs(t, err, &api)
	assert.Equal(t, "InvalidParameterValue", api.ErrorCode())
}

// TestAPIErrors: the SDK sees RDS's error codes as its typed errors, and
// a request signed with other credentials is refused.
func TestAPIErrors(t *testing.T) {
	_, srv, c, _ := startMemory(t)
	ctx := context.Background()

	_, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String("nosuch")})
	var nf *types.DBInstanceNotFoundFault
	require.ErrorAs(t, err, &nf)
	assert.Contains(t, nf.ErrorMessage(), "nosuch")

	_, err = c.DescribeDBClusters(ctx, &rds.DescribeDBClustersInput{DBClusterIdentifier: aws.String("nosuch")})
	var cnf *types.DBClusterNotFoundFault
	require.ErrorAs(t, err, &cnf)

	_, err = c.RebootDBInstance(ctx, &rds.RebootDBInstanceInput{DBInstanceIdentifier: aws.String("single"), ForceFailover: aws.Bool(true)})
	var api smithy.APIError
	require.ErrorAs(t, err, &api)
	assert.Equal(t, "InvalidParameterCombination", api.ErrorCode())

	good, err := srv.Credentials().Retrieve(ctx)
	require.NoError(t, err)
	cases := []struct {
		name  string
		creds aws.Credentials
		code  string
	}{
		{"wrong secret", aws.Credentials{AccessKeyID: good.AccessKeyID, SecretAccessKey: "not-the-secret"}, "SignatureDoesNotMatch"},
		{"unknown key", aws.Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: good.SecretAccessKey}, "InvalidClientTokenId"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := client(srv, aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return tc.creds, nil }))
			_, err := bad.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{})
			var api smithy.APIError
			require.True(t, errors.As(err, &api), "%v", err)
			assert.Equal(t, tc.code, api.ErrorCode())
		})
	}
}

// TestZonesLagAndEvents: after a reboot with failover the instance is
// available again while DescribeDBInstances still reports the old zones
// for AZLag, as AWS does; DescribeEvents tells RDS's side of it.
func TestZonesLagAndEvents(t *testing.T) {
	m, _, c, clk := startMemory(t)
	m.AZLag = 2 * time.Minute
	ctx := context.Background()
	start := clk.t
	_, err := c.RebootDBInstance(ctx, &rds.RebootDBInstanceInput{DBInstanceIdentifier: aws.String("testrds"), ForceFailover: aws.Bool(true)})
	require.NoError(t, err)
	zones := func() (string, string, string) {
		out, err := c.DescribeDBInstances(ctx, &rds.DescribeDBInstancesInput{DBInstanceIdentifier: aws.String("testrds")})
		require.NoError(t, err)
		i := out.DBInstances[0]
		return aws.ToString(i.DBInstanceStatus), aws.ToString(i.AvailabilityZone), aws.ToString(i.SecondaryAvailabilityZone)
	}
	clk.t = start.Add(31 * time.Second)
	st, az, sec := zones()
	assert.Equal(t, []string{"available", "ap-south-1b", "ap-south-1a"}, []string{st, az, sec}, "available, zones not caught up yet")
	clk.t = start.Add(31*time.Second + 2*time.Minute)
	st, az, sec = zones()
	assert.Equal(t, []string{"available", "ap-south-1a", "ap-south-1b"}, []string{st, az, sec})

	ev, err := c.DescribeEvents(ctx, &rds.DescribeEventsInput{SourceIdentifier: aws.String("testrds"), SourceType: types.SourceTypeDbInstance,
		StartTime: aws.Time(start.Add(-time.Minute)), EndTime: aws.Time(clk.t)})
	require.NoError(t, err)
	var msgs []string
	for _, e := range ev.Events {
		msgs = append(msgs, aws.ToString(e.Message))
		assert.Equal(t, "testrds", aws.ToString(e.SourceIdentifier))
		assert.Equal(t, types.SourceTypeDbInstance, e.SourceType)
		assert.NotEmpty(t, e.EventCategories)
	}
	assert.Equal(t, []string{MsgFailoverStarted, MsgRestarted, MsgFailoverCompleted}, msgs)
	assert.Equal(t, start, aws.ToTime(ev.Events[0].Date).UTC())

	// The window filters: nothing before the reboot, nothing of others.
	ev, err = c.DescribeEvents(ctx, &rds.DescribeEventsInput{SourceIdentifier: aws.String("testrds"), StartTime: aws.Time(start.Add(-time.Hour)), EndTime: aws.Time(start.Add(-time.Minute))})
	require.NoError(t, err)
	assert.Empty(t, ev.Events)
	ev, err = c.DescribeEvents(ctx, &rds.DescribeEventsInput{SourceIdentifier: aws.String("single"), StartTime: aws.Time(start.Add(-time.Minute)), EndTime: aws.Time(clk.t)})
	require.NoError(t, err)
	assert.Empty(t, ev.Events)
}

// TestSignedHeadersAsSent: the signature is checked over the headers the
// client signed. botocore (the aws CLI) does not sign Content-Length, the
// Go SDK does: both get in, and a request whose signed body was changed
// does not.
func TestSignedHeadersAsSent(t *testing.T) {
	_, srv, _, _ := startMemory(t)
	ctx := context.Background()
	creds, err := srv.Credentials().Retrieve(ctx)
	require.NoError(t, err)
	body := "Action=DescribeDBInstances&Version=" + APIVersion
	send := func(t *testing.T, signContentLength bool, sent string) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/", strings.NewReader(sent))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		signed := req.Clone(ctx)
		if !signContentLength {
			signed.ContentLength = 0
		}
		sum := sha256.Sum256([]byte(body))
		require.NoError(t, v4.NewSigner().SignHTTP(ctx, creds, signed, hex.EncodeToString(sum[:]), "rds", srv.Region, time.Now()))
		req.Header = signed.Header
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, send(t, true, body), "Content-Length signed (Go SDK)")
	assert.Equal(t, http.StatusOK, send(t, false, body), "Content-Length not signed (botocore)")
	assert.Equal(t, http.StatusForbidden, send(t, false, body+"&DBInstanceIdentifier=single"), "a body other than the signed one")
}
