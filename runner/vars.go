package runner

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Target is the merged content of vars files and --var flags: what makes
// one scenario run against the lab or against production.
type Target struct {
	Vars    map[string]any
	Secrets map[string]string
}

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
	var val any
	if err := yaml.Unmarshal([]byte(raw), &val); err != nil {
		val = raw
	}
	t.Vars[name] = val
	return nil
}

// Names returns the set of var names the target defines.
func (t *Target) Names() map[string]bool {
	out := make(map[string]bool, len(t.Vars))
	for k := range t.Vars {
		out[k] = true
	}
	return out
}
