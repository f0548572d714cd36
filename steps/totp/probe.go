package totp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// validateProbe checks the validator-mode parameters.
func (v *VerifyDrift) validateProbe(r resolved) error {
	if v.At != "" {
		return errors.New("at: not used with endpoint or validator_command: the validator's own clock is probed, against this machine's clock")
	}
	if v.Endpoint != nil {
		if err := v.Endpoint.validate(); err != nil {
			return err
		}
	}
	if argv := v.ValidatorCommand; len(argv) > 0 {
		if argv[0] == "" || strings.Contains(argv[0], codePlaceholder) {
			return errors.New("validator_command: the first element must name the program")
		}
		if !strings.Contains(strings.Join(argv[1:], "\x00"), codePlaceholder) {
			return fmt.Errorf("validator_command: no argument contains %s", codePlaceholder)
		}
	}
	if v.AttemptTimeout <= 0 {
		return fmt.Errorf("attempt_timeout: must be positive, got %s", v.AttemptTimeout)
	}
	if v.Delay < 0 {
		return fmt.Errorf("delay: must not be negative, got %s", v.Delay)
	}
	period := time.Duration(r.gen.period) * time.Second
	if probe := time.Duration(2*v.Window+1) * v.Delay; probe >= period/2 {
		return fmt.Errorf("delay: %d submissions %s apart take %s, more than half the %s period; lower delay or window", 2*v.Window+1, v.Delay, probe, period)
	}
	return nil
}

// submitter returns the validator the step talks to.
func (v *VerifyDrift) submitter(env *steps.Env) (submitter, error) {
	if v.Endpoint != nil {
		cfg, err := v.Endpoint.tlsConfig(env.Path)
		if err != nil {
			return nil, err
		}
		return newHTTPSubmitter(v.Endpoint, v.AttemptTimeout, cfg), nil
	}
	return &commandSubmitter{argv: v.ValidatorCommand, timeout: v.AttemptTimeout}, nil
}

// attempt is one submission, recorded before any verdict is drawn.
type attempt struct {
	phase    string
	offset   int   // steps from this machine's counter when submitted
	counter  int64 // counter of the submitted code
	start    time.Time
	elapsed  time.Duration
	accepted bool
	answer   string
}

// prober runs the validator probe and keeps the record.
type prober struct {
	v      *VerifyDrift
	env    *steps.Env
	gen    generator
	clock  clock
	sub    submitter
	record []attempt
}

// submit sends the code for counter c and records the attempt.
func (p *prober) submit(ctx context.Context, phase string, c int64) (attempt, error) {
	code, err := p.gen.code(c)
	if err != nil {
		return attempt{}, err
	}
	now := p.clock.Now()
	mine, err := p.gen.counter(now)
	if err != nil {
		return attempt{}, err
	}
	a := attempt{phase: phase, offset: int(c - mine), counter: c, start: now}
	a.accepted, a.answer, err = p.sub.submit(ctx, code)
	a.elapsed = p.clock.Now().Sub(now)
	if err != nil {
		return a, err
	}
	p.record = append(p.record, a)
	verdict := "refused"
	if a.accepted {
		verdict = "accepted"
	}
	p.env.Progress(fmt.Sprintf("%s offset %+d: %s", phase, a.offset, verdict))
	return a, nil
}

// runProbe measures a live validator's accepted window and replay
// protection. The order of submissions is the point; see the package doc.
func (v *VerifyDrift) runProbe(ctx context.Context, env *steps.Env, r resolved) error {
	sub, err := v.submitter(env)
	if err != nil {
		return err
	}
	p := &prober{v: v, env: env, gen: r.gen, clock: clockOr(v.clock), sub: sub}
	defer func() { p.addEvidence() }()
	period := time.Duration(r.gen.period) * time.Second
	w := v.Window

	// Start in the first half of a time step, so the whole probe sees one
	// counter of ours even with a slow validator, and not right at its
	// start: a validator reading a coarse clock (time(2), as oathtool
	// does, lags the precise one by up to a few ms) is still in the step
	// before for a moment, and would seem to accept a wider window.
	margin := min(period/10, 250*time.Millisecond)
	now := p.clock.Now()
	base, err := r.gen.counter(now)
	if err != nil {
		return err
	}
	if left := r.gen.stepStart(base + 1).Sub(now); left < period/2 {
		env.Logf("waiting %s for the next time step so the probe does not straddle it", (left + margin).Round(time.Millisecond))
		if err := p.clock.Sleep(ctx, left+margin); err != nil {
			return err
		}
		if base, err = r.gen.counter(p.clock.Now()); err != nil {
			return err
		}
	} else if in := now.Sub(r.gen.stepStart(base)); in < margin {
		if err := p.clock.Sleep(ctx, margin-in); err != nil {
			return err
		}
	}

	env.Logf("probing offsets %d..%+d around counter %d, most negative first", -w, w, base)
	var accepted []int
	for off := -w; off <= w; off++ {
		if base+int64(off) < 0 {
			continue
		}
		if len(p.record) > 0 && v.Delay > 0 {
			if err := p.clock.Sleep(ctx, v.Delay); err != nil {
				return err
			}
		}
		a, err := p.submit(ctx, "probe", base+int64(off))
		if err != nil {
			return err
		}
		if a.accepted {
			accepted = append(accepted, off)
		}
	}
	end := p.clock.Now()
	if c, _ := r.gen.counter(end); c != base {
		return fmt.Errorf("the probe took %s and crossed a time-step boundary, so its offsets are ambiguous; lower delay, window or attempt_timeout",
			end.Sub(now).Round(time.Millisecond))
	}

	env.SetOutput("accepted_offsets", append([]int{}, accepted...))
	if len(accepted) == 0 {
		return steps.Failf("the validator accepted none of the codes at offsets %d..%+d", -w, w)
	}
	lo, hi := accepted[0], accepted[len(accepted)-1]
	// Integer division rounds a half-step centre toward zero: a window of
	// [-1, 0] is centred on 0 with window_steps 1.
	centre, width := (lo+hi)/2, (hi-lo+1)/2
	truncated := lo == -w || hi == w
	env.SetOutput("clock_offset_steps", centre)
	env.SetOutput("window_steps", width)
	env.SetOutput("window_truncated", truncated)
	env.Logf("accepted offsets %v: clock offset %+d steps, window ±%d", accepted, centre, width)
	if truncated {
		env.Logf("warning: the accepted window reaches the probed edge ±%d; raise window to see all of it", w)
	}
	if !v.ReplayCheck {
		return nil
	}
	return p.replayCheck(ctx, end, base+int64(hi)+1, period)
}

// replayCheck waits until one period after the probe ended, when every
// validator clock has moved exactly one step, so the code one counter above
// the highest accepted one is fresh (never submitted, above any remembered
// counter) and inside the validator's window. It submits that code twice:
// the first must be accepted, the second refused (RFC 6238 §5.2).
func (p *prober) replayCheck(ctx context.Context, probeEnd time.Time, fresh int64, period time.Duration) error {
	wait := probeEnd.Add(period).Sub(p.clock.Now())
	p.env.Logf("replay check: waiting %s for a fresh code", wait.Round(time.Millisecond))
	if err := p.clock.Sleep(ctx, wait); err != nil {
		return err
	}
	first, err := p.submit(ctx, "replay: first", fresh)
	if err != nil {
		return err
	}
	if !first.accepted {
		return steps.Failf("replay check: the validator refused a fresh code (counter %d) that its measured window accepts; it may be rate-limiting or locking out", fresh)
	}
	if p.v.Delay > 0 {
		if err := p.clock.Sleep(ctx, p.v.Delay); err != nil {
			return err
		}
	}
	again, err := p.submit(ctx, "replay: again", fresh)
	if err != nil {
		return err
	}
	p.env.SetOutput("replay_rejected", !again.accepted)
	if again.accepted {
		p.env.Logf("replay check: the validator accepted the same code twice")
	} else {
		p.env.Logf("replay check: the validator refused the same code the second time")
	}
	return nil
}

// addEvidence turns the record into the accepted-window diagram: a table of
// every submission and a series of probe offset → accepted.
func (p *prober) addEvidence() {
	if len(p.record) == 0 {
		return
	}
	rows := make([][]string, 0, len(p.record))
	var pts []float64
	for i, a := range p.record {
		rows = append(rows, []string{
			strconv.Itoa(i + 1), a.phase, strconv.Itoa(a.offset), strconv.FormatInt(a.counter, 10),
			a.start.UTC().Format(time.RFC3339Nano), strconv.FormatInt(a.elapsed.Milliseconds(), 10),
			yesNo(a.accepted), a.answer,
		})
		if a.phase == "probe" {
			y := 0.0
			if a.accepted {
				y = 1
			}
			pts = append(pts, float64(a.offset), y)
		}
	}
	p.env.AddEvidence(steps.TableEvidence("TOTP accepted-window diagram",
		[]string{"#", "phase", "offset_steps", "counter", "submitted (UTC)", "ms", "accepted", "answer"}, rows))
	p.env.AddEvidence(steps.Evidence{Kind: "series", Title: "TOTP accepted window", Chart: "bars",
		Series: []steps.Series{{Name: "accepted", XUnit: "steps", Points: pts}}})
}
