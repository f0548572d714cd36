package db

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/lab/rdsapi"
	"github.com/opsdrill/opsdrill/steps"
)

// fakeAWS serves the RDS API from memory (AWS cannot run here) and points
// the SDK's default configuration at its credentials. The step under test
// reaches it exactly as it reaches AWS: LoadDefaultConfig, BaseEndpoint,
// SigV4-signed Query API.
func fakeAWS(t *testing.T) (*rdsapi.Memory, string) {
	t.Helper()
	m := rdsapi.NewMemory()
	m.AddInstance(rdsapi.Instance{ID: "testrds", Status: "available", Engine: "mysql", AZ: "ap-south-1b", SecondaryAZ: "ap-south-1a", MultiAZ: true,
		Address: "testrds.cdjw6bxi4s1f.ap-south-1.rds.amazonaws.com", Port: 3306})
	m.AddInstance(rdsapi.Instance{ID: "single", Status: "available", Engine: "mysql", AZ: "ap-south-1a"})
	m.AddCluster(rdsapi.Cluster{ID: "orders", Status: "available", Engine: "mysql", MultiAZ: true,
		Members: []rdsapi.Member{{InstanceID: "orders-1", Writer: true}, {InstanceID: "orders-2"}, {InstanceID: "orders-3"}}},
		map[string]string{"orders-1": "ap-south-1a", "orders-2": "ap-south-1b", "orders-3": "ap-south-1c"})
	srv, err := rdsapi.Start(m, "ap-south-1")
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	creds, err := srv.Credentials().Retrieve(context.Background())
	require.NoError(t, err)
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return m, srv.URL
}

func rdsFailover(url string) *Failover {
	f := newFailover().(*Failover)
	f.Driver, f.Instance, f.Region, f.EndpointURL = "aws-rds", "testrds", "ap-south-1", url
	f.Poll, f.CompleteWithin = 10*time.Millisecond, 30*time.Second
	return f
}

func TestFailoverAWSRDS(t *testing.T) {
	m, url := fakeAWS(t)
	dir := t.TempDir()
	f := rdsFailover(url)
	env, _ := newEnv(t, dir, "drill", "failover")
	require.NoError(t, run(t, f, env))
	out := env.Outputs()
	assert.Equal(t, true, out["switched"])
	assert.Equal(t, "ap-south-1b", out["az_before"])
	assert.Equal(t, "ap-south-1a", out["secondary_az_before"])
	assert.Equal(t, "ap-south-1a", out["az_after"], "the runbook: the Availability Zone is now ap-south-1a")
	assert.Equal(t, "ap-south-1b", out["secondary_az_after"])
	assert.NotEmpty(t, out["triggered_at"])
	assert.NotEmpty(t, out["completed_at"])
	assert.Contains(t, m.Calls(), "RebootDBInstance testrds")

	ms := env.Timeline().Moments()
	require.Len(t, ms, 2)
	assert.Equal(t, MomentTrigger, ms[0].Kind)
	assert.Equal(t, MomentComplete, ms[1].Kind)
	assert.False(t, ms[1].At.Before(ms[0].At))
}

func TestFailoverAWSRDSCluster(t *testing.T) {
	_, url := fakeAWS(t)
	f := rdsFailover(url)
	f.Instance, f.Cluster, f.TargetInstance = "", "orders", "orders-2"
	env, _ := newEnv(t, t.TempDir(), "drill", "failover")
	require.NoError(t, run(t, f, env))
	out := env.Outputs()
	assert.Equal(t, "orders-1", out["writer_before"].(map[string]any)["host"])
	assert.Equal(t, "orders-2", out["writer_after"].(map[string]any)["host"])
	assert.Equal(t, "ap-south-1a", out["az_before"])
	assert.Equal(t, "ap-south-1b", out["az_after"])
}

// TestFailoverSameWriterFails: a failover after which the same writer
// serves is a failed check; a platform that cannot fail over is an error.
func TestFailoverSameWriterFails(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(m *rdsapi.Memory, f *Failover)
		failure bool
		want    string
	}{
		{"the platform leaves the writer in place", func(m *rdsapi.Memory, f *Failover) { m.StuckWriter = true }, true, "did not switch writers: before in ap-south-1b, still in ap-south-1b"},
		{"a reboot without failover", func(m *rdsapi.Memory, f *Failover) { f.ForceFailover = false }, true, "did not switch writers"},
		{"cluster writer stuck", func(m *rdsapi.Memory, f *Failover) { m.StuckWriter = true; f.Instance, f.Cluster = "", "orders" }, true, "before orders-1 in ap-south-1a, still orders-1"},
		{"not Multi-AZ", func(m *rdsapi.Memory, f *Failover) { f.Instance = "single" }, false, "single is not Multi-AZ"},
		{"no such instance", func(m *rdsapi.Memory, f *Failover) { f.Instance = "nosuch" }, false, "DBInstanceNotFound"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, url := fakeAWS(t)
			f := rdsFailover(url)
			f.CompleteWithin = 300 * time.Millisecond
			tc.setup(m, f)
			env, _ := newEnv(t, t.TempDir(), "drill", "failover")
			err := run(t, f, env)
			require.Error(t, err)
			assert.Equal(t, tc.failure, steps.IsFailure(err), "%v", err)
			assert.Contains(t, err.Error(), tc.want)
			if tc.failure {
				assert.Equal(t, false, env.Outputs()["switched"])
			}
		})
	}
}

// TestFailoverAWSRDSCredentials: the aws-rds driver signs with the step's
// access_key_id and secret_access_key (over whatever the environment
// holds) or a shared-configuration profile; a wrong secret is refused by
// the API, and the secret never appears in the step's output, log or
// error.
func TestFailoverAWSRDSCredentials(t *testing.T) {
	_, url := fakeAWS(t)
	goodID, goodSecret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	// The default chain now holds a key the API refuses: only the step's
	// own credentials get through.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	shared := filepath.Join(t.TempDir(), "credentials")
	require.NoError(t, os.WriteFile(shared, fmt.Appendf(nil, "[drill]\naws_access_key_id = %s\naws_secret_access_key = %s\n", goodID, goodSecret), 0o600))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", shared)

	cases := []struct {
		name   string
		mutate func(f *Failover)
		secret string
		err    string
	}{
		{name: "access key and secret", mutate: func(f *Failover) { f.AccessKeyID, f.SecretAccessKey = goodID, goodSecret }, secret: goodSecret},
		{name: "profile", mutate: func(f *Failover) { f.Profile = "drill" }},
		{name: "wrong secret", mutate: func(f *Failover) { f.AccessKeyID, f.SecretAccessKey = goodID, "not-the-secret-0123" }, secret: "not-the-secret-0123", err: "SignatureDoesNotMatch"},
		{name: "the default chain's wrong key", mutate: func(*Failover) {}, err: "InvalidClientTokenId"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := rdsFailover(url)
			tc.mutate(f)
			env, rec := newEnv(t, t.TempDir(), "drill", "failover")
			err := run(t, f, env)
			if tc.secret != "" {
				rec.assertNoSecret(t, env, err, tc.secret)
			}
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, true, env.Outputs()["switched"])
		})
	}
}

func TestFailoverValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(f *Failover)
		want   string
	}{
		{"unknown driver", func(f *Failover) { f.Driver = "gcp" }, "driver: must be one of aws-rds, lab, "},
		{"neither instance nor cluster", func(f *Failover) { f.Instance = "" }, "instance, cluster: give exactly one"},
		{"both", func(f *Failover) { f.Cluster = "c" }, "instance, cluster: give exactly one"},
		{"target without cluster", func(f *Failover) { f.TargetInstance = "x" }, "target_instance: only with cluster"},
		{"bad endpoint", func(f *Failover) { f.EndpointURL = "localhost:4566" }, "endpoint_url: expected http(s)://"},
		{"the in-process lab: scheme is gone", func(f *Failover) { f.EndpointURL = "lab:abc" }, `endpoint_url: expected http(s)://host[:port], got "lab:abc"`},
		{"access key without secret", func(f *Failover) { f.AccessKeyID = "AKIA0" }, "access_key_id and secret_access_key: give both or neither"},
		{"secret without access key", func(f *Failover) { f.SecretAccessKey = "s" }, "access_key_id and secret_access_key: give both or neither"},
		{"bad action", func(f *Failover) { f.Driver, f.Action = "lab", "reboot" }, "action: must be one of kill, partition, switchover"},
		{"negative partition_for", func(f *Failover) { f.Driver, f.Action, f.PartitionFor = "lab", "partition", -time.Second }, "partition_for: must not be negative"},
		{"negative az_wait", func(f *Failover) { f.AZWait = -time.Second }, "az_wait: must not be negative"},
		{"command without argv", func(f *Failover) { f.Driver = "command" }, "command: required"},
		{"command without dsn", func(f *Failover) { f.Driver, f.Command = "command", []string{"true"} }, "dsn: required with driver command"},
		{"bad dsn", func(f *Failover) { f.DSN = "x:secret-pw@tcp(h:1)" }, "dsn: "},
		{"zero poll", func(f *Failover) { f.Poll = 0 }, "poll: must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := rdsFailover("")
			tc.mutate(f)
			err := f.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.False(t, strings.Contains(err.Error(), "secret-pw"))
		})
	}
	require.NoError(t, rdsFailover("http://10.0.0.2:8080").Validate())
}

// fakeZones reports the old zones for the first lag polls, then swapped.
type fakeZones struct {
	lag, polls int
	applies    bool
}

func (z *fakeZones) zones(context.Context) (string, string, bool, error) {
	z.polls++
	if z.polls <= z.lag {
		return "ap-south-1b", "ap-south-1a", z.applies, nil
	}
	return "ap-south-1a", "ap-south-1b", z.applies, nil
}

// TestAwaitZones: after the SQL writer changed, the zones are reported
// only once the platform shows them swapped, within az_wait, else the
// step fails instead of reporting zones that have not caught up.
func TestAwaitZones(t *testing.T) {
	before := writer{AZ: "ap-south-1b", SecondaryAZ: "ap-south-1a", ServerID: 1}
	cases := []struct {
		name    string
		zones   *fakeZones
		wait    time.Duration
		failure string
		az      string
	}{
		{"caught up after a few polls", &fakeZones{lag: 5, applies: true}, time.Second, "", "ap-south-1a"},
		{"never within az_wait", &fakeZones{lag: 1 << 30, applies: true}, 100 * time.Millisecond,
			"100ms later the platform still reports AvailabilityZone ap-south-1b, SecondaryAvailabilityZone ap-south-1a", "ap-south-1b"},
		{"no zones to swap (a cluster)", &fakeZones{applies: false}, time.Second, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFailover().(*Failover)
			f.Poll, f.AZWait = 5*time.Millisecond, tc.wait
			env, _ := newEnv(t, t.TempDir(), "drill", "failover")
			after, err := f.awaitZones(context.Background(), env, tc.zones, before, writer{ServerID: 2}, time.Now())
			if tc.failure != "" {
				require.Error(t, err)
				assert.True(t, steps.IsFailure(err))
				assert.Contains(t, err.Error(), tc.failure)
				assert.Equal(t, int64(-1), env.Outputs()["az_lag_ms"])
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tc.az, after.AZ)
		})
	}
}

// TestFailoverAWSRDSZonesLag: the fake AWS reports the instance available
// while its zones lag; the step waits for them and records RDS's events.
func TestFailoverAWSRDSZonesLag(t *testing.T) {
	m, url := fakeAWS(t)
	m.FailoverTime, m.AZLag = 50*time.Millisecond, 300*time.Millisecond
	f := rdsFailover(url)
	env, _ := newEnv(t, t.TempDir(), "drill", "failover")
	start := time.Now()
	require.NoError(t, run(t, f, env))
	out := env.Outputs()
	assert.Equal(t, "ap-south-1a", out["az_after"])
	assert.Equal(t, "ap-south-1b", out["secondary_az_after"])
	assert.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond, "the step waited for the zones")
	evs := out["platform_events"].([]any)
	require.Len(t, evs, 3)
	assert.Equal(t, "Multi-AZ instance failover started.", evs[0].(map[string]any)["message"])
	assert.Equal(t, "Multi-AZ instance failover completed", evs[2].(map[string]any)["message"])
	ev := findEvidence(t, env.Evidence(), "table")
	assert.Contains(t, ev.Title, "DescribeEvents")
	text := fmt.Sprint(ev.Table.Rows)
	assert.Contains(t, text, "opsdrill (failover) failover triggered")
	assert.Contains(t, text, "RDS Multi-AZ instance failover started. (failover)")
}

// TestTLSValidate: TLS options are checked at load time, naming the field.
func TestTLSValidate(t *testing.T) {
	cases := []struct {
		name string
		dsn  string
		opts TLSOptions
		want string
	}{
		{"unknown mode", "", TLSOptions{TLS: "require"}, "tls: must be one of verify-full, verify-ca, skip-verify, preferred, off"},
		{"both CA sources", "", TLSOptions{CAFile: "a.pem", CAPEM: "x"}, "ca_file, ca_pem: give one"},
		{"a CA without verification", "", TLSOptions{TLS: tlsPreferred, CAFile: "a.pem"}, "ca_file: trusted CAs only matter with tls verify-full or verify-ca"},
		{"tls in the DSN and the step", "u:pw@tcp(h:3306)/d?tls=preferred", TLSOptions{TLS: tlsVerifyFull}, "dsn: tls= is set in the DSN and the step sets tls"},
		{"ca_pem without a certificate", "", TLSOptions{CAPEM: "not pem"}, "ca_pem: no PEM certificate in it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := defaultConn()
			c.DSN = "u:pw@tcp(h:3306)/d"
			if tc.dsn != "" {
				c.DSN = tc.dsn
			}
			c.TLSOptions = tc.opts
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	c := defaultConn()
	c.DSN, c.TLSOptions = "u:pw@tcp(h:3306)/d", TLSOptions{TLS: tlsVerifyFull, CAFile: "rds-global-bundle.pem"}
	require.NoError(t, c.Validate())
	assert.Equal(t, tlsVerifyFull, c.mode())
	c.TLSOptions = TLSOptions{}
	assert.Equal(t, tlsPreferred, c.mode(), "encrypted when the server offers it, by default")
}

// TestPinnedTLSNamesTheEndpoint: a connection pinned to an address keeps
// verifying the certificate against the endpoint's name.
func TestPinnedTLSNamesTheEndpoint(t *testing.T) {
	c := defaultConn()
	c.DSN, c.TLSOptions = "u:pw@tcp(testrds.example.internal:3306)/d", TLSOptions{TLS: tlsVerifyFull}
	pinned := c.at("10.0.0.5:3306")
	cfg, err := pinned.config("")
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.5:3306", cfg.Addr)
	assert.Equal(t, "testrds.example.internal", cfg.TLS.ServerName)
	cfg, err = c.config("10.0.0.6:3306")
	require.NoError(t, err)
	assert.Equal(t, "testrds.example.internal", cfg.TLS.ServerName)
	assert.False(t, cfg.TLS.InsecureSkipVerify)
}
