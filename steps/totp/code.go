package totp

import (
	"context"

	"github.com/opsdrill/opsdrill/steps"
)

// Code is totp.code: the code an authenticator app shows for a key at an
// instant, shifted by offset_steps.
type Code struct {
	Key `yaml:",inline"`

	clock clock
}

func newCode() steps.Step { return &Code{} }

// Validate checks the parameters; it runs at load time.
func (c *Code) Validate() error {
	_, err := c.resolve()
	return err
}

// Run computes the code.
func (c *Code) Run(ctx context.Context, env *steps.Env) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := c.resolve()
	if err != nil {
		return err
	}
	c.Key.markSecret(env, r)
	at := r.instant(clockOr(c.clock))
	counter, err := r.counter(at)
	if err != nil {
		return err
	}
	code, err := r.gen.code(counter)
	if err != nil {
		return err
	}
	env.Secret(code)
	env.SetOutput("code", code)
	env.SetOutput("counter", int(counter))
	env.SetOutput("at", formatInstant(at))
	env.Logf("code for counter %d (%s, offset %+d steps, %s, %d digits, %d s)",
		counter, formatInstant(at), r.offset, r.gen.opts.Algorithm, r.gen.digits, r.gen.period)
	warnWeakKey(env, r.secret)
	warnSevenDigits(env, r.gen.digits)
	return nil
}
