package runner

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/steps"
)

// Field describes one parameter of a step, read from its params struct:
// the yaml tag names it, `doc` documents it, `required:"true"` requires it.
type Field struct {
	Name     string
	Type     reflect.Type
	Doc      string
	Required bool
	index    []int
}

// Fields lists the `with:` parameters of a params struct type (a pointer to
// a struct, as Spec.New returns), following inline embedded structs.
func Fields(t reflect.Type) []Field {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []Field
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), index...), i)
			if strings.Contains(opts, "inline") {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				walk(ft, idx)
				continue
			}
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			out = append(out, Field{
				Name: name, Type: f.Type, Doc: f.Tag.Get("doc"),
				Required: f.Tag.Get("required") == "true", index: idx,
			})
		}
	}
	walk(t, nil)
	return out
}

var (
	durationType  = reflect.TypeOf(time.Duration(0))
	timeType      = reflect.TypeOf(time.Time{})
	unmarshalerT  = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	textUnmarshal = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// opaque types decode from one node as a whole rather than field by field.
func opaque(t reflect.Type) bool {
	if t == durationType || t == timeType {
		return true
	}
	pt := reflect.PointerTo(t)
	return pt.Implements(unmarshalerT) || pt.Implements(textUnmarshal)
}

// checkParams checks a `with:` node against a params type without running
// anything: unknown fields, required fields, literal values of the wrong
// type. Scalars holding ${{ }} are checked at run time.
func checkParams(file string, n *yaml.Node, t reflect.Type, where string) []Problem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && hasTemplate(n.Value) {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if opaque(t) || (t.Kind() != reflect.Struct && t.Kind() != reflect.Slice && t.Kind() != reflect.Map) {
		return decodeCheck(file, n, t, where)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return missingRequired(file, n, Fields(t), nil, where)
			}
			return []Problem{nodePos(file, n).problem("%s: expected a mapping of parameters, got %s", where, kindName(n))}
		}
		fields := Fields(t)
		byName := make(map[string]Field, len(fields))
		for _, f := range fields {
			byName[f.Name] = f
		}
		var probs []Problem
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue
			}
			f, ok := byName[k.Value]
			if !ok {
				probs = append(probs, nodePos(file, k).problem("%s: unknown field %q%s", where, k.Value, suggest(k.Value, fieldNames(fields))))
				continue
			}
			if seen[k.Value] {
				probs = append(probs, nodePos(file, k).problem("%s: field %q given twice", where, k.Value))
			}
			seen[k.Value] = true
			probs = append(probs, checkParams(file, v, f.Type, joinWhere(where, k.Value))...)
		}
		return append(probs, missingRequired(file, n, fields, seen, where)...)
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.Uint8 {
				return decodeCheck(file, n, t, where)
			}
			return []Problem{nodePos(file, n).problem("%s: expected a list, got %s", where, kindName(n))}
		}
		var probs []Problem
		for i, item := range n.Content {
			probs = append(probs, checkParams(file, item, t.Elem(), fmt.Sprintf("%s[%d]", where, i))...)
		}
		return probs
	case reflect.Map:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return []Problem{nodePos(file, n).problem("%s: expected a mapping, got %s", where, kindName(n))}
		}
		var probs []Problem
		for i := 0; i+1 < len(n.Content); i += 2 {
			probs = append(probs, checkParams(file, n.Content[i+1], t.Elem(), joinWhere(where, n.Content[i].Value))...)
		}
		return probs
	}
	return nil
}

func missingRequired(file string, n *yaml.Node, fields []Field, seen map[string]bool, where string) []Problem {
	var probs []Problem
	for _, f := range fields {
		if f.Required && !seen[f.Name] {
			probs = append(probs, nodePos(file, n).problem("%s: missing required field %q", where, f.Name))
		}
	}
	return probs
}

func decodeCheck(file string, n *yaml.Node, t reflect.Type, where string) []Problem {
	if containsTemplate(n) {
		return nil
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil {
		return []Problem{nodePos(file, n).problem("%s: %s", where, cleanDecodeError(err, t))}
	}
	return nil
}

var quotedValue = regexp.MustCompile(" `[^`]*`")

func cleanDecodeError(err error, t reflect.Type) string {
	msg := err.Error()
	if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
		msg = msg[i+2:]
	}
	// yaml.v3 quotes the value (cut to 7 characters): after ${{ }} it may
	// be a secret, and a cut one no redactor can recognise. Never quote it.
	msg = quotedValue.ReplaceAllString(msg, "")
	if t == durationType {
		return "expected a duration such as 500ms, 30s or 5m: " + msg
	}
	return msg
}

func joinWhere(where, name string) string {
	if where == "" {
		return name
	}
	return where + "." + name
}

func fieldNames(fields []Field) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.Name
	}
	return out
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// containsTemplate reports whether any scalar below n holds ${{ }}.
func containsTemplate(n *yaml.Node) bool {
	if n == nil {
		return false
	}
	if n.Kind == yaml.ScalarNode {
		return hasTemplate(n.Value)
	}
	for _, c := range n.Content {
		if containsTemplate(c) {
			return true
		}
	}
	return false
}

// resolveNode returns a copy of n with every template scalar replaced by its
// value: a whole-expression scalar becomes the value's own node (an int stays
// an int), an interpolated string becomes a string.
func resolveNode(n *yaml.Node, tmpls map[*yaml.Node]*Template, env map[string]any) (*yaml.Node, error) {
	if n == nil {
		return nil, nil
	}
	if t, ok := tmpls[n]; ok {
		v, err := t.Eval(env)
		if err != nil {
			return nil, err
		}
		out := &yaml.Node{}
		if s, isStr := v.(string); isStr {
			out.Kind, out.Tag, out.Value, out.Style = yaml.ScalarNode, "!!str", s, yaml.DoubleQuotedStyle
			return out, nil
		}
		if err := out.Encode(v); err != nil {
			return nil, fmt.Errorf("%s: cannot use value of type %T", t.Raw, v)
		}
		return out, nil
	}
	if len(n.Content) == 0 {
		return n, nil
	}
	cp := *n
	cp.Content = make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		r, err := resolveNode(c, tmpls, env)
		if err != nil {
			return nil, err
		}
		cp.Content[i] = r
	}
	return &cp, nil
}

// decodeStep builds the step from spec.New and a resolved `with:` node, then
// validates it.
func decodeStep(spec steps.Spec, with *yaml.Node) (steps.Step, error) {
	st := spec.New()
	if with != nil && !(with.Kind == yaml.ScalarNode && with.Tag == "!!null") {
		if err := with.Decode(st); err != nil {
			return nil, fmt.Errorf("with: %s", cleanDecodeError(err, nil))
		}
	}
	if v, ok := st.(steps.Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("with: %w", err)
		}
	}
	return st, nil
}

// suggest returns ` (did you mean "x"?)` for the closest candidate, or a
// list of valid names when none is close.
func suggest(got string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := levenshtein(got, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best != "" && bestD <= max(2, len(got)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(candidates) == 0 {
		return ""
	}
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	if len(sorted) > 12 {
		return ""
	}
	return " (valid: " + strings.Join(sorted, ", ") + ")"
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// TypeName is the scenario-facing name of a parameter type.
func TypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "duration"
	case t == timeType:
		return "time"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "int"
	case reflect.Float32, reflect.Float64:
		return "float"
	case reflect.Slice:
		return "list of " + TypeName(t.Elem())
	case reflect.Map:
		return "map of " + TypeName(t.Elem())
	case reflect.Struct:
		return "mapping"
	}
	return "any"
}

// FieldDefault renders the default of field f in the params value v (as
// Spec.New fills it), or "" for a zero value.
func FieldDefault(v reflect.Value, f Field) string {
	fv := v
	for _, i := range f.index {
		for fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				return ""
			}
			fv = fv.Elem()
		}
		fv = fv.Field(i)
	}
	if fv.IsZero() {
		return ""
	}
	if fv.Type() == durationType {
		return time.Duration(fv.Int()).String()
	}
	if fv.Kind() == reflect.Struct {
		return ""
	}
	return fmt.Sprint(fv.Interface())
}
