package totp

import (
	"context"
	"encoding/hex"
	"strconv"
	"testing"
	"time"
)

// BenchmarkCode is one code, as totp.code computes it, per algorithm.
func BenchmarkCode(b *testing.B) {
	for _, alg := range []string{"SHA1", "SHA256", "SHA512"} {
		b.Run(alg, func(b *testing.B) {
			r, err := Key{Format: Format{Algorithm: alg}, SecretHex: hex.EncodeToString([]byte(rfcSeeds[alg]))}.resolve()
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; b.Loop(); i++ {
				if _, err := r.gen.code(int64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCodeStep is a whole totp.code step: parameter parsing, the
// code, outputs.
func BenchmarkCodeStep(b *testing.B) {
	env, _ := newEnv(b)
	step := &Code{Key: Key{Secret: testB32, At: "@1502923560"}}
	for b.Loop() {
		if err := step.Run(context.Background(), env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidate is the validation side: a code checked against
// counters -w..+w. "miss" is the worst case, every counter tried.
func BenchmarkValidate(b *testing.B) {
	r, err := Key{Secret: testB32}.resolve()
	if err != nil {
		b.Fatal(err)
	}
	const c = 50_000_000
	hit, err := r.gen.code(c)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		code   string
		window int
	}{
		{"hit/window=0", hit, 0},
		{"hit/window=1", hit, 1},
		{"miss/window=1", "000000", 1},
		{"miss/window=3", "000000", 3},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := r.gen.match(bc.code, c, bc.window, orderPastFirst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGenerateKey is totp.generate_key without and with the QR PNG.
func BenchmarkGenerateKey(b *testing.B) {
	for _, qr := range []bool{false, true} {
		name := "no-qr"
		if qr {
			name = "qr"
		}
		b.Run(name, func(b *testing.B) {
			env, _ := newEnv(b)
			step := &GenerateKey{Issuer: "ACME", Account: "alice", Bytes: 20, QR: qr}
			for b.Loop() {
				if err := step.Run(context.Background(), env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReferenceOathtool1000 is reference: oathtool with 1,000 samples,
// the nightly cross-check; the budget is 10 s per run.
func BenchmarkReferenceOathtool1000(b *testing.B) {
	oathtool := requireOathtool(b)
	for b.Loop() {
		v := newVerifyDrift().(*VerifyDrift)
		v.Secret, v.Reference, v.Samples, v.OathtoolPath = testB32, referenceOathtool, 1000, oathtool
		env, _ := newEnv(b)
		start := time.Now()
		if err := v.Run(context.Background(), env); err != nil {
			b.Fatal(err)
		}
		if d := time.Since(start); d > 10*time.Second {
			b.Fatalf("1,000 samples took %s, over the 10 s budget", d)
		}
	}
}

// BenchmarkProbe is a validator probe of ±3 steps plus the replay check
// against a local HTTP validator (fake clock: no waiting), nine requests.
func BenchmarkProbe(b *testing.B) {
	clock := newFakeClock(probeStart)
	val := newValidator(validatorConfig{secret: testB32, window: 1}, clock)
	url := serveValidator(b, val)
	env, _ := newEnv(b)
	for i := 0; b.Loop(); i++ {
		clock.mu.Lock()
		clock.now = probeStart
		clock.mu.Unlock()
		v := probeStep(url, clock)
		v.Endpoint.User = strconv.Itoa(i) // a fresh replay history
		if err := v.Run(context.Background(), env); err != nil {
			b.Fatal(err)
		}
	}
}
