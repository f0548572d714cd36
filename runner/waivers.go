package runner

import (
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opsdrill/opsdrill/reports"
)

var waiverKeys = []string{"scenario", "step", "justification", "expires"}

// LoadWaivers reads a waiver file:
//
//	waivers:
//	  - scenario: rds-multi-az-failover   # name, or a pattern such as "rds-*"
//	    step: verify                       # step id, or "*"
//	    justification: Replica lag fix scheduled (OPS-123)
//	    expires: 2026-12-31                # last day it holds, UTC
//
// Every field is required: a waiver without a reason or an end is refused.
func LoadWaivers(path string) ([]reports.Waiver, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{Pos: Pos{File: path, Line: 1, Column: 1}, Msg: err.Error()}}
	}
	l := &loader{file: path}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlProblems(path, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, Problems{{Pos: Pos{File: path, Line: 1, Column: 1}, Msg: "a waiver file is a mapping with a waivers: list"}}
	}
	var out []reports.Waiver
	l.mapping(doc.Content[0], []string{"waivers"}, "waiver file", func(k, v *yaml.Node) {
		if v.Kind != yaml.SequenceNode {
			l.errAt(v, "waivers: expected a list")
			return
		}
		for i, item := range v.Content {
			where := "waivers[" + strconv.Itoa(i) + "]"
			if item.Kind != yaml.MappingNode {
				l.errAt(item, "%s: expected a mapping with scenario, step, justification and expires", where)
				continue
			}
			var w reports.Waiver
			l.mapping(item, waiverKeys, where, func(k, v *yaml.Node) {
				s := l.str(v, where+"."+k.Value)
				switch k.Value {
				case "scenario":
					w.Scenario = s
				case "step":
					w.Step = s
				case "justification":
					w.Justification = strings.TrimSpace(s)
				case "expires":
					w.Expires = s
					if _, err := time.Parse("2006-01-02", s); s != "" && err != nil {
						l.errAt(v, "%s.expires: expected a date YYYY-MM-DD, got %q", where, s)
					}
				}
			})
			for _, f := range []struct{ name, val string }{
				{"scenario", w.Scenario}, {"step", w.Step}, {"justification", w.Justification}, {"expires", w.Expires},
			} {
				if f.val == "" {
					l.errAt(item, "%s: %s is required", where, f.name)
				}
			}
			out = append(out, w)
		}
	})
	if len(l.probs) > 0 {
		l.probs.Sort()
		return nil, l.probs
	}
	return out, nil
}
