package runner

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Pos is a place in a scenario or vars file.
type Pos struct {
	File   string
	Line   int
	Column int
	// single is set when the position is the start of a one-line scalar,
	// so offsets inside the value can be added to the column.
	single bool
	quoted bool
}

func nodePos(file string, n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: file, Line: 1, Column: 1}
	}
	p := Pos{File: file, Line: n.Line, Column: n.Column}
	if n.Kind == yaml.ScalarNode && !strings.Contains(n.Value, "\n") {
		p.single = n.Style == 0 || n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle
		p.quoted = n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle
	}
	return p
}

// shift moves the column to byte offset off of value s when the value sits
// on one line of the file.
func (p Pos) shift(s string, off int) Pos {
	if !p.single || off < 0 || off > len(s) || (off == 0 && !p.quoted) {
		return p
	}
	q := p
	q.Column += utf8.RuneCountInString(s[:off])
	if p.quoted {
		q.Column++
		q.quoted = false
	}
	return q
}

func (p Pos) String() string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

func (p Pos) problem(format string, args ...any) Problem {
	return Problem{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

// Problem is one thing wrong with the input.
type Problem struct {
	Pos Pos
	Msg string
}

func (p Problem) String() string { return p.Pos.String() + ": " + p.Msg }

// Problems is every problem found in the input; it is an error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Sort orders problems by file and position.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].Pos, ps[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlProblems turns a yaml.v3 error into positioned problems.
func yamlProblems(file string, err error) Problems {
	var out Problems
	if te, ok := err.(*yaml.TypeError); ok {
		for _, e := range te.Errors {
			out = append(out, lineProblem(file, e))
		}
		return out
	}
	return Problems{lineProblem(file, err.Error())}
}

func lineProblem(file, msg string) Problem {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLineRe.FindStringSubmatch("yaml: " + msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Problem{Pos: Pos{File: file, Line: n, Column: 1}, Msg: "invalid YAML: " + m[2]}
	}
	if strings.HasPrefix(msg, "line ") {
		var n int
		if _, err := fmt.Sscanf(msg, "line %d:", &n); err == nil {
			return Problem{Pos: Pos{File: file, Line: n, Column: 1}, Msg: strings.TrimSpace(msg[strings.Index(msg, ":")+1:])}
		}
	}
	return Problem{Pos: Pos{File: file, Line: 1, Column: 1}, Msg: "invalid YAML: " + msg}
}
