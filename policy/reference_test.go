package policy

import (
	"github.com/netward/netward/identity"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/labels"
)

// The reference evaluator is a test oracle: a deliberately naive reading of the semantics
// doc (§2.1-§2.7, §5) that decides one direction of one flow straight from the entries,
// with no MapState, no selector cache and no compile step. Keep it short and literal: its
// only value is that it is obviously right.

// refPolicy is the oracle's input: every entry in the cluster and the agent options.
type refPolicy struct {
	entries []*Entry
	opts    Options
}

// refFlow is one direction of a flow as seen by subject.
type refFlow struct {
	subject *identity.Identity
	egress  bool
	peer    *identity.Identity // the source for ingress, the destination for egress
	proto   uint8
	port    uint16 // the ICMP type for ICMP
}

// refVerdict is the oracle's answer for one direction.
type refVerdict struct {
	Enforced bool
	Allowed  bool
	// Redirect is the proxy the connection goes to, ParserNone when it is not redirected.
	Redirect L7Parser
}

// selecting returns the entries of the flow's direction whose subject selects the subject.
func (r refPolicy) selecting(subject *identity.Identity, egress bool) []*Entry {
	var out []*Entry
	for _, en := range r.entries {
		if en.Ingress != egress && en.Subject.Selector.Matches(subject.Labels) {
			out = append(out, en)
		}
	}
	return out
}

// match reports whether en matches the flow and returns the port rules that cover it (none
// for an L3-only match, which covers every protocol and port).
func (r refPolicy) match(en *Entry, f refFlow) (bool, []PortRule) {
	if !r.selectsPeer(en, f.peer) {
		return false, nil
	}
	if len(en.L4) == 0 {
		return len(en.L3) > 0, nil // `[{}]` (no peers, no ports) allows nothing (§5.2)
	}
	var covering []PortRule
	for _, pr := range en.L4 {
		for _, pp := range pr.Ports {
			if refCovers(pp, f) {
				covering = append(covering, pr)
				break
			}
		}
	}
	return len(covering) > 0, covering
}

// selectsPeer: nil L3 selects nothing, empty L3 everything, else any selector (§2.1).
func (r refPolicy) selectsPeer(en *Entry, peer *identity.Identity) bool {
	if en.L3 == nil {
		return false
	}
	if len(en.L3) == 0 {
		return true
	}
	for _, s := range en.L3 {
		if s.Matches(peer, r.opts.CIDRMatch) {
			return true
		}
	}
	return false
}

// refCovers reports whether one port of a port rule covers the flow (§2.6).
func refCovers(pp PortProto, f refFlow) bool {
	if pp.Proto == ProtoAny {
		if f.proto != ProtoTCP && f.proto != ProtoUDP && f.proto != ProtoSCTP {
			return false // ANY is TCP, UDP and SCTP only, never ICMP (§5.13)
		}
	} else if pp.Proto != f.proto {
		return false
	}
	if pp.Name != "" {
		if f.egress {
			// Egress: resolved on each destination; endPort is dropped.
			n := f.peer.NamedPort(pp.Name, f.proto)
			return n != 0 && n == f.port
		}
		// Ingress: resolved on the subject; endPort extends the resolved number.
		n := f.subject.NamedPort(pp.Name, f.proto)
		return n != 0 && n <= f.port && f.port <= max(n, pp.EndPort)
	}
	if pp.Port == 0 {
		return true // every port, or every ICMP type (type 0 is the port-0 key, §2.6)
	}
	return pp.Port <= f.port && f.port <= max(pp.Port, pp.EndPort)
}

// refParser is the proxy an allow port rule sends a flow of proto to.
func refParser(pr PortRule, proto uint8) L7Parser {
	switch {
	case pr.Listener != "":
		return ParserCRD
	case len(pr.DNS) > 0:
		return ParserDNS
	case len(pr.HTTP) > 0 && proto == ProtoTCP:
		return ParserHTTP
	case pr.TLS:
		return ParserTLS
	}
	return ParserNone
}

// refHTTP returns the HTTP rules the proxy applies for a port rule (nil: every request).
func refHTTP(pr PortRule, proto uint8) []*l7.HTTPRule {
	if refParser(pr, proto) != ParserHTTP {
		return nil
	}
	return pr.HTTP
}

// refDNS returns the DNS rules the DNS proxy applies for a port rule (nil: every name).
func refDNS(pr PortRule, proto uint8) []DNSRule {
	if refParser(pr, proto) != ParserDNS {
		return nil
	}
	return pr.DNS
}

// refListenerRank orders proxies by Cilium's listener priority: HTTP first, then TLS, DNS,
// CRD; a redirect to a higher-ranked proxy outranks the others (§4 precedence byte).
var refListenerRank = map[L7Parser]int{ParserNone: 0, ParserCRD: 1, ParserDNS: 2, ParserTLS: 3, ParserHTTP: 4}

// Decide evaluates one direction of a flow by the literal rules of §2.2-§2.7.
func (r refPolicy) Decide(f refFlow) refVerdict {
	entries := r.selecting(f.subject, f.egress)
	if len(entries) == 0 {
		return refVerdict{Allowed: true} // not enforced: no lookup at all
	}
	defaultDeny, denied, allowed := false, false, false
	redirect := ParserNone
	for _, en := range entries {
		defaultDeny = defaultDeny || en.DefaultDeny
		ok, prs := r.match(en, f)
		switch {
		case !ok:
		case en.Deny:
			denied = true
		default:
			// Some matching allow with L7 rules redirects, in default-allow directions too
			// (visibility only, §5.5; checked with the Cilium oracle).
			allowed = true
			for _, pr := range prs {
				if p := refParser(pr, f.proto); refListenerRank[p] > refListenerRank[redirect] {
					redirect = p
				}
			}
		}
	}
	switch {
	case denied:
		return refVerdict{Enforced: true}
	case allowed:
		return refVerdict{Enforced: true, Allowed: true, Redirect: redirect}
	case !defaultDeny, r.localhost(f):
		return refVerdict{Enforced: true, Allowed: true}
	}
	return refVerdict{Enforced: true}
}

// localhost: allow-localhost lets the host into pods under ingress default deny (§2.2).
func (r refPolicy) localhost(f refFlow) bool {
	return !f.egress && r.opts.AllowLocalhost && f.peer.ID == identity.Host
}

// AllowsHTTP decides an HTTP request of a redirected TCP flow: the proxy ORs every allow rule
// that matches the flow, and a rule without HTTP rules admits every request (§2.5). In a
// direction without default deny every request passes (§5.5), and so does the host's under
// allow-localhost (§5.24).
func (r refPolicy) AllowsHTTP(f refFlow, req *l7.Request) bool {
	entries := r.selecting(f.subject, f.egress)
	defaultDeny := false
	for _, en := range entries {
		defaultDeny = defaultDeny || en.DefaultDeny
	}
	if !defaultDeny || r.localhost(f) {
		return true
	}
	for _, en := range entries {
		ok, prs := r.match(en, f)
		if !ok || en.Deny {
			continue
		}
		if len(prs) == 0 {
			return true // L3-only allow: the port-0 rule list, no HTTP constraint
		}
		for _, pr := range prs {
			rules := refHTTP(pr, f.proto)
			if len(rules) == 0 {
				return true
			}
			for _, h := range rules {
				if h.Matches(req) {
					return true
				}
			}
		}
	}
	return false
}

// AllowsDNS decides a lookup of name inside a DNS redirect the way Cilium's DNS proxy
// does, rule by rule: some allow rule selecting the peer and port admits the name; one
// without DNS rules (or an L3-only one) admits every name; in a direction without default
// deny every name passes (§2.5).
func (r refPolicy) AllowsDNS(f refFlow, name string) bool {
	entries := r.selecting(f.subject, f.egress)
	defaultDeny := false
	for _, en := range entries {
		defaultDeny = defaultDeny || en.DefaultDeny
	}
	if !defaultDeny {
		return true
	}
	for _, en := range entries {
		ok, prs := r.match(en, f)
		if !ok || en.Deny {
			continue
		}
		if len(prs) == 0 {
			return true
		}
		for _, pr := range prs {
			rules := refDNS(pr, f.proto)
			if len(rules) == 0 {
				return true
			}
			for _, d := range rules {
				if p, err := l7.CompileDNSRule(d.MatchName, d.MatchPattern); err == nil && p.Matches(name) {
					return true
				}
			}
		}
	}
	return false
}

// Conflict reports whether Cilium fails to compute the subject's policy: two allow rules
// for the same direction, port (as written, after ANY expansion) and peer selector whose
// proxies cannot merge (HTTP+DNS, anything+CRD, ...; TLS merges into HTTP) (§2.5.3, §5.9).
func (r refPolicy) Conflict(subject *identity.Identity) bool {
	type slot struct {
		egress bool
		pp     PortProto
		sel    string
	}
	seen := map[slot][]L7Parser{}
	for _, en := range r.entries {
		if en.Deny || en.L3 == nil || !en.Subject.Selector.Matches(subject.Labels) {
			continue
		}
		sels := []string{labels.NewSelector().Key()} // empty L3: the wildcard selector
		if len(en.L3) > 0 {
			sels = nil
			for _, s := range en.L3 {
				sels = append(sels, s.Key())
			}
		}
		for _, pr := range en.L4 {
			for _, pp := range pr.Ports {
				protos := []uint8{pp.Proto}
				if pp.Proto == ProtoAny {
					protos = []uint8{ProtoTCP, ProtoUDP, ProtoSCTP}
				}
				for _, proto := range protos {
					p := refParser(pr, proto)
					if p == ParserNone {
						continue
					}
					pp.Proto = proto
					for _, sel := range sels {
						s := slot{!en.Ingress, pp, sel}
						for _, q := range seen[s] {
							tlsHTTP := (p == ParserTLS && q == ParserHTTP) || (p == ParserHTTP && q == ParserTLS)
							if p != q && !tlsHTTP {
								return true
							}
						}
						seen[s] = append(seen[s], p)
					}
				}
			}
		}
	}
	return false
}
