package report

import (
	"fmt"
	"slices"
	"strings"

	"github.com/netward/netward/analysis"
)

// Direction narrows a focused matrix to the connections into or out of the focus.
type Direction string

// Directions.
const (
	Both    Direction = ""
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// ParseDirection accepts ingress, egress, or both ("" too).
func ParseDirection(s string) (Direction, error) {
	switch strings.ToLower(s) {
	case "", "both":
		return Both, nil
	case "ingress", "in":
		return Ingress, nil
	case "egress", "out":
		return Egress, nil
	}
	return "", fmt.Errorf("%q: want ingress, egress or both", s)
}

// FocusGroups returns the groups a focus names: "ns/workload" (every identity of the
// workload), "ns/pod" (the workload of that pod), a group id ("pod:ns/workload",
// "cidr:198.51.100.0/24", "world", "host", "remote-node") or a CIDR prefix. It is an
// error when nothing matches.
func FocusGroups(groups []*analysis.Group, focus string) ([]*analysis.Group, error) {
	if focus == "" {
		return nil, fmt.Errorf("empty focus: want ns/workload")
	}
	match := func(pred func(*analysis.Group) bool) []*analysis.Group {
		var out []*analysis.Group
		for _, g := range groups {
			if pred(g) {
				out = append(out, g)
			}
		}
		return out
	}
	steps := []func(*analysis.Group) bool{
		func(g *analysis.Group) bool { return g.ID == focus || g.Label() == focus },
		func(g *analysis.Group) bool {
			return g.Kind == analysis.GroupWorkload && (g.ID == "pod:"+focus || strings.HasPrefix(g.ID, "pod:"+focus+"#"))
		},
		func(g *analysis.Group) bool {
			return g.Kind == analysis.GroupWorkload && slices.ContainsFunc(g.Pods, func(p string) bool { return g.Namespace+"/"+p == focus })
		},
	}
	for _, pred := range steps {
		if out := match(pred); len(out) > 0 {
			return out, nil
		}
	}
	var names []string
	for _, g := range groups {
		if g.Kind == analysis.GroupWorkload && !slices.Contains(names, g.Namespace+"/"+baseName(g)) {
			names = append(names, g.Namespace+"/"+baseName(g))
		}
	}
	hint := strings.Join(names, ", ")
	if len(names) > 8 {
		hint = strings.Join(names[:8], ", ") + fmt.Sprintf(", … (%d workloads)", len(names))
	}
	if hint == "" {
		hint = "none"
	}
	return nil, fmt.Errorf("%q: no such workload (want ns/workload; workloads: %s)", focus, hint)
}

// baseName is a workload's name without the identity suffix of a split workload.
func baseName(g *analysis.Group) string {
	if i := strings.Index(g.Name, " (identity "); i >= 0 {
		return g.Name[:i]
	}
	return g.Name
}

// Focus keeps the connections from or to the groups focus names (see FocusGroups); with
// Ingress only those into them, with Egress only those out of them. The result keeps the
// focused groups and their peers, in matrix order.
func Focus(m *analysis.Matrix, focus string, dir Direction) (*analysis.Matrix, error) {
	fs, err := FocusGroups(m.Groups, focus)
	if err != nil {
		return nil, err
	}
	in := func(g *analysis.Group) bool { return slices.Contains(fs, g) }
	keep := map[*analysis.Group]bool{}
	for _, g := range fs {
		keep[g] = true
	}
	out := &analysis.Matrix{}
	for _, c := range m.Connections {
		var ok bool
		switch dir {
		case Ingress:
			ok = in(c.To)
		case Egress:
			ok = in(c.From)
		default:
			ok = in(c.From) || in(c.To)
		}
		if ok {
			out.Connections = append(out.Connections, c)
			keep[c.From], keep[c.To] = true, true
		}
	}
	for _, g := range m.Groups {
		if keep[g] {
			out.Groups = append(out.Groups, g)
		}
	}
	return out, nil
}

// Port keeps the connections with a port range containing proto/port, and of those only
// the ranges that contain it. Groups are kept.
func Port(m *analysis.Matrix, proto uint8, port uint16) *analysis.Matrix {
	out := &analysis.Matrix{Groups: m.Groups}
	for _, c := range m.Connections {
		var ports []analysis.PortRange
		for _, r := range c.Ports {
			if r.Contains(proto, port) {
				ports = append(ports, r)
			}
		}
		if len(ports) > 0 {
			out.Connections = append(out.Connections, analysis.Connection{From: c.From, To: c.To, Ports: ports})
		}
	}
	return out
}
