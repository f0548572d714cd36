package totp

import (
	"context"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oathtoolTuple is one random case of the property test.
type oathtoolTuple struct {
	secret []byte
	t0, at int64
	offset int // offset_steps of the code under test, -2..+2
	digits int
	period int64
	alg    string
	b32    string // how the secret is handed to totp.code
}

func randomTuple(rng *rand.Rand) oathtoolTuple {
	secret := make([]byte, 1+rng.IntN(64))
	for i := range secret {
		secret[i] = byte(rng.UintN(256))
	}
	tu := oathtoolTuple{
		secret: secret,
		digits: 6 + rng.IntN(3),
		period: []int64{30, 60, 15, 1, 300, 1 + rng.Int64N(600)}[rng.IntN(6)],
		alg:    []string{"SHA1", "SHA256", "SHA512"}[rng.IntN(3)],
		offset: rng.IntN(5) - 2,
	}
	if rng.IntN(4) == 0 {
		tu.t0 = rng.Int64N(1 << 31)
	}
	switch rng.IntN(8) {
	case 0: // counter 0 and 1: offsets below 0 must not wrap
		tu.at = tu.t0 + rng.Int64N(2*tu.period)
	default:
		tu.at = tu.t0 + rng.Int64N(1<<33)
	}
	// Exercise normalisation: padded, lower-case and grouped base32.
	enc := base32.StdEncoding.EncodeToString(secret)
	switch rng.IntN(3) {
	case 0:
		enc = strings.ToLower(enc)
	case 1:
		enc = strings.TrimRight(enc, "=")
	}
	tu.b32 = enc
	return tu
}

// oathtoolCodes asks oathtool for the codes of counters c-2..c+2 around
// tu.at (fewer near counter 0) and returns them by offset.
func oathtoolCodes(ctx context.Context, oathtool string, tu oathtoolTuple) (map[int]string, error) {
	c := (tu.at - tu.t0) / tu.period
	first := max(c-2, 0)
	cmd := exec.CommandContext(ctx, oathtool,
		"--totp="+tu.alg, "-d", strconv.Itoa(tu.digits), "-s", strconv.FormatInt(tu.period, 10)+"s",
		"-S", "@"+strconv.FormatInt(tu.t0, 10),
		"-N", "@"+strconv.FormatInt(tu.t0+first*tu.period, 10),
		"-w", strconv.FormatInt(c+2-first, 10), "-")
	cmd.Stdin = strings.NewReader(hex.EncodeToString(tu.secret))
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("oathtool: %w", err)
	}
	codes := map[int]string{}
	for i, code := range strings.Fields(string(out)) {
		codes[int(first+int64(i)-c)] = code
	}
	return codes, nil
}

// TestAgainstOathtool is the property test: for 1,000 random (secret,
// instant, t0, digits, period, algorithm, offset) tuples, totp.code gives
// the code oathtool gives. oathtool runs on parallel workers, each call
// printing five consecutive codes.
func TestAgainstOathtool(t *testing.T) {
	oathtool := requireOathtool(t)
	const n = 1000
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	tuples := make([]oathtoolTuple, n)
	for i := range tuples {
		tuples[i] = randomTuple(rng)
	}

	ctx := context.Background()
	codes := make([]map[int]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				codes[i], errs[i] = oathtoolCodes(ctx, oathtool, tuples[i])
			}
		})
	}
	for i := range tuples {
		next <- i
	}
	close(next)
	wg.Wait()

	compared := 0
	for i, tu := range tuples {
		require.NoError(t, errs[i])
		want, ok := codes[i][tu.offset]
		c := (tu.at - tu.t0) / tu.period
		if c+int64(tu.offset) < 0 {
			assert.False(t, ok)
			continue
		}
		require.True(t, ok, "tuple %d", i)
		step := &Code{Key: Key{
			Format:      Format{Digits: tu.digits, Period: int(tu.period), Algorithm: tu.alg},
			Secret:      tu.b32,
			At:          "@" + strconv.FormatInt(tu.at, 10),
			T0:          "@" + strconv.FormatInt(tu.t0, 10),
			OffsetSteps: tu.offset,
		}}
		env, _ := newEnv(t)
		require.NoError(t, step.Run(ctx, env), "tuple %d", i)
		assert.Equal(t, want, env.Outputs()["code"], "tuple %d: %d-byte key, %s, %d digits, period %d, t0 %d, at %d, offset %d",
			i, len(tu.secret), tu.alg, tu.digits, tu.period, tu.t0, tu.at, tu.offset)
		compared++
	}
	assert.Greater(t, compared, n*9/10)
}
