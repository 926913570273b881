package proxy

import (
	"context"
	"net/http"
	"net/netip"
	"sync/atomic"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/policy"
)

// PolicyLookup finds what judges a connection: for egress the source endpoint's compiled
// policy and the destination's identity, for ingress the destination endpoint's policy and
// the source's identity. ok is false when the endpoint is unknown; its requests are denied.
type PolicyLookup func(src, dst netip.AddrPort, egress bool) (p *policy.EndpointPolicy, peer *identity.Identity, ok bool)

// PolicyDecider judges requests with the compiled policy, looked up for every request so
// that a new policy applies to the next request of an open connection:
//
//   - an unknown endpoint, or a policy that failed to compute, denies;
//   - a direction no rule selects allows (the datapath redirects nothing there);
//   - the L3/L4 entry for (peer, TCP, port) must allow (a deny added since the
//     connection opened denies its next request);
//   - then the verdict is EndpointPolicy.AllowsHTTP, exactly: some allow rule covering the
//     port and the peer admits the request, a rule without HTTP rules admitting all.
//
// Header ops are those of every HTTP rule that admitted the request, in rule order, each
// evaluated on the headers as the previous ones left them (Envoy runs all of them when a
// rule has headerMatches). Rules match the request as received.
type PolicyDecider struct {
	Lookup PolicyLookup
}

// NewPolicyDecider returns a PolicyDecider.
func NewPolicyDecider(lookup PolicyLookup) *PolicyDecider { return &PolicyDecider{Lookup: lookup} }

// Decide implements Decider.
func (d *PolicyDecider) Decide(ctx context.Context, f Flow) Decision {
	p, peer, ok := d.Lookup(f.Src, f.Dst, f.Egress)
	if !ok || p == nil || peer == nil {
		return Decision{Reason: "no policy for the connection's endpoint"}
	}
	if p.Err != nil {
		return Decision{Reason: p.Err.Error()}
	}
	if !p.Direction(f.Egress).Enforced {
		return Decision{Allowed: true, Reason: "no policy selects the endpoint in this direction"}
	}
	if l4 := p.Lookup(f.Egress, peer.ID, policy.ProtoTCP, f.Port); !l4.Allowed {
		var origins []string
		for _, o := range l4.Entry.Origins {
			origins = append(origins, o.String())
		}
		reason := "denied at L3/L4"
		if !l4.Found {
			reason = "no rule allows the connection (default deny)"
		}
		return Decision{Origins: origins, Reason: reason}
	}
	allowed, matches := p.AllowsHTTP(f.Egress, peer, f.Port, f.Request)
	rules := p.HTTPRules(f.Egress, peer, f.Port)
	var dec Decision
	dec.Allowed = allowed
	if allowed {
		for _, m := range matches {
			dec.Origins = appendOrigin(dec.Origins, m.Origin.String())
		}
		sets := make([]RuleSet, len(rules))
		for i, r := range rules {
			sets[i] = RuleSet{HTTP: r.HTTP}
		}
		dec.HeaderOps = headerOps(sets, f.Request)
	} else {
		for _, r := range rules {
			dec.Origins = appendOrigin(dec.Origins, r.Origin.String())
		}
		dec.Reason = "no HTTP rule admits the request"
	}
	return dec
}

func appendOrigin(list []string, o string) []string {
	for _, x := range list {
		if x == o {
			return list
		}
	}
	return append(list, o)
}

// RuleSet is one allow rule's L7 view (as policy.L7Rules): a request passes when one of
// its HTTP rules matches; nil HTTP admits every request.
type RuleSet struct {
	Origin string
	HTTP   []*l7.HTTPRule
}

// Rules is a Decider over rule sets that can be replaced at run time (Set): a request
// passes when some set admits it, with the semantics of EndpointPolicy.AllowsHTTP. No sets
// deny everything.
type Rules struct {
	sets atomic.Pointer[[]RuleSet]
}

// NewRules returns a Rules decider.
func NewRules(sets ...RuleSet) *Rules {
	r := &Rules{}
	r.Set(sets...)
	return r
}

// Set replaces the rule sets; the next request is judged with them.
func (r *Rules) Set(sets ...RuleSet) {
	s := append([]RuleSet(nil), sets...)
	r.sets.Store(&s)
}

// Decide implements Decider.
func (r *Rules) Decide(ctx context.Context, f Flow) Decision {
	return decideSets(*r.sets.Load(), f.Request)
}

// decideSets is AllowsHTTP over rule sets, with header ops.
func decideSets(sets []RuleSet, req *l7.Request) Decision {
	var d Decision
	for _, s := range sets {
		if s.HTTP == nil {
			d.Allowed = true
			d.Origins = appendOrigin(d.Origins, s.Origin)
			continue
		}
		for _, h := range s.HTTP {
			if h.Matches(req) {
				d.Allowed = true
				d.Origins = appendOrigin(d.Origins, s.Origin)
				break
			}
		}
	}
	if !d.Allowed {
		for _, s := range sets {
			d.Origins = appendOrigin(d.Origins, s.Origin)
		}
		d.Reason = "no HTTP rule admits the request"
		return d
	}
	d.HeaderOps = headerOps(sets, req)
	return d
}

// headerOps runs the headerMatches actions of every HTTP rule that matches req, in order,
// on a copy of its headers.
func headerOps(sets []RuleSet, req *l7.Request) []l7.HeaderOp {
	var (
		ops  []l7.HeaderOp
		work http.Header
	)
	for _, s := range sets {
		for _, h := range s.HTTP {
			if !h.HasHeaderActions() || !h.Matches(req) {
				continue
			}
			if work == nil {
				work = req.Header.Clone()
				if work == nil {
					work = http.Header{}
				}
			}
			ops = append(ops, h.ApplyHeaderActions(work)...)
		}
	}
	return ops
}
