package port

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/portgate/auth"
	pgt "github.com/opsdrill/opsdrill/portgate/portgatetest"
	"github.com/opsdrill/opsdrill/steps"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgt.Cleanup()
	os.Exit(code)
}

// run is one step run with everything it reports captured.
type run struct {
	out      map[string]any
	err      error
	logs     []string
	secrets  []string
	evidence []steps.Evidence
	undo     []func(context.Context) error
}

func runStep(t *testing.T, s steps.Step) *run {
	t.Helper()
	if v, ok := s.(steps.Validator); ok {
		require.NoError(t, v.Validate())
	}
	r := &run{}
	var mu sync.Mutex
	env := steps.NewEnv("port-test", "step", t.TempDir(), steps.Hooks{
		Log:    func(l string) { mu.Lock(); r.logs = append(r.logs, l); mu.Unlock() },
		Secret: func(v string) { mu.Lock(); r.secrets = append(r.secrets, v); mu.Unlock() },
		Undo:   func(_ string, fn func(context.Context) error) { r.undo = append(r.undo, fn) },
	})
	r.err = s.Run(context.Background(), env)
	r.out = env.Outputs()
	r.evidence = env.Evidence()
	return r
}

// leaked reports secrets (code, token, key, password) that reached a log
// line or the evidence: the runner redacts outputs, but these must not
// carry them in the first place.
func (r *run) leaked(extra ...string) []string {
	var text strings.Builder
	for _, l := range r.logs {
		text.WriteString(l + "\n")
	}
	for _, e := range r.evidence {
		if e.Table != nil {
			for _, row := range e.Table.Rows {
				text.WriteString(strings.Join(row, " ") + "\n")
			}
		}
	}
	if r.err != nil {
		text.WriteString(r.err.Error())
	}
	var out []string
	for _, s := range append(r.secrets, extra...) {
		if s != "" && strings.Contains(text.String(), s) {
			out = append(out, s)
		}
	}
	return out
}

func (r *run) failed() bool { return r.err != nil && steps.IsFailure(r.err) }

// gateSteps starts a portgate reachable from this process (uplink) and
// returns a port.open template pointed at it.
func gateSteps(t *testing.T, o pgt.Options) (*pgt.Gate, func(func(*Open)) *Open, string) {
	o.Uplink = true
	g := pgt.Start(t, o)
	url := g.URL(g.GateUplinkIP)
	svc := net.JoinHostPort(g.GateUplinkIP, fmt.Sprint(pgt.SvcPort))
	mk := func(mod func(*Open)) *Open {
		op := newOpen(func(op *Open) {
			op.URL, op.User, op.Secret, op.Port = url, "alice", pgt.SecretB32, pgt.SvcPort
			op.CACert, op.Source = g.CAFile, g.UplinkIP
		})
		if mod != nil {
			mod(op)
		}
		return op
	}
	return g, mk, svc
}

const closedWait = 700 * time.Millisecond

// TestDrillSteps runs each check of the drill with port.open and
// port.close against a real portgate, and injects each fault: a refusal
// where an opening was expected, an opening where a refusal was.
func TestDrillSteps(t *testing.T) {
	g, mk, svc := gateSteps(t, pgt.Options{})
	client, other := g.UplinkIP, g.UplinkIP2
	assert.False(t, pgt.ProbeFrom(client, svc, closedWait), "closed before")

	// A wrong code opens nothing; expecting it to open fails the step.
	r := runStep(t, mk(func(o *Open) { o.OffsetSteps, o.Expect = 40, "refused" }))
	require.NoError(t, r.err)
	assert.Equal(t, false, r.out["opened"])
	assert.Equal(t, 401, r.out["status"])
	assert.Equal(t, "401 auth_failed: authentication failed", r.out["reason"])
	r = runStep(t, mk(func(o *Open) { o.OffsetSteps = 40 }))
	assert.True(t, r.failed(), "expect opened, got a refusal: %v", r.err)
	assert.Contains(t, r.err.Error(), "refused to open tcp/7022: 401 auth_failed")
	assert.False(t, pgt.ProbeFrom(client, svc, closedWait))

	// A port outside the allow-list opens nothing.
	r = runStep(t, mk(func(o *Open) { o.Port, o.Expect = pgt.OtherPort, "refused" }))
	require.NoError(t, r.err)
	assert.Equal(t, 403, r.out["status"])
	assert.False(t, pgt.ProbeFrom(client, net.JoinHostPort(g.GateUplinkIP, fmt.Sprint(pgt.OtherPort)), closedWait))

	// The real thing: open for 20 s from the client address.
	open := runStep(t, mk(func(o *Open) { o.Duration = 20 * time.Second }))
	require.NoError(t, open.err)
	assert.Equal(t, true, open.out["opened"])
	assert.Equal(t, 201, open.out["status"])
	assert.Equal(t, client, open.out["ip"])
	assert.Regexp(t, `^pg-[0-9a-f]{16}$`, open.out["lease_id"])
	assert.InDelta(t, 20000, open.out["expires_in_ms"], 3000)
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`, open.out["expires"])
	assert.Empty(t, open.leaked(), "no secret in logs or evidence")
	assert.Contains(t, open.secrets, open.out["code"])
	assert.Contains(t, open.secrets, open.out["token"])
	require.Len(t, open.undo, 1, "port.close is registered as undo")
	assert.True(t, pgt.ProbeFrom(client, svc, 5*time.Second), "open from the authenticated address")
	assert.False(t, pgt.ProbeFrom(other, svc, closedWait), "still closed from another address")

	// The same code again, from the other address: refused.
	r = runStep(t, mk(func(o *Open) { o.Secret, o.Code, o.Source, o.Expect = "", open.out["code"].(string), other, "refused" }))
	require.NoError(t, r.err)
	assert.Equal(t, 401, r.out["status"])
	assert.False(t, pgt.ProbeFrom(other, svc, closedWait), "a replayed code opens nothing")
	assert.Equal(t, []string{"bad_code", "bad_code", "port_not_allowed", "replay"}, g.Reasons("deny"))

	// The undo closes the lease; a second close finds it gone.
	require.NoError(t, open.undo[0](context.Background()))
	assert.False(t, pgt.ProbeFrom(client, svc, closedWait), "closed by the undo")
	cl := runStep(t, &Close{URL: g.URL(g.GateUplinkIP), LeaseID: open.out["lease_id"].(string), Token: open.out["token"].(string),
		Conn: Conn{CACert: g.CAFile, Source: client, Timeout: 10 * time.Second}, Expect: "closed"})
	require.NoError(t, cl.err)
	assert.Equal(t, true, cl.out["already_gone"])
	assert.Equal(t, 404, cl.out["status"])
	assert.Empty(t, cl.leaked())

	// Fault: an opener that opens where a refusal was expected fails the
	// step, and the lease is still closed at cleanup.
	r = runStep(t, mk(func(o *Open) { o.User, o.Expect = "bob", "refused" }))
	assert.True(t, r.failed(), "%v", r.err)
	assert.Contains(t, r.err.Error(), "opened tcp/7022, expected a refusal")
	assert.True(t, pgt.ProbeFrom(client, svc, 5*time.Second))
	require.Len(t, r.undo, 1)
	require.NoError(t, r.undo[0](context.Background()))
	assert.False(t, pgt.ProbeFrom(client, svc, closedWait))
}

// TestCloseWithUserCredentials closes a lease with TOTP credentials, and
// checks a wrong token is reported.
func TestCloseWithUserCredentials(t *testing.T) {
	// dave's app has a 5 s time step, so the wait for a fresh one is short.
	g, mk, svc := gateSteps(t, pgt.Options{Backend: "iptables", Extra: "  - {name: dave, secret: " + pgt.SecretB32 + ", period: 5s}\n"})
	open := runStep(t, mk(func(o *Open) { o.User, o.Period, o.Close = "dave", 5, false }))
	require.NoError(t, open.err)
	assert.Empty(t, open.undo, "close: false keeps the lease")
	assert.True(t, pgt.ProbeFrom(g.UplinkIP, svc, 5*time.Second))
	id := open.out["lease_id"].(string)
	conn := Conn{CACert: g.CAFile, Source: g.UplinkIP, Timeout: 10 * time.Second}

	// The owner, with a fresh code: the step waits for the next time step
	// rather than replay the one port.open used.
	start := time.Now()
	cl := runStep(t, &Close{URL: g.URL(g.GateUplinkIP), LeaseID: id, User: "dave", TOTP: TOTP{Secret: pgt.SecretB32, Period: 5}, Conn: conn, Expect: "closed"})
	require.NoError(t, cl.err, "waited %s", time.Since(start))
	assert.Equal(t, true, cl.out["closed"])
	assert.Equal(t, false, cl.out["already_gone"])
	assert.False(t, pgt.ProbeFrom(g.UplinkIP, svc, closedWait))
	assert.Empty(t, cl.leaked())

	// Malformed credentials: portgate answers 400, the step fails.
	bad := runStep(t, &Close{URL: g.URL(g.GateUplinkIP), LeaseID: id, Token: "short", Conn: conn, Expect: "closed"})
	assert.True(t, bad.failed(), "%v", bad.err)
	assert.Equal(t, 400, bad.out["status"])
}

// TestTLSVerification: without the CA the call does not happen at all (an
// error, not a refusal); with insecure_tls it does.
func TestTLSVerification(t *testing.T) {
	_, mk, _ := gateSteps(t, pgt.Options{})
	r := runStep(t, mk(func(o *Open) { o.CACert, o.OffsetSteps, o.Expect = "", 40, "any" }))
	require.Error(t, r.err)
	assert.False(t, steps.IsFailure(r.err), "no answer is an error, not a verdict")
	assert.Contains(t, r.err.Error(), "certificate")
	r = runStep(t, mk(func(o *Open) { o.CACert, o.InsecureTLS, o.OffsetSteps, o.Expect = "", true, 40, "refused" }))
	require.NoError(t, r.err)
}

// TestCurlTransport drives portgate through the curl path the steps use
// inside lab hosts, here with the machine's own curl: configuration on
// stdin, CA file, source address, headers and body.
func TestCurlTransport(t *testing.T) {
	g, _, svc := gateSteps(t, pgt.Options{})
	if _, err := os.Stat("/usr/bin/curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs curl: %v", err)
		}
		t.Skip("needs curl")
	}
	code := g.Code(0)
	body := fmt.Sprintf(`{"user":"alice","code":%q,"port":%d,"duration":"30s"}`, code, pgt.SvcPort)
	c := call{Method: "POST", URL: g.URL(g.GateUplinkIP) + "/v1/leases", ContentType: "application/json", Body: []byte(body),
		Source: g.UplinkIP, CACert: g.CAFile, Timeout: 10 * time.Second}
	ans, err := c.remote(context.Background())
	require.NoError(t, err)
	require.Equal(t, 201, ans.Status, "%s", ans.Body)
	assert.Contains(t, string(ans.Body), `"ip":"`+g.UplinkIP+`"`)
	assert.True(t, pgt.ProbeFrom(g.UplinkIP, svc, 5*time.Second))

	c = call{Method: "GET", URL: g.URL(g.GateUplinkIP) + "/healthz", Source: g.UplinkIP2, Timeout: 10 * time.Second}
	_, err = c.remote(context.Background())
	require.Error(t, err, "no CA: curl refuses the certificate")
	assert.Contains(t, err.Error(), "curl on local exited 60")
	c.Insecure = true
	ans, err = c.remote(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 200, ans.Status)
	assert.Equal(t, "ok\n", string(ans.Body))
}

// TestFormMode opens through the seed's form shape, served by portgate's
// fixed-password mode, and checks success_match.
func TestFormMode(t *testing.T) {
	sum := sha256.Sum256([]byte("randompassword123"))
	g, _, svc := gateSteps(t, pgt.Options{
		Extra: fmt.Sprintf("fixed_password: {sha256: %x, port: %d}\n", sum, pgt.SvcPort),
		Flags: []string{"--allow-fixed-password"},
	})
	form := func(mod func(*Open)) *Open {
		spec, _ := steps.Lookup("port.open")
		o := spec.New().(*Open)
		o.Mode, o.URL, o.Password, o.Port = "form", g.URL(g.GateUplinkIP)+"/openport", "randompassword123", pgt.SvcPort
		o.CACert, o.Source = g.CAFile, g.UplinkIP
		mod(o)
		return o
	}
	r := runStep(t, form(func(o *Open) { o.Password, o.Expect = "wrong-password", "refused" }))
	require.NoError(t, r.err)
	assert.Equal(t, 401, r.out["status"])
	assert.False(t, pgt.ProbeFrom(g.UplinkIP, svc, closedWait))

	r = runStep(t, form(func(o *Open) { o.SuccessMatch = "lime" }))
	assert.True(t, r.failed(), "a 200 that does not match success_match is a refusal: %v", r.err)
	assert.Contains(t, r.err.Error(), "does not match success_match")

	r = runStep(t, form(func(o *Open) { o.SuccessMatch = "^open: tcp/7022" }))
	require.NoError(t, r.err)
	assert.Equal(t, true, r.out["opened"])
	assert.Empty(t, r.undo, "a form offers no close")
	assert.Empty(t, r.leaked("randompassword123"))
	assert.True(t, pgt.ProbeFrom(g.UplinkIP, svc, 5*time.Second))
	assert.False(t, pgt.ProbeFrom(g.UplinkIP2, svc, closedWait))
}

// TestSecondFactorAnd8Digits: a user with 8-digit codes and a password
// (argon2id) gets in with both factors only, end to end through the real
// portgate, and neither the code nor the password shows in any output.
func TestSecondFactorAnd8Digits(t *testing.T) {
	hash, err := auth.HashPassword("correct horse battery")
	require.NoError(t, err)
	g, mk, svc := gateSteps(t, pgt.Options{Extra: "  - {name: erin, secret: " + pgt.SecretB32 + ", digits: 8, period: 5s, password_hash: '" + hash + "'}\n"})
	erin := func(o *Open) { o.User, o.Digits, o.Period = "erin", 8, 5 }

	r := runStep(t, mk(func(o *Open) { erin(o); o.Expect = "refused" }))
	require.NoError(t, r.err)
	assert.Equal(t, 401, r.out["status"], "the code alone is not enough")
	r = runStep(t, mk(func(o *Open) { erin(o); o.Password, o.Expect = "correct horse batterY", "refused" }))
	require.NoError(t, r.err)
	assert.Equal(t, 401, r.out["status"], "a wrong password")
	assert.False(t, pgt.ProbeFrom(g.UplinkIP, svc, closedWait))

	open := runStep(t, mk(func(o *Open) { erin(o); o.Password = "correct horse battery" }))
	require.NoError(t, open.err)
	assert.Len(t, open.out["code"], 8)
	assert.Empty(t, open.leaked("correct horse battery"))
	assert.True(t, pgt.ProbeFrom(g.UplinkIP, svc, 5*time.Second))
	assert.Equal(t, []string{"bad_password", "bad_password"}, g.Reasons("deny"))
	assert.NotContains(t, g.AuditRaw(), "correct horse")
	require.NoError(t, open.undo[0](context.Background()))
}
