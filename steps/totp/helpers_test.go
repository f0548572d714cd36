package totp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsdrill/opsdrill/steps"
)

// requireOathtool returns the oathtool path. Outside CI a missing oathtool
// skips the test; in CI (CI=true) it fails it, so CI cannot silently stop
// checking against the reference.
func requireOathtool(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("oathtool")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("oathtool is required in CI (apt-get install -y oathtool): %v", err)
	}
	tb.Skipf("oathtool not installed (apt-get install -y oathtool): %v", err)
	return ""
}

// recorder captures what a step tells the runner.
type recorder struct {
	mu      sync.Mutex
	logs    []string
	secrets []string
}

func (r *recorder) hooks() steps.Hooks {
	return steps.Hooks{
		Log: func(line string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.logs = append(r.logs, line)
		},
		Secret: func(v string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.secrets = append(r.secrets, v)
		},
	}
}

// newEnv returns an Env writing artifacts into a temporary report folder.
func newEnv(t testing.TB) (*steps.Env, *recorder) {
	t.Helper()
	rec := &recorder{}
	return steps.NewEnv("totp-test", "step", t.TempDir(), rec.hooks()), rec
}

// assertNoLeak checks that no secret the step declared, nor any extra one
// given, appears in its logs, its error or its evidence.
func assertNoLeak(t *testing.T, env *steps.Env, rec *recorder, runErr error, extra ...string) {
	t.Helper()
	ev, err := json.Marshal(env.Evidence())
	require.NoError(t, err)
	var texts []string
	texts = append(texts, rec.logs...)
	texts = append(texts, string(ev))
	if runErr != nil {
		texts = append(texts, runErr.Error())
	}
	for _, s := range append(extra, rec.secrets...) {
		if s == "" {
			continue
		}
		for _, text := range texts {
			assert.NotContains(t, text, s, "a secret leaked")
		}
	}
}

// fakeClock is a clock whose Sleep advances time at once.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Advance(d)
	return nil
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.now = c.now.Add(d)
	}
}

// validatorConfig is the behaviour of a test TOTP validator.
type validatorConfig struct {
	secret  string // base32
	period  int64
	digits  int
	alg     otp.Algorithm
	skew    int64 // validator clock minus ours, in steps
	window  int64 // accepts counters now-window..now+window
	replay  bool  // accept a counter at or below the last accepted one
	lockout int   // refuse everything after this many failures (0: never)
	// accept overrides the verdict for an HTTP answer: status and body.
	answer func(ok bool) (int, string)
	// latency is added to the clock on every request.
	latency time.Duration
	// lag is how far the validator's clock is behind ours (a coarse
	// clock, as time(2) reads: a few ms).
	lag time.Duration
}

// validator is an RFC 6238 validator with replay protection as a server
// would implement it: it remembers the last accepted counter per user.
// It uses pquerna/otp's HOTP directly, not the code under test.
type validator struct {
	cfg   validatorConfig
	clock *fakeClock

	mu         sync.Mutex
	last       map[string]int64
	failures   int
	seen       []int64 // counters of every submitted code, in order (-1: unknown)
	requests   []*http.Request
	jsonBodies []map[string]any // decoded JSON submissions, nil entries for forms
}

func newValidator(cfg validatorConfig, clock *fakeClock) *validator {
	if cfg.period == 0 {
		cfg.period = 30
	}
	if cfg.digits == 0 {
		cfg.digits = 6
	}
	return &validator{cfg: cfg, clock: clock, last: map[string]int64{}}
}

// check is the validation itself.
func (v *validator) check(user, code string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg.latency > 0 {
		v.clock.Advance(v.cfg.latency)
	}
	now := v.clock.Now().Add(-v.cfg.lag).Unix()/v.cfg.period + v.cfg.skew
	opts := hotp.ValidateOpts{Digits: otp.Digits(v.cfg.digits), Algorithm: v.cfg.alg}
	match := int64(-1)
	for c := max(now-v.cfg.window-10, 0); c <= now+v.cfg.window+10; c++ {
		if ok, _ := hotp.ValidateCustom(code, uint64(c), v.cfg.secret, opts); ok {
			match = c
			break
		}
	}
	v.seen = append(v.seen, match)
	ok := match >= 0 && match >= now-v.cfg.window && match <= now+v.cfg.window
	if last, seen := v.last[user]; ok && seen && !v.cfg.replay && match <= last {
		ok = false
	}
	if v.cfg.lockout > 0 && v.failures >= v.cfg.lockout {
		ok = false
	}
	if ok {
		v.last[user] = match
	} else {
		v.failures++
	}
	return ok
}

// ServeHTTP accepts form, query or JSON submissions with fields user and
// code, answering 200 or 401 unless cfg.answer says otherwise.
func (v *validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, code := "", ""
	var fields map[string]any
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(r.Body).Decode(&fields); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		user, _ = fields["user"].(string)
		code, _ = fields["code"].(string)
	} else {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		user, code = r.Form.Get("user"), r.Form.Get("code")
	}
	v.mu.Lock()
	v.requests = append(v.requests, r.Clone(context.Background()))
	v.jsonBodies = append(v.jsonBodies, fields)
	v.mu.Unlock()
	ok := v.check(user, code)
	status, body := http.StatusUnauthorized, "denied"
	if ok {
		status, body = http.StatusOK, "ok"
	}
	if v.cfg.answer != nil {
		status, body = v.cfg.answer(ok)
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// counters returns the counters of every submitted code in order.
func (v *validator) counters() []int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]int64(nil), v.seen...)
}

func serveValidator(t testing.TB, v *validator) string {
	t.Helper()
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	return srv.URL
}
