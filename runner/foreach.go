package runner

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ForEach is a step's `for_each:`: a literal list or mapping (whose items
// may hold ${{ }}), or one ${{ }} expression giving a list or a mapping.
// Iterations are reported as ID[KEY]: the list index or the map key.
type ForEach struct {
	node  *yaml.Node
	tmpls map[*yaml.Node]*Template
	expr  *Expr
	// keys are the literal keys, known at load (nil for an expression).
	keys  []string
	isMap bool
}

// iteration is one item of a for_each.
type iteration struct {
	key   any // int index or string map key
	value any
}

func (fe *ForEach) exprs() []*Expr {
	if fe.expr != nil {
		return []*Expr{fe.expr}
	}
	var out []*Expr
	for _, t := range fe.tmpls {
		out = append(out, t.exprs()...)
	}
	return out
}

// forEach reads for_each: and parallel:.
func (l *loader) forEach(st *Step, n, parallel *yaml.Node, where string) {
	if parallel != nil {
		if n == nil {
			l.errAt(parallel, "%s.parallel: only a step with for_each runs in parallel", where)
		} else if parallel.Kind != yaml.ScalarNode || parallel.Decode(&st.Parallel) != nil || st.Parallel < 1 {
			l.errAt(parallel, "%s.parallel: expected a whole number of at least 1 (iterations at once), got %s", where, kindName(parallel))
		}
	}
	if n == nil {
		return
	}
	if st.Parallel == 0 {
		st.Parallel = 1
	}
	fe := &ForEach{}
	switch n.Kind {
	case yaml.ScalarNode:
		if !hasTemplate(n.Value) {
			l.errAt(n, "%s.for_each: expected a list, a mapping or one ${{ expression }} giving one, got %s", where, kindName(n))
			return
		}
		t, probs := parseTemplate(n.Value, nodePos(l.file, n))
		if len(probs) > 0 {
			l.probs = append(l.probs, probs...)
			return
		}
		if !t.Whole() {
			l.errAt(n, "%s.for_each: expected one ${{ expression }} giving a list or a mapping, got text around it", where)
			return
		}
		fe.expr = t.parts[0].expr
	case yaml.SequenceNode:
		fe.node = n
		for i := range n.Content {
			fe.keys = append(fe.keys, strconv.Itoa(i))
		}
	case yaml.MappingNode:
		fe.node, fe.isMap = n, true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || hasTemplate(k.Value) || k.Value == "" {
				l.errAt(k, "%s.for_each: keys are plain names (they name the iterations in reports: %s[KEY])", where, st.ID)
				continue
			}
			if contains(fe.keys, k.Value) {
				l.errAt(k, "%s.for_each: key %q given twice", where, k.Value)
				continue
			}
			fe.keys = append(fe.keys, k.Value)
		}
		sort.Strings(fe.keys)
	default:
		l.errAt(n, "%s.for_each: expected a list, a mapping or one ${{ expression }}, got %s", where, kindName(n))
		return
	}
	if fe.node != nil {
		fe.tmpls = map[*yaml.Node]*Template{}
		l.templates(fe.node, where+".for_each", fe.tmpls)
	}
	st.ForEach = fe
}

// keyProblem checks steps.ID.each.KEY (or each[N]) against literal keys.
func (fe *ForEach) keyProblem(id, key string) string {
	if fe.node == nil {
		return ""
	}
	idx := strings.TrimSuffix(strings.TrimPrefix(key, "["), "]")
	isIndex := idx != key
	switch {
	case fe.isMap && isIndex:
		return fmt.Sprintf("steps.%s.each is a mapping (keys %s): use steps.%s.each.KEY", id, strings.Join(fe.keys, ", "), id)
	case fe.isMap && !contains(fe.keys, key):
		return fmt.Sprintf("steps.%s.each has no key %q%s", id, key, suggest(key, fe.keys))
	case !fe.isMap && !isIndex:
		return fmt.Sprintf("steps.%s.each is a list: use steps.%s.each[N]", id, id)
	case !fe.isMap && !contains(fe.keys, idx):
		return fmt.Sprintf("steps.%s.each has %d items (0 to %d); [%s] is not one of them", id, len(fe.keys), len(fe.keys)-1, idx)
	}
	return ""
}

// literalIterations returns the iterations known at load, for the report's
// list of declared steps; ok is false when they are only known at run time.
func (fe *ForEach) literalIterations() ([]any, bool) {
	if fe.node == nil {
		return nil, false
	}
	keys := make([]any, len(fe.keys))
	for i, k := range fe.keys {
		if fe.isMap {
			keys[i] = k
		} else {
			keys[i] = i
		}
	}
	return keys, true
}

// iterations evaluates the collection in scope.
func (fe *ForEach) iterations(scope map[string]any) ([]iteration, bool, error) {
	var v any
	if fe.expr != nil {
		var err error
		if v, err = fe.expr.Eval(scope); err != nil {
			return nil, false, err
		}
	} else {
		n, err := resolveNode(fe.node, fe.tmpls, scope)
		if err != nil {
			return nil, false, err
		}
		if err := n.Decode(&v); err != nil {
			return nil, false, err
		}
	}
	rv := reflect.ValueOf(v)
	switch {
	case v == nil:
		return nil, false, fmt.Errorf("for_each: expected a list or a mapping, got nil")
	case rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array:
		out := make([]iteration, rv.Len())
		for i := range out {
			out[i] = iteration{key: i, value: rv.Index(i).Interface()}
		}
		return out, false, nil
	case rv.Kind() == reflect.Map:
		keys := make([]string, 0, rv.Len())
		vals := make(map[string]any, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			k := fmt.Sprint(iter.Key().Interface())
			keys = append(keys, k)
			vals[k] = iter.Value().Interface()
		}
		sort.Strings(keys)
		out := make([]iteration, len(keys))
		for i, k := range keys {
			out[i] = iteration{key: k, value: vals[k]}
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("for_each: expected a list or a mapping, got %s", formatValue(v))
}

// iterationID names an iteration in reports: ID[0], ID[gate1].
func iterationID(id string, key any) string {
	return fmt.Sprintf("%s[%v]", id, key)
}
