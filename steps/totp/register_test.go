package totp

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/steps"
)

// TestSpecs: the three steps are registered, and every parameter, inline
// or nested, carries a yaml name and a doc line for `opsdrill steps` and the
// JSON Schema.
func TestSpecs(t *testing.T) {
	for _, name := range []string{"totp.generate_key", "totp.code", "totp.verify_drift"} {
		spec, ok := steps.Lookup(name)
		require.True(t, ok, name)
		require.NotEmpty(t, spec.Doc)
		require.NotEmpty(t, spec.Examples)
		checkTags(t, name, reflect.TypeOf(spec.New()))
	}
}

func checkTags(t *testing.T, where string, typ reflect.Type) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline":
			checkTags(t, where, f.Type)
		case !f.IsExported():
		default:
			assert.NotEmpty(t, name, "%s.%s has no yaml name", where, f.Name)
			assert.NotEmpty(t, f.Tag.Get("doc"), "%s.%s has no doc", where, f.Name)
			if ft := f.Type; ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
				checkTags(t, where+"."+name, ft)
			}
		}
	}
}

// TestOutputsDeclared: every output a step sets is declared, with the
// declared type, and the secret ones are declared secret.
func TestOutputsDeclared(t *testing.T) {
	clock := newFakeClock(probeStart)
	val := newValidator(validatorConfig{secret: testB32, window: 1}, clock)
	probe := probeStep(serveValidator(t, val), clock)
	runs := []struct {
		name string
		step steps.Step
	}{
		{"totp.generate_key", &GenerateKey{Issuer: "i", Account: "a", Bytes: 20, QR: true}},
		{"totp.code", &Code{Key: Key{Secret: testB32}}},
		{"totp.verify_drift", &VerifyDrift{Key: Key{Secret: testB32, At: "@59"}, Code: "287082", Window: 1}},
		{"totp.verify_drift", probe},
	}
	secret := map[string]bool{"hex": true, "base32": true, "uri": true, "code": true}
	for _, r := range runs {
		spec, _ := steps.Lookup(r.name)
		env, _ := newEnv(t)
		require.NoError(t, r.step.Run(context.Background(), env), r.name)
		for name, v := range env.Outputs() {
			out, ok := spec.Output(name)
			if !assert.True(t, ok, "%s sets undeclared output %s", r.name, name) {
				continue
			}
			assert.Equal(t, secret[name], out.Secret, "%s.%s secret", r.name, name)
			want := map[string]reflect.Kind{"string": reflect.String, "int": reflect.Int, "bool": reflect.Bool, "list": reflect.Slice}[out.Type]
			assert.Equal(t, want, reflect.TypeOf(v).Kind(), "%s.%s type", r.name, name)
		}
	}
}

// TestDecodeWith decodes `with:` mappings the way the runner does
// (yaml.v3 Node.Decode into Spec.New's value), defaults included.
func TestDecodeWith(t *testing.T) {
	decode := func(name, src string) steps.Step {
		spec, _ := steps.Lookup(name)
		st := spec.New()
		var n yaml.Node
		require.NoError(t, yaml.Unmarshal([]byte(src), &n))
		require.NoError(t, n.Content[0].Decode(st))
		return st
	}
	v := decode("totp.verify_drift", `
secret: gezdgnbvgy3tqojq
digits: 8
t0: 0
endpoint: { url: "http://127.0.0.1:1/otp", fields: { port: "22" }, success_status: [200, 204] }
delay: 100ms
`).(*VerifyDrift)
	assert.Equal(t, 8, v.Digits)
	assert.Equal(t, "0", v.T0)
	assert.Equal(t, defaultWindow, v.Window)
	assert.True(t, v.ReplayCheck)
	assert.Equal(t, 100*time.Millisecond, v.Delay)
	assert.Equal(t, defaultAttemptTimeout, v.AttemptTimeout)
	assert.Equal(t, "22", v.Endpoint.Fields["port"])
	require.NoError(t, v.Validate())

	c := decode("totp.verify_drift", "secret_hex: '31'\ncode: 012345\nat: 1502923560\n").(*VerifyDrift)
	assert.Equal(t, "012345", c.Code, "a leading zero survives YAML")
	require.NoError(t, c.Validate())

	g := decode("totp.generate_key", "issuer: ACME\naccount: alice\n").(*GenerateKey)
	assert.Equal(t, defaultKeyBytes, g.Bytes)
	assert.True(t, g.QR)
	assert.False(t, g.ShowQR)
	require.NoError(t, g.Validate())
}
