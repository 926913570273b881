package analysis

import (
	"context"
	"slices"
	"sort"

	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
)

// ChangeKind classifies a connection change.
type ChangeKind string

// Change kinds.
const (
	Added   ChangeKind = "added"
	Removed ChangeKind = "removed"
	Changed ChangeKind = "changed"
)

// PortChange is a port range whose treatment changed.
type PortChange struct {
	Range PortRange `json:"-"`
	// Was and Now describe the range before and after ("denied", "TCP 8080 [HTTP GET /a]").
	Was string `json:"was"`
	Now string `json:"now"`
	// Widening is true when the change lets more through (newly allowed, or fewer L7 limits).
	Widening bool `json:"widening"`
	// Rules are the rules that decide a representative flow of the range now (or, for a
	// removed range, the rules that decided it before and the reason it is denied now).
	Rules  []string `json:"rules,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// ConnectionChange is how the allowed traffic from one group to another changed.
type ConnectionChange struct {
	Kind    ChangeKind   `json:"kind"`
	From    string       `json:"from"`
	To      string       `json:"to"`
	Before  []string     `json:"before,omitempty"`
	After   []string     `json:"after,omitempty"`
	Changes []PortChange `json:"changes"`
}

// Diff is the difference between two sets of manifests.
type Diff struct {
	Changes  []ConnectionChange `json:"changes"`
	Widening bool               `json:"widening"`
}

// DiffClusters compares the allowed traffic of base and head. Groups are matched by their
// stable IDs (namespace/workload, CIDR, world, host, remote-node).
func DiffClusters(ctx context.Context, base, head *cluster.Cluster) (*Diff, error) {
	mb, err := BuildMatrix(ctx, base, MatrixOptions{})
	if err != nil {
		return nil, err
	}
	mh, err := BuildMatrix(ctx, head, MatrixOptions{})
	if err != nil {
		return nil, err
	}
	type pair struct{ from, to string }
	before := map[pair]Connection{}
	after := map[pair]Connection{}
	for _, c := range mb.Connections {
		before[pair{c.From.ID, c.To.ID}] = c
	}
	for _, c := range mh.Connections {
		after[pair{c.From.ID, c.To.ID}] = c
	}
	headGroups := map[string]*Group{}
	for _, g := range mh.Groups {
		headGroups[g.ID] = g
	}
	keys := map[pair]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	ordered := make([]pair, 0, len(keys))
	for k := range keys {
		ordered = append(ordered, k)
	}
	sort.Slice(ordered, func(i, j int) bool {
		if ordered[i].from != ordered[j].from {
			return ordered[i].from < ordered[j].from
		}
		return ordered[i].to < ordered[j].to
	})
	d := &Diff{Changes: []ConnectionChange{}}
	for _, k := range ordered {
		b, inB := before[k]
		h, inH := after[k]
		var bp, hp []PortRange
		if inB {
			bp = b.Ports
		}
		if inH {
			hp = h.Ports
		}
		if rangesEqual(bp, hp) {
			continue
		}
		cc := ConnectionChange{Kind: Changed, From: k.from, To: k.to, Before: rangeStrings(bp), After: rangeStrings(hp)}
		switch {
		case !inB:
			cc.Kind = Added
		case !inH:
			cc.Kind = Removed
		}
		from, to := groupLabel(b, h, true), groupLabel(b, h, false)
		if from != "" {
			cc.From, cc.To = from, to
		}
		cc.Changes = portChanges(bp, hp)
		// explain each changed range with a representative flow: in head when both groups
		// still exist (what allows it now, or why it is denied now), else in base
		hf, hto := headGroups[k.from], headGroups[k.to]
		for i := range cc.Changes {
			pc := &cc.Changes[i]
			if hf != nil && hto != nil {
				pc.Rules, pc.Reason = explain(head, Connection{From: hf, To: hto}, pc.Range)
			} else {
				pc.Rules, pc.Reason = explain(base, b, pc.Range)
			}
			if pc.Widening {
				d.Widening = true
			}
		}
		d.Changes = append(d.Changes, cc)
	}
	return d, nil
}

func groupLabel(b, h Connection, from bool) string {
	c := h
	if c.From == nil {
		c = b
	}
	if c.From == nil {
		return ""
	}
	if from {
		return c.From.Label()
	}
	return c.To.Label()
}

func rangeStrings(rs []PortRange) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

func rangesEqual(a, b []PortRange) bool {
	return slices.EqualFunc(a, b, func(x, y PortRange) bool {
		return x.Proto == y.Proto && x.Lo == y.Lo && x.Hi == y.Hi && x.Proxied == y.Proxied && x.Parser == y.Parser && slices.Equal(x.HTTP, y.HTTP)
	})
}

// portChanges cuts both range lists at every boundary and reports the pieces whose
// treatment differs.
func portChanges(before, after []PortRange) []PortChange {
	expand := func(rs []PortRange) []PortRange {
		var out []PortRange
		for _, r := range rs {
			if r.Proto == policy.ProtoAny {
				for _, p := range scannedProtos {
					lo, hi := uint16(1), uint16(65535)
					if p == policy.ProtoICMP {
						lo, hi = 0, 255
					}
					out = append(out, PortRange{Proto: p, Lo: lo, Hi: hi})
				}
				continue
			}
			out = append(out, r)
		}
		return out
	}
	before, after = expand(before), expand(after)
	var changes []PortChange
	for _, proto := range scannedProtos {
		cuts := []uint32{0, 65536}
		for _, rs := range [][]PortRange{before, after} {
			for _, r := range rs {
				if r.Proto == proto {
					cuts = append(cuts, uint32(r.Lo), uint32(r.Hi)+1)
				}
			}
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		find := func(rs []PortRange, port uint16) *PortRange {
			for i := range rs {
				if rs[i].Proto == proto && port >= rs[i].Lo && port <= rs[i].Hi {
					return &rs[i]
				}
			}
			return nil
		}
		var cur *PortChange
		for i := 0; i+1 < len(cuts); i++ {
			lo, hi := uint16(cuts[i]), uint16(cuts[i+1]-1)
			b, a := find(before, lo), find(after, lo)
			if b == nil && a == nil || (b != nil && a != nil && b.Proxied == a.Proxied && b.Parser == a.Parser && slices.Equal(b.HTTP, a.HTTP)) {
				cur = nil
				continue
			}
			was, now := describe(b, proto, lo, hi), describe(a, proto, lo, hi)
			if cur != nil && cur.Range.Hi+1 == lo && cur.Was == was && cur.Now == now {
				cur.Range.Hi = hi
				continue
			}
			r := PortRange{Proto: proto, Lo: lo, Hi: hi}
			if a != nil {
				r.Proxied, r.Parser, r.HTTP = a.Proxied, a.Parser, a.HTTP
			}
			changes = append(changes, PortChange{Range: r, Was: was, Now: now, Widening: widens(b, a)})
			cur = &changes[len(changes)-1]
		}
	}
	for i := range changes {
		changes[i].Was = describe(findOrNil(before, changes[i].Range), changes[i].Range.Proto, changes[i].Range.Lo, changes[i].Range.Hi)
		changes[i].Now = describe(findOrNil(after, changes[i].Range), changes[i].Range.Proto, changes[i].Range.Lo, changes[i].Range.Hi)
	}
	return changes
}

func findOrNil(rs []PortRange, r PortRange) *PortRange {
	for i := range rs {
		if rs[i].Proto == r.Proto && r.Lo >= rs[i].Lo && r.Lo <= rs[i].Hi {
			return &rs[i]
		}
	}
	return nil
}

func describe(r *PortRange, proto uint8, lo, hi uint16) string {
	p := PortRange{Proto: proto, Lo: lo, Hi: hi}
	if r == nil {
		return p.String() + " denied"
	}
	p.Proxied, p.Parser, p.HTTP = r.Proxied, r.Parser, r.HTTP
	return p.String()
}

// widens reports whether going from b to a lets more traffic through.
func widens(b, a *PortRange) bool {
	switch {
	case a == nil:
		return false
	case b == nil:
		return true
	case !b.Proxied || len(b.HTTP) == 0 || b.Parser != "http":
		return false // every request already passed
	case !a.Proxied || len(a.HTTP) == 0:
		return true // HTTP rules no longer restrict requests
	default:
		for _, h := range a.HTTP {
			if !slices.Contains(b.HTTP, h) {
				return true // a new HTTP rule admits more requests
			}
		}
	}
	return false
}

// explain traces a representative flow of the range in c and returns the deciding rules.
func explain(c *cluster.Cluster, conn Connection, r PortRange) ([]string, string) {
	if conn.From == nil {
		return nil, ""
	}
	from, ok1 := conn.From.Representative(c, conn.To)
	to, ok2 := conn.To.Representative(c, conn.From)
	if !ok1 || !ok2 {
		return nil, ""
	}
	res, err := Trace(c, Flow{From: from, To: to, Proto: r.Proto, Port: r.Lo})
	if err != nil {
		return nil, ""
	}
	var rules []string
	for _, s := range []*Side{res.Egress, res.Ingress} {
		if s != nil && s.Entry != nil {
			rules = append(rules, s.Entry.Origins...)
		}
	}
	slices.Sort(rules)
	return slices.Compact(rules), res.Reason
}
