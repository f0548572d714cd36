package runner

import (
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the scenario loader: it must return a
// scenario or positioned problems, never panic.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("name: x\nsteps:\n  - uses: sleep\n    with: { duration: 1s }\n"))
	f.Add([]byte("steps:\n  - id: a\n    uses: test.emit\n    background: true\n  - uses: wait\n    with: { for: [a] }\n  - uses: assert\n    expect: steps.a.outputs.count == 0\n"))
	f.Add([]byte("vars: { p: 1 }\nsteps:\n  - uses: test.typed\n    with: { port: \"${{ vars.p }}\", hosts: [\"${{ 'x' + vars.p }}\"] }\n"))
	f.Add([]byte("steps:\n  - uses: exec\n    with: { command: [\"${{\"] }\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := Load("fuzz.yaml", data, LoadOptions{})
		if err == nil && sc == nil {
			t.Fatal("no scenario and no error")
		}
		if err != nil {
			probs, ok := err.(Problems)
			if !ok || len(probs) == 0 {
				t.Fatalf("error is not positioned problems: %T %v", err, err)
			}
			for _, p := range probs {
				if p.Pos.Line < 1 || p.Pos.Column < 1 {
					t.Fatalf("problem without a position: %v", p)
				}
			}
		}
	})
}

// FuzzTemplate feeds arbitrary text to the ${{ }} parser and the expression
// compiler, then evaluates what compiles against an empty scope.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"plain", "${{ vars.x }}", "a ${{ 1 + 2 }} b ${{ steps.s.outputs.y }}", "${{", "${{ }}",
		"${{ outputs.lost == 0 && len(outputs.list) > 2 }}", "${{ let x = 1; x + vars.y }}", "${{ map(outputs.l, # * 2) }}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, probs := parseTemplate(s, Pos{File: "f", Line: 1, Column: 1, single: true})
		for _, p := range probs {
			if p.Pos.Line < 1 || p.Pos.Column < 1 {
				t.Fatalf("problem without a position: %v", p)
			}
		}
		if len(probs) == 0 {
			_, _ = tmpl.Eval(map[string]any{"vars": map[string]any{}, "steps": map[string]any{}})
			for _, e := range tmpl.exprs() {
				_ = e.Explain(map[string]any{}, nil)
			}
		}
	})
}
