package runner

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Expr is a compiled expression of the scenario language (expr-lang/expr
// syntax) with the names it reads, kept for load-time reference checks and
// for explaining a failed expectation.
type Expr struct {
	Src   string
	Pos   Pos
	prog  *vm.Program
	names []nameRef
	// bound is set when the expression compares one of the step's outputs
	// with a value (outputs.lost == 0): the limit of a key figure.
	bound *bound
}

// bound is `outputs.NAME OP other`, with the comparison turned so the
// output stands on the left.
type bound struct {
	output string
	op     string
	other  *vm.Program
}

// flipped turns a comparison around: 5 > outputs.x is outputs.x < 5.
var flipped = map[string]string{"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

// nameRef is a chain like steps.flood.outputs.lost: its root identifier, the
// constant path after it, and its source text.
type nameRef struct {
	root   string
	path   []string
	text   string
	offset int // in Src
}

// compileExpr parses and compiles src. Names are checked later by the
// loader, which knows the scenario.
func compileExpr(src string, pos Pos) (*Expr, error) {
	src = strings.TrimSpace(src)
	if src == "" {
		return nil, fmt.Errorf("empty expression")
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("invalid expression %q: %s", src, firstLine(err.Error()))
	}
	prog, err := expr.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("invalid expression %q: %s", src, firstLine(err.Error()))
	}
	return &Expr{Src: src, Pos: pos, prog: prog, names: collectNames(tree.Node, src), bound: boundOf(tree.Node)}, nil
}

// boundOf recognises `outputs.NAME OP value` and `value OP outputs.NAME`
// where value does not read the step's outputs.
func boundOf(n ast.Node) *bound {
	bin, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	if _, cmp := flipped[bin.Operator]; !cmp {
		return nil
	}
	side := func(out, other ast.Node, op string) *bound {
		root, path, ok := chain(out)
		if !ok || root != "outputs" || len(path) != 1 {
			return nil
		}
		for _, ref := range collectNames(other, "") {
			if ref.root == "outputs" {
				return nil
			}
		}
		prog, err := expr.Compile(other.String())
		if err != nil {
			return nil
		}
		return &bound{output: path[0], op: op, other: prog}
	}
	if b := side(bin.Left, bin.Right, bin.Operator); b != nil {
		return b
	}
	return side(bin.Right, bin.Left, flipped[bin.Operator])
}

// Limit evaluates the value a comparison expression holds an output to;
// ok is false when the expression is no such comparison.
func (e *Expr) Limit(env map[string]any) (output, op string, value any, ok bool) {
	if e.bound == nil {
		return "", "", nil, false
	}
	v, err := expr.Run(e.bound.other, env)
	if err != nil {
		return "", "", nil, false
	}
	return e.bound.output, e.bound.op, v, true
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Eval runs the expression against env.
func (e *Expr) Eval(env map[string]any) (any, error) {
	v, err := expr.Run(e.prog, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", e.Src, firstLine(err.Error()))
	}
	return v, nil
}

// Explain evaluates every name in the expression, for a failure message.
//
// mask, when given, sees every value before it is formatted: secrets must be
// masked before quoting escapes them into a form no redactor knows.
func (e *Expr) Explain(env map[string]any, mask func(any) any) map[string]string {
	if len(e.names) == 0 {
		return nil
	}
	out := make(map[string]string, len(e.names))
	for _, n := range e.names {
		if _, done := out[n.text]; done {
			continue
		}
		prog, err := expr.Compile(n.text)
		if err != nil {
			continue
		}
		v, err := expr.Run(prog, env)
		if err != nil {
			out[n.text] = "error: " + firstLine(err.Error())
			continue
		}
		if mask != nil {
			v = mask(v)
		}
		out[n.text] = formatValue(v)
	}
	return out
}

// formatValue prints a value compactly: JSON for structures, Go for scalars.
func formatValue(v any) string {
	switch t := v.(type) {
	case nil:
		return "nil"
	case string:
		return fmt.Sprintf("%q", t)
	case map[string]any, []any, []string, []int, map[string]string:
		b, err := json.Marshal(t)
		if err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}

// collectNames finds the maximal constant member chains rooted at an
// identifier: in `outputs.lost == 0 && len(steps.f.outputs.x) > 1` it finds
// outputs.lost and steps.f.outputs.x. Function names and let-bound
// variables are not names of the scope.
func collectNames(root ast.Node, src string) []nameRef {
	c := &nameCollector{inner: map[ast.Node]bool{}, declared: map[string]bool{}}
	ast.Walk(&root, c)
	var out []nameRef
	for _, cand := range c.cands {
		if c.inner[cand.node] || c.declared[cand.ref.root] {
			continue
		}
		loc := rootNode(cand.node).Location()
		if loc.From >= 0 && loc.To <= len(src) && loc.From < loc.To {
			cand.ref.offset = loc.From
		}
		out = append(out, cand.ref)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].offset < out[j].offset })
	return out
}

// rootNode returns the identifier a member chain starts from.
func rootNode(n ast.Node) ast.Node {
	for {
		m, ok := n.(*ast.MemberNode)
		if !ok {
			return n
		}
		n = m.Node
	}
}

type nameCand struct {
	node ast.Node
	ref  nameRef
}

type nameCollector struct {
	cands    []nameCand
	inner    map[ast.Node]bool
	declared map[string]bool
}

func (c *nameCollector) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.CallNode:
		c.inner[n.Callee] = true
	case *ast.VariableDeclaratorNode:
		c.declared[n.Name] = true
	case *ast.MemberNode:
		c.inner[n.Node] = true
		if root, path, ok := chain(n); ok {
			c.cands = append(c.cands, nameCand{node: n, ref: nameRef{root: root, path: path, text: chainText(root, path)}})
		}
	case *ast.IdentifierNode:
		c.cands = append(c.cands, nameCand{node: n, ref: nameRef{root: n.Value, text: n.Value}})
	}
}

// chain returns the identifier root and constant path of a member chain.
func chain(n ast.Node) (string, []string, bool) {
	switch t := n.(type) {
	case *ast.IdentifierNode:
		return t.Value, nil, true
	case *ast.MemberNode:
		root, path, ok := chain(t.Node)
		if !ok {
			return "", nil, false
		}
		switch prop := t.Property.(type) {
		case *ast.StringNode:
			return root, append(path, prop.Value), true
		case *ast.IntegerNode:
			// steps.x.each[0]: a list index
			return root, append(path, "["+strconv.Itoa(prop.Value)+"]"), true
		}
		return "", nil, false
	}
	return "", nil, false
}

func chainText(root string, path []string) string {
	var b strings.Builder
	b.WriteString(root)
	for _, p := range path {
		if strings.HasPrefix(p, "[") {
			b.WriteString(p)
			continue
		}
		if isIdent(p) {
			b.WriteString("." + p)
		} else {
			fmt.Fprintf(&b, "[%q]", p)
		}
	}
	return b.String()
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}

// Template is a string with ${{ expr }} parts. A template that is exactly one
// expression yields the expression's typed value; any other yields a string.
type Template struct {
	Raw   string
	parts []templatePart
}

type templatePart struct {
	lit  string
	expr *Expr
}

const (
	openDelim  = "${{"
	closeDelim = "}}"
)

// hasTemplate reports whether s contains an interpolation.
func hasTemplate(s string) bool { return strings.Contains(s, openDelim) }

// parseTemplate splits s into literal and expression parts. pos is the
// position of s in its file; column offsets are added for single-line
// values so errors point at the expression.
func parseTemplate(s string, pos Pos) (*Template, []Problem) {
	t := &Template{Raw: s}
	var probs []Problem
	rest := s
	offset := 0
	for {
		i := strings.Index(rest, openDelim)
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, templatePart{lit: rest})
			}
			break
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], closeDelim)
		epos := pos.shift(s, offset+i)
		if j < 0 {
			probs = append(probs, epos.problem("unterminated %s: missing %s", openDelim, closeDelim))
			break
		}
		src := rest[i+len(openDelim) : i+j]
		lead := len(src) - len(strings.TrimLeft(src, " \t"))
		e, err := compileExpr(src, epos.shift(s[offset+i:], len(openDelim)+lead))
		if err != nil {
			probs = append(probs, epos.problem("%s", err))
		} else {
			t.parts = append(t.parts, templatePart{expr: e})
		}
		rest = rest[i+j+len(closeDelim):]
		offset += i + j + len(closeDelim)
	}
	return t, probs
}

// exprs returns the template's expressions.
func (t *Template) exprs() []*Expr {
	var out []*Expr
	for _, p := range t.parts {
		if p.expr != nil {
			out = append(out, p.expr)
		}
	}
	return out
}

// Whole reports whether the template is a single expression.
func (t *Template) Whole() bool {
	return len(t.parts) == 1 && t.parts[0].expr != nil
}

// Eval renders the template.
func (t *Template) Eval(env map[string]any) (any, error) {
	if t.Whole() {
		return t.parts[0].expr.Eval(env)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.expr.Eval(env)
		if err != nil {
			return nil, err
		}
		switch s := v.(type) {
		case string:
			b.WriteString(s)
		case nil:
		default:
			b.WriteString(formatValue(v))
		}
	}
	return b.String(), nil
}
