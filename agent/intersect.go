package agent

import (
	"errors"
	"slices"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// This file computes the transitional policy of an endpoint: the map that allows a flow
// only where both the old and the new policy allow it (see doc.go, "Update ordering").

// transitionalPrecedence is the precedence of every transitional entry. All entries having
// the same one, the datapath's lookup picks the longer prefix, then the specific identity:
// plain longest-prefix semantics, which the construction below relies on.
const transitionalPrecedence policy.Precedence = 1<<8 | 1

// maxPolicyEntries is the size of a BPF policy map (datapath: Cilium's default, 16384).
const maxPolicyEntries = 16384

var errTooLarge = errors.New("transitional policy map too large")

// verdict classes, from the most to the least restrictive.
const (
	classDeny uint8 = iota
	classRedirect
	classAllow
)

type decision struct {
	class  uint8
	parser policy.L7Parser
	entry  *policy.MapEntry // the deciding entry, nil when none matched
}

func (d decision) same(o decision) bool {
	return d.class == o.class && (d.class != classRedirect || d.parser == o.parser)
}

// and is the decision that allows only what both allow: deny over redirect over allow; a
// redirect keeps the new side's proxy when both redirect.
func and(old, new decision) decision {
	switch {
	case new.class == classDeny:
		return new
	case old.class == classDeny:
		return old
	case new.class == classRedirect:
		return new
	case old.class == classRedirect:
		return old
	}
	return new
}

// allowAll is the map of a direction that is not enforced.
func allowAll(egress bool) policy.KeyEntry {
	return policy.KeyEntry{
		Key:   policy.Key{Egress: egress},
		Entry: policy.MapEntry{Verdict: policy.Allow, Precedence: transitionalPrecedence},
	}
}

// pfx is a prefix of the 24-bit (protocol<<16 | port) space of policy keys.
type pfx struct {
	v uint32
	l uint8
}

func keyPfx(k policy.Key) pfx {
	if k.PrefixLen == 0 {
		return pfx{}
	}
	return pfx{v: uint32(k.Proto)<<16 | uint32(k.Port), l: k.PrefixLen}
}

func (p pfx) half(bit uint32) pfx {
	return pfx{v: p.v | bit<<(23-uint32(p.l)), l: p.l + 1}
}

func (p pfx) key(id identity.ID, egress bool) policy.Key {
	k := policy.Key{Identity: id, Egress: egress, PrefixLen: p.l}
	if p.l >= 8 {
		k.Proto = uint8(p.v >> 16)
		k.Port = uint16(p.v)
	}
	return k
}

// freePoints finds, for every prefix of set, a point it covers that no longer prefix of set
// covers (the points where the prefix is the longest match), or none when longer prefixes
// cover all of it.
func freePoints(set map[pfx]bool) map[pfx]uint32 {
	nodes := make(map[pfx]bool, len(set)*4)
	for p := range set {
		q := p
		for {
			if nodes[q] {
				break
			}
			nodes[q] = true
			if q.l == 0 {
				break
			}
			q.l--
			q.v &^= 1 << (23 - uint32(q.l))
		}
	}
	type res struct {
		v  uint32
		ok bool
	}
	memo := map[pfx]res{}
	var free func(r pfx) (uint32, bool)
	free = func(r pfx) (uint32, bool) {
		if m, ok := memo[r]; ok {
			return m.v, m.ok
		}
		out := res{}
		if r.l == 24 {
			out = res{r.v, true}
		} else {
			for bit := uint32(0); bit < 2; bit++ {
				h := r.half(bit)
				if !nodes[h] {
					out = res{h.v, true}
					break
				}
				if set[h] {
					continue
				}
				if v, ok := free(h); ok {
					out = res{v, true}
					break
				}
			}
		}
		memo[r] = out
		return out.v, out.ok
	}
	pts := make(map[pfx]uint32, len(set))
	for p := range set {
		if v, ok := free(p); ok {
			pts[p] = v
		}
	}
	return pts
}

func decide(m *policy.MapState, id identity.ID, egress bool, point uint32) decision {
	_, e, ok := m.Lookup(id, egress, uint8(point>>16), uint16(point))
	switch {
	case !ok:
		return decision{class: classDeny}
	case e.Verdict == policy.Deny:
		return decision{class: classDeny, entry: &e}
	case e.Verdict == policy.Redirect:
		return decision{class: classRedirect, parser: e.Parser, entry: &e}
	}
	return decision{class: classAllow, entry: &e}
}

// intersect returns, for one direction, map entries that decide every flow as and(old, new)
// decides it, and whether that differs from old somewhere (narrows) and from new somewhere
// (widens). Identities are numbers that keep their meaning across old and new.
//
// Construction: S are the peer identities with keys of their own in either map, P0 the
// prefixes of the wildcard keys of both, and P(x) those of x's keys plus P0. The result has,
// for identity 0 and each x in S, one key per prefix of P(x) that is the longest match
// somewhere, all with the same precedence. A lookup for x then ends at x's longest prefix
// covering the flow (x's keys include every wildcard prefix, and at equal length the
// specific identity wins); on the points where that prefix is the longest, the longest keys
// of x and of 0 in old and in new are the same ones (all their prefixes are in P(x)), so
// old's and new's decisions are constant there and one point decides them. Identities
// outside S see only wildcard keys in all three maps.
func intersect(old, new *policy.MapState, egress bool, limit int) (out []policy.KeyEntry, narrows, widens bool, err error) {
	own := map[identity.ID]map[pfx]bool{}
	p0 := map[pfx]bool{}
	for _, m := range []*policy.MapState{old, new} {
		for _, id := range m.Peers(egress) {
			for _, k := range m.KeysFor(id, egress) {
				if id == 0 {
					p0[keyPfx(k)] = true
					continue
				}
				if own[id] == nil {
					own[id] = map[pfx]bool{}
				}
				own[id][keyPfx(k)] = true
			}
		}
	}
	emit := func(id identity.ID, set map[pfx]bool) error {
		pts := freePoints(set)
		if len(out)+len(pts) > limit {
			return errTooLarge
		}
		for p, pt := range pts {
			dOld, dNew := decide(old, id, egress, pt), decide(new, id, egress, pt)
			d := and(dOld, dNew)
			if !d.same(dOld) {
				narrows = true
			}
			if !d.same(dNew) {
				widens = true
			}
			e := policy.MapEntry{Precedence: transitionalPrecedence}
			switch d.class {
			case classDeny:
				e.Verdict = policy.Deny
			case classRedirect:
				e.Verdict, e.Parser = policy.Redirect, d.parser
			default:
				e.Verdict = policy.Allow
			}
			if d.entry != nil {
				e.Origins = d.entry.Origins
			}
			out = append(out, policy.KeyEntry{Key: p.key(id, egress), Entry: e})
		}
		return nil
	}
	if err := emit(0, p0); err != nil {
		return nil, true, true, err
	}
	ids := make([]identity.ID, 0, len(own))
	for id := range own {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		set := own[id]
		for p := range p0 {
			set[p] = true
		}
		if err := emit(id, set); err != nil {
			return nil, true, true, err
		}
	}
	return out, narrows, widens, nil
}
