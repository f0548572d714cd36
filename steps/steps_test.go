package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type nop struct{}

func (nop) Run(context.Context, *Env) error { return nil }

func TestRegistry(t *testing.T) {
	Register(Spec{Name: "zz.test", Summary: "s", New: func() Step { return nop{} }, Outputs: []Output{{Name: "a", Secret: true}}})
	Register(Spec{Name: "aa.test", Summary: "s", New: func() Step { return nop{} }})
	s, ok := Lookup("zz.test")
	require.True(t, ok)
	o, ok := s.Output("a")
	assert.True(t, ok && o.Secret)
	_, ok = s.Output("b")
	assert.False(t, ok)
	all := All()
	var names []string
	for _, sp := range all {
		names = append(names, sp.Name)
	}
	assert.IsIncreasing(t, names)
	assert.Panics(t, func() { Register(Spec{Name: "zz.test", Summary: "s", New: func() Step { return nop{} }}) }, "duplicate")
	assert.Panics(t, func() { Register(Spec{Name: "no.new", Summary: "s"}) }, "incomplete")
	for name, f := range map[string]Figure{
		"undeclared": {Output: "b", Text: "b"},
		"secret":     {Output: "a", Text: "{value}"},
		"no text":    {Output: "c"},
	} {
		assert.Panics(t, func() {
			Register(Spec{Name: "fig." + name, Summary: "s", New: func() Step { return nop{} },
				Outputs: []Output{{Name: "a", Secret: true}, {Name: "c"}}, Figures: []Figure{f}})
		}, name)
	}
}

func TestFailure(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", Failf("port %d open", 22))
	assert.True(t, IsFailure(err))
	assert.Equal(t, "wrapped: port 22 open", err.Error())
	assert.False(t, IsFailure(errors.New("plain")))
}

func TestEnv(t *testing.T) {
	dir := t.TempDir()
	var logs, secrets, undo []string
	var joined []string
	e := NewEnv("my scenario", "step/1", dir, Hooks{
		Log:    func(l string) { logs = append(logs, l) },
		Secret: func(v string) { secrets = append(secrets, v) },
		Undo:   func(name string, fn func(context.Context) error) { undo = append(undo, name) },
		Join:   func(_ context.Context, ids []string) error { joined = ids; return nil },
	})
	e.BaseDir = "/scenarios"
	e.SetOutput("n", 1)
	e.Logf("hello %s", "x")
	e.Secret("s3cret")
	e.Secret("")
	e.Undo("close", func(context.Context) error { return nil })
	require.NoError(t, e.Join(context.Background(), []string{"bg"}))
	e.AddEvidence(TableEvidence("t", []string{"a"}, nil))
	assert.Equal(t, map[string]any{"n": 1}, e.Outputs())
	assert.Equal(t, []string{"hello x"}, logs)
	assert.Equal(t, []string{"s3cret"}, secrets, "empty values are not secrets")
	assert.Equal(t, []string{"close"}, undo)
	assert.Equal(t, []string{"bg"}, joined)
	assert.Len(t, e.Evidence(), 1)
	assert.Equal(t, "/scenarios/fixtures/a", e.Path("fixtures/a"))
	assert.Equal(t, "/abs", e.Path("/abs"))

	abs, rel, err := e.ArtifactPath("op log.jsonl")
	require.NoError(t, err)
	assert.Equal(t, "artifacts/my_scenario/step_1-op_log.jsonl", rel)
	assert.Equal(t, filepath.Join(dir, rel), abs)
	_, err = os.Stat(filepath.Dir(abs))
	assert.NoError(t, err)

	// A zero Hooks is safe.
	z := NewEnv("s", "x", "", Hooks{})
	z.Logf("x")
	z.Undo("u", nil)
	assert.NoError(t, z.Join(context.Background(), nil))
}
