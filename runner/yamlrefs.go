package runner

import (
	"gopkg.in/yaml.v3"
)

// maxExpandedNodes bounds what aliases may expand to: a few anchors that
// refer to each other ("billion laughs") would otherwise make every later
// walk of the document exponential.
const maxExpandedNodes = 1_000_000

// resolveRefs makes anchors and merge keys work wherever users put them:
// every alias (`with: *common`) is replaced by the node it names, and every
// merge key (`<<: *defaults`, or a list of them) is replaced by the keys of
// the mappings it names that the mapping does not set itself. The loader
// then sees plain mappings and lists. It reports an alias that contains
// itself and a document that aliases expand beyond maxExpandedNodes.
func (l *loader) resolveRefs(doc *yaml.Node) bool {
	r := &refResolver{l: l, state: map[*yaml.Node]int{}, size: map[*yaml.Node]int{}}
	r.resolve(doc)
	if r.failed {
		return false
	}
	if n := r.expanded(doc); n > maxExpandedNodes {
		l.errAt(doc, "anchors and aliases expand to more than %d nodes", maxExpandedNodes)
		return false
	}
	return true
}

type refResolver struct {
	l      *loader
	state  map[*yaml.Node]int // 1: being resolved, 2: done
	size   map[*yaml.Node]int
	failed bool
}

func (r *refResolver) target(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func (r *refResolver) resolve(n *yaml.Node) {
	if n == nil || r.failed {
		return
	}
	switch r.state[n] {
	case 1:
		r.l.errAt(n, "an anchor's value refers to itself")
		r.failed = true
		return
	case 2:
		return
	}
	r.state[n] = 1
	for i, c := range n.Content {
		if t := r.target(c); t != c {
			n.Content[i] = t
		}
		r.resolve(n.Content[i])
	}
	if n.Kind == yaml.MappingNode {
		r.merge(n)
	}
	r.state[n] = 2
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && (k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0))
}

// merge replaces n's merge keys by the keys they bring (already resolved).
func (r *refResolver) merge(n *yaml.Node) {
	has := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		if isMergeKey(n.Content[i]) {
			has = true
			break
		}
	}
	if !has {
		return
	}
	own := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !isMergeKey(n.Content[i]) {
			own[n.Content[i].Value] = true
		}
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !isMergeKey(k) {
			out = append(out, k, v)
			continue
		}
		sources := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			sources = v.Content
		}
		for _, src := range sources {
			if src.Kind != yaml.MappingNode {
				r.l.errAt(src, "<<: expected a mapping (or a list of them) to merge, got %s", kindName(src))
				continue
			}
			for j := 0; j+1 < len(src.Content); j += 2 {
				if sk := src.Content[j]; !own[sk.Value] {
					own[sk.Value] = true // an earlier source wins
					out = append(out, sk, src.Content[j+1])
				}
			}
		}
	}
	n.Content = out
}

// expanded counts the nodes of n as a walk that follows shared nodes sees
// them.
func (r *refResolver) expanded(n *yaml.Node) int {
	if s, ok := r.size[n]; ok {
		return s
	}
	s := 1
	for _, c := range n.Content {
		s += r.expanded(c)
		if s > maxExpandedNodes {
			break
		}
	}
	r.size[n] = s
	return s
}

// dropExtensions removes the top-level keys starting with "x-": they hold
// anchors for the rest of the file (as in Docker Compose) and mean nothing
// to opsdrill.
func dropExtensions(root *yaml.Node) {
	out := root.Content[:0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode && len(k.Value) > 2 && k.Value[:2] == "x-" {
			continue
		}
		out = append(out, root.Content[i], root.Content[i+1])
	}
	root.Content = out
}
