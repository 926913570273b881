package policy

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/l7"
)

// DirectionPolicy says how one direction of an endpoint is enforced.
type DirectionPolicy struct {
	// Enforced is true when at least one rule (allow or deny) selects the endpoint in this
	// direction; otherwise no lookup happens and everything passes.
	Enforced bool
	// DefaultDeny is true when a selecting rule has default deny on: what no entry allows
	// is dropped.
	DefaultDeny bool
	// Rules are the rules that select the endpoint in this direction.
	Rules []*Origin
}

// l7Filter is one allow rule as the L7 proxy sees it (Cilium's NPDS port rules): which
// peers, which port range, and which HTTP rules; http == nil admits every request.
type l7Filter struct {
	sel    *CachedSelector
	peer   *identity.Identity // set instead of sel for per-peer named ports
	proto  uint8
	lo, hi uint16
	http   []*l7.HTTPRule
	dns    []l7.DNSPattern
	parser L7Parser
	origin *Origin
}

func (f *l7Filter) selects(peer *identity.Identity) bool {
	if f.peer != nil {
		return f.peer == peer
	}
	return f.sel.Selector.IsWildcard() || f.sel.Selects(peer)
}

// EndpointPolicy is the compiled policy of one subject identity: its policy map and the L7
// rules its proxy redirects apply. It is immutable once built.
type EndpointPolicy struct {
	Subject  *identity.Identity
	Node     string
	Ingress  DirectionPolicy
	Egress   DirectionPolicy
	Map      *MapState
	Revision uint64
	// Err is set when Cilium would fail to compute this endpoint's policy (conflicting L7
	// parsers on one port and peer): every packet to or from the endpoint is then dropped.
	Err error

	l7        [2][]*l7Filter
	selectors map[string]struct{}
	class     string
}

// Direction returns the direction policy.
func (p *EndpointPolicy) Direction(egress bool) *DirectionPolicy {
	if egress {
		return &p.Egress
	}
	return &p.Ingress
}

type accItem struct {
	prec   Precedence
	parser L7Parser
	origin *Origin
}

// accum holds the contributions to one key; most keys get exactly one.
type accum struct {
	first accItem
	rest  []accItem
}

func (a *accum) add(it accItem) {
	if a.first == it {
		return
	}
	for _, x := range a.rest {
		if x == it {
			return
		}
	}
	a.rest = append(a.rest, it)
}

func (a *accum) each(fn func(accItem)) {
	fn(a.first)
	for _, it := range a.rest {
		fn(it)
	}
}

type conflictKey struct {
	egress      bool
	proto       uint8
	port, end   uint16
	name, selKy string
}

type builder struct {
	e        *Engine
	p        *EndpointPolicy
	egress   bool
	dd       bool
	acc      map[Key]int32 // index into accs
	accs     []accum
	parsers  map[conflictKey][]L7Parser
	auths    map[conflictKey]string
	conflict []string
}

func (e *Engine) compile(s *identity.Identity, node string, entries []*Entry) *EndpointPolicy {
	e.compiles++
	p := &EndpointPolicy{Subject: s, Node: node, Map: newMapState(), Revision: e.revision, selectors: map[string]struct{}{}}
	b := &builder{e: e, p: p, acc: make(map[Key]int32, e.lastKeys[s]), parsers: map[conflictKey][]L7Parser{}, auths: map[conflictKey]string{}}
	for _, egress := range []bool{false, true} {
		d := p.Direction(egress)
		var dir []*Entry
		for _, en := range entries {
			if en.Ingress != egress {
				dir = append(dir, en)
			}
		}
		if len(dir) == 0 {
			continue
		}
		d.Enforced = true
		seen := map[*Origin]bool{}
		for _, en := range dir {
			d.DefaultDeny = d.DefaultDeny || en.DefaultDeny
			if !seen[en.Origin] {
				seen[en.Origin] = true
				d.Rules = append(d.Rules, en.Origin)
			}
		}
		b.egress, b.dd = egress, d.DefaultDeny
		for _, en := range dir {
			b.entry(en, TierNormal)
		}
		switch {
		case !d.DefaultDeny:
			o := originDefaultAllowIn
			if egress {
				o = originDefaultAllowEg
			}
			b.entry(&Entry{Ingress: !egress, L3: []PeerSelector{wildcardPeer}, Origin: o}, TierDefault)
		case !egress && e.opts.AllowLocalhost:
			b.entry(&Entry{Ingress: true, L3: []PeerSelector{LabelPeer{Sel: reservedSel("host")}}, Origin: originAllowLocalhost}, TierDefault)
		}
	}
	if len(b.conflict) > 0 {
		slices.Sort(b.conflict)
		p.Err = fmt.Errorf("policy cannot be computed: %s", strings.Join(slices.Compact(b.conflict), "; "))
	}
	b.finish()
	return p
}

func (b *builder) entry(en *Entry, tier Tier) {
	if en.L3 == nil {
		return // selects nothing: only switches default deny on
	}
	var peers []*CachedSelector
	if len(en.L3) == 0 {
		peers = []*CachedSelector{b.e.sc.Add(wildcardPeer)}
	} else {
		peers = b.e.peerSelectors(en)
	}
	for _, cs := range peers {
		// The wildcard's selections only matter where they are expanded per peer (egress
		// named ports); elsewhere it is the identity-0 key, whatever identities exist.
		if !cs.Selector.IsWildcard() {
			b.p.selectors[cs.Selector.Key()] = struct{}{}
		}
	}
	if len(en.L4) == 0 {
		if len(en.L3) > 0 {
			for _, cs := range peers {
				b.filter(cs, PortProto{}, true, ParserNone, l7Lists{}, en, tier)
			}
		}
		return
	}
	for _, pr := range en.L4 {
		for _, pp := range pr.Ports {
			protos := []uint8{pp.Proto}
			if pp.Proto == ProtoAny {
				protos = []uint8{ProtoTCP, ProtoUDP, ProtoSCTP}
			}
			for _, proto := range protos {
				pp := pp
				pp.Proto = proto
				parser := ParserNone
				var l7r l7Lists
				if !en.Deny {
					if pr.TLS {
						parser = ParserTLS
					}
					if len(pr.DNS) > 0 {
						parser, l7r.dns = ParserDNS, dnsPatterns(pr.DNS)
					} else if proto == ProtoTCP && len(pr.HTTP) > 0 {
						parser, l7r.http = ParserHTTP, pr.HTTP
					}
					if pr.Listener != "" {
						parser = ParserCRD
					}
					if parser != ParserDNS {
						l7r.dns = nil // DNS rules only reach the DNS proxy
					}
					if parser != ParserNone && !b.dd {
						// default allow in this direction: Cilium appends an allow-all L7
						// rule, so L7 rules only give visibility (§2.5).
						l7r = l7Lists{}
					}
				}
				for _, cs := range peers {
					b.filter(cs, pp, false, parser, l7r, en, tier)
				}
			}
		}
	}
}

// l7Lists are the L7 rules of one port rule: nil lists admit everything.
type l7Lists struct {
	http []*l7.HTTPRule
	dns  []l7.DNSPattern
}

// dnsPatterns are the compiled patterns of DNS rules (one per rule, never an empty list:
// an empty list would admit every name).
func dnsPatterns(rules []DNSRule) []l7.DNSPattern {
	out := make([]l7.DNSPattern, len(rules))
	for i, r := range rules {
		out[i] = r.Pattern
	}
	return out
}

// filter adds one (selector, port) filter of an entry.
func (b *builder) filter(cs *CachedSelector, pp PortProto, l3only bool, parser L7Parser, l7r l7Lists, en *Entry, tier Tier) {
	prec := precedenceOf(tier, en.Deny, parser)
	ck := conflictKey{b.egress, pp.Proto, pp.Port, pp.EndPort, pp.Name, cs.Selector.Key()}
	if !en.Deny && en.Auth != "" {
		// Rules for the same peers and port merge into one; two authentication modes
		// cannot (Cilium's mergePortProto): the endpoint's policy fails.
		if other, ok := b.auths[ck]; ok && other != en.Auth {
			b.conflict = append(b.conflict, fmt.Sprintf("authentication modes %q and %q for the same peers (%s) on %s/%s", other, en.Auth, cs.Selector, portLabel(pp), ProtoName(pp.Proto)))
		}
		b.auths[ck] = en.Auth
	}
	if !en.Deny && parser != ParserNone {
		for _, other := range b.parsers[ck] {
			if !parsersMerge(other, parser) {
				b.conflict = append(b.conflict, fmt.Sprintf("%s and %s rules for the same peers (%s) on %s/%s", other, parser, cs.Selector, portLabel(pp), ProtoName(pp.Proto)))
			}
		}
		b.parsers[ck] = append(b.parsers[ck], parser)
	}
	addL7 := func(f *l7Filter) {
		if en.Deny {
			return
		}
		f.parser, f.http, f.dns, f.origin = parser, l7r.http, l7r.dns, en.Origin
		i := dirIndex(b.egress)
		b.p.l7[i] = append(b.p.l7[i], f)
	}
	if l3only {
		b.peers(cs, ProtoAny, 0, 65535, true, prec, parser, en.Origin)
		addL7(&l7Filter{sel: cs, proto: ProtoAny, lo: 0, hi: 65535})
		return
	}
	if pp.Name != "" {
		if !b.egress {
			port := b.p.Subject.NamedPort(pp.Name, pp.Proto)
			if port == 0 {
				return // unknown name on the subject: the rule contributes nothing
			}
			hi := port
			if pp.EndPort >= port {
				hi = pp.EndPort
			}
			b.peers(cs, pp.Proto, port, hi, false, prec, parser, en.Origin)
			addL7(&l7Filter{sel: cs, proto: pp.Proto, lo: port, hi: hi})
			return
		}
		// Egress named ports resolve per destination identity; endPort is ignored (§2.6).
		b.p.selectors[cs.Selector.Key()] = struct{}{}
		for _, peer := range b.selections(cs) {
			port := peer.NamedPort(pp.Name, pp.Proto)
			if port == 0 {
				continue
			}
			b.add(peer.ID, pp.Proto, port, port, false, prec, parser, en.Origin)
			addL7(&l7Filter{peer: peer, proto: pp.Proto, lo: port, hi: port})
		}
		return
	}
	lo, hi := pp.Port, pp.Port
	switch {
	case pp.Port == 0:
		lo, hi = 0, 65535
	case pp.EndPort > pp.Port:
		hi = pp.EndPort
	}
	b.peers(cs, pp.Proto, lo, hi, false, prec, parser, en.Origin)
	addL7(&l7Filter{sel: cs, proto: pp.Proto, lo: lo, hi: hi})
}

func (b *builder) selections(cs *CachedSelector) []*identity.Identity {
	var out []*identity.Identity
	for _, id := range cs.Selections() {
		if visible(id, b.p.Node) {
			out = append(out, id)
		}
	}
	return out
}

func (b *builder) peers(cs *CachedSelector, proto uint8, lo, hi uint16, l3only bool, prec Precedence, parser L7Parser, o *Origin) {
	if cs.Selector.IsWildcard() {
		b.add(0, proto, lo, hi, l3only, prec, parser, o)
		return
	}
	for _, id := range b.selections(cs) {
		b.add(id.ID, proto, lo, hi, l3only, prec, parser, o)
	}
}

func (b *builder) add(id identity.ID, proto uint8, lo, hi uint16, l3only bool, prec Precedence, parser L7Parser, o *Origin) {
	it := accItem{prec: prec, parser: parser, origin: o}
	put := func(k Key) {
		if i, ok := b.acc[k]; ok {
			b.accs[i].add(it)
			return
		}
		b.acc[k] = int32(len(b.accs))
		b.accs = append(b.accs, accum{first: it})
	}
	switch {
	case l3only:
		put(Key{Identity: id, Egress: b.egress})
	case lo == 0 && hi == 65535:
		put(Key{Identity: id, Egress: b.egress, Proto: proto, PrefixLen: 8})
	default:
		for _, pfx := range rangeToPrefixes(lo, hi) {
			put(maskedKey(id, b.egress, proto, pfx.Port, 8+pfx.Bits))
		}
	}
}

// finish writes the map: every key gets the entry that wins among all contributions that
// cover it for the same peer identity (its own and those of shorter prefixes), so that the
// datapath's longest-prefix lookup finds the highest precedence (§2.4).
func (b *builder) finish() {
	type idDir struct {
		id     identity.ID
		egress bool
	}
	masks := map[idDir]uint32{}
	for k := range b.acc {
		masks[idDir{k.Identity, k.Egress}] |= 1 << k.PrefixLen
	}
	b.p.Map.entries = make(map[Key]MapEntry, len(b.acc))
	b.e.lastKeys[b.p.Subject] = len(b.acc)
	single := map[*Origin][]*Origin{}
	var covering [25]*accum
	for k, i := range b.acc {
		n := 0
		covering[n] = &b.accs[i]
		n++
		mask := masks[idDir{k.Identity, k.Egress}] & (1<<k.PrefixLen - 1)
		for mask != 0 {
			plen := uint8(bits.TrailingZeros32(mask))
			mask &^= 1 << plen
			if j, ok := b.acc[maskedKey(k.Identity, k.Egress, k.Proto, k.Port, plen)]; ok {
				covering[n] = &b.accs[j]
				n++
			}
		}
		b.p.Map.insert(k, resolve(covering[:n], single))
	}
}

// resolve picks the winning contribution among those covering a key and collects the
// origins behind it. single interns one-origin lists, by far the most common.
func resolve(covering []*accum, single map[*Origin][]*Origin) MapEntry {
	best := covering[0].first
	for _, a := range covering {
		a.each(func(it accItem) {
			if it.prec > best.prec {
				best = it
			}
		})
	}
	e := MapEntry{Precedence: best.prec, Parser: best.parser}
	switch {
	case best.prec.IsDeny():
		e.Verdict = Deny
	case best.prec.IsRedirect():
		e.Verdict = Redirect
	default:
		e.Verdict = Allow
		e.Parser = ParserNone
	}
	var origins []*Origin
	for _, a := range covering {
		a.each(func(it accItem) {
			keep := it.prec == best.prec
			if !best.prec.IsDeny() {
				keep = !it.prec.IsDeny() && it.prec.Tier() == best.prec.Tier()
			}
			if keep && !slices.Contains(origins, it.origin) {
				origins = append(origins, it.origin)
			}
		})
	}
	if len(origins) == 1 {
		o := origins[0]
		if shared, ok := single[o]; ok {
			e.Origins = shared
		} else {
			single[o] = origins
			e.Origins = origins
		}
		return e
	}
	slices.SortFunc(origins, func(a, b *Origin) int { return strings.Compare(a.String(), b.String()) })
	e.Origins = origins
	return e
}

// parsersMerge reports whether two L7 parsers can share one port and peer (Cilium's
// L7ParserType.Merge): equal, or TLS promoted to HTTP.
func parsersMerge(a, b L7Parser) bool {
	if a == b {
		return true
	}
	promote := func(from, to L7Parser) bool { return from == ParserTLS && to == ParserHTTP }
	return promote(a, b) || promote(b, a)
}

func portLabel(pp PortProto) string {
	switch {
	case pp.Name != "":
		return pp.Name
	case pp.EndPort > pp.Port:
		return fmt.Sprintf("%d-%d", pp.Port, pp.EndPort)
	}
	return fmt.Sprint(pp.Port)
}

// Decision is one direction's verdict for a flow.
type Decision struct {
	// Enforced is false when no rule selects the endpoint in this direction (no lookup).
	Enforced bool
	Allowed  bool
	// Found reports whether a map entry matched; Key and Entry are that entry.
	Found bool
	Key   Key
	Entry MapEntry
	Err   error
}

// Lookup decides one direction of a flow with the policy map. peer is the identity at the
// other end; for ingress the source, for egress the destination. An endpoint whose policy
// failed to compute drops everything, in both directions.
func (p *EndpointPolicy) Lookup(egress bool, peer identity.ID, proto uint8, port uint16) Decision {
	if p.Err != nil {
		return Decision{Enforced: true, Err: p.Err}
	}
	if !p.Direction(egress).Enforced {
		return Decision{Allowed: true}
	}
	k, e, ok := p.Map.Lookup(peer, egress, proto, port)
	return Decision{Enforced: true, Allowed: ok && e.Verdict != Deny, Found: ok, Key: k, Entry: e}
}

// L7Match is an allow rule the proxy considers for a request, with the HTTP rule that
// admitted it (nil when the allow rule has no HTTP constraint and admits every request).
type L7Match struct {
	Origin *Origin
	Rule   *l7.HTTPRule   // the HTTP rule that admitted a request (nil: the rule admits all)
	DNS    *l7.DNSPattern // the DNS rule that admitted a name (nil: the rule admits all)
}

// HTTPRules returns the allow rules the proxy consults for requests from/to peer on port:
// every allow rule covering the port and selecting the peer, each with its HTTP rules (none
// means every request passes).
func (p *EndpointPolicy) HTTPRules(egress bool, peer *identity.Identity, port uint16) []L7Rules {
	var out []L7Rules
	for _, f := range p.l7[dirIndex(egress)] {
		if (f.proto != ProtoTCP && f.proto != ProtoAny) || port < f.lo || port > f.hi || !f.selects(peer) {
			continue
		}
		out = append(out, L7Rules{Origin: f.origin, Parser: f.parser, HTTP: f.http})
	}
	return out
}

// L7Rules is one allow rule's L7 view.
type L7Rules struct {
	Origin *Origin
	Parser L7Parser
	HTTP   []*l7.HTTPRule  // nil: every request passes
	DNS    []l7.DNSPattern // nil: every name passes
}

// DNSRules returns the allow rules the DNS proxy consults for lookups to peer on proto and
// port: every allow rule covering them and selecting the peer, each with its DNS rules (none
// means every name passes).
func (p *EndpointPolicy) DNSRules(egress bool, peer *identity.Identity, proto uint8, port uint16) []L7Rules {
	var out []L7Rules
	for _, f := range p.l7[dirIndex(egress)] {
		if (f.proto != proto && f.proto != ProtoAny) || port < f.lo || port > f.hi || !f.selects(peer) {
			continue
		}
		out = append(out, L7Rules{Origin: f.origin, Parser: f.parser, DNS: f.dns})
	}
	return out
}

// AllowsDNS decides a lookup inside a DNS proxy redirect the way Cilium's DNS proxy does:
// it passes when some allow rule covering the port and the peer admits the name, a rule
// without DNS rules admitting every name (§2.5).
func (p *EndpointPolicy) AllowsDNS(egress bool, peer *identity.Identity, proto uint8, port uint16, name string) (bool, []L7Match) {
	var matches []L7Match
	for _, r := range p.DNSRules(egress, peer, proto, port) {
		if r.DNS == nil {
			matches = append(matches, L7Match{Origin: r.Origin})
			continue
		}
		for i := range r.DNS {
			if r.DNS[i].Matches(name) {
				matches = append(matches, L7Match{Origin: r.Origin, DNS: &r.DNS[i]})
				break
			}
		}
	}
	return len(matches) > 0, matches
}

// AllowsHTTP decides a request inside a proxy redirect the way Cilium's Envoy filter does:
// it passes when some allow rule that covers the port and the peer admits it, and a rule
// without HTTP rules admits every request (§2.5).
func (p *EndpointPolicy) AllowsHTTP(egress bool, peer *identity.Identity, port uint16, req *l7.Request) (bool, []L7Match) {
	var matches []L7Match
	for _, r := range p.HTTPRules(egress, peer, port) {
		if r.HTTP == nil {
			matches = append(matches, L7Match{Origin: r.Origin})
			continue
		}
		for _, h := range r.HTTP {
			if h.Matches(req) {
				matches = append(matches, L7Match{Origin: r.Origin, Rule: h})
				break
			}
		}
	}
	return len(matches) > 0, matches
}
