package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// StepFile is a step written in YAML, run with `uses: ./path/to/step.yaml`
// (relative to the file that uses it), like a GitHub composite action: it
// declares typed inputs, runs its own steps, and declares outputs computed
// from them. Its steps read inputs.NAME, never the caller's vars.
type StepFile struct {
	File        string
	SHA256      string
	Name        string
	Description string
	Inputs      []Input
	Steps       []*Step
	Outputs     []FileOutput
}

// Input is one declared input of a step file.
type Input struct {
	Name        string
	Type        string
	Description string
	Required    bool
	Secret      bool
	Default     any
	HasDefault  bool
}

// FileOutput is one declared output of a step file: an expression over the
// file's inputs and steps, evaluated after they ran.
type FileOutput struct {
	Name        string
	Description string
	Secret      bool
	Value       *Template
}

// InputTypes are the types an input may declare.
var InputTypes = []string{"string", "int", "number", "bool", "duration", "list", "map", "any"}

var stepFileKeys = []string{"name", "description", "inputs", "steps", "outputs"}
var inputKeys = []string{"type", "required", "default", "secret", "description"}
var outputKeys = []string{"value", "description", "secret"}

// isFileRef tells a step file reference (./x.yaml, ../lib/x.yaml) from a
// registered step name.
func isFileRef(uses string) bool {
	return strings.HasPrefix(uses, "./") || strings.HasPrefix(uses, "../")
}

// input returns the declared input named name.
func (f *StepFile) input(name string) *Input {
	for i := range f.Inputs {
		if f.Inputs[i].Name == name {
			return &f.Inputs[i]
		}
	}
	return nil
}

func (f *StepFile) output(name string) *FileOutput {
	for i := range f.Outputs {
		if f.Outputs[i].Name == name {
			return &f.Outputs[i]
		}
	}
	return nil
}

func (f *StepFile) outputNames() []string {
	out := make([]string, len(f.Outputs))
	for i, o := range f.Outputs {
		out[i] = o.Name
	}
	return out
}

func (f *StepFile) inputNames() []string {
	out := make([]string, len(f.Inputs))
	for i, in := range f.Inputs {
		out[i] = in.Name
	}
	return out
}

// LoadStepFile reads and checks a step file on its own (for `opsdrill
// steps ./file.yaml`).
func LoadStepFile(path string) (*StepFile, error) {
	data, err := readInput(path)
	if err != nil {
		return nil, Problems{{Pos: Pos{File: path, Line: 1, Column: 1}, Msg: err.Error()}}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	l := &loader{file: path, files: map[string]*StepFile{abs: nil}, stack: []string{abs}}
	sf := l.loadStepFile(data)
	if len(l.probs) > 0 {
		l.probs.Sort()
		return nil, l.probs
	}
	return sf, nil
}

// stepFile loads the step file ref names, relative to the file being
// loaded. Problems inside it are reported with its own name; a file that
// (through others) uses itself is refused.
func (l *loader) stepFile(at *yaml.Node, ref, where string) *StepFile {
	path := ref
	if !filepath.IsAbs(ref) {
		path = filepath.Join(filepath.Dir(l.file), ref)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	for i, s := range l.stack {
		if s == abs {
			chain := make([]string, 0, len(l.stack)-i+1)
			for _, c := range l.stack[i:] {
				chain = append(chain, filepath.Base(c))
			}
			l.errAt(at, "%s.uses: %s uses itself (%s -> %s): step files cannot recurse", where, ref, strings.Join(chain, " -> "), filepath.Base(abs))
			return nil
		}
	}
	if sf, seen := l.files[abs]; seen {
		return sf
	}
	data, err := readInput(path)
	if err != nil {
		l.errAt(at, "%s.uses: step file %s: %s", where, path, strings.TrimPrefix(err.Error(), "open "+path+": "))
		return nil
	}
	sub := &loader{file: path, opts: LoadOptions{}, files: l.files, stack: append(append([]string(nil), l.stack...), abs)}
	l.files[abs] = nil // a broken file is reported once
	sf := sub.loadStepFile(data)
	l.probs = append(l.probs, sub.probs...)
	if len(sub.probs) > 0 {
		return nil
	}
	l.files[abs] = sf
	return sf
}

func (l *loader) loadStepFile(data []byte) *StepFile {
	sum := sha256.Sum256(data)
	sf := &StepFile{File: l.file, SHA256: hex.EncodeToString(sum[:])}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		l.probs = append(l.probs, yamlProblems(l.file, err)...)
		return nil
	}
	if !l.resolveRefs(&doc) {
		return nil
	}
	defer func(offset int, declared map[string]any) { l.autoIDOffset, l.declared = offset, declared }(l.autoIDOffset, l.declared)
	l.autoIDOffset, l.declared = 0, nil
	if doc.Kind == 0 || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		l.add(Pos{File: l.file, Line: 1, Column: 1}.problem("a step file must be a mapping with inputs, steps and outputs"))
		return nil
	}
	root := doc.Content[0]
	var stepsNode, outputsNode *yaml.Node
	l.mapping(root, stepFileKeys, "step file", func(k, v *yaml.Node) {
		switch k.Value {
		case "name":
			sf.Name = l.str(v, "name")
		case "description":
			sf.Description = l.str(v, "description")
		case "inputs":
			l.inputs(v, sf)
		case "steps":
			stepsNode = v
		case "outputs":
			outputsNode = v
		}
	})
	if sf.Name == "" {
		sf.Name = strings.TrimSuffix(filepath.Base(l.file), filepath.Ext(l.file))
	}
	if l.noSteps(root, stepsNode, "step file") {
		return sf
	}
	sf.Steps = l.stepList(stepsNode, reportsPhaseMain)
	l.checkIDs(sf.Steps)
	inputs := make(map[string]Input, len(sf.Inputs))
	for _, in := range sf.Inputs {
		inputs[in.Name] = in
	}
	u := &refUnit{inputs: inputs, stepFile: true}
	l.checkRefs(u, nil, sf.Steps, nil)
	if outputsNode != nil {
		l.fileOutputs(outputsNode, sf, u)
	}
	return sf
}

func (l *loader) inputs(n *yaml.Node, sf *StepFile) {
	l.namedMapping(n, "inputs", "a mapping of input names to {type, required, default, secret}", identHint, func(k, v *yaml.Node) {
		where := "inputs." + k.Value
		in := Input{Name: k.Value, Type: "string"}
		if v.Kind != yaml.MappingNode && v.Tag != "!!null" {
			l.errAt(v, "%s: expected {type, required, default, secret, description}, got %s", where, kindName(v))
			return
		}
		var defNode *yaml.Node
		l.mapping(v, inputKeys, where, func(kk, vv *yaml.Node) {
			switch kk.Value {
			case "type":
				in.Type = l.str(vv, where+".type")
				if in.Type != "" && !contains(InputTypes, in.Type) {
					l.errAt(vv, "%s.type: unknown type %q%s", where, in.Type, suggest(in.Type, InputTypes))
				}
			case "required":
				in.Required = l.boolean(vv, where+".required")
			case "secret":
				in.Secret = l.boolean(vv, where+".secret")
			case "description":
				in.Description = l.str(vv, where+".description")
			case "default":
				defNode = vv
			}
		})
		if defNode != nil {
			if containsTemplate(defNode) {
				l.errAt(defNode, "%s.default: defaults are plain values; ${{ }} is not evaluated here", where)
			} else if msg := typeProblem(in.Type, defNode); msg != "" {
				l.errAt(defNode, "%s.default: %s", where, msg)
			} else if err := defNode.Decode(&in.Default); err != nil {
				l.errAt(defNode, "%s.default: %s", where, cleanDecodeError(err, nil))
			} else {
				in.HasDefault = true
			}
			if in.Required {
				l.errAt(defNode, "%s: a required input has no default", where)
			}
		}
		sf.Inputs = append(sf.Inputs, in)
	})
}

func (l *loader) fileOutputs(n *yaml.Node, sf *StepFile, u *refUnit) {
	if n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.errAt(n, "outputs: expected a mapping of output names to expressions, got %s", kindName(n))
		return
	}
	rc := &refCheck{l: l, u: u, index: map[string]int{}, byID: map[string]*Step{}, joined: map[string]bool{}}
	for i, st := range sf.Steps {
		rc.index[st.ID] = i
		rc.byID[st.ID] = st
		// The file's background steps are all joined when its steps end,
		// before its outputs are computed.
		rc.joined[st.ID] = st.Background
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		where := "outputs." + k.Value
		if !isIdent(k.Value) {
			l.errAt(k, "outputs: %q is not a valid name", k.Value)
			continue
		}
		out := FileOutput{Name: k.Value}
		valueNode := v
		if v.Kind == yaml.MappingNode {
			valueNode = nil
			l.mapping(v, outputKeys, where, func(kk, vv *yaml.Node) {
				switch kk.Value {
				case "value":
					valueNode = vv
				case "description":
					out.Description = l.str(vv, where+".description")
				case "secret":
					out.Secret = l.boolean(vv, where+".secret")
				}
			})
			if valueNode == nil {
				l.errAt(v, "%s: missing value: (an expression such as ${{ steps.ID.outputs.NAME }})", where)
				continue
			}
		}
		if valueNode.Kind != yaml.ScalarNode || !hasTemplate(valueNode.Value) {
			l.errAt(valueNode, "%s: expected an expression such as ${{ steps.ID.outputs.NAME }}, got %s", where, kindName(valueNode))
			continue
		}
		t, probs := parseTemplate(valueNode.Value, nodePos(l.file, valueNode))
		if len(probs) > 0 {
			l.probs = append(l.probs, probs...)
			continue
		}
		for _, e := range t.exprs() {
			rc.checkExpr(e, len(sf.Steps))
		}
		out.Value = t
		sf.Outputs = append(sf.Outputs, out)
	}
}

// checkInputs checks a caller's `with:` against the step file's inputs:
// unknown names, missing required ones, literal values of the wrong type.
// Values holding ${{ }} are checked when they are known, at run time.
func (l *loader) checkInputs(st *Step, stepNode, with *yaml.Node, where string) {
	sf := st.File
	seen := map[string]bool{}
	if with != nil && with.Tag != "!!null" {
		if with.Kind != yaml.MappingNode {
			l.errAt(with, "%s.with: expected a mapping of inputs, got %s", where, kindName(with))
			return
		}
		l.templates(with, where+".with", st.tmpls)
		for i := 0; i+1 < len(with.Content); i += 2 {
			k, v := with.Content[i], with.Content[i+1]
			in := sf.input(k.Value)
			if in == nil {
				l.errAt(k, "%s.with: %s has no input %q%s", where, st.Uses, k.Value, suggest(k.Value, sf.inputNames()))
				continue
			}
			if seen[k.Value] {
				l.errAt(k, "%s.with: input %q given twice", where, k.Value)
				continue
			}
			seen[k.Value] = true
			if v.Kind == yaml.ScalarNode && isWholeTemplate(v.Value) {
				continue
			}
			if msg := typeProblem(in.Type, v); msg != "" {
				l.errAt(v, "%s.with.%s: %s", where, k.Value, msg)
			}
		}
	}
	at := stepNode
	if with != nil {
		at = with
	}
	for _, in := range sf.Inputs {
		if in.Required && !seen[in.Name] {
			l.errAt(at, "%s.with: missing required input %q of %s", where, in.Name, st.Uses)
		}
	}
}

func isWholeTemplate(s string) bool {
	t, probs := parseTemplate(s, Pos{})
	return len(probs) == 0 && t.Whole()
}

// typeProblem checks a literal node against an input type.
func typeProblem(typ string, n *yaml.Node) string {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && hasTemplate(n.Value) {
		// Text around ${{ }} always gives a string.
		if typ == "string" || typ == "any" {
			return ""
		}
		return fmt.Sprintf("expected %s, got text around ${{ }} (always a string)", typeWord(typ))
	}
	if n.Tag == "!!null" {
		return fmt.Sprintf("expected %s, got nothing", typeWord(typ))
	}
	ok := true
	switch typ {
	case "string":
		ok = n.Kind == yaml.ScalarNode
	case "int":
		ok = n.Kind == yaml.ScalarNode && n.Tag == "!!int"
	case "number":
		ok = n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float")
	case "bool":
		ok = n.Kind == yaml.ScalarNode && n.Tag == "!!bool"
	case "duration":
		if n.Kind == yaml.ScalarNode {
			_, err := time.ParseDuration(n.Value)
			ok = err == nil
		} else {
			ok = false
		}
	case "list":
		ok = n.Kind == yaml.SequenceNode
	case "map":
		ok = n.Kind == yaml.MappingNode
	}
	if !ok {
		return fmt.Sprintf("expected %s, got %s", typeWord(typ), kindName(n))
	}
	return ""
}

func typeWord(typ string) string {
	switch typ {
	case "int":
		return "a whole number"
	case "number":
		return "a number"
	case "bool":
		return "true or false"
	case "duration":
		return "a duration such as 30s or 5m"
	case "list":
		return "a list"
	case "map":
		return "a mapping"
	case "string":
		return "a string"
	}
	return "a value"
}

// coerceInput checks a value known at run time against its input's type.
func coerceInput(in *Input, v any) (any, error) {
	switch in.Type {
	case "any":
		return v, nil
	case "string":
		switch t := v.(type) {
		case string:
			return t, nil
		case int, int64, uint64, float64, bool:
			return fmt.Sprint(t), nil
		}
	case "int":
		switch t := v.(type) {
		case int:
			return t, nil
		case int64:
			return int(t), nil
		case uint64:
			return int(t), nil
		case float64:
			if t == float64(int(t)) {
				return int(t), nil
			}
		}
	case "number":
		switch t := v.(type) {
		case int, int64, uint64, float64:
			return t, nil
		}
	case "bool":
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case "duration":
		if s, ok := v.(string); ok {
			if _, err := time.ParseDuration(s); err == nil {
				return s, nil
			}
		}
	case "list":
		if l, ok := v.([]any); ok {
			return l, nil
		}
	case "map":
		if m, ok := v.(map[string]any); ok {
			return m, nil
		}
	}
	return nil, fmt.Errorf("input %s: expected %s, got %s", in.Name, typeWord(in.Type), formatValue(v))
}

// IsStepFile reports whether the YAML file at path is a step file (it
// declares inputs: or outputs:) rather than a scenario.
func IsStepFile(path string) bool {
	data, err := readInput(path)
	if err != nil {
		return false
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return false
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i].Value; k == "inputs" || k == "outputs" {
			return true
		}
	}
	return false
}
