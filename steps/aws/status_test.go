package aws

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// TestMain keeps the SDK away from this machine's AWS configuration and
// from the instance metadata service: every request goes to local servers.
func TestMain(m *testing.M) {
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_ACCESS_KEY_ID":           "",
		"AWS_SECRET_ACCESS_KEY":       "",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_EC2":        "",
	} {
		if v == "" {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, v)
		}
	}
	os.Exit(m.Run())
}

func (f *fakeEC2) step() *Status {
	return &Status{
		VPNConnectionID: f.conn.ID, Region: f.region, Endpoint: f.srv.URL,
		AccessKeyID: f.accessKey, SecretAccessKey: f.secretKey,
		MaxAttempts: 5, MaxBackoff: 5 * time.Millisecond,
	}
}

func run(t *testing.T, s *Status) (map[string]any, *steps.Env, []string, error) {
	t.Helper()
	require.NoError(t, s.Validate())
	var secrets []string
	env := steps.NewEnv("s", "status", t.TempDir(), steps.Hooks{Secret: func(v string) { secrets = append(secrets, v) }})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.Run(ctx, env)
	return env.Outputs(), env, secrets, err
}

func TestBothTunnelsUp(t *testing.T) {
	f := newFakeEC2(t)
	out, env, secrets, err := run(t, f.step())
	require.NoError(t, err)
	assert.Equal(t, "vpn-0a1b2c3d4e5f60718", out["vpn_connection_id"])
	assert.Equal(t, "available", out["state"])
	assert.Equal(t, 2, out["up_count"])
	assert.Equal(t, 2, out["tunnel_count"])
	assert.Equal(t, 1, out["attempts"])
	assert.Equal(t, true, out["static_routes_only"])
	assert.Equal(t, "cgw-0123456789abcdef0", out["customer_gateway_id"])
	assert.Equal(t, "vgw-0f1e2d3c4b5a69788", out["vpn_gateway_id"])
	assert.Equal(t, map[string]any{"203.0.113.11": "UP", "198.51.100.12": "UP"}, out["statuses"])
	tunnels := out["tunnels"].([]any)
	require.Len(t, tunnels, 2)
	assert.Equal(t, map[string]any{
		"outside_ip": "203.0.113.11", "status": "UP", "status_message": "",
		"last_status_change": "2026-11-21T09:00:00Z", "accepted_route_count": 1,
	}, tunnels[0])
	assert.Equal(t, []any{map[string]any{"destination_cidr": "169.254.0.0/16", "state": "", "source": ""}}, out["routes"])
	assert.Contains(t, secrets, f.secretKey)

	// The real SDK sent a signed DescribeVpnConnections for our connection.
	require.Equal(t, 1, f.requestCount())
	form := f.requests[0]
	assert.Equal(t, "DescribeVpnConnections", form.Get("Action"))
	assert.Equal(t, "2016-11-15", form.Get("Version"))
	assert.Equal(t, "vpn-0a1b2c3d4e5f60718", form.Get("VpnConnectionId.1"))

	ev := env.Evidence()
	require.Len(t, ev, 1)
	assert.Equal(t, [][]string{
		{"203.0.113.11", "UP", "", "2026-11-21T09:00:00Z", "1"},
		{"198.51.100.12", "UP", "", "2026-11-21T09:01:00Z", "1"},
	}, ev[0].Table.Rows)
	_, err = json.Marshal(out)
	assert.NoError(t, err, "outputs are JSON-friendly")
}

// TestTunnelDownFails injects a DOWN tunnel into the API's answer.
func TestTunnelDownFails(t *testing.T) {
	changed := time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)
	down := func(f *fakeEC2) {
		f.conn.Tunnels[1] = tunnelTelemetry{IP: "198.51.100.12", Status: "DOWN", Message: "IPSEC IS DOWN", Changed: changed}
	}
	tests := []struct {
		name      string
		requireUp []string
		fault     func(f *fakeEC2)
		wantFail  string
	}{
		{name: "every tunnel required", fault: down, wantFail: `tunnel 198.51.100.12 is DOWN ("IPSEC IS DOWN") since 2026-11-21T09:30:00Z`},
		{name: "the down tunnel required", requireUp: []string{"198.51.100.12"}, fault: down, wantFail: "tunnel 198.51.100.12 is DOWN"},
		{name: "only the up tunnel required", requireUp: []string{"203.0.113.11"}, fault: down},
		{name: "a tunnel the connection lacks", requireUp: []string{"192.0.2.99"}, wantFail: "192.0.2.99 is not a tunnel of vpn-0a1b2c3d4e5f60718"},
		{name: "connection not available", fault: func(f *fakeEC2) { f.conn.State = "pending" }, wantFail: "is pending, not available"},
		{name: "no telemetry", fault: func(f *fakeEC2) { f.conn.Tunnels = nil }, wantFail: "reports no tunnel telemetry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEC2(t)
			if tt.fault != nil {
				f.set(tt.fault)
			}
			s := f.step()
			s.RequireUp = tt.requireUp
			out, _, _, err := run(t, s)
			if tt.wantFail == "" {
				require.NoError(t, err)
				assert.Equal(t, 1, out["up_count"])
				return
			}
			require.Error(t, err)
			assert.True(t, steps.IsFailure(err), "a DOWN tunnel is a finding, not an error: %v", err)
			assert.Contains(t, err.Error(), tt.wantFail)
		})
	}
}

// TestThrottling injects RequestLimitExceeded answers: a few are retried
// through, too many end the step with an error saying so.
func TestThrottling(t *testing.T) {
	f := newFakeEC2(t)
	f.set(func(f *fakeEC2) { f.throttles = 2 })
	out, _, _, err := run(t, f.step())
	require.NoError(t, err)
	assert.Equal(t, 3, out["attempts"])
	assert.Equal(t, 2, out["up_count"])

	f = newFakeEC2(t)
	f.set(func(f *fakeEC2) { f.throttles = 100 })
	s := f.step()
	s.MaxAttempts = 3
	out, _, _, err = run(t, s)
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err), "throttling means the check could not run")
	assert.Contains(t, err.Error(), "EC2 throttled DescribeVpnConnections on all 3 attempts (RequestLimitExceeded")
	assert.Equal(t, 3, out["attempts"])
	assert.Equal(t, 3, f.requestCount())
}

// TestAuthErrors injects refused credentials: a wrong secret (the
// signature does not match), an unknown key, a missing permission.
func TestAuthErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(s *Status, f *fakeEC2)
		want   string
	}{
		{name: "wrong secret", modify: func(s *Status, _ *fakeEC2) { s.SecretAccessKey = "not-the-secret-key-of-this-account" },
			want: "EC2 refused access key AKIAFAKEEC2TESTKEY01 for DescribeVpnConnections (AuthFailure"},
		{name: "unknown key", modify: func(s *Status, _ *fakeEC2) { s.AccessKeyID = "AKIAUNKNOWNKEY000000" },
			want: "EC2 refused access key AKIAUNKNOWNKEY000000 for DescribeVpnConnections (AuthFailure"},
		{name: "wrong region in the signature", modify: func(s *Status, _ *fakeEC2) { s.Region = "eu-west-1" },
			want: "(AuthFailure: credential scope eu-west-1/ec2"},
		{name: "no permission", modify: func(_ *Status, f *fakeEC2) { f.set(func(f *fakeEC2) { f.failWith = "UnauthorizedOperation" }) },
			want: "(UnauthorizedOperation: You are not authorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEC2(t)
			s := f.step()
			tt.modify(s, f)
			_, _, _, err := run(t, s)
			require.Error(t, err)
			assert.False(t, steps.IsFailure(err))
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), s.SecretAccessKey, "the secret never appears in an error")
			assert.NotContains(t, err.Error(), f.secretKey)
			assert.Equal(t, 1, f.requestCount(), "refused credentials are not retried")
		})
	}
}

func TestAPIAndTransportErrors(t *testing.T) {
	f := newFakeEC2(t)
	s := f.step()
	s.VPNConnectionID = "vpn-00000000000000000"
	_, _, _, err := run(t, s)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "vpn_connection_id: EC2 in ap-south-1 knows no VPN connection vpn-00000000000000000 (InvalidVpnConnectionID.NotFound")

	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		_, _ = w.Write([]byte("<DescribeVpnConnectionsResponse><vpnConnectionSet><item><vpnConnectionId>"))
	}))
	defer garbage.Close()
	s = f.step()
	s.Endpoint = garbage.URL
	_, _, _, err = run(t, s)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "DescribeVpnConnections at "+garbage.URL)

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	s = f.step()
	s.Endpoint = closed.URL
	s.MaxAttempts = 2
	out, _, _, err := run(t, s)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "DescribeVpnConnections at "+closed.URL+" (2 attempts)")
	assert.Equal(t, 2, out["attempts"])
}

func TestNoRegion(t *testing.T) {
	f := newFakeEC2(t)
	s := f.step()
	s.Region = ""
	_, _, _, err := run(t, s)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "region: not given")
	assert.Equal(t, 0, f.requestCount())
}

func TestValidate(t *testing.T) {
	ok := func() *Status {
		return &Status{VPNConnectionID: "vpn-0a1b2c3d4e5f60718", MaxAttempts: 5, MaxBackoff: time.Second}
	}
	require.NoError(t, ok().Validate())
	tests := []struct {
		name   string
		modify func(s *Status)
		want   string
	}{
		{"bad id", func(s *Status) { s.VPNConnectionID = "vgw-123" }, "vpn_connection_id: expected vpn-<id>"},
		{"bad require_up", func(s *Status) { s.RequireUp = []string{"tunnel1"} }, "require_up[0]: \"tunnel1\" is not an IP address"},
		{"bad region", func(s *Status) { s.Region = "Mumbai Region" }, "region:"},
		{"bad endpoint", func(s *Status) { s.Endpoint = "ec2.local:4580" }, "endpoint: expected an http(s) URL"},
		{"key without secret", func(s *Status) { s.AccessKeyID = "AKIAX" }, "give both or neither"},
		{"secret without key", func(s *Status) { s.SecretAccessKey = "x" }, "give both or neither"},
		{"attempts", func(s *Status) { s.MaxAttempts = 0 }, "max_attempts: must be 1 to 20, got 0"},
		{"backoff", func(s *Status) { s.MaxBackoff = 0 }, "max_backoff: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok()
			tt.modify(s)
			err := s.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
