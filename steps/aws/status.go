// Package aws provides steps that ask AWS APIs what they see, through the
// AWS SDK for Go v2: aws.vpn_status reads a Site-to-Site VPN connection's
// tunnel telemetry with EC2 DescribeVpnConnections, the "tunnel is UP in
// the console" check of the VPN runbook.
//
// Credentials come from access_key_id and secret_access_key when given,
// otherwise from the SDK's default chain (environment, shared files, SSO,
// instance roles); endpoint overrides the service endpoint (the SDK's
// BaseEndpoint), which is how the lab's EC2 API stand-in is reached, and
// how tests reach a local server speaking the EC2 Query API.
package aws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/opsdrill/opsdrill/steps"
)

func init() {
	steps.Register(steps.Spec{
		Name:    "aws.vpn_status",
		Summary: "Check that AWS reports a Site-to-Site VPN connection's tunnels UP (EC2 DescribeVpnConnections)",
		Doc: "Calls EC2 DescribeVpnConnections for `vpn_connection_id` (vpn.config's output) and reports each tunnel's " +
			"telemetry: outside address, status (UP/DOWN), status message, last status change and accepted route " +
			"count. The step fails when the connection is not available or a tunnel of `require_up` (outside " +
			"addresses; default every tunnel) is not UP, naming it with its status message. AWS takes a while to " +
			"notice a tunnel came up, so give the step `retry:`. Credentials: `access_key_id` with " +
			"`secret_access_key` (a secret), else `profile` or the SDK's default chain; `region` else the SDK's. " +
			"`endpoint` replaces the EC2 endpoint (the lab's stand-in). Throttling (RequestLimitExceeded) is retried " +
			"with the SDK's backoff up to `max_attempts`; refused credentials and throttling that outlasts the " +
			"attempts stop the step with an error saying so.",
		New: func() steps.Step { return &Status{MaxAttempts: 5, MaxBackoff: 20 * time.Second} },
		Outputs: []steps.Output{
			{Name: "vpn_connection_id", Type: "string", Doc: "the VPN connection"},
			{Name: "state", Type: "string", Doc: "pending, available, deleting or deleted"},
			{Name: "customer_gateway_id", Type: "string", Doc: "its customer gateway"},
			{Name: "vpn_gateway_id", Type: "string", Doc: "its virtual private gateway (or transit gateway)"},
			{Name: "static_routes_only", Type: "bool", Doc: "static routing (no BGP)"},
			{Name: "tunnels", Type: "list", Doc: "per tunnel: outside_ip, status, status_message, last_status_change (RFC 3339), accepted_route_count"},
			{Name: "statuses", Type: "map", Doc: "outside address -> UP or DOWN"},
			{Name: "up_count", Type: "int", Doc: "tunnels UP"},
			{Name: "tunnel_count", Type: "int", Doc: "tunnels reported"},
			{Name: "routes", Type: "list", Doc: "static routes: destination_cidr, state, source"},
			{Name: "attempts", Type: "int", Doc: "HTTP requests made, retries included"},
		},
		Figures: statusFigures,
		Examples: []steps.Example{
			{Title: "Both tunnels UP", YAML: "- uses: aws.vpn_status\n  with: { vpn_connection_id: vpn-0a1b2c3d4e5f60718, region: ap-south-1 }\n  expect: [outputs.up_count == 2]"},
			{Title: "The tunnel the drill brought up is UP", YAML: "- uses: aws.vpn_status\n  retry: { attempts: 12, delay: 10s }\n  with:\n    vpn_connection_id: ${{ steps.config.outputs.vpn_connection_id }}\n    require_up: [\"${{ steps.config.outputs.vgw_outside_ip }}\"]"},
		},
	})
}

// Status reads a VPN connection's tunnel telemetry.
type Status struct {
	VPNConnectionID string        `yaml:"vpn_connection_id" doc:"the VPN connection, vpn-..." required:"true"`
	RequireUp       []string      `yaml:"require_up" doc:"outside addresses of the tunnels that must be UP (default: every tunnel)"`
	Region          string        `yaml:"region" doc:"AWS region (default: the SDK's, e.g. AWS_REGION)"`
	Endpoint        string        `yaml:"endpoint" doc:"EC2 endpoint URL replacing AWS's, e.g. the lab's stand-in"`
	AccessKeyID     string        `yaml:"access_key_id" doc:"access key id; with secret_access_key (default: the SDK's credential chain)"`
	SecretAccessKey string        `yaml:"secret_access_key" doc:"secret access key, from the scenario's secrets"`
	Profile         string        `yaml:"profile" doc:"shared configuration profile to use"`
	MaxAttempts     int           `yaml:"max_attempts" doc:"attempts per API call, retries of throttling and server errors included"`
	MaxBackoff      time.Duration `yaml:"max_backoff" doc:"longest wait between attempts"`
}

var (
	vpnID      = regexp.MustCompile(`^vpn-[0-9a-zA-Z]{8,32}$`)
	regionName = regexp.MustCompile(`^[a-z0-9-]{2,32}$`)
)

// Validate checks the parameters.
func (s *Status) Validate() error {
	if !vpnID.MatchString(s.VPNConnectionID) {
		return fmt.Errorf("vpn_connection_id: expected vpn-<id>, got %q", s.VPNConnectionID)
	}
	for i, ip := range s.RequireUp {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("require_up[%d]: %q is not an IP address (tunnels are named by their outside address)", i, ip)
		}
	}
	if s.Region != "" && !regionName.MatchString(s.Region) {
		return fmt.Errorf("region: %q is not a region name", s.Region)
	}
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("endpoint: expected an http(s) URL such as https://ec2.ap-south-1.amazonaws.com, got %q", s.Endpoint)
		}
	}
	if (s.AccessKeyID == "") != (s.SecretAccessKey == "") {
		return errors.New("access_key_id and secret_access_key: give both or neither (neither: the SDK's credential chain)")
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > 20 {
		return fmt.Errorf("max_attempts: must be 1 to 20, got %d", s.MaxAttempts)
	}
	if s.MaxBackoff <= 0 {
		return fmt.Errorf("max_backoff: must be positive, got %s", s.MaxBackoff)
	}
	return nil
}

// countingClient counts the HTTP requests the SDK makes, retries included.
type countingClient struct {
	inner ec2.HTTPClient
	n     atomic.Int64
}

func (c *countingClient) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.inner.Do(r)
}

// Run asks EC2 and judges the tunnels.
func (s *Status) Run(ctx context.Context, env *steps.Env) error {
	env.Secret(s.SecretAccessKey)
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() awssdk.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = s.MaxAttempts
				o.MaxBackoff = s.MaxBackoff
			})
		}),
	}
	if s.Region != "" {
		opts = append(opts, config.WithRegion(s.Region))
	}
	if s.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(s.Profile))
	}
	if s.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return errors.New("region: not given, and the SDK found none (AWS_REGION or the profile's region)")
	}
	counter := &countingClient{}
	client := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		if s.Endpoint != "" {
			o.BaseEndpoint = awssdk.String(s.Endpoint)
		}
		counter.inner = o.HTTPClient
		o.HTTPClient = counter
	})
	out, err := client.DescribeVpnConnections(ctx, &ec2.DescribeVpnConnectionsInput{VpnConnectionIds: []string{s.VPNConnectionID}})
	attempts := int(counter.n.Load())
	env.SetOutput("attempts", attempts)
	if err != nil {
		return s.explain(ctx, err, attempts, cfg.Region)
	}
	i := slices.IndexFunc(out.VpnConnections, func(v types.VpnConnection) bool {
		return awssdk.ToString(v.VpnConnectionId) == s.VPNConnectionID
	})
	if i < 0 {
		return fmt.Errorf("EC2 in %s returned no VPN connection %s", cfg.Region, s.VPNConnectionID)
	}
	return s.judge(env, out.VpnConnections[i])
}

// authCodes are EC2's answers to credentials it does not accept.
var authCodes = []string{"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
	"ExpiredToken", "RequestExpired", "OptInRequired", "Blocked", "IncompleteSignature", "MissingAuthenticationToken"}

func (s *Status) explain(ctx context.Context, err error, attempts int, region string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		where := "AWS"
		if s.Endpoint != "" {
			where = s.Endpoint
		}
		return fmt.Errorf("DescribeVpnConnections at %s (%d attempts): %w", where, attempts, err)
	}
	code, msg := ae.ErrorCode(), ae.ErrorMessage()
	switch {
	case slices.Contains(authCodes, code):
		who := "the SDK's default credentials"
		if s.AccessKeyID != "" {
			who = "access key " + s.AccessKeyID
		}
		return fmt.Errorf("EC2 refused %s for DescribeVpnConnections (%s: %s)", who, code, msg)
	case isThrottle(code):
		return fmt.Errorf("EC2 throttled DescribeVpnConnections on all %d attempts (%s: %s); run the drill later or raise max_attempts", attempts, code, msg)
	case code == "InvalidVpnConnectionID.NotFound" || code == "InvalidVpnConnectionID.Malformed":
		return fmt.Errorf("vpn_connection_id: EC2 in %s knows no VPN connection %s (%s: %s)", region, s.VPNConnectionID, code, msg)
	}
	return fmt.Errorf("DescribeVpnConnections: %s: %s", code, msg)
}

func isThrottle(code string) bool {
	_, ok := retry.DefaultThrottleErrorCodes[code]
	return ok
}

// judge publishes the connection's telemetry and fails when it is not
// available or a required tunnel is not UP.
func (s *Status) judge(env *steps.Env, vc types.VpnConnection) error {
	var tunnels []any
	statuses := map[string]any{}
	var rows [][]string
	up := 0
	byIP := map[string]types.VgwTelemetry{}
	var order []string
	for _, t := range vc.VgwTelemetry {
		ip := awssdk.ToString(t.OutsideIpAddress)
		byIP[ip] = t
		order = append(order, ip)
		status := string(t.Status)
		if t.Status == types.TelemetryStatusUp {
			up++
		}
		changed := ""
		if t.LastStatusChange != nil {
			changed = t.LastStatusChange.UTC().Format(time.RFC3339)
		}
		routes := int(awssdk.ToInt32(t.AcceptedRouteCount))
		tunnels = append(tunnels, map[string]any{
			"outside_ip": ip, "status": status, "status_message": awssdk.ToString(t.StatusMessage),
			"last_status_change": changed, "accepted_route_count": routes,
		})
		statuses[ip] = status
		rows = append(rows, []string{ip, status, awssdk.ToString(t.StatusMessage), changed, strconv.Itoa(routes)})
	}
	var routes []any
	for _, r := range vc.Routes {
		routes = append(routes, map[string]any{
			"destination_cidr": awssdk.ToString(r.DestinationCidrBlock), "state": string(r.State), "source": string(r.Source),
		})
	}
	state := string(vc.State)
	env.SetOutput("vpn_connection_id", awssdk.ToString(vc.VpnConnectionId))
	env.SetOutput("state", state)
	env.SetOutput("customer_gateway_id", awssdk.ToString(vc.CustomerGatewayId))
	gw := awssdk.ToString(vc.VpnGatewayId)
	if gw == "" {
		gw = awssdk.ToString(vc.TransitGatewayId)
	}
	env.SetOutput("vpn_gateway_id", gw)
	static := vc.Options != nil && awssdk.ToBool(vc.Options.StaticRoutesOnly)
	env.SetOutput("static_routes_only", static)
	env.SetOutput("tunnels", tunnels)
	env.SetOutput("statuses", statuses)
	env.SetOutput("up_count", up)
	env.SetOutput("tunnel_count", len(tunnels))
	env.SetOutput("routes", routes)
	env.AddEvidence(steps.TableEvidence("VPN "+s.VPNConnectionID+" tunnel telemetry ("+state+")",
		[]string{"outside address", "status", "status message", "last status change", "accepted routes"}, rows))
	env.Logf("%s %s: %d of %d tunnels UP", s.VPNConnectionID, state, up, len(tunnels))

	if vc.State != types.VpnStateAvailable {
		return steps.Failf("VPN connection %s is %s, not available", s.VPNConnectionID, state)
	}
	required := s.RequireUp
	if len(required) == 0 {
		required = order
	}
	if len(required) == 0 {
		return steps.Failf("VPN connection %s reports no tunnel telemetry", s.VPNConnectionID)
	}
	var bad []string
	for _, ip := range required {
		t, ok := byIP[ip]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s is not a tunnel of %s (its tunnels: %s)", ip, s.VPNConnectionID, strings.Join(order, ", ")))
		case t.Status != types.TelemetryStatusUp:
			msg := fmt.Sprintf("tunnel %s is %s", ip, t.Status)
			if m := awssdk.ToString(t.StatusMessage); m != "" {
				msg += fmt.Sprintf(" (%q)", m)
			}
			if t.LastStatusChange != nil {
				msg += " since " + t.LastStatusChange.UTC().Format(time.RFC3339)
			}
			bad = append(bad, msg)
		}
	}
	if len(bad) > 0 {
		return steps.Failf("VPN connection %s: %s", s.VPNConnectionID, strings.Join(bad, "; "))
	}
	return nil
}
