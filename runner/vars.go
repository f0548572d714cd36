package runner

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"gopkg.in/yaml.v3"
)

// Target is the merged content of vars files and --var flags: what makes
// one scenario run against the lab or against production.
type Target struct {
	Vars    map[string]any
	Secrets map[string]string
	// flags are the --var flags as given, typed later by ApplyFlags.
	flags []varFlag
	// fileVars are the values vars files and the lab gave, before --var.
	fileVars map[string]any
}

type varFlag struct{ name, raw string }

// NewTarget returns an empty Target.
func NewTarget() *Target {
	return &Target{Vars: map[string]any{}, Secrets: map[string]string{}}
}

// LoadVarsFile merges a vars file into t. A vars file is a mapping of names
// to values; its optional `secrets:` mapping gives secret values (the lab
// writes its credentials there), which are redacted like any secret.
func (t *Target) LoadVarsFile(path string) error {
	data, err := readInput(path)
	if err != nil {
		return Problems{{Pos: Pos{File: path, Line: 1, Column: 1}, Msg: err.Error()}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return yamlProblems(path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return Problems{nodePos(path, root).problem("a vars file must be a mapping of names to values, got %s", kindName(root))}
	}
	var probs Problems
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value == "secrets" {
			if v.Kind != yaml.MappingNode {
				probs = append(probs, nodePos(path, v).problem("secrets: expected a mapping of names to values"))
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				sk, sv := v.Content[j], v.Content[j+1]
				if sv.Kind != yaml.ScalarNode {
					probs = append(probs, nodePos(path, sv).problem("secrets.%s: expected a string", sk.Value))
					continue
				}
				t.Secrets[sk.Value] = sv.Value
			}
			continue
		}
		if !isIdent(k.Value) {
			probs = append(probs, nodePos(path, k).problem("%q is not a valid var name", k.Value))
			continue
		}
		var val any
		if err := v.Decode(&val); err != nil {
			probs = append(probs, nodePos(path, v).problem("%s: %s", k.Value, cleanDecodeError(err, nil)))
			continue
		}
		t.Vars[k.Value] = val
	}
	if len(probs) > 0 {
		return probs
	}
	return nil
}

// Merge applies vars given as a map, such as a running lab's; a "secrets"
// mapping inside gives secret values, as in a vars file.
func (t *Target) Merge(vars map[string]any) {
	for k, v := range vars {
		if k != "secrets" {
			t.Vars[k] = v
			continue
		}
		switch m := v.(type) {
		case map[string]string:
			for sk, sv := range m {
				t.Secrets[sk] = sv
			}
		case map[string]any:
			for sk, sv := range m {
				if s, ok := sv.(string); ok {
					t.Secrets[sk] = s
				}
			}
		}
	}
}

// SetVar applies a --var name=value flag. The value is read as YAML, so
// `--var writers=8` is an int and `--var hosts=[a,b]` a list.
func (t *Target) SetVar(kv string) error {
	name, raw, ok := strings.Cut(kv, "=")
	if !ok || !isIdent(name) {
		return fmt.Errorf("--var %q: expected name=value", kv)
	}
	if t.fileVars == nil {
		t.fileVars = maps.Clone(t.Vars)
	}
	t.flags = append(t.flags, varFlag{name: name, raw: raw})
	t.Vars[name] = yamlValue(raw)
	return nil
}

func yamlValue(raw string) any {
	var val any
	if err := yaml.Unmarshal([]byte(raw), &val); err != nil {
		return raw
	}
	return val
}

// ApplyFlags checks the --var flags against the scenarios selected to run
// and gives each value its declared type. A flag no selected scenario
// declares (or reads) is a mistake, reported with a did-you-mean; a value
// takes the type of the var's default (`--var version=1.10` stays the
// string "1.10" for `version: "1.10"`), and one that cannot is an error.
func (t *Target) ApplyFlags(selected []*Scenario) error {
	var msgs []string
	for _, f := range t.flags {
		var decl *Scenario
		var known []string
		for _, sc := range selected {
			if _, ok := sc.Vars[f.name]; ok && decl == nil {
				decl = sc
			}
			for k := range sc.Vars {
				known = append(known, k)
			}
		}
		if decl == nil {
			if readBy(selected, f.name) {
				if def, ok := t.fileVars[f.name]; ok {
					v, err := typed(f.raw, def)
					if err != nil {
						msgs = append(msgs, fmt.Sprintf("--var %s=%s: %s (the vars files give %s)", f.name, f.raw, err, formatValue(def)))
					}
					t.Vars[f.name] = v
				}
				continue
			}
			msgs = append(msgs, fmt.Sprintf("--var %s: no selected scenario declares a var %q%s", f.name, f.name, suggest(f.name, dedupe(known))))
			continue
		}
		v, err := typed(f.raw, decl.Vars[f.name])
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("--var %s=%s: %s (%s declares %s: %s)", f.name, f.raw, err, decl.File, f.name, formatValue(decl.Vars[f.name])))
			continue
		}
		t.Vars[f.name] = v
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "\n"))
	}
	return nil
}

// typed reads raw as a value of def's type.
func typed(raw string, def any) (any, error) {
	v := yamlValue(raw)
	switch def.(type) {
	case nil:
		return v, nil
	case string:
		return raw, nil
	case bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, errors.New("expected true or false")
	case int, int64, uint64:
		if i, ok := v.(int); ok {
			return i, nil
		}
		return nil, errors.New("expected a whole number")
	case float64:
		switch n := v.(type) {
		case int:
			return float64(n), nil
		case float64:
			return n, nil
		}
		return nil, errors.New("expected a number")
	case []any:
		if l, ok := v.([]any); ok {
			return l, nil
		}
		return nil, errors.New("expected a list such as [a, b]")
	case map[string]any, map[any]any:
		switch v.(type) {
		case map[string]any, map[any]any:
			return v, nil
		}
		return nil, errors.New("expected a mapping such as {a: 1}")
	}
	return v, nil
}

// readBy reports whether an expression of a scenario reads vars.name.
func readBy(scenarios []*Scenario, name string) bool {
	for _, sc := range scenarios {
		for _, list := range [][]*Step{sc.SteadyState, sc.Steps, sc.Cleanup} {
			for _, st := range list {
				exprs := append([]*Expr{st.If}, st.Expect...)
				for _, t := range st.tmpls {
					exprs = append(exprs, t.exprs()...)
				}
				for _, e := range exprs {
					if e == nil {
						continue
					}
					for _, n := range e.names {
						if n.root == "vars" && len(n.path) > 0 && n.path[0] == name {
							return true
						}
					}
				}
			}
		}
	}
	return false
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Names returns the set of var names the target defines.
func (t *Target) Names() map[string]bool {
	out := make(map[string]bool, len(t.Vars))
	for k := range t.Vars {
		out[k] = true
	}
	return out
}
