package totp

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsdrill/opsdrill/steps"
)

// referenceSpan is how many consecutive counters one oathtool call covers
// (offsets -2..+2 around an instant, oathtool -w 4): five samples per
// process start keeps 1,000 samples well under a second on two cores.
const referenceSpan = 5

// maxMismatchRows bounds the mismatch table in the evidence.
const maxMismatchRows = 50

// referenceRange is how far after t0 random instants reach: 2^33 s, about
// 272 years, past both 2038 (2^31) and 2106 (2^32).
const referenceRange = int64(1) << 33

// refBatch is one oathtool call: the codes for counters first..first+n-1,
// asked for at instant at shifted by whole steps.
type refBatch struct {
	at    time.Time // the sampled instant
	base  int64     // counter at the sampled instant
	first int64
	n     int
}

// refMismatch is a sample where the codes differ. It holds no code.
type refMismatch struct {
	at      time.Time
	offset  int
	counter int64
}

// referenceBatches picks the sampled instants: fixed edge cases first
// (counter 0, the configured instant, the 2038 and 2106 rollovers), then
// uniformly random instants, until samples codes are covered.
func referenceBatches(g generator, samples int, now time.Time, rng *rand.Rand) []refBatch {
	var instants []time.Time
	for _, t := range []time.Time{time.Unix(g.t0, 0), now, time.Unix(1<<31, 0), time.Unix(1<<32, 0)} {
		if t.Unix() >= g.t0 {
			instants = append(instants, t)
		}
	}
	var out []refBatch
	for left := samples; left > 0; {
		var t time.Time
		if i := len(out); i < len(instants) {
			t = instants[i]
		} else {
			t = time.Unix(g.t0+rng.Int64N(referenceRange), 0)
		}
		c, _ := g.counter(t) // t >= t0 by construction
		b := refBatch{at: t, base: c, first: max(c-referenceSpan/2, 0), n: min(referenceSpan, left)}
		out = append(out, b)
		left -= b.n
	}
	return out
}

// runReference compares this implementation with oathtool, the runbook's
// validator, over random instants and offsets.
func (v *VerifyDrift) runReference(ctx context.Context, env *steps.Env, r resolved) error {
	path, err := v.oathtool()
	if err != nil {
		return err
	}
	version := oathtoolVersion(ctx, path)
	start := time.Now()
	batches := referenceBatches(r.gen, v.Samples, r.instant(clockOr(v.clock)), rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	env.Logf("comparing %d codes with %s (%s, %d digits, %d s) in %d oathtool calls", v.Samples, version, r.gen.opts.Algorithm, r.gen.digits, r.gen.period, len(batches))

	mismatches, err := crossCheck(ctx, path, r, batches)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	env.SetOutput("samples", v.Samples)
	env.SetOutput("mismatches", len(mismatches))

	env.AddEvidence(steps.TableEvidence("Cross-check with oathtool", []string{"Item", "Value"}, [][]string{
		{"reference", version},
		{"algorithm", r.gen.opts.Algorithm.String()},
		{"digits", strconv.Itoa(r.gen.digits)},
		{"period", strconv.FormatInt(r.gen.period, 10) + " s"},
		{"t0", formatInstant(time.Unix(r.gen.t0, 0))},
		{"samples", strconv.Itoa(v.Samples)},
		{"oathtool calls", strconv.Itoa(len(batches))},
		{"mismatches", strconv.Itoa(len(mismatches))},
		{"elapsed", elapsed.Round(time.Millisecond).String()},
	}))
	if len(mismatches) == 0 {
		env.Logf("all %d codes agree with oathtool (%s)", v.Samples, elapsed.Round(time.Millisecond))
		return nil
	}
	rows := make([][]string, 0, min(len(mismatches), maxMismatchRows))
	for _, m := range mismatches[:min(len(mismatches), maxMismatchRows)] {
		rows = append(rows, []string{formatInstant(m.at), strconv.Itoa(m.offset), strconv.FormatInt(m.counter, 10)})
	}
	env.AddEvidence(steps.TableEvidence(fmt.Sprintf("Codes that differ from oathtool (first %d)", len(rows)),
		[]string{"instant", "offset_steps", "counter"}, rows))
	return steps.Failf("%d of %d codes differ from oathtool (%s, %d digits, %d s)",
		len(mismatches), v.Samples, r.gen.opts.Algorithm, r.gen.digits, r.gen.period)
}

// crossCheck runs the batches on a few parallel workers (oathtool start-up,
// not hashing, is the cost) and returns the mismatches in batch order.
func crossCheck(parent context.Context, path string, r resolved, batches []refBatch) ([]refMismatch, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		results  = make([][]refMismatch, len(batches))
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan int)
	)
	for range max(4, 2*runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				res, err := checkBatch(ctx, path, r, batches[i])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					continue
				}
				results[i] = res
			}
		})
	}
feed:
	for i := range batches {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := parent.Err(); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	var out []refMismatch
	for _, res := range results {
		out = append(out, res...)
	}
	return out, nil
}

// checkBatch asks oathtool for one batch and compares. The key goes through
// stdin, never the command line, where other users could read it.
func checkBatch(ctx context.Context, path string, r resolved, b refBatch) ([]refMismatch, error) {
	g := r.gen
	at := b.at.Unix() + (b.first-b.base)*g.period
	cmd := exec.CommandContext(ctx, path,
		"--totp="+g.opts.Algorithm.String(),
		"--digits="+strconv.Itoa(g.digits),
		"--time-step-size="+strconv.FormatInt(g.period, 10)+"s",
		"--start-time=@"+strconv.FormatInt(g.t0, 10),
		"--now=@"+strconv.FormatInt(at, 10),
		"--window="+strconv.Itoa(b.n-1),
		"-")
	hexKey := hex.EncodeToString(r.secret)
	cmd.Stdin = strings.NewReader(hexKey + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := strings.ReplaceAll(firstLine(stderr.String()), hexKey, "[secret]")
		return nil, fmt.Errorf("oathtool failed for @%d: %w: %s", at, err, msg)
	}
	lines := strings.Fields(stdout.String())
	if len(lines) != b.n {
		return nil, fmt.Errorf("oathtool printed %d codes for @%d, want %d", len(lines), at, b.n)
	}
	var out []refMismatch
	for i, theirs := range lines {
		c := b.first + int64(i)
		ours, err := g.code(c)
		if err != nil {
			return nil, err
		}
		if ours != theirs {
			out = append(out, refMismatch{at: b.at, offset: int(c - b.base), counter: c})
		}
	}
	return out, nil
}

// oathtoolVersion is oathtool's first --version line, for the evidence.
func oathtoolVersion(ctx context.Context, path string) string {
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return path
	}
	return firstLine(string(out))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
