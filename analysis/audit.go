package analysis

import (
	"cmp"
	"encoding/json"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"

	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// Severity ranks audit findings.
type Severity int

// Severities, lowest first.
const (
	SeverityInfo Severity = iota
	SeverityWarning
	SeverityError
)

func (s Severity) String() string {
	switch s {
	case SeverityWarning:
		return "warning"
	case SeverityError:
		return "error"
	}
	return "info"
}

// MarshalJSON renders the severity as its name.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a severity name.
func (s *Severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	v, ok := ParseSeverity(name)
	if !ok {
		return fmt.Errorf("unknown severity %q", name)
	}
	*s = v
	return nil
}

// ParseSeverity parses info, warning or error.
func ParseSeverity(s string) (Severity, bool) {
	switch strings.ToLower(s) {
	case "info":
		return SeverityInfo, true
	case "warning", "warn":
		return SeverityWarning, true
	case "error":
		return SeverityError, true
	}
	return 0, false
}

// Finding is one audit result.
type Finding struct {
	// Code is stable across releases (see docs/audit.md).
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Title    string   `json:"title"`
	// Objects are the policy objects or rules involved, e.g.
	// "CiliumNetworkPolicy shop/api spec.ingress[1]".
	Objects []string `json:"objects"`
	// Pods are the affected pods (ns/name), truncated.
	Pods []string `json:"pods,omitempty"`
	// Explanation is one paragraph: which peers, which ports, what now passes or not.
	Explanation string `json:"explanation"`
}

// Audit codes.
const (
	CodeL7Shadowed        = "NW101"
	CodeL7VisibilityOnly  = "NW102"
	CodeL7ParserConflict  = "NW103"
	CodeL7NoProxy         = "NW104"
	CodeSelectsNoPod      = "NW201"
	CodeSelectsNoPeer     = "NW202"
	CodeCIDRInCluster     = "NW203"
	CodeDenyOverridesAll  = "NW301"
	CodeDenyOverridesPart = "NW302"
	CodeMixedIntent       = "NW303"
	CodeWorldReachable    = "NW401"
	CodeNoDNS             = "NW402"
	CodePolicyTypes       = "NW501"
	CodeICMPType0         = "NW502"
	CodeNamedPortEndPort  = "NW503"
	CodeNamedPortNumbers  = "NW504"
)

// Limits of the lists in findings.
const (
	maxPods      = 20 // Finding.Pods
	maxListed    = 5  // items named in an explanation
	otherIPProto = 47 // a protocol only L3-only rules can allow (GRE)
)

// Audit looks for policy hazards in a resolved cluster. Every finding comes from the
// engine's own data: compiled endpoint maps and their lookups, the L7 rules the proxy would
// apply, the normal-form entries and the selector cache. objs supplies what the engine does
// not keep (policyTypes of NetworkPolicies, host policies). Findings are sorted by severity
// (highest first), then code, then objects.
func Audit(c *cluster.Cluster, objs *api.Objects) []Finding {
	a := newAuditor(c, objs)
	a.l7Shadowed()
	a.l7VisibilityOnly()
	a.l7ParserConflict()
	a.l7NoProxy()
	a.selectsNoPod()
	a.selectsNoPeer()
	a.cidrInCluster()
	a.denyOverrides()
	a.mixedIntent()
	a.worldReachable()
	a.noDNS()
	a.policyTypes()
	a.icmpType0()
	a.namedPorts()
	out := a.findings
	slices.SortStableFunc(out, func(x, y Finding) int {
		return cmp.Or(
			cmp.Compare(y.Severity, x.Severity),
			cmp.Compare(x.Code, y.Code),
			cmp.Compare(strings.Join(x.Objects, "\n"), strings.Join(y.Objects, "\n")),
			cmp.Compare(strings.Join(x.Pods, "\n"), strings.Join(y.Pods, "\n")),
		)
	})
	return out
}

// subject is the endpoints that share one compiled policy.
type subject struct {
	p    *policy.EndpointPolicy
	eps  []*cluster.Endpoint
	ents []policy.KeyEntry
}

// entries are the compiled map's entries, sorted (computed once).
// compiledDirections yields both directions of every subject whose policy compiled (a
// failed policy is reported on its own and fails closed; the other checks skip it).
func (a *auditor) compiledDirections() iter.Seq2[*subject, bool] {
	return func(yield func(*subject, bool) bool) {
		for _, s := range a.subjects {
			if s.p.Err != nil {
				continue
			}
			if !yield(s, false) || !yield(s, true) {
				return
			}
		}
	}
}

func (s *subject) entries() []policy.KeyEntry {
	if s.ents == nil {
		s.ents = s.p.Map.Entries()
	}
	return s.ents
}

type auditor struct {
	c        *cluster.Cluster
	objs     *api.Objects
	entries  map[*policy.Origin]*policy.Entry
	subjects []*subject
	// selects[origin] are the subjects a rule selects (from the compiled policies).
	selects  map[*policy.Origin][]*subject
	byIdent  map[*identity.Identity][]*cluster.Endpoint
	byID     map[identity.ID]*identity.Identity
	findings []Finding
}

func newAuditor(c *cluster.Cluster, objs *api.Objects) *auditor {
	if objs == nil {
		objs = &api.Objects{}
	}
	a := &auditor{c: c, objs: objs, entries: map[*policy.Origin]*policy.Entry{},
		selects: map[*policy.Origin][]*subject{}, byIdent: map[*identity.Identity][]*cluster.Endpoint{}}
	for _, key := range c.Engine.Resources() {
		for _, en := range c.Engine.Entries(key) {
			a.entries[en.Origin] = en
		}
	}
	bySubject := map[*policy.EndpointPolicy]*subject{}
	for _, ep := range c.Endpoints {
		a.byIdent[ep.Identity] = append(a.byIdent[ep.Identity], ep)
		p := c.Policy(ep)
		s, ok := bySubject[p]
		if !ok {
			s = &subject{p: p}
			bySubject[p] = s
			a.subjects = append(a.subjects, s)
		}
		s.eps = append(s.eps, ep)
	}
	for _, s := range a.subjects {
		seen := map[*policy.Origin]bool{}
		for _, d := range []*policy.DirectionPolicy{&s.p.Ingress, &s.p.Egress} {
			for _, o := range d.Rules {
				if !seen[o] {
					seen[o] = true
					a.selects[o] = append(a.selects[o], s)
				}
			}
		}
	}
	return a
}

func (a *auditor) add(f Finding) {
	f.Objects = compactSorted(f.Objects)
	f.Pods = truncate(compactSorted(f.Pods), maxPods)
	a.findings = append(a.findings, f)
}

// --- helpers --------------------------------------------------------------------------------

func compactSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func truncate(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(slices.Clone(s[:n]), fmt.Sprintf("… and %d more", len(s)-n))
}

// list joins items for prose, sorted, naming at most maxListed.
func list(items []string) string { return listInOrder(compactSorted(items)) }

// listInOrder joins items for prose in their order, naming at most maxListed.
func listInOrder(items []string) string {
	if len(items) > maxListed {
		items = append(items[:maxListed:maxListed], fmt.Sprintf("%d more", len(items)-maxListed))
	}
	switch len(items) {
	case 0:
		return "none"
	case 1:
		return items[0]
	case 2:
		return items[0] + " and " + items[1]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func dirName(egress bool) string {
	if egress {
		return "egress"
	}
	return "ingress"
}

func origins(os []*policy.Origin) []string {
	out := make([]string, 0, len(os))
	for _, o := range os {
		out = append(out, o.String())
	}
	return compactSorted(out)
}

func (s *subject) pods() []string {
	out := make([]string, len(s.eps))
	for i, ep := range s.eps {
		out[i] = ep.Key()
	}
	return out
}

func podsOf(ss []*subject) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.pods()...)
	}
	return compactSorted(out)
}

// peerName describes an identity for people: its pods, a prefix, or a reserved name.
func (a *auditor) peerName(id *identity.Identity) string {
	if id == nil {
		return "any peer"
	}
	switch id.Kind {
	case identity.KindPod:
		if eps := a.byIdent[id]; len(eps) > 0 {
			return podGroupName(eps)
		}
		return fmt.Sprintf("identity %d", id.ID)
	case identity.KindHost:
		if id.Node != "" {
			return "host (node " + id.Node + ")"
		}
		return "host"
	case identity.KindRemoteNode:
		if id.Node != "" {
			return "node " + id.Node + " (remote-node)"
		}
		return "remote-node"
	case identity.KindWorld:
		if id.ID != identity.World && len(id.Prefixes) > 0 {
			return id.Prefixes[0].String() + " (world)"
		}
		return "world"
	}
	if n := identity.ReservedName(id.ID); n != "" {
		return n
	}
	return fmt.Sprintf("identity %d", id.ID)
}

// podGroupName names pods that share an identity: the pod, the workload's pods, or the
// first pod and a count.
func podGroupName(eps []*cluster.Endpoint) string {
	if len(eps) == 1 {
		return eps[0].Key()
	}
	same := true
	for _, ep := range eps[1:] {
		same = same && ep.Namespace == eps[0].Namespace && ep.Workload == eps[0].Workload
	}
	if same {
		return fmt.Sprintf("the %d pods of %s/%s", len(eps), eps[0].Namespace, eps[0].Workload)
	}
	return fmt.Sprintf("%s (+%d pods with the same identity)", eps[0].Key(), len(eps)-1)
}

// peers are the identities a subject's policy can see as peers.
func (a *auditor) peers(s *subject) []*identity.Identity {
	var out []*identity.Identity
	for _, id := range a.c.Engine.SelectorCache().Universe() {
		if policy.Visible(id, s.p.Node) {
			out = append(out, id)
		}
	}
	return out
}

// selector returns the cached selector of a peer selector. A rule of a policy that selects
// no endpoint was never compiled, so its selector may be missing: it is then added, which
// computes its selections and changes no compiled policy.
func (a *auditor) selector(ps policy.PeerSelector) *policy.CachedSelector {
	sc := a.c.Engine.SelectorCache()
	if cs, ok := sc.Get(ps.Key()); ok {
		return cs
	}
	return sc.Add(ps)
}

func protoDomain(proto uint8) (uint32, uint32) {
	switch proto {
	case policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP:
		return 1, 65535
	case policy.ProtoICMP, policy.ProtoICMPv6:
		return 0, 255
	}
	return 0, 0
}

// segment is a run of ports of one protocol that one lookup decides alike.
type segment struct {
	proto  uint8
	lo, hi uint16
	d      policy.Decision
}

func (s segment) ports() PortRange { return PortRange{Proto: s.proto, Lo: s.lo, Hi: s.hi} }

// segments cuts [lo, hi] of proto where a map key of peer (or of the wildcard identity)
// starts or ends and decides each piece with the datapath lookup.
func segments(p *policy.EndpointPolicy, egress bool, peer identity.ID, proto uint8, lo, hi uint32) []segment {
	dlo, dhi := protoDomain(proto)
	lo, hi = max(lo, dlo), min(hi, dhi)
	if lo > hi {
		return nil
	}
	points := []uint32{lo, hi + 1}
	ids := []identity.ID{peer}
	if peer != 0 {
		ids = append(ids, 0)
	}
	for _, id := range ids {
		for _, k := range p.Map.KeysFor(id, egress) {
			if k.PrefixLen < 8 || k.Proto != proto {
				continue
			}
			klo, khi := k.PortRange()
			for _, x := range []uint32{uint32(klo), uint32(khi) + 1} {
				if x > lo && x <= hi {
					points = append(points, x)
				}
			}
		}
	}
	slices.Sort(points)
	points = slices.Compact(points)
	var out []segment
	for i := 0; i+1 < len(points); i++ {
		d := p.Lookup(egress, peer, proto, uint16(points[i]))
		seg := segment{proto: proto, lo: uint16(points[i]), hi: uint16(points[i+1] - 1), d: d}
		if n := len(out); n > 0 && sameDecision(out[n-1].d, d) {
			out[n-1].hi = seg.hi
			continue
		}
		out = append(out, seg)
	}
	return out
}

func sameDecision(x, y policy.Decision) bool {
	return x.Enforced == y.Enforced && x.Allowed == y.Allowed && x.Found == y.Found &&
		x.Entry.Verdict == y.Entry.Verdict && x.Entry.Parser == y.Entry.Parser && slices.Equal(x.Entry.Origins, y.Entry.Origins)
}

// portSet collects port ranges and renders them merged.
type portSet map[uint8][][2]uint16

func (ps portSet) add(r PortRange) { ps[r.Proto] = append(ps[r.Proto], [2]uint16{r.Lo, r.Hi}) }

func (ps portSet) strings() []string {
	if len(ps[policy.ProtoAny]) > 0 || ps.full() {
		return []string{"every port and protocol"}
	}
	var out []string
	for _, proto := range []uint8{policy.ProtoAny, policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP, policy.ProtoICMPv6, otherIPProto} {
		rs := ps[proto]
		if len(rs) == 0 {
			continue
		}
		slices.SortFunc(rs, func(x, y [2]uint16) int { return cmp.Compare(x[0], y[0]) })
		cur := rs[0]
		flush := func() {
			r := PortRange{Proto: proto, Lo: cur[0], Hi: cur[1]}
			if proto == otherIPProto {
				out = append(out, "other IP protocols")
				return
			}
			out = append(out, r.String())
		}
		for _, r := range rs[1:] {
			if uint32(r[0]) <= uint32(cur[1])+1 {
				cur[1] = max(cur[1], r[1])
				continue
			}
			flush()
			cur = r
		}
		flush()
	}
	return out
}

// full reports whether the set covers every port of every protocol.
func (ps portSet) full() bool {
	for _, proto := range []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP, policy.ProtoICMPv6, otherIPProto} {
		lo, hi := protoDomain(proto)
		next := lo
		rs := slices.Clone(ps[proto])
		if len(rs) == 0 {
			return false
		}
		slices.SortFunc(rs, func(x, y [2]uint16) int { return cmp.Compare(x[0], y[0]) })
		for _, r := range rs {
			if uint32(r[0]) > next {
				return false
			}
			next = max(next, uint32(r[1])+1)
		}
		if next <= hi {
			return false
		}
	}
	return true
}

// peerSet collects peer identities.
type peerSet map[*identity.Identity]bool

func (a *auditor) peerNames(ps peerSet) []string {
	var out []string
	for id := range ps {
		out = append(out, a.peerName(id))
	}
	return compactSorted(out)
}

// group accumulates one finding over several subjects.
type group struct {
	key      string
	subjects []*subject
	objects  []string
	peers    peerSet
	ports    portSet
	extra    map[string][]string
	egress   bool
	flag     bool
}

type groups struct {
	order []*group
	byKey map[string]*group
}

func (g *groups) get(key string) *group {
	if g.byKey == nil {
		g.byKey = map[string]*group{}
	}
	if x, ok := g.byKey[key]; ok {
		return x
	}
	x := &group{key: key, peers: peerSet{}, ports: portSet{}, extra: map[string][]string{}}
	g.byKey[key] = x
	g.order = append(g.order, x)
	return x
}

func (x *group) addSubject(s *subject) {
	if !slices.Contains(x.subjects, s) {
		x.subjects = append(x.subjects, s)
	}
}

func hasL7(en *policy.Entry) (http, dns bool) {
	if en == nil {
		return false, false
	}
	for _, pr := range en.L4 {
		http = http || len(pr.HTTP) > 0
		dns = dns || len(pr.DNS) > 0
	}
	return http, dns
}

func httpStrings(rules []policy.L7Rules) []string {
	var out []string
	for _, r := range rules {
		for _, h := range r.HTTP {
			out = append(out, h.String())
		}
	}
	return compactSorted(out)
}

func verb(deny bool) string {
	if deny {
		return "denies"
	}
	return "allows"
}

// --- NW101: HTTP rules shadowed by an allow without HTTP rules ------------------------------

func (a *auditor) l7Shadowed() {
	var gs groups
	for s, egress := range a.compiledDirections() {
		if !s.p.Direction(egress).Enforced || !hasHTTPRedirect(s.entries(), egress) {
			continue
		}
		for _, peer := range a.peers(s) {
			for _, seg := range segments(s.p, egress, peer.ID, policy.ProtoTCP, 1, 65535) {
				e := seg.d.Entry
				if !seg.d.Found || e.Verdict != policy.Redirect || e.Parser != policy.ParserHTTP {
					continue
				}
				rules := s.p.HTTPRules(egress, peer, seg.lo)
				var open, restricted []*policy.Origin
				var restrictedRules []policy.L7Rules
				for _, r := range rules {
					if r.HTTP == nil {
						open = append(open, r.Origin)
					} else {
						restricted = append(restricted, r.Origin)
						restrictedRules = append(restrictedRules, r)
					}
				}
				if len(open) == 0 || len(restricted) == 0 {
					continue
				}
				openS, restS := origins(open), origins(restricted)
				g := gs.get(fmt.Sprint(egress, openS, restS))
				g.egress = egress
				g.objects = slices.Concat(openS, restS)
				g.extra["open"], g.extra["restricted"] = openS, restS
				g.extra["http"] = compactSorted(append(g.extra["http"], httpStrings(restrictedRules)...))
				g.addSubject(s)
				g.peers[peer] = true
				g.ports.add(seg.ports())
			}
		}
	}
	for _, g := range gs.order {
		dir := dirName(g.egress)
		peerWord := "from"
		if g.egress {
			peerWord = "to"
		}
		a.add(Finding{
			Code:     CodeL7Shadowed,
			Severity: SeverityWarning,
			Title:    "HTTP rules made ineffective by an allow without HTTP rules on the same port",
			Objects:  g.objects,
			Pods:     podsOf(g.subjects),
			Explanation: fmt.Sprintf("On %s %s of %s, %s %s connections %s without HTTP rules, while %s restrict%s the same port and peers to %s. "+
				"Cilium's proxy admits a request when any allow rule covering the port and the peer admits it, and a rule without HTTP rules admits every request, "+
				"so for %s these HTTP rules restrict nothing: every request passes (any method, path, host and headers, e.g. DELETE /admin), not only %s. "+
				"Give the allow rule the same HTTP rules, or narrow its ports or peers.",
				dir, listInOrder(g.ports.strings()), list(podsOf(g.subjects)),
				list(g.extra["open"]), allowVerb(len(g.extra["open"])), peerWord+" "+list(a.peerNames(g.peers)),
				list(g.extra["restricted"]), pluralS(len(g.extra["restricted"])), list(g.extra["http"]),
				list(a.peerNames(g.peers)), list(g.extra["http"])),
		})
	}
}

func allowVerb(n int) string {
	if n == 1 {
		return "allows"
	}
	return "allow"
}

func pluralS(n int) string {
	if n == 1 {
		return "s"
	}
	return ""
}

func hasHTTPRedirect(ents []policy.KeyEntry, egress bool) bool {
	return slices.ContainsFunc(ents, func(ke policy.KeyEntry) bool {
		return ke.Key.Egress == egress && ke.Entry.Verdict == policy.Redirect && ke.Entry.Parser == policy.ParserHTTP
	})
}

// --- NW102: L7 rules as visibility only (enableDefaultDeny: false) ---------------------------

func (a *auditor) l7VisibilityOnly() {
	var gs groups
	for s, egress := range a.compiledDirections() {
		d := s.p.Direction(egress)
		if !d.Enforced || d.DefaultDeny {
			continue
		}
		var l7 []*policy.Origin
		ports := portSet{}
		kinds := map[string]bool{}
		for _, ke := range s.entries() {
			if ke.Key.Egress != egress || ke.Entry.Verdict != policy.Redirect {
				continue
			}
			for _, o := range ke.Entry.Origins {
				h, dn := hasL7(a.entries[o])
				if !h && !dn {
					continue
				}
				l7 = append(l7, o)
				if h {
					kinds["HTTP"] = true
				}
				if dn {
					kinds["DNS"] = true
				}
				lo, hi := ke.Key.PortRange()
				ports.add(PortRange{Proto: ke.Key.Proto, Lo: lo, Hi: hi})
			}
		}
		if len(l7) == 0 {
			continue
		}
		l7s, sel := origins(l7), origins(d.Rules)
		g := gs.get(fmt.Sprint(egress, l7s, sel))
		g.egress = egress
		g.objects = append(slices.Clone(l7s), sel...)
		g.extra["l7"], g.extra["selecting"] = l7s, sel
		for k := range kinds {
			g.extra["kinds"] = compactSorted(append(g.extra["kinds"], k))
		}
		for p, rs := range ports {
			g.ports[p] = append(g.ports[p], rs...)
		}
		g.addSubject(s)
	}
	for _, g := range gs.order {
		dir := dirName(g.egress)
		what := "every HTTP request passes"
		if slices.Contains(g.extra["kinds"], "DNS") {
			what = "every request passes (every HTTP request, every DNS name)"
			if !slices.Contains(g.extra["kinds"], "HTTP") {
				what = "every DNS lookup passes, whatever the name"
			}
		}
		a.add(Finding{
			Code:     CodeL7VisibilityOnly,
			Severity: SeverityWarning,
			Title:    "L7 rules are visibility only: no rule turns " + dir + " default deny on",
			Objects:  g.objects,
			Pods:     podsOf(g.subjects),
			Explanation: fmt.Sprintf("Every rule selecting %s for %s (%s) has enableDefaultDeny.%s: false, so the %s is not default deny and Cilium appends an allow-all L7 rule to the L7 rules of %s. "+
				"Connections on %s still go through the proxy (they are logged), but %s, and everything not denied is allowed anyway. "+
				"Set enableDefaultDeny.%s to true (or drop it) if the L7 rules are meant to restrict.",
				list(podsOf(g.subjects)), dir, list(g.extra["selecting"]), dir, dir, list(g.extra["l7"]),
				listInOrder(g.ports.strings()), what, dir),
		})
	}
}

// --- NW104: L7 rules netward's agent has no proxy for -------------------------------------------

// l7NoProxy reports redirect entries to a proxy netward does not have (TLS, a
// CiliumEnvoyConfig listener): Cilium's proxy would judge those connections; netward's agent
// denies them (fail closed), so enforcement is narrower than this policy's semantics.
func (a *auditor) l7NoProxy() {
	var gs groups
	for s, egress := range a.compiledDirections() {
		for _, ke := range s.entries() {
			if ke.Key.Egress != egress || ke.Entry.Verdict != policy.Redirect || NetwardProxies(ke.Entry.Parser, egress) {
				continue
			}
			objs := origins(ke.Entry.Origins)
			g := gs.get(fmt.Sprint(egress, ke.Entry.Parser, objs))
			g.egress = egress
			g.objects = objs
			g.extra["parser"] = []string{ke.Entry.Parser.String()}
			lo, hi := ke.Key.PortRange()
			g.ports.add(PortRange{Proto: ke.Key.Proto, Lo: lo, Hi: hi})
			g.addSubject(s)
		}
	}
	for _, g := range gs.order {
		parser := g.extra["parser"][0]
		a.add(Finding{
			Code:     CodeL7NoProxy,
			Severity: SeverityWarning,
			Title:    "L7 rules netward's agent cannot enforce: " + parser + " redirects are denied",
			Objects:  g.objects,
			Pods:     podsOf(g.subjects),
			Explanation: fmt.Sprintf("Under %s, %s traffic of %s on %s is redirected to Cilium's %s proxy, which would judge each connection or request. "+
				"netward's agent has no %s proxy: it denies these connections (fail closed), so under netward they do not pass at all, "+
				"where under Cilium the rules would let the matching ones through (netward trace says so in its \"netward:\" line). "+
				"Replace the %s rules by L3/L4 rules (ports and peers) to run these pods under netward.",
				list(g.objects), dirName(g.egress), list(podsOf(g.subjects)), listInOrder(g.ports.strings()), parser, parser, parser),
		})
	}
}

// --- NW103: HTTP and DNS rules on one port ----------------------------------------------------

func (a *auditor) l7ParserConflict() {
	var gs groups
	for _, s := range a.subjects {
		if s.p.Err == nil {
			continue
		}
		var objs []string
		for _, ke := range s.entries() {
			if ke.Entry.Verdict != policy.Redirect {
				continue
			}
			var httpOs, dnsOs []*policy.Origin
			for _, o := range ke.Entry.Origins {
				h, d := hasL7(a.entries[o])
				if h {
					httpOs = append(httpOs, o)
				}
				if d {
					dnsOs = append(dnsOs, o)
				}
			}
			if len(httpOs) > 0 && len(dnsOs) > 0 {
				objs = append(objs, origins(httpOs)...)
				objs = append(objs, origins(dnsOs)...)
			}
		}
		if len(objs) == 0 {
			objs = append(origins(s.p.Ingress.Rules), origins(s.p.Egress.Rules)...)
		}
		objs = compactSorted(objs)
		g := gs.get(fmt.Sprint(s.p.Err.Error(), objs))
		g.objects = objs
		g.extra["err"] = []string{strings.TrimPrefix(s.p.Err.Error(), "policy cannot be computed: ")}
		g.addSubject(s)
	}
	for _, g := range gs.order {
		a.add(Finding{
			Code:     CodeL7ParserConflict,
			Severity: SeverityError,
			Title:    "HTTP and DNS rules on one port: Cilium fails the endpoint's policy",
			Objects:  g.objects,
			Pods:     podsOf(g.subjects),
			Explanation: fmt.Sprintf("Cilium cannot compute the policy of %s: %s. One port and peer can only go to one L7 proxy, and HTTP and DNS rules do not merge, "+
				"so the agent fails the endpoint's policy and every packet to and from these pods is dropped. The rules involved are %s. "+
				"Put the HTTP and the DNS rules on different ports or different peers.",
				list(podsOf(g.subjects)), g.extra["err"][0], list(g.objects)),
		})
	}
}

// --- NW201: a policy that selects no pod -------------------------------------------------------

// ruleGroup is the part of a policy object with one subject: a NetworkPolicy, or one
// spec/specs[i] of a Cilium policy.
func ruleGroup(o *policy.Origin) string {
	if o.Kind == api.KindNetworkPolicy {
		return ""
	}
	g, _, _ := strings.Cut(o.Path, ".")
	return g
}

func (a *auditor) hostPolicyGroups() map[string]bool {
	out := map[string]bool{}
	mark := func(kind, ns, name string, p *api.CiliumNetworkPolicy) {
		key := cluster.ResourceKey(kind, ns, name)
		if p.Spec != nil && p.Spec.NodeSelector != nil {
			out[key+"#spec"] = true
		}
		for i := range p.Specs {
			if p.Specs[i].NodeSelector != nil {
				out[fmt.Sprintf("%s#specs[%d]", key, i)] = true
			}
		}
	}
	for _, o := range a.objs.CCNPs {
		mark(api.KindCCNP, "", o.Obj.Name, o.Obj)
	}
	for _, o := range a.objs.CNPs {
		ns := o.Obj.Namespace
		if ns == "" {
			ns = "default"
		}
		mark(api.KindCNP, ns, o.Obj.Name, o.Obj)
	}
	return out
}

func (a *auditor) selectsNoPod() {
	host := a.hostPolicyGroups()
	for _, key := range a.c.Engine.Resources() {
		entries := a.c.Engine.Entries(key)
		if len(entries) == 0 {
			continue
		}
		type rg struct {
			name     string
			selected bool
			subject  string
		}
		var rgs []*rg
		byName := map[string]*rg{}
		for _, en := range entries {
			n := ruleGroup(en.Origin)
			if host[key+"#"+n] {
				continue
			}
			g, ok := byName[n]
			if !ok {
				g = &rg{name: n, subject: en.Subject.Selector.String()}
				byName[n] = g
				rgs = append(rgs, g)
			}
			g.selected = g.selected || len(a.selects[en.Origin]) > 0
		}
		var unselected []*rg
		for _, g := range rgs {
			if !g.selected {
				unselected = append(unselected, g)
			}
		}
		if len(unselected) == 0 {
			continue
		}
		o := entries[0].Origin
		field := "endpointSelector"
		if o.Kind == api.KindNetworkPolicy {
			field = "podSelector"
		}
		report := func(obj, sel string) {
			a.add(Finding{
				Code:     CodeSelectsNoPod,
				Severity: SeverityWarning,
				Title:    "Policy selects no pod",
				Objects:  []string{obj},
				Explanation: fmt.Sprintf("%s selects none of the %d pods in the input: its %s, as Cilium reads it (%s), matches no pod's identity labels, so none of its rules apply to anything. "+
					"Check the labels and the namespace; only identity-relevant labels can be selected (pod-template-hash, controller-revision-hash, statefulset pod names and other controller labels never match).",
					obj, len(a.c.Endpoints), field, sel),
			})
		}
		if len(unselected) == len(rgs) {
			var sels []string
			for _, g := range rgs {
				sels = append(sels, g.subject)
			}
			report(o.Resource(), strings.Join(compactSorted(sels), "; "))
			continue
		}
		for _, g := range unselected {
			obj := o.Resource()
			if g.name != "" {
				obj += " " + g.name
			}
			report(obj, g.subject)
		}
	}
}

// --- NW202: a rule that selects no peer --------------------------------------------------------

func (a *auditor) selectsNoPeer() {
	for _, key := range a.c.Engine.Resources() {
		for _, en := range a.c.Engine.Entries(key) {
			if len(a.selects[en.Origin]) == 0 {
				continue // the policy selects no pod: NW201
			}
			peerWord := "from"
			if !en.Ingress {
				peerWord = "to"
			}
			switch {
			case en.L3 == nil:
				if en.Origin.Kind == api.KindNetworkPolicy {
					continue // "no rules of this type": a default-deny marker
				}
				a.add(Finding{
					Code:     CodeSelectsNoPeer,
					Severity: SeverityWarning,
					Title:    "Rule selects no peer",
					Objects:  []string{en.Origin.String()},
					Pods:     podsOf(a.selects[en.Origin]),
					Explanation: fmt.Sprintf("%s has an explicitly empty peer list (e.g. %sEndpoints: []), which selects nothing in Cilium (omitting the field would select every peer): the rule %s nothing, "+
						"but it still turns %s default deny on for %s. Remove the empty list or name the peers.",
						en.Origin, peerWord, verb(en.Deny), dirName(!en.Ingress), list(podsOf(a.selects[en.Origin]))),
				})
				continue
			case len(en.L3) == 0:
				continue // wildcard
			}
			var sels []string
			empty := true
			for _, ps := range en.L3 {
				if _, ok := ps.(policy.NothingPeer); ok {
					empty = false // resolved at run time (FQDN, CIDR groups) or deliberately nothing
					break
				}
				if len(a.selector(ps).Selections()) > 0 {
					empty = false
					break
				}
				sels = append(sels, ps.String())
			}
			if !empty {
				continue
			}
			ns := ""
			if en.Origin.Kind == api.KindCNP {
				ns = " In a CiliumNetworkPolicy a peer selector without a namespace label only selects pods of the policy's namespace."
			}
			a.add(Finding{
				Code:     CodeSelectsNoPeer,
				Severity: SeverityWarning,
				Title:    "Rule selects no peer",
				Objects:  []string{en.Origin.String()},
				Pods:     podsOf(a.selects[en.Origin]),
				Explanation: fmt.Sprintf("%s %s nothing: its peer selectors, as Cilium reads them (%s), select no pod, node or address in the input, so no traffic %s them is %s for %s.%s "+
					"Check the labels and namespaces of the peers.",
					en.Origin, verb(en.Deny), list(sels), peerWord, map[bool]string{true: "denied", false: "allowed"}[en.Deny], list(podsOf(a.selects[en.Origin])), ns),
			})
		}
	}
}

// --- NW203: a CIDR covering pod or node addresses ----------------------------------------------

func (a *auditor) cidrInCluster() {
	mode := a.c.Options.Policy.CIDRMatch
	for _, key := range a.c.Engine.Resources() {
		for _, en := range a.c.Engine.Entries(key) {
			for _, ps := range en.L3 {
				cp, ok := ps.(policy.CIDRPeer)
				if !ok {
					continue
				}
				cs := a.selector(cp)
				inside := func(ip netip.Addr) bool {
					if !cp.Prefix.Contains(ip) {
						return false
					}
					for _, e := range cp.Except {
						if e.Contains(ip) {
							return false
						}
					}
					return true
				}
				var pods, nodes []string
				for _, ep := range a.c.Endpoints {
					for _, ip := range ep.IPs {
						if inside(ip) && !cs.Selects(ep.Identity) {
							pods = append(pods, fmt.Sprintf("%s (%s)", ep.Key(), ip))
							break
						}
					}
				}
				for _, name := range a.c.NodeNames() {
					n := a.c.Nodes[name]
					for _, ip := range n.IPs {
						if inside(ip) && !cs.Selects(n.Host) && !cs.Selects(n.Remote) {
							nodes = append(nodes, fmt.Sprintf("%s (%s)", name, ip))
							break
						}
					}
				}
				if len(pods) == 0 && len(nodes) == 0 {
					continue
				}
				field := "CIDR " + cp.Prefix.String()
				if en.Origin.Kind == api.KindNetworkPolicy {
					field = "ipBlock " + cp.Prefix.String()
				}
				var covered []string
				if len(pods) > 0 {
					covered = append(covered, "pods "+list(pods))
				}
				if len(nodes) > 0 {
					covered = append(covered, "nodes "+list(nodes))
				}
				fix := "select pods with podSelector/namespaceSelector (fromEndpoints/toEndpoints) and nodes with the host and remote-node entities"
				modeDesc := "the default policy-cidr-match-mode (empty)"
				if mode.String() == "" {
					fix += ", or run Cilium with policy-cidr-match-mode=pods,nodes"
				} else {
					modeDesc = fmt.Sprintf("policy-cidr-match-mode %q", mode.String())
				}
				peerWord := "from"
				if !en.Ingress {
					peerWord = "to"
				}
				what := "traffic " + peerWord + " them is allowed by this rule"
				if en.Deny {
					what = "traffic " + peerWord + " them is not denied by this rule"
				}
				a.add(Finding{
					Code:     CodeCIDRInCluster,
					Severity: SeverityWarning,
					Title:    "CIDR rule covers in-cluster addresses it does not match",
					Objects:  []string{en.Origin.String()},
					Pods:     podsOf(a.selects[en.Origin]),
					Explanation: fmt.Sprintf("%s of %s covers the addresses of %s. Cilium resolves in-cluster addresses to the pod's or node's identity, and under %s a CIDR does not select these identities "+
						"(it selects addresses outside the cluster, and 0.0.0.0/0 never selects nodes), so no %s, where upstream Kubernetes NetworkPolicy semantics would match them. To mean them, %s.",
						field, en.Origin, strings.Join(covered, " and "), modeDesc, what, fix),
				})
			}
		}
	}
}

// --- NW301/NW302: a deny overriding an allow ---------------------------------------------------

func (a *auditor) denyOverrides() {
	type hit struct {
		peers peerSet
		ports portSet
		deny  []string
	}
	type allowState struct {
		origin *policy.Origin
		passes bool // some of what the rule allows is not denied
		hits   map[string]*hit
		order  []string
	}
	var gs groups
	for s, egress := range a.compiledDirections() {
		if !s.p.Direction(egress).Enforced || !hasDeny(s.entries(), egress) {
			continue
		}
		states := map[*policy.Origin]*allowState{}
		var order []*policy.Origin
		for _, af := range s.p.AllowFilters(egress) {
			if af.Origin.Kind == "" {
				continue // synthetic allow rules (default allow, allow-localhost)
			}
			st, ok := states[af.Origin]
			if !ok {
				st = &allowState{origin: af.Origin, hits: map[string]*hit{}}
				states[af.Origin] = st
				order = append(order, af.Origin)
			}
			peers := af.Peers
			if af.Wildcard {
				peers = []*identity.Identity{nil}
			}
			protos := []uint8{af.Proto}
			if af.Proto == policy.ProtoAny {
				protos = []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP, policy.ProtoICMPv6, otherIPProto}
			}
			for _, peer := range peers {
				var pid identity.ID
				if peer != nil {
					pid = peer.ID
				}
				for _, proto := range protos {
					for _, seg := range segments(s.p, egress, pid, proto, uint32(af.Lo), uint32(af.Hi)) {
						if !seg.d.Found || seg.d.Entry.Verdict != policy.Deny {
							st.passes = true
							continue
						}
						denies := origins(seg.d.Entry.Origins)
						k := strings.Join(denies, "\n")
						h, ok := st.hits[k]
						if !ok {
							h = &hit{peers: peerSet{}, ports: portSet{}, deny: denies}
							st.hits[k] = h
							st.order = append(st.order, k)
						}
						h.peers[peer] = true
						h.ports.add(seg.ports())
					}
				}
			}
		}
		for _, o := range order {
			st := states[o]
			for _, k := range st.order {
				h := st.hits[k]
				g := gs.get(fmt.Sprint(!st.passes, egress, o.String(), k))
				g.egress, g.flag = egress, !st.passes
				g.objects = append([]string{o.String()}, h.deny...)
				g.extra["allow"], g.extra["deny"] = []string{o.String()}, h.deny
				g.addSubject(s)
				for p := range h.peers {
					g.peers[p] = true
				}
				for p, rs := range h.ports {
					g.ports[p] = append(g.ports[p], rs...)
				}
			}
		}
	}
	for _, g := range gs.order {
		peerWord := "from"
		if g.egress {
			peerWord = "to"
		}
		f := Finding{
			Code:     CodeDenyOverridesPart,
			Severity: SeverityInfo,
			Title:    "Deny rule overrides part of an allow rule",
			Objects:  g.objects,
			Pods:     podsOf(g.subjects),
		}
		common := fmt.Sprintf("%s %s what %s allows %s %s on %s (%s of %s). In Cilium a deny beats every allow, whatever its specificity or policy kind",
			list(g.extra["deny"]), map[bool]string{true: "denies", false: "deny"}[len(g.extra["deny"]) == 1], g.extra["allow"][0],
			peerWord, list(a.peerNames(g.peers)), listInOrder(g.ports.strings()), dirName(g.egress), list(podsOf(g.subjects)))
		if g.flag {
			f.Code, f.Severity, f.Title = CodeDenyOverridesAll, SeverityWarning, "Deny rule overrides an allow rule entirely"
			f.Explanation = common + ", so the allow rule has no effect at all. Remove one of them, or narrow the deny rule if the allow is meant."
		} else {
			f.Explanation = common + "; the rest of what the allow rule allows still passes."
		}
		a.add(f)
	}
}

func hasDeny(ents []policy.KeyEntry, egress bool) bool {
	return slices.ContainsFunc(ents, func(ke policy.KeyEntry) bool {
		return ke.Key.Egress == egress && ke.Entry.Verdict == policy.Deny
	})
}

// --- NW303: L7 rules written for visibility enforced because another policy turns default deny on

func (a *auditor) mixedIntent() {
	var gs groups
	for s, egress := range a.compiledDirections() {
		d := s.p.Direction(egress)
		if !d.Enforced || !d.DefaultDeny {
			continue
		}
		dd := map[string]bool{}
		for _, o := range d.Rules {
			if en := a.entries[o]; en != nil {
				dd[o.Resource()] = dd[o.Resource()] || en.DefaultDeny
			}
		}
		var deniers []string
		for r, on := range dd {
			if on {
				deniers = append(deniers, r)
			}
		}
		deniers = compactSorted(deniers)
		// L7 rules of default-allow objects that the compiled map now enforces.
		for _, ke := range s.entries() {
			if ke.Key.Egress != egress || ke.Entry.Verdict != policy.Redirect {
				continue
			}
			if ke.Entry.Parser == policy.ParserHTTP && ke.Key.Identity != 0 {
				if peer := a.identityByID(ke.Key.Identity); peer != nil && admitsAll(s.p.HTTPRules(egress, peer, ke.Key.Port)) {
					continue // another rule admits every request of this peer (NW101)
				}
			}
			for _, o := range ke.Entry.Origins {
				en := a.entries[o]
				h, dn := hasL7(en)
				if (!h && !dn) || dd[o.Resource()] || l7AdmitsAll(en) {
					continue
				}
				g := gs.get(fmt.Sprint(egress, o.String()))
				g.egress = egress
				g.extra["rule"] = []string{o.String()}
				g.extra["deniers"] = compactSorted(append(g.extra["deniers"], deniers...))
				g.objects = append([]string{o.String()}, g.extra["deniers"]...)
				g.extra["l7"] = compactSorted(append(g.extra["l7"], l7Strings(en)...))
				if dn {
					g.flag = true
				}
				g.addSubject(s)
				g.peers[a.identityByID(ke.Key.Identity)] = true
				lo, hi := ke.Key.PortRange()
				g.ports.add(PortRange{Proto: ke.Key.Proto, Lo: lo, Hi: hi})
			}
		}
	}
	for _, g := range gs.order {
		dir := dirName(g.egress)
		peerWord := "from"
		if g.egress {
			peerWord = "to"
		}
		rejected := "HTTP requests that match none of them are now rejected (403)"
		if g.flag {
			rejected = "requests that match none of them are now rejected (HTTP 403, DNS lookups refused)"
		}
		a.add(Finding{
			Code:     CodeMixedIntent,
			Severity: SeverityWarning,
			Title:    "L7 rules written as visibility only are enforced: another policy turns " + dir + " default deny on",
			Objects:  g.objects,
			Pods:     podsOf(g.subjects),
			Explanation: fmt.Sprintf("%s belongs to a policy with enableDefaultDeny.%s: false, where its L7 rules (%s) only give visibility, but %s also select%s %s and turn%s %s default deny on "+
				"(any selecting rule with default deny wins; a NetworkPolicy always has it). So these L7 rules are enforced %s %s on %s: %s, and the rule now also allows these peers on these ports. "+
				"Decide which intent holds: make the L7 rules match everything that must pass, or separate the selectors.",
				g.extra["rule"][0], dir, list(g.extra["l7"]), list(g.extra["deniers"]), pluralS(len(g.extra["deniers"])), list(podsOf(g.subjects)), pluralS(len(g.extra["deniers"])), dir,
				peerWord, list(a.peerNames(g.peers)), listInOrder(g.ports.strings()), rejected),
		})
	}
}

func admitsAll(rules []policy.L7Rules) bool {
	for _, r := range rules {
		if r.HTTP == nil {
			return true
		}
	}
	return false
}

// l7AdmitsAll reports whether every L7 rule list of an entry admits everything (an HTTP
// rule without conditions, a DNS matchPattern "*"): enforcing it changes nothing.
func l7AdmitsAll(en *policy.Entry) bool {
	for _, pr := range en.L4 {
		all := len(pr.HTTP) == 0 && len(pr.DNS) == 0
		for _, h := range pr.HTTP {
			all = all || (h.Method == "" && h.Path == "" && h.Host == "" && len(h.Headers) == 0 && len(h.HeaderMatches) == 0)
		}
		for _, d := range pr.DNS {
			all = all || d.MatchPattern == "*"
		}
		if !all {
			return false
		}
	}
	return true
}

func l7Strings(en *policy.Entry) []string {
	var out []string
	for _, pr := range en.L4 {
		for _, h := range pr.HTTP {
			out = append(out, h.String())
		}
		for _, d := range pr.DNS {
			if d.MatchName != "" {
				out = append(out, "DNS "+d.MatchName)
			} else {
				out = append(out, "DNS "+d.MatchPattern)
			}
		}
	}
	return out
}

// identityByID finds an identity by number (nil, "any peer", for the wildcard 0).
func (a *auditor) identityByID(id identity.ID) *identity.Identity {
	if id == 0 {
		return nil
	}
	if a.byID == nil {
		a.byID = map[identity.ID]*identity.Identity{}
		for _, x := range a.c.Engine.SelectorCache().Universe() {
			if _, ok := a.byID[x.ID]; !ok {
				a.byID[x.ID] = x
			}
		}
	}
	return a.byID[id]
}

// --- NW401: pods without ingress policy reachable from the world ------------------------------

func (a *auditor) worldReachable() {
	world := a.c.ReservedIdentity(identity.World)
	var gs groups
	for _, s := range a.subjects {
		d := s.p.Ingress
		if d.DefaultDeny || s.p.Err != nil {
			continue
		}
		ports := portSet{}
		if !d.Enforced {
			ports.add(PortRange{Proto: policy.ProtoAny})
		} else {
			for _, proto := range []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP, policy.ProtoICMPv6, otherIPProto} {
				for _, seg := range segments(s.p, false, world.ID, proto, 0, 65535) {
					if seg.d.Allowed {
						ports.add(seg.ports())
					}
				}
			}
		}
		if len(ports) == 0 {
			continue
		}
		ns := s.eps[0].Namespace
		rules := origins(d.Rules)
		g := gs.get(fmt.Sprint(ns, rules, ports.strings()))
		g.objects = append([]string{"Namespace " + ns}, rules...)
		g.extra["rules"] = rules
		g.ports = ports
		g.flag = d.Enforced
		g.addSubject(s)
	}
	for _, g := range gs.order {
		why := "No policy selects " + list(podsOf(g.subjects)) + " for ingress"
		if g.flag {
			why = "Only rules with enableDefaultDeny.ingress: false (" + list(g.extra["rules"]) + ") select " + list(podsOf(g.subjects)) + " for ingress"
		}
		a.add(Finding{
			Code:     CodeWorldReachable,
			Severity: SeverityWarning,
			Title:    "Pods without ingress default deny are reachable from the world",
			Objects:  g.objects,
			Pods:     podsOf(g.subjects),
			Explanation: fmt.Sprintf("%s, so their ingress is not default deny and the world identity (any address outside the cluster) is allowed on %s: "+
				"whatever can route to them, through a LoadBalancer or NodePort Service, an Ingress or a routed pod network, reaches them. "+
				"Select them with a policy that has ingress default deny (e.g. a NetworkPolicy with policyTypes: [Ingress]) and allow what they serve.",
				why, listInOrder(g.ports.strings())),
		})
	}
}

// --- NW402: egress default deny without DNS -----------------------------------------------------

func (a *auditor) noDNS() {
	var dns []*cluster.Endpoint
	for _, ep := range a.c.Endpoints {
		if ep.Labels["k8s-app"] == "kube-dns" {
			dns = append(dns, ep)
		}
	}
	dnsIDs := []identity.ID{identity.Host} // node-local DNS
	for _, ep := range dns {
		dnsIDs = append(dnsIDs, ep.Identity.ID)
	}
	var gs groups
	for _, s := range a.subjects {
		d := s.p.Egress
		if !d.DefaultDeny || s.p.Err != nil || slices.Contains(dns, s.eps[0]) {
			continue
		}
		allowed := false
		if len(dns) > 0 {
			for _, id := range dnsIDs {
				if s.p.Lookup(true, id, policy.ProtoUDP, 53).Allowed {
					allowed = true
					break
				}
			}
		} else {
			for _, ke := range s.entries() {
				if ke.Key.Egress && ke.Key.Covers(policy.ProtoUDP, 53) && s.p.Lookup(true, ke.Key.Identity, policy.ProtoUDP, 53).Allowed {
					allowed = true
					break
				}
			}
		}
		if allowed {
			continue
		}
		var dd []*policy.Origin
		for _, o := range d.Rules {
			if en := a.entries[o]; en != nil && en.DefaultDeny {
				dd = append(dd, o)
			}
		}
		rules := origins(dd)
		g := gs.get(fmt.Sprint(rules))
		g.objects = rules
		g.addSubject(s)
	}
	target := "any peer"
	if len(dns) > 0 {
		var names []string
		for _, ep := range dns {
			names = append(names, ep.Key())
		}
		target = "the cluster DNS pods (" + list(names) + ") or the node"
	}
	for _, g := range gs.order {
		a.add(Finding{
			Code:     CodeNoDNS,
			Severity: SeverityWarning,
			Title:    "Egress default deny without DNS",
			Objects:  g.objects,
			Pods:     podsOf(g.subjects),
			Explanation: fmt.Sprintf("%s put the egress of %s in default deny, and no rule allows UDP 53 to %s: name resolution fails, so connections by name fail even where they are allowed. "+
				"Neither Cilium nor NetworkPolicy adds a DNS exception. Allow UDP and TCP 53 to the kube-dns pods (k8s-app: kube-dns in kube-system), e.g. in a cluster-wide policy.",
				list(g.objects), list(podsOf(g.subjects)), target),
		})
	}
}

// --- NW501: NetworkPolicy rules of a type missing from policyTypes -----------------------------

func (a *auditor) policyTypes() {
	for _, o := range a.objs.NetworkPolicies {
		np := o.Obj
		if len(np.Spec.PolicyTypes) == 0 {
			continue
		}
		has := map[bool]bool{}
		for _, t := range np.Spec.PolicyTypes {
			has[t == "Egress"] = true
		}
		ns := np.Namespace
		if ns == "" {
			ns = "default"
		}
		key := cluster.ResourceKey(api.KindNetworkPolicy, ns, np.Name)
		for _, egress := range []bool{false, true} {
			if has[egress] {
				continue
			}
			var subs []*subject
			var rules []*policy.Origin
			for _, en := range a.c.Engine.Entries(key) {
				if en.Ingress == egress || en.L3 == nil {
					continue // other direction, or a default-deny marker
				}
				rules = append(rules, en.Origin)
				for _, s := range a.selects[en.Origin] {
					if !slices.Contains(subs, s) {
						subs = append(subs, s)
					}
				}
			}
			if len(rules) == 0 {
				continue
			}
			dir := dirName(egress)
			listed := make([]string, len(np.Spec.PolicyTypes))
			for i, t := range np.Spec.PolicyTypes {
				listed[i] = string(t)
			}
			pods := "no pod in the input"
			if len(subs) > 0 {
				pods = list(podsOf(subs))
			}
			a.add(Finding{
				Code:     CodePolicyTypes,
				Severity: SeverityWarning,
				Title:    "NetworkPolicy " + dir + " rules enforced although policyTypes omits " + strings.ToUpper(dir[:1]) + dir[1:],
				Objects:  []string{fmt.Sprintf("%s %s/%s spec.%s", api.KindNetworkPolicy, ns, np.Name, dir)},
				Pods:     podsOf(subs),
				Explanation: fmt.Sprintf("policyTypes of NetworkPolicy %s/%s is [%s], so upstream Kubernetes ignores its spec.%s rules, but Cilium still enforces them: the %s of %s is default deny "+
					"and only what %s (and other policies) allow passes. Add %s to policyTypes to make this explicit, or remove spec.%s.",
					ns, np.Name, strings.Join(listed, ", "), dir, dir, pods, list(origins(rules)), strings.ToUpper(dir[:1])+dir[1:], dir),
			})
		}
	}
}

// --- NW502: icmps type 0 -----------------------------------------------------------------------

func (a *auditor) icmpType0() {
	for _, key := range a.c.Engine.Resources() {
		for _, en := range a.c.Engine.Entries(key) {
			found := ""
			for _, pr := range en.L4 {
				for _, pp := range pr.Ports {
					if (pp.Proto == policy.ProtoICMP || pp.Proto == policy.ProtoICMPv6) && pp.Port == 0 {
						found = policy.ProtoName(pp.Proto)
					}
				}
			}
			if found == "" {
				continue
			}
			name := "type 0 (EchoReply)"
			if found == "ICMPv6" {
				name = "ICMPv6 type 0"
			}
			a.add(Finding{
				Code:     CodeICMPType0,
				Severity: SeverityWarning,
				Title:    "icmps type 0 matches every ICMP type",
				Objects:  []string{en.Origin.String()},
				Pods:     podsOf(a.selects[en.Origin]),
				Explanation: fmt.Sprintf("%s lists ICMP %s. Cilium puts the ICMP type in the port slot of the policy map key, and port 0 there means every port, "+
					"so this rule %s every %s type (echo requests, redirects, timestamps, …), not only type 0. Allow or deny the types you mean explicitly and avoid type 0, "+
					"or accept that the rule covers all of ICMP.",
					en.Origin, name, verb(en.Deny), found),
			})
		}
	}
}

// --- NW503/NW504: named ports --------------------------------------------------------------------

// ruleObject names the rule an entry comes from, as written: for a NetworkPolicy the
// ports belong to spec.ingress[i] (or egress), not to one of its from/to peers.
func ruleObject(o *policy.Origin) string {
	if o.Kind != api.KindNetworkPolicy {
		return o.String()
	}
	path := o.Path
	if i := strings.LastIndex(path, ".from["); i >= 0 {
		path = path[:i]
	} else if i := strings.LastIndex(path, ".to["); i >= 0 {
		path = path[:i]
	}
	return o.Resource() + " " + path
}

func (a *auditor) namedPorts() {
	type key struct {
		obj     string
		ingress bool
		pp      policy.PortProto
	}
	var order []key
	byKey := map[key][]*policy.Entry{}
	for _, rk := range a.c.Engine.Resources() {
		for _, en := range a.c.Engine.Entries(rk) {
			for _, pr := range en.L4 {
				for _, pp := range pr.Ports {
					if pp.Name == "" {
						continue
					}
					k := key{ruleObject(en.Origin), en.Ingress, pp}
					if _, ok := byKey[k]; !ok {
						order = append(order, k)
					}
					if !slices.Contains(byKey[k], en) {
						byKey[k] = append(byKey[k], en)
					}
				}
			}
		}
	}
	for _, k := range order {
		protos := []uint8{k.pp.Proto}
		if k.pp.Proto == policy.ProtoAny {
			protos = []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP}
		}
		for _, proto := range protos {
			a.namedPort(k.obj, k.ingress, byKey[k], k.pp, proto)
		}
	}
}

func (a *auditor) namedPort(obj string, ingress bool, entries []*policy.Entry, pp policy.PortProto, proto uint8) {
	var subs []*subject
	for _, en := range entries {
		for _, s := range a.selects[en.Origin] {
			if !slices.Contains(subs, s) {
				subs = append(subs, s)
			}
		}
	}
	// Who resolves the name: the subject on ingress, each destination on egress.
	type res struct {
		who  string
		port uint16
	}
	var rs []res
	if ingress {
		for _, s := range subs {
			rs = append(rs, res{podGroupName(s.eps), s.p.Subject.NamedPort(pp.Name, proto)})
		}
	} else {
		var ids []*identity.Identity
		for _, en := range entries {
			switch {
			case en.L3 == nil:
			case len(en.L3) == 0:
				ids = append(ids, a.c.Engine.SelectorCache().Universe()...)
			default:
				for _, ps := range en.L3 {
					ids = append(ids, a.selector(ps).Selections()...)
				}
			}
		}
		seen := map[*identity.Identity]bool{}
		for _, id := range ids {
			if seen[id] || id.Kind != identity.KindPod {
				continue
			}
			seen[id] = true
			rs = append(rs, res{a.peerName(id), id.NamedPort(pp.Name, proto)})
		}
	}
	slices.SortFunc(rs, func(x, y res) int { return strings.Compare(x.who, y.who) })
	numbers := map[uint16][]string{}
	var missing []string
	for _, r := range rs {
		if r.port == 0 {
			missing = append(missing, r.who)
			continue
		}
		numbers[r.port] = append(numbers[r.port], r.who)
	}
	pname := policy.ProtoName(proto)
	var parts []string
	for _, port := range sortedKeys(numbers) {
		desc := fmt.Sprintf("%s %d", pname, port)
		if pp.EndPort != 0 && ingress {
			if pp.EndPort > port {
				desc = fmt.Sprintf("%s %d-%d", pname, port, pp.EndPort)
			} else {
				desc = fmt.Sprintf("%s %d only (endPort %d is below it)", pname, port, pp.EndPort)
			}
		}
		parts = append(parts, list(numbers[port])+" → "+desc)
	}
	if len(missing) > 0 {
		parts = append(parts, list(missing)+" → nothing (no container port of that name)")
	}
	resolution := strings.Join(parts, "; ")
	if resolution == "" {
		resolution = "no pod in the input resolves it"
	}
	if pp.EndPort != 0 {
		how := fmt.Sprintf("On ingress Cilium resolves the name on the selected pod and enforces the range from that number to endPort %d, "+
			"so the range differs per pod: %s.", pp.EndPort, resolution)
		if !ingress {
			how = fmt.Sprintf("On egress Cilium resolves the name per destination and drops endPort %d: only each destination's own port is allowed (%s).", pp.EndPort, resolution)
		}
		a.add(Finding{
			Code:     CodeNamedPortEndPort,
			Severity: SeverityWarning,
			Title:    "Named port with endPort",
			Objects:  []string{obj},
			Pods:     podsOf(subs),
			Explanation: fmt.Sprintf("%s combines the named port %q with endPort %d, which Cilium documents as unsupported but accepts. %s "+
				"Use numeric ports for ranges.", obj, pp.Name, pp.EndPort, how),
		})
	}
	if len(numbers) < 2 {
		return
	}
	how := "On ingress the name resolves on each selected pod"
	if !ingress {
		how = "On egress the name resolves separately for each destination, and each destination is allowed only its own number"
	}
	a.add(Finding{
		Code:     CodeNamedPortNumbers,
		Severity: SeverityInfo,
		Title:    "Named port resolves to different numbers",
		Objects:  []string{obj},
		Pods:     podsOf(subs),
		Explanation: fmt.Sprintf("%s names port %q (%s), which resolves to %d different numbers: %s. %s, so the rule opens different ports for different pods; "+
			"make sure that is meant, or use a number.", obj, pp.Name, pname, len(numbers), resolution, how),
	})
}

func sortedKeys[V any](m map[uint16]V) []uint16 {
	out := make([]uint16, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
