package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/reports"
	"github.com/opsdrill/opsdrill/steps"
)

// Scenario is a loaded, checked scenario file.
type Scenario struct {
	File        string
	Dir         string
	SHA256      string
	Name        string
	Description string
	Tags        []string
	// Controls are what the drill evidences, for auditors: free strings
	// such as ISO27001:A.5.30, SOC2:CC7.5, PCI-DSS:11.4.
	Controls []string
	Timeout  time.Duration
	Vars     map[string]any
	Secrets  map[string]SecretSource
	// SteadyState runs before Steps (a failure there: the scenario is
	// not_started) and again after them (a failure: deviated).
	SteadyState []*Step
	Steps       []*Step
	Cleanup     []*Step
}

// SecretSource says where a secret's value comes from.
type SecretSource struct {
	Env  string
	File string
	// Optional secrets may be absent: they read as "" (e.g. AWS keys when
	// the SDK's own credential chain is used instead).
	Optional bool
	Pos      Pos
}

// Step is one checked step of a scenario.
type Step struct {
	ID              string
	Uses            string
	Spec            steps.Spec
	Pos             Pos
	With            *yaml.Node
	Expect          []*Expr
	If              *Expr
	Timeout         time.Duration
	Retry           Retry
	Background      bool
	ContinueOnError bool
	Phase           string
	// File is the step file of `uses: ./path.yaml`; nil for a Go step.
	File *StepFile
	// ForEach runs the step once per item; Parallel is how many at once.
	ForEach  *ForEach
	Parallel int
	// Finding is the scenario's own words for the step in the report's
	// findings ("SSH closed from the other client"), replacing its key
	// figures' words; {NAME} and {with.NAME} read its outputs and
	// parameters as in a figure's text.
	Finding string

	autoID   bool
	tmpls    map[*yaml.Node]*Template
	joins    []string // for Joiner steps with literal params; nil = all
	isJoiner bool
}

// Retry repeats a step that failed or errored.
type Retry struct {
	Attempts int
	Delay    time.Duration
	Backoff  float64
}

// idPattern: ids are names in expressions (steps.<id>.outputs), so they must
// be identifiers.
func validID(s string) bool { return isIdent(s) }

var scenarioKeys = []string{"name", "description", "tags", "controls", "timeout", "vars", "secrets", "steady_state", "steps", "cleanup"}
var stepKeys = []string{"id", "uses", "with", "expect", "if", "timeout", "retry", "background", "continue_on_error", "for_each", "parallel", "finding"}
var retryKeys = []string{"attempts", "delay", "backoff"}

// LoadOptions tune loading.
type LoadOptions struct {
	// ExtraVars are names known from vars files; references to them are
	// valid even when the scenario does not declare them.
	ExtraVars map[string]bool
}

// MaxFileSize bounds scenario and vars files. Real ones are a few KiB; a
// bigger file is a mistake (a log or a dump given by accident) and would
// cost hundreds of MB of memory to parse.
const MaxFileSize = 10 << 20

// LoadFile reads and checks one scenario file.
func LoadFile(path string, opts LoadOptions) (*Scenario, error) {
	data, err := readInput(path)
	if err != nil {
		return nil, Problems{{Pos: Pos{File: path, Line: 1, Column: 1}, Msg: err.Error()}}
	}
	if IsStepFile(path) {
		return nil, Problems{{Pos: Pos{File: path, Line: 1, Column: 1},
			Msg: "a step file (it declares inputs or outputs), not a scenario: use it from a scenario with uses: ./" + filepath.ToSlash(path) + "; `opsdrill steps " + path + "` documents it"}}
	}
	return Load(path, data, opts)
}

// readInput reads a scenario or vars file, refusing one over MaxFileSize
// before reading it.
func readInput(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() && info.Size() > MaxFileSize {
		return nil, fmt.Errorf("file is %d MiB, over the %d MiB limit for scenario and vars files", info.Size()>>20, MaxFileSize>>20)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file is over the %d MiB limit for scenario and vars files", MaxFileSize>>20)
	}
	return data, nil
}

// Load checks a scenario given as bytes; path is used in messages and to
// resolve relative files.
func Load(path string, data []byte, opts LoadOptions) (*Scenario, error) {
	l := &loader{file: path, opts: opts, files: map[string]*StepFile{}}
	if abs, err := filepath.Abs(path); err == nil {
		l.stack = []string{abs}
	}
	sc := l.load(data)
	if len(l.probs) > 0 {
		l.probs.Sort()
		return nil, l.probs
	}
	return sc, nil
}

type loader struct {
	file  string
	opts  LoadOptions
	probs Problems
	// files caches step files by absolute path (nil: broken, already
	// reported); stack is the chain of files being loaded, for recursion.
	files map[string]*StepFile
	stack []string
	// autoIDOffset is added to a step's position in its list for its
	// generated id, so ids of different lists never clash.
	autoIDOffset int
	// vars are the scenario's declared vars, whose types let `if:` and
	// `expect:` be checked for a boolean at load.
	declared map[string]any
}

func (l *loader) add(p Problem) { l.probs = append(l.probs, p) }

func (l *loader) errAt(n *yaml.Node, format string, args ...any) {
	l.add(nodePos(l.file, n).problem(format, args...))
}

func (l *loader) load(data []byte) *Scenario {
	sum := sha256.Sum256(data)
	abs, err := filepath.Abs(l.file)
	if err != nil {
		abs = l.file
	}
	sc := &Scenario{File: l.file, Dir: filepath.Dir(abs), SHA256: hex.EncodeToString(sum[:]),
		Vars: map[string]any{}, Secrets: map[string]SecretSource{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		l.probs = append(l.probs, yamlProblems(l.file, err)...)
		return nil
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		l.add(Pos{File: l.file, Line: 1, Column: 1}.problem("empty scenario: expected a mapping with name and steps"))
		return nil
	}
	if !l.resolveRefs(&doc) {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		l.errAt(root, "a scenario must be a mapping with name and steps, got %s", kindName(root))
		return nil
	}
	dropExtensions(root)
	var stepsNode, cleanupNode, steadyNode *yaml.Node
	l.mapping(root, scenarioKeys, "scenario", func(k, v *yaml.Node) {
		switch k.Value {
		case "name":
			sc.Name = l.str(v, "name")
		case "description":
			sc.Description = l.str(v, "description")
		case "tags":
			sc.Tags = l.strList(v, "tags")
		case "controls":
			sc.Controls = l.controls(v)
		case "timeout":
			sc.Timeout = l.duration(v, "timeout")
		case "vars":
			l.vars(v, sc)
		case "secrets":
			l.secrets(v, sc)
		case "steps":
			stepsNode = v
		case "cleanup":
			cleanupNode = v
		case "steady_state":
			steadyNode = v
		}
	})
	if sc.Name == "" {
		sc.Name = strings.TrimSuffix(filepath.Base(l.file), filepath.Ext(l.file))
	}
	if l.noSteps(root, stepsNode, "scenario") {
		return sc
	}
	// Generated ids (exec#3) number the steps across the scenario:
	// main steps first, then cleanup, then steady state, so no two clash.
	l.declared = sc.Vars
	nMain, nCleanup := len(stepsNode.Content), 0
	if cleanupNode != nil {
		nCleanup = len(cleanupNode.Content)
	}
	if steadyNode != nil {
		l.autoIDOffset = nMain + nCleanup
		sc.SteadyState = l.stepList(steadyNode, phaseSteady)
	}
	l.autoIDOffset = 0
	sc.Steps = l.stepList(stepsNode, reportsPhaseMain)
	if cleanupNode != nil {
		l.autoIDOffset = nMain
		sc.Cleanup = l.stepList(cleanupNode, reportsPhaseCleanup)
	}
	l.autoIDOffset = 0
	l.checkIDs(sc.SteadyState, sc.Steps, sc.Cleanup)
	l.checkRefs(&refUnit{vars: sc.Vars, secrets: sc.Secrets}, sc.SteadyState, sc.Steps, sc.Cleanup)
	return sc
}

const (
	reportsPhaseMain    = "main"
	reportsPhaseCleanup = "cleanup"
	// phaseSteady marks steady_state steps while loading; they are
	// reported in the steady_state_before and steady_state_after phases.
	phaseSteady = "steady_state"
)

// mapping walks a mapping node, rejecting unknown and repeated keys.
func (l *loader) mapping(n *yaml.Node, known []string, what string, fn func(k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(known, k.Value) {
			l.errAt(k, "%s: unknown field %q%s", what, k.Value, suggest(k.Value, known))
			continue
		}
		if seen[k.Value] {
			l.errAt(k, "%s: field %q given twice", what, k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k, v)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func (l *loader) str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errAt(n, "%s: expected a string, got %s", field, kindName(n))
		return ""
	}
	return n.Value
}

func (l *loader) strList(n *yaml.Node, field string) []string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "%s: expected a list of strings, got %s", field, kindName(n))
		return nil
	}
	var out []string
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			l.errAt(c, "%s: expected a string, got %s", field, kindName(c))
			continue
		}
		out = append(out, c.Value)
	}
	return out
}

// controls reads `controls:`: a list of distinct, non-empty strings.
func (l *loader) controls(n *yaml.Node) []string {
	if n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "controls: expected a list of strings such as [ISO27001:A.5.30, SOC2:CC7.5], got %s", kindName(n))
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i, c := range n.Content {
		switch {
		case c.Kind != yaml.ScalarNode:
			l.errAt(c, "controls[%d]: expected a string, got %s", i, kindName(c))
		case c.Tag != "!!str":
			l.errAt(c, "controls[%d]: expected a string, got the %s %s; quote it: %q", i, strings.TrimPrefix(c.Tag, "!!"), c.Value, c.Value)
		case strings.TrimSpace(c.Value) == "":
			l.errAt(c, "controls[%d]: empty control; name it, e.g. ISO27001:A.5.30", i)
		case seen[strings.TrimSpace(c.Value)] > 0:
			l.errAt(c, "controls[%d]: %q is listed twice (first at line %d)", i, c.Value, seen[strings.TrimSpace(c.Value)])
		default:
			v := strings.TrimSpace(c.Value)
			seen[v] = c.Line
			out = append(out, v)
		}
	}
	return out
}

func (l *loader) duration(n *yaml.Node, field string) time.Duration {
	if n.Kind != yaml.ScalarNode {
		l.errAt(n, "%s: expected a duration such as 30s or 5m, got %s", field, kindName(n))
		return 0
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil || d <= 0 {
		l.errAt(n, "%s: expected a positive duration such as 30s or 5m, got %q", field, n.Value)
		return 0
	}
	return d
}

func (l *loader) boolean(n *yaml.Node, field string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		l.errAt(n, "%s: expected true or false, got %s", field, kindName(n))
	}
	return b
}

// identHint follows "%q is not a valid name" where the rule is worth spelling out.
const identHint = " (letters, digits and _; not starting with a digit)"

// namedMapping walks a mapping of names to definitions (vars:, secrets:,
// inputs:, outputs:). Null is an empty mapping; another kind is reported as
// "field: expected <expected>", a key that is not a valid name as
// "field: %q is not a valid name<hint>". each gets the other entries in order.
func (l *loader) namedMapping(n *yaml.Node, field, expected, hint string, each func(k, v *yaml.Node)) {
	if n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.errAt(n, "%s: expected %s, got %s", field, expected, kindName(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !isIdent(k.Value) {
			l.errAt(k, "%s: %q is not a valid name%s", field, k.Value, hint)
			continue
		}
		each(k, v)
	}
}

func (l *loader) vars(n *yaml.Node, sc *Scenario) {
	l.namedMapping(n, "vars", "a mapping of names to values", identHint, func(k, v *yaml.Node) {
		if containsTemplate(v) {
			l.errAt(v, "vars.%s: vars are plain values; ${{ }} is not evaluated here", k.Value)
			return
		}
		var val any
		if err := v.Decode(&val); err != nil {
			l.errAt(v, "vars.%s: %s", k.Value, cleanDecodeError(err, nil))
			return
		}
		sc.Vars[k.Value] = val
	})
}

func (l *loader) secrets(n *yaml.Node, sc *Scenario) {
	l.namedMapping(n, "secrets", "a mapping of names to {env: NAME} or {file: PATH}", "", func(k, v *yaml.Node) {
		src := SecretSource{Pos: nodePos(l.file, v)}
		if v.Kind != yaml.MappingNode {
			l.errAt(v, "secrets.%s: expected {env: NAME} or {file: PATH}; secret values never go in a scenario", k.Value)
			return
		}
		l.mapping(v, []string{"env", "file", "optional"}, "secrets."+k.Value, func(kk, vv *yaml.Node) {
			switch kk.Value {
			case "optional":
				src.Optional = l.boolean(vv, "secrets."+k.Value+".optional")
			case "env":
				src.Env = l.str(vv, "secrets."+k.Value+".env")
			case "file":
				src.File = l.str(vv, "secrets."+k.Value+".file")
				if src.File != "" && !filepath.IsAbs(src.File) {
					src.File = filepath.Join(sc.Dir, src.File)
				}
			}
		})
		if (src.Env == "") == (src.File == "") {
			l.errAt(v, "secrets.%s: give exactly one of env or file", k.Value)
			return
		}
		sc.Secrets[k.Value] = src
	})
}

// noSteps reports, as "empty <what>: no steps" at the steps: value or at
// root when there is none, a file whose steps: is missing, null or empty.
func (l *loader) noSteps(root, stepsNode *yaml.Node, what string) bool {
	if stepsNode != nil && stepsNode.Tag != "!!null" && (stepsNode.Kind != yaml.SequenceNode || len(stepsNode.Content) > 0) {
		return false
	}
	at := root
	if stepsNode != nil {
		at = stepsNode
	}
	l.errAt(at, "empty %s: no steps", what)
	return true
}

func (l *loader) stepList(n *yaml.Node, phase string) []*Step {
	if n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "%s: expected a list of steps, got %s", phaseField(phase), kindName(n))
		return nil
	}
	var out []*Step
	for i, c := range n.Content {
		if st := l.step(c, phase, i); st != nil {
			out = append(out, st)
		}
	}
	return out
}

func phaseField(phase string) string {
	switch phase {
	case reportsPhaseCleanup:
		return "cleanup"
	case phaseSteady:
		return "steady_state"
	}
	return "steps"
}

func (l *loader) step(n *yaml.Node, phase string, index int) *Step {
	where := fmt.Sprintf("%s[%d]", phaseField(phase), index)
	if n.Kind != yaml.MappingNode {
		l.errAt(n, "%s: expected a step mapping with uses:, got %s", where, kindName(n))
		return nil
	}
	st := &Step{Pos: nodePos(l.file, n), Phase: phase, Retry: Retry{Attempts: 1, Delay: time.Second, Backoff: 1}}
	var withNode *yaml.Node
	var expectNode, ifNode, forEachNode, parallelNode, findingNode *yaml.Node
	l.mapping(n, stepKeys, where, func(k, v *yaml.Node) {
		switch k.Value {
		case "id":
			st.ID = l.str(v, where+".id")
			if st.ID != "" && !validID(st.ID) {
				l.errAt(v, "%s.id: %q is not a valid id: use letters, digits and _ (it is a name in expressions: steps.%s.outputs)", where, st.ID, strings.ReplaceAll(st.ID, "-", "_"))
			}
		case "uses":
			st.Uses = l.str(v, where+".uses")
			if isFileRef(st.Uses) {
				st.File = l.stepFile(v, st.Uses, where)
			} else if st.Uses != "" {
				spec, ok := steps.Lookup(st.Uses)
				if !ok {
					names := make([]string, 0)
					for _, s := range steps.All() {
						names = append(names, s.Name)
					}
					l.errAt(v, "%s.uses: unknown step %q%s; `opsdrill steps` lists them", where, st.Uses, suggest(st.Uses, names))
				}
				st.Spec = spec
			}
		case "with":
			withNode = v
		case "expect":
			expectNode = v
		case "if":
			ifNode = v
		case "timeout":
			st.Timeout = l.duration(v, where+".timeout")
		case "retry":
			l.retry(v, where, &st.Retry)
		case "background":
			st.Background = l.boolean(v, where+".background")
		case "continue_on_error":
			st.ContinueOnError = l.boolean(v, where+".continue_on_error")
		case "for_each":
			forEachNode = v
		case "parallel":
			parallelNode = v
		case "finding":
			st.Finding = l.str(v, where+".finding")
			findingNode = v
		}
	})
	if st.Uses == "" {
		l.errAt(n, "%s: missing uses: (the step type, e.g. uses: exec)", where)
		return nil
	}
	if findingNode != nil && st.Spec.New != nil && !st.Spec.DynamicOutputs {
		for _, name := range reports.FigureOutputs(st.Finding) {
			if _, ok := st.Spec.Output(name); !ok {
				l.errAt(findingNode, "%s.finding: %s has no output %q%s", where, st.Uses, name, suggest(name, outputNames(st.Spec)))
			}
		}
	}
	if findingNode != nil && st.File != nil {
		for _, name := range reports.FigureOutputs(st.Finding) {
			if msg := outputProblem(st, name, st.Uses); msg != "" {
				l.errAt(findingNode, "%s.finding: %s", where, msg)
			}
		}
	}
	if st.ID == "" {
		st.ID = fmt.Sprintf("%s#%d", st.Uses, index+1+l.autoIDOffset)
		st.autoID = true
	}
	if st.Background && phase == reportsPhaseCleanup {
		l.errAt(n, "%s: cleanup steps cannot run in the background", where)
	}
	if st.Background && phase == phaseSteady {
		l.errAt(n, "%s: steady_state steps cannot run in the background: they are the check before and after the drill", where)
	}
	l.forEach(st, forEachNode, parallelNode, where)
	if ifNode != nil {
		st.If = l.exprField(ifNode, where+".if")
		l.checkBoolean(st.If, ifNode, where+".if")
	}
	if expectNode != nil {
		var items []*yaml.Node
		switch expectNode.Kind {
		case yaml.ScalarNode:
			items = []*yaml.Node{expectNode}
		case yaml.SequenceNode:
			items = expectNode.Content
		default:
			l.errAt(expectNode, "%s.expect: expected an expression or a list of expressions", where)
		}
		for _, it := range items {
			if e := l.exprField(it, where+".expect"); e != nil {
				l.checkBoolean(e, it, where+".expect")
				st.Expect = append(st.Expect, e)
			}
		}
	}
	if st.File != nil {
		st.With = withNode
		st.tmpls = map[*yaml.Node]*Template{}
		l.checkInputs(st, n, withNode, where)
		return st
	}
	if st.Spec.New == nil {
		return st
	}
	st.With = withNode
	st.tmpls = map[*yaml.Node]*Template{}
	ptype := reflect.TypeOf(st.Spec.New())
	_, st.isJoiner = st.Spec.New().(steps.Joiner)
	if withNode != nil {
		if withNode.Kind != yaml.MappingNode && withNode.Tag != "!!null" {
			l.errAt(withNode, "%s.with: expected a mapping of parameters, got %s", where, kindName(withNode))
			return st
		}
		l.templates(withNode, where+".with", st.tmpls)
		before := len(l.probs)
		for _, p := range checkParams(l.file, withNode, ptype, where+".with") {
			l.add(p)
		}
		if len(l.probs) > before {
			return st
		}
	} else {
		probs := checkParams(l.file, &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}, ptype, where+".with")
		for _, p := range probs {
			l.add(p)
		}
		if len(probs) > 0 {
			return st
		}
	}
	if !containsTemplate(withNode) {
		decoded, err := decodeStep(st.Spec, withNode)
		if err != nil {
			at := n
			if withNode != nil {
				at = withNode
			}
			l.errAt(at, "%s.%s", where, err)
			return st
		}
		if j, ok := decoded.(steps.Joiner); ok {
			st.joins = j.JoinIDs()
			if st.ForEach != nil {
				l.errAt(n, "%s: a step that waits for background steps cannot have for_each", where)
			}
			if st.Background {
				// Its join would run beside its list's, which records
				// into the same steps map.
				l.errAt(n, "%s: a step that waits for background steps cannot run in the background itself", where)
			}
		}
	} else if st.isJoiner {
		l.errAt(withNode, "%s.with: a step that waits for background steps must name them literally", where)
	}
	return st
}

func (l *loader) retry(n *yaml.Node, where string, r *Retry) {
	if n.Kind != yaml.MappingNode {
		l.errAt(n, "%s.retry: expected {attempts: N, delay: 1s, backoff: 2}", where)
		return
	}
	l.mapping(n, retryKeys, where+".retry", func(k, v *yaml.Node) {
		switch k.Value {
		case "attempts":
			if v.Decode(&r.Attempts) != nil || r.Attempts < 1 {
				l.errAt(v, "%s.retry.attempts: expected a whole number of at least 1, got %s", where, kindName(v))
			}
		case "delay":
			if d := l.duration(v, where+".retry.delay"); d > 0 {
				r.Delay = d
			}
		case "backoff":
			if v.Decode(&r.Backoff) != nil || r.Backoff < 1 {
				l.errAt(v, "%s.retry.backoff: expected a multiplier of at least 1 (1 = fixed delay, 2 = doubling), got %s", where, kindName(v))
			}
		}
	})
}

// exprField compiles an `if:` or `expect:` entry: a bare expression, or one
// wrapped in ${{ }}.
func (l *loader) exprField(n *yaml.Node, where string) *Expr {
	if n.Kind != yaml.ScalarNode {
		l.errAt(n, "%s: expected an expression, got %s", where, kindName(n))
		return nil
	}
	src := n.Value
	pos := nodePos(l.file, n)
	if hasTemplate(src) {
		t, probs := parseTemplate(src, pos)
		if len(probs) > 0 {
			l.probs = append(l.probs, probs...)
			return nil
		}
		if !t.Whole() {
			l.errAt(n, "%s: expected one expression, got text around ${{ }}", where)
			return nil
		}
		return t.parts[0].expr
	}
	e, err := compileExpr(src, pos)
	if err != nil {
		l.errAt(n, "%s: %s", where, err)
		return nil
	}
	return e
}

// checkBoolean reports an `if:` or `expect:` expression whose value is
// known at load not to be true or false: a literal, a function of known
// type (len(...)), or a declared var that no vars file may change. Others
// are checked when they run (the step errors).
func (l *loader) checkBoolean(e *Expr, n *yaml.Node, where string) {
	if e == nil {
		return
	}
	if _, err := expr.Compile(e.Src, expr.AsBool()); err != nil && strings.Contains(err.Error(), "expected bool") {
		l.errAt(n, "%s: %s gives %s, not true or false", where, e.Src, strings.TrimPrefix(firstLine(err.Error()), "expected bool, but got "))
		return
	}
	name, ok := strings.CutPrefix(e.Src, "vars.")
	if !ok || !isIdent(name) || l.opts.ExtraVars[name] {
		return
	}
	if v, declared := l.declared[name]; declared {
		if _, isBool := v.(bool); !isBool && v != nil {
			l.errAt(n, "%s: vars.%s is %s, not true or false (compare it: vars.%s > 0, vars.%s != \"\")", where, name, formatValue(v), name, name)
		}
	}
}

// templates compiles every ${{ }} below n.
func (l *loader) templates(n *yaml.Node, where string, out map[*yaml.Node]*Template) {
	if n.Kind == yaml.ScalarNode {
		if hasTemplate(n.Value) {
			t, probs := parseTemplate(n.Value, nodePos(l.file, n))
			l.probs = append(l.probs, probs...)
			if len(probs) == 0 {
				out[n] = t
			}
		}
		return
	}
	for _, c := range n.Content {
		l.templates(c, where, out)
	}
}

func (l *loader) checkIDs(lists ...[]*Step) {
	seen := map[string]*Step{}
	for _, list := range lists {
		for _, st := range list {
			prev, dup := seen[st.ID]
			if dup && st.autoID {
				// uses#N numbers steps within their list; another list
				// (cleanup, steady_state) may have used the name.
				for n := 2; dup; n++ {
					_, dup = seen[fmt.Sprintf("%s-%d", st.ID, n)]
					if !dup {
						st.ID = fmt.Sprintf("%s-%d", st.ID, n)
					}
				}
			} else if dup {
				l.add(st.Pos.problem("duplicate step id %q (first used at line %d)", st.ID, prev.Pos.Line))
				continue
			}
			seen[st.ID] = st
		}
	}
}

// refUnit is what the expressions of one file may read: a scenario's vars
// and secrets, or a step file's inputs.
type refUnit struct {
	vars     map[string]any
	secrets  map[string]SecretSource
	inputs   map[string]Input
	stepFile bool
}

// checkRefs checks every name read by an expression: vars and secrets must
// be declared, steps.<id>.outputs.<name> must be an earlier step's declared
// output, and a background step's outputs are readable only after a step
// that waits for it. Steady-state steps run first, so main and cleanup
// steps may read them; they read only each other.
func (l *loader) checkRefs(u *refUnit, steady, main, cleanup []*Step) {
	index := map[string]int{}
	byID := map[string]*Step{}
	ordered := append(append([]*Step(nil), steady...), main...)
	for i, st := range ordered {
		index[st.ID] = i
		byID[st.ID] = st
	}
	for _, st := range cleanup {
		byID[st.ID] = st
	}
	rc := &refCheck{l: l, u: u, index: index, byID: byID, joined: map[string]bool{}}
	var started []string
	for i, st := range ordered {
		rc.step(st, i)
		if st.isJoiner {
			ids := st.joins
			if len(ids) == 0 {
				ids = started
			}
			for _, id := range ids {
				target, ok := byID[id]
				if !ok || index[id] >= i || target.Phase != reportsPhaseMain {
					l.add(st.Pos.problem("%s waits for %q, which is not an earlier step", st.ID, id))
					continue
				}
				if !target.Background {
					l.add(st.Pos.problem("%s waits for %q, which is not a background step", st.ID, id))
				}
				rc.joined[id] = true
			}
		}
		if st.Background {
			started = append(started, st.ID)
		}
	}
	// Every background step is joined before cleanup runs.
	for _, id := range started {
		rc.joined[id] = true
	}
	for _, st := range cleanup {
		rc.step(st, len(ordered))
	}
}

// refCheck checks the names in one file's expressions.
type refCheck struct {
	l      *loader
	u      *refUnit
	index  map[string]int
	byID   map[string]*Step
	joined map[string]bool
}

func (rc *refCheck) step(st *Step, pos int) {
	check := func(e *Expr, inExpect, inForEach bool) {
		for _, n := range e.names {
			if msg := rc.problem(n, st, pos, inExpect, inForEach); msg != "" {
				rc.l.add(e.Pos.shift(e.Src, n.offset).problem("%s", msg))
			}
		}
	}
	if fe := st.ForEach; fe != nil {
		for _, e := range fe.exprs() {
			check(e, false, true)
		}
	}
	if st.If != nil {
		check(st.If, false, false)
	}
	for _, t := range st.tmpls {
		for _, e := range t.exprs() {
			check(e, false, false)
		}
	}
	for _, e := range st.Expect {
		check(e, true, false)
	}
}

// checkExpr checks an expression evaluated after every step of the file
// (a step file's outputs).
func (rc *refCheck) checkExpr(e *Expr, pos int) {
	probe := &Step{Phase: reportsPhaseMain}
	for _, n := range e.names {
		if msg := rc.problem(n, probe, pos, false, false); msg != "" {
			rc.l.add(e.Pos.shift(e.Src, n.offset).problem("%s", msg))
		}
	}
}

var scopeRoots = []string{"vars", "secrets", "steps", "env", "scenario", "outputs", "each"}
var stepFileRoots = []string{"inputs", "steps", "env", "scenario", "outputs", "each"}
var scenarioFields = []string{"name", "file", "dir", "report_dir", "run_id", "tags"}
var stepFields = []string{"outputs", "status", "error", "duration_ms", "each"}

func (rc *refCheck) problem(n nameRef, st *Step, pos int, inExpect, inForEach bool) string {
	u := rc.u
	switch n.root {
	case "vars", "secrets":
		if u.stepFile {
			return fmt.Sprintf("a step file cannot read the scenario's %s: declare an input (inputs:) and pass the value in with:", n.root)
		}
		if n.root == "secrets" {
			if len(n.path) == 0 {
				return "secrets can only be read one by one (secrets.NAME)"
			}
			if _, ok := u.secrets[n.path[0]]; !ok {
				return fmt.Sprintf("undefined secret %q: declare it under secrets:%s", n.path[0], suggest(n.path[0], sortedKeys(u.secrets)))
			}
			return ""
		}
		if len(n.path) == 0 {
			return ""
		}
		if _, ok := u.vars[n.path[0]]; !ok && !rc.l.opts.ExtraVars[n.path[0]] {
			return fmt.Sprintf("undefined var %q: declare it under vars:%s", n.path[0], suggest(n.path[0], sortedKeys(u.vars)))
		}
	case "inputs":
		if !u.stepFile {
			return "inputs are read in step files (uses: ./file.yaml); a scenario reads vars"
		}
		if len(n.path) == 0 {
			return ""
		}
		if _, ok := u.inputs[n.path[0]]; !ok {
			return fmt.Sprintf("undefined input %q: declare it under inputs:%s", n.path[0], suggest(n.path[0], sortedKeys(u.inputs)))
		}
	case "each":
		if st.ForEach == nil || inForEach {
			return "each (the current item) is defined only in a step with for_each"
		}
		if len(n.path) > 0 && n.path[0] != "key" && n.path[0] != "value" {
			return fmt.Sprintf("each has no field %q: use each.key or each.value", n.path[0])
		}
	case "env":
	case "scenario":
		if len(n.path) > 0 && !contains(scenarioFields, n.path[0]) {
			return fmt.Sprintf("scenario has no field %q%s", n.path[0], suggest(n.path[0], scenarioFields))
		}
	case "outputs":
		if !inExpect {
			return "outputs (the step's own outputs) can only be read in expect:; use steps.<id>.outputs"
		}
		if len(n.path) > 0 {
			return outputProblem(st, n.path[0], st.Uses)
		}
	case "steps":
		return rc.stepRef(n, st, pos)
	default:
		roots := scopeRoots
		if u.stepFile {
			roots = stepFileRoots
		}
		return fmt.Sprintf("unknown name %q: expressions read %s", n.root, strings.Join(roots, ", "))
	}
	return ""
}

func (rc *refCheck) stepRef(n nameRef, st *Step, pos int) string {
	if len(n.path) == 0 {
		return ""
	}
	id := n.path[0]
	target, ok := rc.byID[id]
	if !ok {
		return fmt.Sprintf("undefined step %q%s", id, suggest(id, sortedKeys(rc.byID)))
	}
	if target == st {
		return fmt.Sprintf("step %q cannot read its own results here; use outputs.NAME in expect:", id)
	}
	if target.Phase == reportsPhaseCleanup {
		return fmt.Sprintf("step %q is a cleanup step; its results cannot be read", id)
	}
	if st.Phase != reportsPhaseCleanup && rc.index[id] >= pos {
		return fmt.Sprintf("step %q runs later; its results are not known yet", id)
	}
	if target.Background && !rc.joined[id] {
		return fmt.Sprintf("step %q runs in the background; add a wait step (uses: wait, with: {for: [%s]}) before reading its results", id, id)
	}
	if len(n.path) < 2 {
		return ""
	}
	field := n.path[1]
	if !contains(stepFields, field) {
		return fmt.Sprintf("steps.%s has no field %q%s", id, field, suggest(field, stepFields))
	}
	switch {
	case field == "outputs" && target.ForEach != nil:
		return fmt.Sprintf("steps.%s runs for_each: read its iterations' outputs as steps.%s.each[KEY].NAME", id, id)
	case field == "each" && target.ForEach == nil:
		return fmt.Sprintf("steps.%s has no for_each: read steps.%s.outputs", id, id)
	case field == "outputs" && len(n.path) > 2:
		return outputProblem(target, n.path[2], id+" ("+target.Uses+")")
	case field == "each" && len(n.path) > 2:
		if msg := target.ForEach.keyProblem(id, n.path[2]); msg != "" {
			return msg
		}
		if len(n.path) > 3 {
			return outputProblem(target, n.path[3], id+" ("+target.Uses+")")
		}
	}
	return ""
}

// outputProblem checks that step st declares output name.
func outputProblem(st *Step, name, what string) string {
	if st.File != nil {
		if st.File.output(name) == nil {
			return fmt.Sprintf("%s has no output %q%s", what, name, suggest(name, st.File.outputNames()))
		}
		return ""
	}
	if st.Spec.New == nil || st.Spec.DynamicOutputs {
		return ""
	}
	if _, ok := st.Spec.Output(name); !ok {
		return fmt.Sprintf("%s has no output %q%s", what, name, suggest(name, outputNames(st.Spec)))
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func outputNames(s steps.Spec) []string {
	out := make([]string, len(s.Outputs))
	for i, o := range s.Outputs {
		out[i] = o.Name
	}
	sort.Strings(out)
	return out
}
