package totp

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// probeStart is 5 s into counter 56_666_666: early in a step, so the probe
// does not wait to start.
var probeStart = time.Unix(56_666_666*30+5, 0)

// probeStep returns a verify_drift step probing the test validator at url.
func probeStep(url string, clock clock) *VerifyDrift {
	v := newVerifyDrift().(*VerifyDrift)
	v.Secret = testB32
	v.Endpoint = &Endpoint{URL: url, User: "alice"}
	v.clock = clock
	return v
}

// TestProbeHTTP injects one fault per check into a live HTTP validator and
// checks the step measures it.
func TestProbeHTTP(t *testing.T) {
	cases := []struct {
		name         string
		cfg          validatorConfig
		window       int
		wantAccepted []int
		wantOffset   int
		wantWindow   int
		wantTrunc    bool
		wantReplay   bool
	}{
		{name: "healthy ±1", cfg: validatorConfig{window: 1}, window: 3,
			wantAccepted: []int{-1, 0, 1}, wantOffset: 0, wantWindow: 1, wantReplay: true},
		{name: "clock 2 steps ahead", cfg: validatorConfig{skew: 2, window: 1}, window: 4,
			wantAccepted: []int{1, 2, 3}, wantOffset: 2, wantWindow: 1, wantReplay: true},
		{name: "clock 1 step behind", cfg: validatorConfig{skew: -1, window: 1}, window: 3,
			wantAccepted: []int{-2, -1, 0}, wantOffset: -1, wantWindow: 1, wantReplay: true},
		{name: "accepts replays", cfg: validatorConfig{window: 1, replay: true}, window: 3,
			wantAccepted: []int{-1, 0, 1}, wantOffset: 0, wantWindow: 1, wantReplay: false},
		{name: "exact only", cfg: validatorConfig{window: 0}, window: 3,
			wantAccepted: []int{0}, wantOffset: 0, wantWindow: 0, wantReplay: true},
		{name: "wide window", cfg: validatorConfig{window: 3}, window: 3,
			wantAccepted: []int{-3, -2, -1, 0, 1, 2, 3}, wantOffset: 0, wantWindow: 3, wantTrunc: true, wantReplay: true},
		{name: "skew beyond the probe", cfg: validatorConfig{skew: 3, window: 1}, window: 3,
			wantAccepted: []int{2, 3}, wantOffset: 2, wantWindow: 1, wantTrunc: true, wantReplay: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(probeStart)
			tc.cfg.secret = testB32
			val := newValidator(tc.cfg, clock)
			v := probeStep(serveValidator(t, val), clock)
			v.Window = tc.window
			require.NoError(t, v.Validate())
			env, rec := newEnv(t)
			err := v.Run(context.Background(), env)
			require.NoError(t, err)
			out := env.Outputs()
			assert.Equal(t, tc.wantAccepted, out["accepted_offsets"])
			assert.Equal(t, tc.wantOffset, out["clock_offset_steps"])
			assert.Equal(t, tc.wantWindow, out["window_steps"])
			assert.Equal(t, tc.wantTrunc, out["window_truncated"])
			assert.Equal(t, tc.wantReplay, out["replay_rejected"])

			// Codes went out in strictly ascending counter order, then the
			// fresh code twice, one above the highest accepted.
			seen := val.counters()
			require.Len(t, seen, 2*tc.window+1+2)
			base := int64(56_666_666)
			for i := range 2*tc.window + 1 {
				assert.Equal(t, base-int64(tc.window)+int64(i), seen[i])
			}
			fresh := base + int64(tc.wantAccepted[len(tc.wantAccepted)-1]) + 1
			assert.Equal(t, []int64{fresh, fresh}, seen[len(seen)-2:])

			// Evidence: the accepted-window diagram as a table and a series.
			tables := evidenceByKind(env.Evidence(), "table")
			require.Len(t, tables, 1)
			assert.Equal(t, "TOTP accepted-window diagram", tables[0].Title)
			assert.Len(t, tables[0].Table.Rows, len(seen))
			series := evidenceByKind(env.Evidence(), "series")
			require.Len(t, series, 1)
			pts := series[0].Series[0].Points
			require.Len(t, pts, 2*(2*tc.window+1))
			for i := 0; i < len(pts); i += 2 {
				want := 0.0
				if containsInt(tc.wantAccepted, int(pts[i])) {
					want = 1
				}
				assert.Equal(t, want, pts[i+1], "offset %v", pts[i])
			}
			assertNoLeak(t, env, rec, nil)
		})
	}
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// TestProbeOrderMatters shows why the probe goes upward: a replay-protecting
// validator probed outward from 0 would refuse -1 after accepting 0. The
// ascending probe sees the whole window.
func TestProbeOrderMatters(t *testing.T) {
	clock := newFakeClock(probeStart)
	val := newValidator(validatorConfig{secret: testB32, window: 1}, clock)
	r, err := Key{Secret: testB32}.resolve()
	require.NoError(t, err)
	base := int64(56_666_666)
	var outward []bool
	for _, off := range []int64{0, -1, 1} {
		code, err := r.gen.code(base + off)
		require.NoError(t, err)
		outward = append(outward, val.check("bob", code))
	}
	assert.Equal(t, []bool{true, false, true}, outward, "outward probing misreads the window")

	v := probeStep(serveValidator(t, val), clock)
	env, _ := newEnv(t)
	require.NoError(t, v.Run(context.Background(), env))
	assert.Equal(t, []int{-1, 0, 1}, env.Outputs()["accepted_offsets"])
}

func TestProbeHTTPForms(t *testing.T) {
	cases := []struct {
		name     string
		endpoint Endpoint
		answer   func(ok bool) (int, string)
	}{
		{name: "form POST", endpoint: Endpoint{Fields: map[string]any{"port": "22"}}},
		{name: "json POST", endpoint: Endpoint{Encoding: "json"}},
		{name: "json POST keeps a number a number", endpoint: Endpoint{Encoding: "json", Fields: map[string]any{"port": 22}}},
		{name: "GET query", endpoint: Endpoint{Method: "GET"}},
		{name: "status 204 only", endpoint: Endpoint{SuccessStatus: []int{204}}, answer: func(ok bool) (int, string) {
			if ok {
				return http.StatusNoContent, ""
			}
			return http.StatusOK, "try again"
		}},
		{name: "body regex", endpoint: Endpoint{SuccessBody: `"result":\s*"granted"`}, answer: func(ok bool) (int, string) {
			if ok {
				return http.StatusOK, `{"result": "granted"}`
			}
			return http.StatusOK, `{"result": "denied"}`
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(probeStart)
			val := newValidator(validatorConfig{secret: testB32, window: 1, answer: tc.answer}, clock)
			v := probeStep(serveValidator(t, val), clock)
			e := tc.endpoint
			e.URL, e.User, e.Headers = v.Endpoint.URL, "alice", map[string]string{"X-Drill": "totp"}
			v.Endpoint = &e
			require.NoError(t, v.Validate())
			env, _ := newEnv(t)
			require.NoError(t, v.Run(context.Background(), env))
			assert.Equal(t, []int{-1, 0, 1}, env.Outputs()["accepted_offsets"])
			assert.Equal(t, true, env.Outputs()["replay_rejected"])
			req := val.requests[0]
			assert.Equal(t, "totp", req.Header.Get("X-Drill"))
			switch {
			case tc.endpoint.Fields != nil && tc.endpoint.Encoding == "json":
				assert.Equal(t, float64(22), val.jsonBodies[0]["port"], "a number stays a number")
			case tc.endpoint.Fields != nil:
				assert.Equal(t, "22", req.Form.Get("port"))
			}
		})
	}
}

// TestProbeHTTPSWithCA: an https validator is trusted through ca_pem or
// ca_cert, and refused (an error, not a verdict) without them.
func TestProbeHTTPSWithCA(t *testing.T) {
	clock := newFakeClock(probeStart)
	val := newValidator(validatorConfig{secret: testB32, window: 1}, clock)
	srv := httptest.NewTLSServer(val)
	t.Cleanup(srv.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	v := probeStep(srv.URL, clock)
	env, _ := newEnv(t)
	err := v.Run(context.Background(), env)
	require.Error(t, err)
	assert.False(t, steps.IsFailure(err), "an untrusted certificate is no verdict on the validator")

	for name, set := range map[string]func(e *Endpoint, dir string){
		"ca_pem": func(e *Endpoint, _ string) { e.CAPEM = caPEM },
		"ca_cert": func(e *Endpoint, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(caPEM), 0o644))
			e.CACert = "ca.pem"
		},
	} {
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock(probeStart)
			val := newValidator(validatorConfig{secret: testB32, window: 1}, clock)
			srv := httptest.NewTLSServer(val)
			t.Cleanup(srv.Close)
			caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
			v := probeStep(srv.URL, clock)
			env, _ := newEnv(t)
			env.BaseDir = t.TempDir()
			set(v.Endpoint, env.BaseDir)
			require.NoError(t, v.Run(context.Background(), env))
			assert.Equal(t, []int{-1, 0, 1}, env.Outputs()["accepted_offsets"])
		})
	}
}

// TestProbeFailures: verdicts the step itself draws, and errors.
func TestProbeFailures(t *testing.T) {
	t.Run("wrong key: nothing accepted", func(t *testing.T) {
		clock := newFakeClock(probeStart)
		val := newValidator(validatorConfig{secret: "JBSWY3DPEHPK3PXP", window: 1}, clock)
		v := probeStep(serveValidator(t, val), clock)
		env, _ := newEnv(t)
		err := v.Run(context.Background(), env)
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err))
		assert.EqualError(t, err, "the validator accepted none of the codes at offsets -3..+3")
		assert.Equal(t, []int{}, env.Outputs()["accepted_offsets"])
		assert.NotContains(t, env.Outputs(), "clock_offset_steps")
	})
	t.Run("lockout makes the replay check inconclusive", func(t *testing.T) {
		clock := newFakeClock(probeStart)
		val := newValidator(validatorConfig{secret: testB32, window: 1, lockout: 4}, clock)
		v := probeStep(serveValidator(t, val), clock)
		env, _ := newEnv(t)
		err := v.Run(context.Background(), env)
		require.Error(t, err)
		assert.True(t, steps.IsFailure(err))
		assert.Contains(t, err.Error(), "replay check: the validator refused a fresh code")
		assert.NotContains(t, env.Outputs(), "replay_rejected")
		assert.Equal(t, 0, env.Outputs()["clock_offset_steps"])
	})
	t.Run("validator down is an error", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL + "/otp?token=abc"
		srv.Close()
		v := probeStep(url, newFakeClock(probeStart))
		v.Endpoint.Method = "GET"
		env, rec := newEnv(t)
		err := v.Run(context.Background(), env)
		require.Error(t, err)
		assert.False(t, steps.IsFailure(err))
		assert.Contains(t, err.Error(), "endpoint: GET "+url+": ")
		assert.NotContains(t, err.Error(), "code=", "the query with the code is not quoted")
		assertNoLeak(t, env, rec, err)
	})
	t.Run("slow validator crosses the step boundary", func(t *testing.T) {
		clock := newFakeClock(probeStart)
		val := newValidator(validatorConfig{secret: testB32, window: 1, latency: 4 * time.Second}, clock)
		v := probeStep(serveValidator(t, val), clock)
		env, _ := newEnv(t)
		err := v.Run(context.Background(), env)
		require.Error(t, err)
		assert.False(t, steps.IsFailure(err))
		assert.Contains(t, err.Error(), "crossed a time-step boundary")
	})
	t.Run("late in a step the probe waits for the next", func(t *testing.T) {
		clock := newFakeClock(probeStart.Add(24 * time.Second)) // 1 s left
		val := newValidator(validatorConfig{secret: testB32, window: 1}, clock)
		v := probeStep(serveValidator(t, val), clock)
		v.ReplayCheck = false
		env, _ := newEnv(t)
		require.NoError(t, v.Run(context.Background(), env))
		assert.Equal(t, []int{-1, 0, 1}, env.Outputs()["accepted_offsets"])
		assert.Equal(t, int64(56_666_667-3), val.counters()[0], "probed around the next counter")
		assert.NotContains(t, env.Outputs(), "replay_rejected")
	})
	t.Run("a step's first moment is skipped", func(t *testing.T) {
		// At the very start of a step a validator reading a coarse clock
		// (oathtool's time(2)) is still in the one before: probing then
		// would report it a step behind, or a window one wider.
		clock := newFakeClock(time.Unix(56_666_667*30, 0))
		val := newValidator(validatorConfig{secret: testB32, window: 1, lag: 5 * time.Millisecond}, clock)
		v := probeStep(serveValidator(t, val), clock)
		v.ReplayCheck = false
		env, _ := newEnv(t)
		require.NoError(t, v.Run(context.Background(), env))
		assert.Equal(t, []int{-1, 0, 1}, env.Outputs()["accepted_offsets"])
		assert.Equal(t, 0, env.Outputs()["clock_offset_steps"])
	})
	t.Run("cancelled", func(t *testing.T) {
		clock := newFakeClock(probeStart)
		val := newValidator(validatorConfig{secret: testB32, window: 1}, clock)
		v := probeStep(serveValidator(t, val), clock)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		env, _ := newEnv(t)
		assert.ErrorIs(t, v.Run(ctx, env), context.Canceled)
	})
}

// TestProbeCommandOathtool probes the runbook's own server-side check,
// `oathtool --totp -w 1 KEY CODE`, through validator_command, on the real
// clock with a 4 s period. oathtool is stateless: it accepts replays, which
// the step must report.
func TestProbeCommandOathtool(t *testing.T) {
	oathtool := requireOathtool(t)
	key := hex.EncodeToString([]byte(rfcSeeds["SHA1"]))
	cases := []struct {
		name         string
		argv         []string
		window       int
		wantAccepted []int
		wantOffset   int
	}{
		{"in sync", []string{oathtool, "--totp", "-s", "4s", "-w", "1", key, "{code}"}, 3, []int{-1, 0, 1}, 0},
		{"validator 2 steps ahead", []string{oathtool, "--totp", "-s", "4s", "-w", "1", "-N", "now + 8 seconds", key, "{code}"}, 4, []int{1, 2, 3}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifyDrift().(*VerifyDrift)
			v.SecretHex, v.Period, v.Window, v.ValidatorCommand = key, 4, tc.window, tc.argv
			require.NoError(t, v.Validate())
			env, rec := newEnv(t)
			require.NoError(t, v.Run(context.Background(), env))
			out := env.Outputs()
			assert.Equal(t, tc.wantAccepted, out["accepted_offsets"])
			assert.Equal(t, tc.wantOffset, out["clock_offset_steps"])
			assert.Equal(t, 1, out["window_steps"])
			assert.Equal(t, false, out["replay_rejected"], "oathtool accepts the same code twice")
			rows := evidenceByKind(env.Evidence(), "table")[0].Table.Rows
			assert.Equal(t, "exit status 0", rows[len(rows)-1][7])
			assert.Contains(t, []string{"exit status 1", "exit status 2"}, rows[0][7])
			assertNoLeak(t, env, rec, nil)
		})
	}
}

func TestProbeCommandErrors(t *testing.T) {
	t.Run("missing program", func(t *testing.T) {
		v := newVerifyDrift().(*VerifyDrift)
		v.Secret, v.ValidatorCommand = testB32, []string{filepath.Join(t.TempDir(), "nope"), "{code}"}
		v.clock = newFakeClock(probeStart)
		env, rec := newEnv(t)
		err := v.Run(context.Background(), env)
		require.Error(t, err)
		assert.False(t, steps.IsFailure(err))
		assert.Contains(t, err.Error(), "validator_command: ")
		assertNoLeak(t, env, rec, err)
	})
	t.Run("timeout", func(t *testing.T) {
		v := newVerifyDrift().(*VerifyDrift)
		v.Secret, v.ValidatorCommand = testB32, []string{"sleep", "5", "{code}"}
		v.AttemptTimeout = 50 * time.Millisecond
		v.clock = newFakeClock(probeStart)
		env, _ := newEnv(t)
		start := time.Now()
		err := v.Run(context.Background(), env)
		require.Error(t, err)
		assert.Less(t, time.Since(start), 3*time.Second)
		assert.Contains(t, err.Error(), "validator_command: sleep gave no answer within 50ms")
	})
}

// TestProbeOtherFormats: 8-digit SHA512 codes and a 60 s period.
func TestProbeOtherFormats(t *testing.T) {
	clock := newFakeClock(time.Unix(28_333_333*60+3, 0))
	val := newValidator(validatorConfig{secret: testB32, window: 2, skew: -1, period: 60, digits: 8, alg: otp.AlgorithmSHA512}, clock)
	v := probeStep(serveValidator(t, val), clock)
	v.Digits, v.Period, v.Algorithm, v.Window = 8, 60, "SHA512", 4
	env, _ := newEnv(t)
	require.NoError(t, v.Run(context.Background(), env))
	assert.Equal(t, []int{-3, -2, -1, 0, 1}, env.Outputs()["accepted_offsets"])
	assert.Equal(t, -1, env.Outputs()["clock_offset_steps"])
	assert.Equal(t, 2, env.Outputs()["window_steps"])
	assert.Equal(t, true, env.Outputs()["replay_rejected"])
}
