package totp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// Limits and defaults of totp.verify_drift.
const (
	defaultWindow         = 3
	maxWindow             = 20
	defaultSamples        = 1000
	maxSamples            = 1_000_000
	defaultAttemptTimeout = 10 * time.Second
	referenceOathtool     = "oathtool"
)

// VerifyDrift is totp.verify_drift. Exactly one of Reference, Code,
// Endpoint and ValidatorCommand selects what is checked; see the package
// documentation for the three modes.
type VerifyDrift struct {
	Key `yaml:",inline"`

	Reference    string `yaml:"reference" doc:"oathtool: alone, compare this implementation's codes with oathtool's (reference mode); with code, validate the code with oathtool -w itself"`
	Samples      int    `yaml:"samples" doc:"reference mode: number of (instant, offset) codes compared (default 1000)"`
	OathtoolPath string `yaml:"oathtool_path" doc:"reference mode: oathtool binary, a path or a name looked up in PATH (default oathtool)"`

	Code        string `yaml:"code" doc:"code mode: a code read from a device at 'at' (default now)"`
	Window      int    `yaml:"window" doc:"offsets -window..+window searched (code mode) or probed (validator mode), in steps (default 3)"`
	SearchOrder string `yaml:"search_order" doc:"code mode: past_first (0, -1, +1, ...; default) or liboath (0, +1, -1, ...: oathtool -w's and pam_oath's order); decides the sign of drift_steps when a code occurs twice in the window"`

	Endpoint         *Endpoint     `yaml:"endpoint" doc:"validator mode: an HTTP validator to probe"`
	ValidatorCommand []string      `yaml:"validator_command" doc:"validator mode: argv run once per code, {code} replaced by the code; exit 0 means accepted"`
	ReplayCheck      bool          `yaml:"replay_check" doc:"validator mode: after the probe, submit one fresh code twice; waits one period (default true)"`
	Delay            time.Duration `yaml:"delay" doc:"validator mode: pause between submissions, for rate-limited validators (default 0)"`
	AttemptTimeout   time.Duration `yaml:"attempt_timeout" doc:"validator mode: time limit for one submission (default 10s)"`

	clock clock
}

func newVerifyDrift() steps.Step {
	return &VerifyDrift{
		Window:         defaultWindow,
		Samples:        defaultSamples,
		OathtoolPath:   referenceOathtool,
		ReplayCheck:    true,
		AttemptTimeout: defaultAttemptTimeout,
	}
}

// mode is what a VerifyDrift checks.
type mode int

const (
	modeReference mode = iota + 1
	modeCode
	modeValidator
)

// mode returns the selected mode, or an error naming the conflicting or
// missing fields.
func (v *VerifyDrift) mode() (mode, error) {
	var set []string
	m := mode(0)
	// reference with code is code mode validated by oathtool.
	if v.Reference != "" && v.Code == "" {
		set, m = append(set, "reference"), modeReference
	}
	if v.Code != "" {
		set, m = append(set, "code"), modeCode
	}
	if v.Endpoint != nil {
		set, m = append(set, "endpoint"), modeValidator
	}
	if len(v.ValidatorCommand) > 0 {
		set, m = append(set, "validator_command"), modeValidator
	}
	switch len(set) {
	case 0:
		return 0, errors.New("reference, code, endpoint, validator_command: set one to choose what to verify")
	case 1:
		return m, nil
	}
	return 0, fmt.Errorf("%s: set only one of them", strings.Join(set, ", "))
}

// Validate checks the parameters; it runs at load time, so a missing
// oathtool is reported before anything runs.
func (v *VerifyDrift) Validate() error {
	r, err := v.resolve()
	if err != nil {
		return err
	}
	m, err := v.mode()
	if err != nil {
		return err
	}
	if v.OffsetSteps != 0 {
		return fmt.Errorf("offset_steps: not used by totp.verify_drift, got %d", v.OffsetSteps)
	}
	if v.Window < 0 || v.Window > maxWindow {
		return fmt.Errorf("window: must be 0 to %d steps, got %d", maxWindow, v.Window)
	}
	if m != modeCode && v.SearchOrder != "" {
		return errors.New("search_order: only used with code")
	}
	switch m {
	case modeReference:
		if v.Reference != referenceOathtool {
			return fmt.Errorf("reference: must be %q, got %q", referenceOathtool, v.Reference)
		}
		if v.Samples < 1 || v.Samples > maxSamples {
			return fmt.Errorf("samples: must be 1 to %d, got %d", maxSamples, v.Samples)
		}
		if _, err := v.oathtool(); err != nil {
			return err
		}
	case modeCode:
		if _, err := parseSearchOrder(v.SearchOrder); err != nil {
			return err
		}
		if v.Reference != "" {
			if v.Reference != referenceOathtool {
				return fmt.Errorf("reference: must be %q, got %q", referenceOathtool, v.Reference)
			}
			if _, err := v.oathtool(); err != nil {
				return err
			}
		}
		return checkCode(v.Code, r.gen.digits)
	case modeValidator:
		return v.validateProbe(r)
	}
	return nil
}

// oathtool resolves the oathtool binary.
func (v *VerifyDrift) oathtool() (string, error) {
	name := v.OathtoolPath
	if name == "" {
		name = referenceOathtool
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("oathtool_path: %q not found; reference: oathtool needs the oathtool binary (Debian/Ubuntu: apt-get install oathtool)", name)
	}
	return path, nil
}

// Run performs the selected check.
func (v *VerifyDrift) Run(ctx context.Context, env *steps.Env) error {
	if err := v.Validate(); err != nil {
		return err
	}
	r, _ := v.resolve()
	v.Key.markSecret(env, r)
	warnWeakKey(env, r.secret)
	warnSevenDigits(env, r.gen.digits)
	m, _ := v.mode()
	switch m {
	case modeReference:
		return v.runReference(ctx, env, r)
	case modeCode:
		return v.runCode(ctx, env, r)
	default:
		return v.runProbe(ctx, env, r)
	}
}

// runCode finds the offset at which a device's code matches, searching
// outward like oathtool -w, but keeps the sign (oathtool prints only the
// distance). With reference: oathtool, oathtool itself validates the code
// and its verdict is the step's; this implementation must agree with it.
func (v *VerifyDrift) runCode(ctx context.Context, env *steps.Env, r resolved) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	env.Secret(v.Code)
	at := r.instant(clockOr(v.clock))
	c, err := r.counter(at)
	if err != nil {
		return err
	}
	order, _ := parseSearchOrder(v.SearchOrder)
	offset, matched, err := r.gen.match(v.Code, c, v.Window, order)
	if err != nil {
		return err
	}
	if v.Reference == referenceOathtool {
		if err := v.validateWithOathtool(ctx, env, r, at, matched, offset); err != nil {
			return err
		}
	}
	env.SetOutput("matched", matched)
	// drift_steps is set only on a match, so `outputs.drift_steps == 0`
	// cannot pass for a code that matched nowhere.
	if matched {
		env.SetOutput("drift_steps", offset)
		env.Logf("the code matches %+d steps from counter %d (%s)", offset, c, formatInstant(at))
	} else {
		env.Logf("the code matches nowhere within ±%d steps of counter %d (%s)", v.Window, c, formatInstant(at))
	}

	xs := make([]int, 0, 2*v.Window+1)
	for off := -v.Window; off <= v.Window; off++ {
		xs = append(xs, off)
	}
	hit := func(off int) bool { return matched && off == offset }
	env.AddEvidence(windowTable("Device code match by offset", xs, func(off int) []string {
		return []string{strconv.Itoa(off), strconv.FormatInt(c+int64(off), 10), yesNo(hit(off))}
	}, []string{"offset_steps", "counter", "matched"}))
	env.AddEvidence(windowSeries("Device code match by offset", "matched", xs, hit))
	return nil
}

// windowTable builds the table form of a window diagram.
func windowTable(title string, offsets []int, row func(off int) []string, columns []string) steps.Evidence {
	rows := make([][]string, 0, len(offsets))
	for _, off := range offsets {
		rows = append(rows, row(off))
	}
	return steps.TableEvidence(title, columns, rows)
}

// windowSeries is the chart form of a window diagram: offset → 1 or 0.
func windowSeries(title, name string, offsets []int, yes func(off int) bool) steps.Evidence {
	pts := make([]float64, 0, 2*len(offsets))
	for _, off := range offsets {
		y := 0.0
		if yes(off) {
			y = 1
		}
		pts = append(pts, float64(off), y)
	}
	return steps.Evidence{Kind: "series", Title: title, Series: []steps.Series{{Name: name, XUnit: "steps", Points: pts}}}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// validateWithOathtool runs `oathtool -w WINDOW KEY CODE` at the same
// instant (the key on stdin) and compares its verdict with ours: both
// search by increasing distance, so a match must agree in distance too.
func (v *VerifyDrift) validateWithOathtool(ctx context.Context, env *steps.Env, r resolved, at time.Time, matched bool, offset int) error {
	path, err := v.oathtool()
	if err != nil {
		return err
	}
	res, err := oathtoolValidate(ctx, path, r, at, v.Window, v.Code)
	if err != nil {
		return err
	}
	env.SetOutput("validated_by", referenceOathtool)
	theirs := "not found"
	if res.matched {
		theirs = fmt.Sprintf("found %d steps away", res.distance)
		env.SetOutput("oathtool_steps", res.distance)
	}
	env.AddEvidence(steps.TableEvidence("Validation by oathtool", []string{"Item", "Value"}, [][]string{
		{"reference", oathtoolVersion(ctx, path)},
		{"command", fmt.Sprintf("oathtool --totp=%s --digits=%d --time-step-size=%ds --start-time=@%d --now=@%d --window=%d - CODE (key on stdin)",
			r.gen.opts.Algorithm, r.gen.digits, r.gen.period, r.gen.t0, at.Unix(), v.Window)},
		{"oathtool", theirs},
		{"opsdrill", matchText(matched, offset)},
	}))
	if res.matched != matched || (matched && res.distance != abs(offset)) {
		return steps.Failf("oathtool and opsdrill disagree on the code at %s: oathtool %s, opsdrill %s",
			formatInstant(at), theirs, matchText(matched, offset))
	}
	env.Logf("oathtool -w %d agrees: %s", v.Window, theirs)
	return nil
}

func matchText(matched bool, offset int) string {
	if !matched {
		return "not found"
	}
	return fmt.Sprintf("found at %+d steps", offset)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// oathtoolResult is oathtool's verdict on one code.
type oathtoolResult struct {
	matched  bool
	distance int
}

// oathtoolExitNotFound is oathtool's exit status for a valid-looking code
// that matches nowhere in the window (EXIT_OTP_INVALID).
const oathtoolExitNotFound = 2

// oathtoolValidate asks oathtool whether code is valid within ±window
// steps of at. The key goes through stdin; the code, which oathtool only
// takes as an argument, is on its command line for the run's duration.
func oathtoolValidate(ctx context.Context, path string, r resolved, at time.Time, window int, code string) (oathtoolResult, error) {
	g := r.gen
	cmd := exec.CommandContext(ctx, path,
		"--totp="+g.opts.Algorithm.String(),
		"--digits="+strconv.Itoa(g.digits),
		"--time-step-size="+strconv.FormatInt(g.period, 10)+"s",
		"--start-time=@"+strconv.FormatInt(g.t0, 10),
		"--now=@"+strconv.FormatInt(at.Unix(), 10),
		"--window="+strconv.Itoa(window),
		"-", code)
	hexKey := hex.EncodeToString(r.secret)
	cmd.Stdin = strings.NewReader(hexKey + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		n, perr := strconv.Atoi(strings.TrimSpace(stdout.String()))
		if perr != nil {
			return oathtoolResult{}, fmt.Errorf("oathtool validated the code but printed no window position")
		}
		return oathtoolResult{matched: true, distance: n}, nil
	case ctx.Err() != nil:
		return oathtoolResult{}, ctx.Err()
	case errors.As(err, &exit) && exit.ExitCode() == oathtoolExitNotFound:
		return oathtoolResult{}, nil
	}
	msg := strings.NewReplacer(hexKey, "[secret]", code, "[code]").Replace(firstLine(stderr.String()))
	return oathtoolResult{}, fmt.Errorf("oathtool failed validating the code: %w: %s", err, msg)
}
