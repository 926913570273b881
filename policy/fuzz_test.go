package policy

import (
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/labels"
)

// ---------------------------------------------------------------------------------------
// Random worlds: identities, entries and flows, generated from fuzz bytes or a seed.

// fzGen draws choices from the fuzz input first and, once it is used up, from a PRNG seeded
// with a hash of the input, so every input (even empty) gives a full deterministic world.
type fzGen struct {
	data []byte
	rng  *rand.Rand
}

func newFzGen(data []byte) *fzGen {
	h := fnv.New64a()
	h.Write(data)
	s := h.Sum64()
	return &fzGen{data: data, rng: rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))}
}

func newFzSeedGen(seed uint64) *fzGen {
	return &fzGen{rng: rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1))}
}

func (g *fzGen) intn(n int) int {
	if n <= 1 {
		return 0
	}
	if len(g.data) > 0 {
		b := g.data[0]
		g.data = g.data[1:]
		return int(b) % n
	}
	return g.rng.IntN(n)
}

func (g *fzGen) chance(pct int) bool { return g.intn(100) < pct }

func fzPick[T any](g *fzGen, xs ...T) T { return xs[g.intn(len(xs))] }

var (
	fzApps       = []string{"a", "b", "c"}
	fzTiers      = []string{"x", "y"}
	fzNamespaces = []string{"ns0", "ns1", "ns2"}
	fzTeams      = map[string]string{"ns0": "t1", "ns1": "t2", "ns2": "t1"}
	fzPorts      = []uint16{80, 443, 53, 8080, 1, 65535, 9090, 1024, 0, 81}
	fzRanges     = [][2]uint16{{80, 90}, {1000, 2000}, {8000, 8191}, {1, 65535}, {1024, 65535}, {53, 53}, {443, 80}, {0, 100}, {79, 81}}
	fzPortNames  = []string{"http", "dns", "web", "missing"}
	fzICMP       = []PortProto{{Port: 0, Proto: ProtoICMP}, {Port: 8, Proto: ProtoICMP}, {Port: 3, Proto: ProtoICMP}, {Port: 128, Proto: ProtoICMPv6}, {Port: 0, Proto: ProtoICMPv6}}
	fzPrefixes   = []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16", "192.168.1.0/24", "203.0.113.0/24", "10.0.0.1/32"}
	fzExcepts    = map[string][]string{"0.0.0.0/0": {"10.0.0.0/8"}, "10.0.0.0/8": {"10.1.0.0/16"}, "192.168.0.0/16": {"192.168.1.0/24"}}
	fzEntities   = []string{"all", "world", "host", "remote-node", "cluster", "kube-apiserver", "health", "init", "none"}
)

var fzHTTPRules = func() []*l7.HTTPRule {
	mk := func(method, path, host string, headers ...string) *l7.HTTPRule {
		r, err := l7.NewHTTPRule(method, path, host, headers, nil)
		if err != nil {
			panic(err)
		}
		return r
	}
	return []*l7.HTTPRule{
		mk("GET", "/a.*", ""), mk("POST", "", ""), mk("", "/b", ""), mk("", "", "api\\.example"),
		mk("GET", "/public/.*", ""), mk("", "", ""), mk("PUT", "/a", "", "X-Token"),
	}
}()

// fzDNSRules and fzDNSNames: rules and names where every kind of pattern matches some names
// and not others.
var (
	fzDNSRules = []DNSRule{mustDNSRule("", "*"), mustDNSRule("", "*.example.com"), mustDNSRule("", "**.example.com"),
		mustDNSRule("api.example.com", ""), mustDNSRule("", "a*.io"), mustDNSRule("Example.COM", "")}
	fzDNSNames = []string{"api.example.com.", "a.b.example.com.", "example.com.", "ab.io.", "x.io.", "API.example.com"}
)

func mustDNSRule(name, pattern string) DNSRule {
	r, err := NewDNSRule(name, pattern)
	if err != nil {
		panic(err)
	}
	return r
}

func fzRequest(g *fzGen) *l7.Request {
	req := &l7.Request{
		Method: fzPick(g, "GET", "POST", "PUT", "DELETE"),
		Path:   fzPick(g, "/a", "/a/x", "/b", "/public/x", "/c"),
		Host:   fzPick(g, "api.example", "other"),
		Header: map[string][]string{},
	}
	if g.chance(30) {
		req.Header["X-Token"] = []string{"1"}
	}
	return req
}

// fzWorld is a generated cluster: identities, policy objects and agent options.
type fzWorld struct {
	opts      Options
	pods      []*identity.Identity
	reserved  []*identity.Identity
	resources map[string][]*Entry
	// nodeOf is each pod's node, under cidr-match-mode "nodes" (where host and remote-node
	// identities are per node and policies per node); "" otherwise.
	nodeOf map[*identity.Identity]string
}

// fzNodeIdentities are the per-node host and remote-node identities of cidr-match-mode
// "nodes" (as the cluster package builds them): the reserved host identity is replaced by
// one host identity per node, each carrying the node's address.
func fzNodeIdentities() []*identity.Identity {
	var out []*identity.Identity
	for _, id := range fzReservedIdentities() {
		if id.ID != identity.Host {
			out = append(out, id)
		}
	}
	for i, n := range []string{"n1", "n2"} {
		pfx := []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 32)}
		out = append(out,
			&identity.Identity{ID: identity.Host, Kind: identity.KindHost, Labels: identity.ReservedLabels(identity.Host), Prefixes: pfx, Node: n},
			&identity.Identity{ID: identity.RemoteNodeScope + identity.ID(i), Kind: identity.KindRemoteNode, Labels: identity.ReservedLabels(identity.RemoteNode), Prefixes: pfx, Node: n})
	}
	return out
}

// fzVisible reports whether a peer exists as seen from a pod on node: its own node's host,
// the other nodes' remote-node identities, and everything that is not per node.
func fzVisible(id *identity.Identity, node string) bool {
	switch {
	case id.Node == "":
		return true
	case id.Kind == identity.KindHost:
		return id.Node == node
	}
	return id.Node != node
}

func fzLabel(source, key, value string) labels.Label {
	return labels.Label{Source: source, Key: key, Value: value}
}

func fzReservedIdentities() []*identity.Identity {
	var out []*identity.Identity
	for _, id := range identity.ReservedIDs() {
		ri := &identity.Identity{ID: id, Kind: identity.KindReserved, Labels: identity.ReservedLabels(id)}
		switch id {
		case identity.Host:
			ri.Kind = identity.KindHost
			ri.Prefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}
		case identity.RemoteNode:
			ri.Kind = identity.KindRemoteNode
			ri.Prefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}
		case identity.World:
			ri.Kind = identity.KindWorld
		}
		out = append(out, ri)
	}
	return out
}

func fzPod(g *fzGen, i int, namespaces []string) *identity.Identity {
	ns := fzPick(g, namespaces...)
	ls := []labels.Label{
		fzLabel(labels.SourceK8s, labels.KeyNamespace, ns),
		fzLabel(labels.SourceK8s, labels.KeyNamespaceLabels+".team", fzTeams[ns]),
		fzLabel(labels.SourceK8s, labels.KeyCluster, DefaultCluster),
		fzLabel(labels.SourceK8s, "app", fzPick(g, fzApps...)),
	}
	if g.chance(50) {
		ls = append(ls, fzLabel(labels.SourceK8s, "tier", fzPick(g, fzTiers...)))
	}
	np := map[string]identity.NamedPort{}
	for _, name := range fzPortNames[:3] {
		if g.chance(50) {
			proto := ProtoTCP
			if name == "dns" || g.chance(15) {
				proto = ProtoUDP
			}
			np[name] = identity.NamedPort{Port: fzPick(g, uint16(80), 8080, 53, 9090, 443, 85), Proto: proto}
		}
	}
	return &identity.Identity{
		ID: identity.MinCluster + identity.ID(i), Kind: identity.KindPod, Labels: labels.NewSet(ls...),
		Prefixes:   []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}), 32)},
		NamedPorts: np,
	}
}

func fzRequirement(g *fzGen, namespaces []string) labels.Requirement {
	src := fzPick(g, labels.SourceAny, labels.SourceK8s)
	switch g.intn(9) {
	case 0:
		return labels.Requirement{Source: src, Key: "app", Operator: labels.OpIn, Values: []string{fzPick(g, fzApps...)}}
	case 1:
		return labels.Requirement{Source: src, Key: "app", Operator: labels.OpIn, Values: []string{"a", "b"}}
	case 2:
		return labels.Requirement{Source: src, Key: "app", Operator: labels.OpNotIn, Values: []string{fzPick(g, fzApps...)}}
	case 3:
		return labels.Requirement{Source: src, Key: "tier", Operator: labels.OpExists}
	case 4:
		return labels.Requirement{Source: src, Key: "tier", Operator: labels.OpDoesNotExist}
	case 5:
		return labels.Requirement{Source: src, Key: labels.KeyNamespace, Operator: labels.OpIn, Values: []string{fzPick(g, namespaces...)}}
	case 6:
		return labels.Requirement{Source: src, Key: labels.KeyNamespaceLabels + ".team", Operator: labels.OpIn, Values: []string{fzPick(g, "t1", "t2")}}
	case 7:
		return labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyCluster, Operator: labels.OpIn, Values: []string{DefaultCluster}}
	}
	return labels.Requirement{Source: labels.SourceReserved, Key: fzPick(g, "host", "world", "remote-node"), Operator: labels.OpExists}
}

func fzPeer(g *fzGen, ns string, namespaces []string) []PeerSelector {
	switch g.intn(6) {
	case 0, 1:
		reqs := []labels.Requirement{fzRequirement(g, namespaces)}
		if g.chance(40) {
			reqs = append(reqs, fzRequirement(g, namespaces))
		}
		if ns != "" && g.chance(60) {
			reqs = append(reqs, labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyNamespace, Operator: labels.OpIn, Values: []string{ns}})
		}
		return []PeerSelector{LabelPeer{Sel: labels.NewSelector(reqs...)}}
	case 2:
		sels, _ := EntitySelectors(fzPick(g, fzEntities...), DefaultCluster)
		return sels
	case 3, 4:
		p := fzPick(g, fzPrefixes...)
		var except []netip.Prefix
		if ex, ok := fzExcepts[p]; ok && g.chance(50) {
			for _, e := range ex {
				except = append(except, netip.MustParsePrefix(e))
			}
		}
		return []PeerSelector{NewCIDRPeer(netip.MustParsePrefix(p), except)}
	}
	if g.chance(50) {
		return []PeerSelector{NothingPeer{Why: "fqdn"}}
	}
	return []PeerSelector{wildcardPeer}
}

func fzL3(g *fzGen, ns string, namespaces []string) []PeerSelector {
	switch g.intn(10) {
	case 0:
		return nil
	case 1, 2:
		return []PeerSelector{}
	}
	l3 := fzPeer(g, ns, namespaces)
	if g.chance(30) {
		l3 = append(slices.Clone(l3), fzPeer(g, ns, namespaces)...)
	}
	return l3
}

func fzPortProto(g *fzGen) PortProto {
	proto := fzPick(g, ProtoAny, ProtoTCP, ProtoTCP, ProtoUDP, ProtoSCTP)
	switch g.intn(5) {
	case 0, 1:
		return PortProto{Port: fzPick(g, fzPorts...), Proto: proto}
	case 2, 3:
		r := fzPick(g, fzRanges...)
		return PortProto{Port: r[0], EndPort: r[1], Proto: proto}
	}
	return PortProto{Name: fzPick(g, fzPortNames...), EndPort: fzPick(g, uint16(0), 0, 8090, 100), Proto: proto}
}

func fzL4(g *fzGen, ingress, deny bool) []PortRule {
	if g.chance(35) {
		return nil
	}
	var l4 []PortRule
	for range 1 + g.intn(2) {
		if g.chance(20) {
			pr := PortRule{Ports: []PortProto{fzPick(g, fzICMP...)}}
			if g.chance(30) {
				pr.Ports = append(pr.Ports, fzPick(g, fzICMP...))
			}
			l4 = append(l4, pr)
			continue
		}
		pr := PortRule{Ports: []PortProto{fzPortProto(g)}}
		if g.chance(30) {
			pr.Ports = append(pr.Ports, fzPortProto(g))
		}
		if !deny && g.chance(50) {
			pr = fzL7(g, pr, ingress)
		}
		l4 = append(l4, pr)
	}
	return l4
}

func fzSubject(g *fzGen, ns string, namespaces []string) Subject {
	var reqs []labels.Requirement
	if ns != "" {
		reqs = append(reqs, labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyNamespace, Operator: labels.OpIn, Values: []string{ns}})
	}
	if g.chance(60) {
		reqs = append(reqs, fzRequirement(g, namespaces))
	}
	return Subject{Selector: labels.NewSelector(reqs...)}
}

// fzL7 gives a port rule random L7 rules (allow rules only), adjusting its ports to what
// Cilium's validation accepts (pkg/policy/api/rule_validation.go PortRule.sanitize): HTTP
// and TLS on TCP ports only, never on port 0; DNS and listeners on egress only, DNS on
// TCP/UDP/ANY without numeric ranges.
func fzL7(g *fzGen, pr PortRule, ingress bool) PortRule {
	pr.HTTP, pr.DNS, pr.TLS, pr.Listener = nil, nil, false, ""
	n := g.intn(100)
	if ingress && n >= 58 && n < 66 {
		n = 0 // no DNS on ingress
	}
	if ingress && n >= 66 && n < 70 {
		n = 100 // no listener on ingress
	}
	switch {
	case n < 50:
		for range 1 + g.intn(2) {
			pr.HTTP = append(pr.HTTP, fzPick(g, fzHTTPRules...))
		}
	case n < 58:
		pr.TLS = true
	case n < 66:
		for range 1 + g.intn(2) {
			pr.DNS = append(pr.DNS, fzPick(g, fzDNSRules...))
		}
	case n < 70:
		pr.Listener = "envoy/listener"
	}
	pr.Ports = slices.Clone(pr.Ports)
	for i := range pr.Ports {
		pp := &pr.Ports[i]
		switch {
		case pp.Proto == ProtoICMP || pp.Proto == ProtoICMPv6:
			pr.HTTP, pr.DNS, pr.TLS, pr.Listener = nil, nil, false, ""
			return pr
		case len(pr.HTTP) > 0 || pr.TLS:
			pp.Proto = ProtoTCP
		case len(pr.DNS) > 0:
			if pp.Proto == ProtoSCTP {
				pp.Proto = ProtoUDP
			}
			if pp.Name == "" {
				pp.EndPort = 0
			}
		}
		if (len(pr.HTTP) > 0 || len(pr.DNS) > 0) && pp.Port == 0 && pp.Name == "" {
			pp.Port, pp.EndPort = 53, 0
		}
	}
	return pr
}

// fzResource generates the entries of one policy object. Some entries are variations of
// earlier ones (same peers and ports, other verdict or L7 rules), so that rules overlap
// and merge as in §2.5 and §5.6-§5.9.
func fzResource(g *fzGen, kind, ns, name string, namespaces []string, pool *[]*Entry) []*Entry {
	var out []*Entry
	for i := range 1 + g.intn(3) {
		deny, ingress := g.chance(25), g.chance(50)
		en := &Entry{
			Subject:     fzSubject(g, ns, namespaces),
			Ingress:     ingress,
			Deny:        deny,
			DefaultDeny: g.chance(80),
			L3:          fzL3(g, ns, namespaces),
			L4:          fzL4(g, ingress, deny),
			Origin:      &Origin{Kind: kind, Namespace: ns, Name: name, Path: fmt.Sprintf("spec[%d]", i)},
		}
		if len(*pool) > 0 && g.chance(30) {
			prev := fzPick(g, *pool...)
			en.Ingress, en.L3, en.L4 = prev.Ingress, prev.L3, nil
			if prev.Origin.Namespace == ns && g.chance(50) {
				en.Subject = prev.Subject // a namespaced entry must only select its namespace
			}
			for _, pr := range prev.L4 {
				pr.Ports = slices.Clone(pr.Ports)
				if deny {
					pr.HTTP, pr.DNS, pr.TLS, pr.Listener = nil, nil, false, ""
				} else if g.chance(70) {
					pr = fzL7(g, pr, en.Ingress)
				}
				en.L4 = append(en.L4, pr)
			}
		}
		out = append(out, en)
		*pool = append(*pool, en)
	}
	return out
}

func fzResourceKey(g *fzGen, namespaces []string) (key, kind, ns, name string) {
	name = fmt.Sprintf("p%d", g.intn(4))
	switch g.intn(3) {
	case 0:
		kind = "CiliumClusterwideNetworkPolicy"
		return kind + "/" + name, kind, "", name
	case 1:
		kind = "NetworkPolicy"
	default:
		kind = "CiliumNetworkPolicy"
	}
	ns = fzPick(g, namespaces...)
	return kind + "/" + ns + "/" + name, kind, ns, name
}

func newFzWorld(g *fzGen) *fzWorld {
	w := &fzWorld{resources: map[string][]*Entry{}, reserved: fzReservedIdentities()}
	w.opts.AllowLocalhost = g.chance(80)
	w.opts.CIDRMatch = fzPick(g, CIDRMatchMode{}, CIDRMatchMode{}, CIDRMatchMode{Nodes: true}, CIDRMatchMode{Pods: true}, CIDRMatchMode{Nodes: true, Pods: true})
	namespaces := fzNamespaces[:2+g.intn(2)]
	w.nodeOf = map[*identity.Identity]string{}
	if w.opts.CIDRMatch.Nodes {
		w.reserved = fzNodeIdentities()
	}
	for i := range 3 + g.intn(6) {
		pod := fzPod(g, i, namespaces)
		w.pods = append(w.pods, pod)
		if w.opts.CIDRMatch.Nodes {
			w.nodeOf[pod] = fzPick(g, "n1", "n2")
		}
	}
	var pool []*Entry
	for range 1 + g.intn(5) {
		key, kind, ns, name := fzResourceKey(g, namespaces)
		w.resources[key] = fzResource(g, kind, ns, name, namespaces, &pool)
	}
	return w
}

func (w *fzWorld) namespaces() []string {
	var out []string
	for _, p := range w.pods {
		ns, _ := p.Labels.Get(labels.SourceK8s, labels.KeyNamespace)
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

func (w *fzWorld) engine() *Engine {
	e := NewEngine(w.opts)
	for _, id := range w.reserved {
		e.UpsertIdentity(id)
	}
	for _, id := range w.pods {
		e.UpsertIdentity(id)
	}
	for _, k := range slices.Sorted(maps.Keys(w.resources)) {
		e.ReplaceResource(k, w.resources[k])
	}
	return e
}

func (w *fzWorld) ref() refPolicy {
	r := refPolicy{opts: w.opts}
	for _, k := range slices.Sorted(maps.Keys(w.resources)) {
		r.entries = append(r.entries, w.resources[k]...)
	}
	return r
}

// flowPorts lists the interesting ports of a world: every port and range edge the rules
// name, the named ports of the pods, their neighbours, and the ends of the port space.
func (w *fzWorld) flowPorts() []uint16 {
	set := map[uint16]bool{0: true, 1: true, 65535: true, 65534: true, 12345: true}
	add := func(p uint16) {
		set[p] = true
		if p > 0 {
			set[p-1] = true
		}
		if p < 65535 {
			set[p+1] = true
		}
	}
	for _, es := range w.resources {
		for _, en := range es {
			for _, pr := range en.L4 {
				for _, pp := range pr.Ports {
					add(pp.Port)
					add(pp.EndPort)
				}
			}
		}
	}
	for _, p := range w.pods {
		for _, np := range p.NamedPorts {
			add(np.Port)
		}
	}
	return slices.Sorted(func(yield func(uint16) bool) {
		for p := range set {
			if !yield(p) {
				return
			}
		}
	})
}

// ---------------------------------------------------------------------------------------
// Rendering, for failure messages.

func fzFmtL3(l3 []PeerSelector) string {
	if l3 == nil {
		return "nil"
	}
	var s []string
	for _, p := range l3 {
		s = append(s, p.String())
	}
	return "[" + strings.Join(s, " | ") + "]"
}

func fzFmtPortProto(pp PortProto) string {
	s := ProtoName(pp.Proto) + "/"
	switch {
	case pp.Name != "":
		s += "name:" + pp.Name
		if pp.EndPort != 0 {
			s += fmt.Sprintf("-%d", pp.EndPort)
		}
	case pp.EndPort != 0:
		s += fmt.Sprintf("%d-%d", pp.Port, pp.EndPort)
	default:
		s += fmt.Sprint(pp.Port)
	}
	return s
}

func fzFmtEntry(en *Entry) string {
	var b strings.Builder
	dir := "egress"
	if en.Ingress {
		dir = "ingress"
	}
	verdict := "allow"
	if en.Deny {
		verdict = "deny"
	}
	fmt.Fprintf(&b, "%s %s dd=%v subject=%s L3=%s L4=[", dir, verdict, en.DefaultDeny, en.Subject.Selector, fzFmtL3(en.L3))
	for i, pr := range en.L4 {
		if i > 0 {
			b.WriteString("; ")
		}
		var ps []string
		for _, pp := range pr.Ports {
			ps = append(ps, fzFmtPortProto(pp))
		}
		b.WriteString(strings.Join(ps, ","))
		for _, h := range pr.HTTP {
			fmt.Fprintf(&b, " http{%s}", h)
		}
		if len(pr.DNS) > 0 {
			b.WriteString(" dns")
		}
		if pr.TLS {
			b.WriteString(" tls")
		}
		if pr.Listener != "" {
			b.WriteString(" listener=" + pr.Listener)
		}
	}
	fmt.Fprintf(&b, "] (%s)", en.Origin)
	return b.String()
}

func (w *fzWorld) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "options: allowLocalhost=%v cidrMatch=%q\nidentities:\n", w.opts.AllowLocalhost, w.opts.CIDRMatch)
	for _, p := range w.pods {
		fmt.Fprintf(&b, "  %s named=%v prefixes=%v node=%q\n", p, p.NamedPorts, p.Prefixes, w.nodeOf[p])
	}
	for _, id := range w.reserved {
		if id.Node != "" {
			fmt.Fprintf(&b, "  %s node=%q prefixes=%v\n", id, id.Node, id.Prefixes)
		}
	}
	b.WriteString("entries:\n")
	for _, k := range slices.Sorted(maps.Keys(w.resources)) {
		for _, en := range w.resources[k] {
			fmt.Fprintf(&b, "  %s\n", fzFmtEntry(en))
		}
	}
	return b.String()
}

func (f refFlow) String() string {
	dir := "ingress from"
	if f.egress {
		dir = "egress to"
	}
	peer := f.peer.String()
	if f.peer.Node != "" {
		peer += " of node " + f.peer.Node
	}
	return fmt.Sprintf("subject %s %s %s %s/%d", f.subject, dir, peer, ProtoName(f.proto), f.port)
}

// ---------------------------------------------------------------------------------------
// The differential check.

// fzStats counts what a comparison exercised, to keep the generator honest.
type fzStats struct {
	flows, notEnforced, allow, deny, redirected, http, httpAllowed, dns, dnsAllowed, conflicts int
}

// checkWorld compares the compiled policy of every pod with the reference on nflows random
// flows per subject and direction.
func fzCheckWorld(t testing.TB, g *fzGen, w *fzWorld, nflows int, st *fzStats) {
	t.Helper()
	e := w.engine()
	ref := w.ref()
	universe := e.SelectorCache().Universe()
	ports := w.flowPorts()
	icmpTypes := []uint16{0, 3, 8, 11, 128, 129}
	for _, s := range w.pods {
		node := w.nodeOf[s]
		p := e.Policy(s, node)
		var peers []*identity.Identity
		for _, id := range universe {
			if fzVisible(id, node) {
				peers = append(peers, id)
			}
		}
		if conflict := ref.Conflict(s); conflict != (p.Err != nil) {
			t.Fatalf("policy error mismatch for %s on node %q: engine %v, reference conflict=%v\n%s", s, node, p.Err, conflict, w)
		}
		if p.Err != nil {
			st.conflicts++
			continue
		}
		for _, egress := range []bool{false, true} {
			for range nflows {
				f := refFlow{subject: s, egress: egress, peer: fzPick(g, peers...)}
				f.proto = fzPick(g, ProtoTCP, ProtoTCP, ProtoTCP, ProtoUDP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6, 47)
				switch f.proto {
				case ProtoICMP, ProtoICMPv6:
					f.port = fzPick(g, icmpTypes...)
				case 47:
				default:
					f.port = fzPick(g, ports...)
					if g.chance(5) {
						f.port = uint16(g.intn(65536))
					}
				}
				if sel := ref.selecting(s, egress); len(sel) > 0 && g.chance(50) {
					fzTargetFlow(g, &f, fzPick(g, sel...), peers, w.opts.CIDRMatch)
				}
				want := ref.Decide(f)
				st.flows++
				switch {
				case !want.Enforced:
					st.notEnforced++
				case want.Allowed:
					st.allow++
				default:
					st.deny++
				}
				d := p.Lookup(f.egress, f.peer.ID, f.proto, f.port)
				got := refVerdict{Enforced: d.Enforced, Allowed: d.Allowed}
				if d.Allowed && d.Found && d.Entry.Verdict == Redirect {
					got.Redirect = d.Entry.Parser
				}
				if got != want {
					t.Fatalf("verdict mismatch\nflow: %s\nengine:    %+v (key %s entry %s)\nreference: %+v\n%smap:\n%s",
						f, got, d.Key, d.Entry, want, w, p.Map)
				}
				if want.Redirect != ParserNone {
					st.redirected++
				}
				if want.Redirect == ParserDNS && f.egress && (f.proto == ProtoUDP || f.proto == ProtoTCP) {
					for range 3 {
						name := fzPick(g, fzDNSNames...)
						wantDNS := ref.AllowsDNS(f, name)
						gotDNS, _ := p.AllowsDNS(f.egress, f.peer, f.proto, f.port, name)
						st.dns++
						if wantDNS {
							st.dnsAllowed++
						}
						if gotDNS != wantDNS {
							t.Fatalf("DNS mismatch\nflow: %s\nname: %s\nengine: %v reference: %v\nL7 rules: %+v\n%smap:\n%s",
								f, name, gotDNS, wantDNS, p.DNSRules(f.egress, f.peer, f.proto, f.port), w, p.Map)
						}
					}
				}
				if want.Redirect == ParserNone || f.proto != ProtoTCP {
					continue
				}
				for range 3 {
					req := fzRequest(g)
					wantHTTP := ref.AllowsHTTP(f, req)
					gotHTTP, _ := p.AllowsHTTP(f.egress, f.peer, f.port, req)
					st.http++
					if wantHTTP {
						st.httpAllowed++
					}
					if gotHTTP != wantHTTP {
						t.Fatalf("HTTP mismatch\nflow: %s\nrequest: %s %s host=%s headers=%v\nengine: %v reference: %v\nL7 rules: %+v\n%smap:\n%s",
							f, req.Method, req.Path, req.Host, req.Header, gotHTTP, wantHTTP, p.HTTPRules(f.egress, f.peer, f.port), w, p.Map)
					}
				}
			}
		}
	}
}

// targetFlow aims a flow at an entry: a peer it selects and a port at an edge of one of
// its port rules, so that most flows land on or next to something a rule says.
func fzTargetFlow(g *fzGen, f *refFlow, en *Entry, peers []*identity.Identity, mode CIDRMatchMode) {
	var selected []*identity.Identity
	for _, p := range peers {
		if len(en.L3) == 0 || slices.ContainsFunc(en.L3, func(s PeerSelector) bool { return s.Matches(p, mode) }) {
			selected = append(selected, p)
		}
	}
	if len(selected) > 0 {
		f.peer = fzPick(g, selected...)
	}
	if len(en.L4) == 0 {
		return
	}
	pr := fzPick(g, en.L4...)
	if len(pr.Ports) == 0 {
		return
	}
	pp := fzPick(g, pr.Ports...)
	f.proto = pp.Proto
	if f.proto == ProtoAny {
		f.proto = fzPick(g, ProtoTCP, ProtoTCP, ProtoUDP, ProtoSCTP)
	}
	port := pp.Port
	if pp.Name != "" {
		port = f.subject.NamedPort(pp.Name, f.proto)
		if f.egress {
			port = f.peer.NamedPort(pp.Name, f.proto)
		}
	}
	cands := []uint16{port, port + 1, port - 1}
	if pp.EndPort != 0 {
		cands = append(cands, pp.EndPort, pp.EndPort+1, pp.EndPort-1, port+(pp.EndPort-port)/2)
	}
	f.port = fzPick(g, cands...)
}

func FuzzCompiledVsReference(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("netward"))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{255, 254, 253, 252, 251, 250, 249, 248, 247, 246, 245, 244})
	f.Add([]byte("\x00\x05\x03\x02\x01\x00\x00\x01\x63\x10\x02\x05\x00\x01\x01\x07"))
	f.Add([]byte("HTTP on 80 with a wildcard L4-only allow and a deny range"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := newFzGen(data)
		w := newFzWorld(g)
		fzCheckWorld(t, g, w, 40, &fzStats{})
	})
}

func TestCompiledMatchesReferenceRandom(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	var st fzStats
	for seed := range uint64(seeds) {
		g := newFzSeedGen(seed)
		w := newFzWorld(g)
		ok := t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			fzCheckWorld(t, g, w, 60, &st)
		})
		if !ok {
			break
		}
	}
	t.Logf("%+v", st)
	// The generator must reach the L7 decisions, with both outcomes.
	if st.http == 0 || st.httpAllowed == 0 || st.httpAllowed == st.http || st.dns == 0 || st.dnsAllowed == 0 || st.dnsAllowed == st.dns {
		t.Errorf("the random worlds exercise too little L7: %+v", st)
	}
}

// ---------------------------------------------------------------------------------------
// Incremental updates.

// renderPolicy is a canonical dump of a compiled policy: directions, map entries and the L7
// rules the proxy would consult, with CIDR identities named by their prefix (their numbers
// depend on allocation order).
func fzRenderPolicy(e *Engine, p *EndpointPolicy, peers []*identity.Identity, ports []uint16) string {
	names := map[identity.ID]string{}
	for _, id := range e.SelectorCache().Universe() {
		if id.ID >= identity.LocalScope && len(id.Prefixes) > 0 {
			names[id.ID] = "cidr:" + id.Prefixes[0].String()
		}
	}
	name := func(id identity.ID) string {
		if n, ok := names[id]; ok {
			return n
		}
		return fmt.Sprint(uint32(id))
	}
	var lines []string
	for _, egress := range []bool{false, true} {
		d := p.Direction(egress)
		var rules []string
		for _, o := range d.Rules {
			rules = append(rules, o.String())
		}
		sort.Strings(rules)
		lines = append(lines, fmt.Sprintf("dir egress=%v enforced=%v dd=%v rules=%v", egress, d.Enforced, d.DefaultDeny, rules))
	}
	lines = append(lines, fmt.Sprintf("err=%v", p.Err))
	for _, ke := range p.Map.Entries() {
		k := ke.Key
		var os []string
		for _, o := range ke.Entry.Origins {
			os = append(os, o.String())
		}
		lines = append(lines, fmt.Sprintf("key id=%s eg=%v proto=%d port=%d plen=%d -> %s prec=%d origins=%v",
			name(k.Identity), k.Egress, k.Proto, k.Port, k.PrefixLen, ke.Entry, ke.Entry.Precedence, os))
	}
	for _, egress := range []bool{false, true} {
		for _, peer := range peers {
			for _, port := range ports {
				var rs []string
				for _, r := range p.HTTPRules(egress, peer, port) {
					rs = append(rs, fmt.Sprintf("%s/%s/%v", r.Origin, r.Parser, r.HTTP))
				}
				if len(rs) > 0 {
					sort.Strings(rs)
					lines = append(lines, fmt.Sprintf("l7 eg=%v peer=%d port=%d %v", egress, peer.ID, port, rs))
				}
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestIncrementalEqualsFullRecompute(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	queries, hits := 0, 0 // cached answers: the comparison must exercise the cache
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			g := newFzSeedGen(1000 + seed)
			w := newFzWorld(g)
			namespaces := w.namespaces()
			if len(namespaces) < 2 {
				namespaces = fzNamespaces[:2]
			}
			all := w.pods
			present := map[*identity.Identity]bool{}
			e := NewEngine(w.opts)
			for _, id := range w.reserved {
				e.UpsertIdentity(id)
			}
			for _, id := range all {
				if g.chance(70) {
					e.UpsertIdentity(id)
					present[id] = true
				}
			}
			res := map[string][]*Entry{}
			var pool []*Entry
			for _, k := range slices.Sorted(maps.Keys(w.resources)) {
				e.ReplaceResource(k, w.resources[k])
				res[k] = w.resources[k]
			}
			var log []string
			for step := range 25 {
				switch n := g.intn(100); {
				case n < 35:
					key, kind, ns, name := fzResourceKey(g, namespaces)
					res[key] = fzResource(g, kind, ns, name, namespaces, &pool)
					e.ReplaceResource(key, res[key])
					log = append(log, "replace "+key)
				case n < 50:
					keys := slices.Sorted(maps.Keys(res))
					if len(keys) == 0 {
						continue
					}
					key := fzPick(g, keys...)
					delete(res, key)
					e.ReplaceResource(key, nil)
					log = append(log, "delete "+key)
				default:
					id := fzPick(g, all...)
					if present[id] {
						e.RemoveIdentity(id)
						log = append(log, fmt.Sprintf("remove identity %d", id.ID))
					} else {
						e.UpsertIdentity(id)
						log = append(log, fmt.Sprintf("add identity %d", id.ID))
					}
					present[id] = !present[id]
				}
				// Query some policies so the next step starts from a warm cache.
				for _, id := range all {
					if present[id] && g.chance(60) {
						e.Policy(id, w.nodeOf[id])
					}
				}
				// Compare every present subject with a fresh engine built from the current state.
				fresh := NewEngine(w.opts)
				for _, id := range w.reserved {
					fresh.UpsertIdentity(id)
				}
				var peers []*identity.Identity
				peers = append(peers, w.reserved...)
				for _, id := range all {
					if present[id] {
						fresh.UpsertIdentity(id)
						peers = append(peers, id)
					}
				}
				for _, k := range slices.Sorted(maps.Keys(res)) {
					fresh.ReplaceResource(k, res[k])
				}
				fw := &fzWorld{opts: w.opts, resources: res, pods: peers, nodeOf: w.nodeOf}
				ports := fw.flowPorts()
				for _, id := range all {
					if !present[id] {
						continue
					}
					before := e.Compiles()
					p := e.Policy(id, w.nodeOf[id])
					queries++
					if e.Compiles() == before {
						hits++
					}
					got := fzRenderPolicy(e, p, peers, ports)
					want := fzRenderPolicy(fresh, fresh.Policy(id, w.nodeOf[id]), peers, ports)
					if got != want {
						t.Fatalf("step %d: incremental policy of %s differs from a full recompute\nsteps: %s\n%s\nincremental:\n%s\nfull:\n%s",
							step, id, strings.Join(log, "; "), fw, got, want)
					}
				}
			}
		})
	}
	t.Logf("%d of %d policies compared were cached answers", hits, queries)
	if hits == 0 || hits == queries {
		t.Errorf("the comparison did not exercise both cached and recompiled policies (%d of %d cached)", hits, queries)
	}
}

// TestIncrementalNamespaceIsolation: replacing a namespace's policy recompiles only the
// subjects of that namespace.
func TestIncrementalNamespaceIsolation(t *testing.T) {
	e := NewEngine(DefaultOptions())
	for _, id := range fzReservedIdentities() {
		e.UpsertIdentity(id)
	}
	pod := func(i int, ns, app string) *identity.Identity {
		return &identity.Identity{ID: identity.MinCluster + identity.ID(i), Labels: labels.NewSet(
			fzLabel(labels.SourceK8s, labels.KeyNamespace, ns), fzLabel(labels.SourceK8s, labels.KeyCluster, DefaultCluster), fzLabel(labels.SourceK8s, "app", app))}
	}
	a1, a2, b1, b2 := pod(0, "a", "web"), pod(1, "a", "db"), pod(2, "b", "web"), pod(3, "b", "db")
	for _, id := range []*identity.Identity{a1, a2, b1, b2} {
		e.UpsertIdentity(id)
	}
	nsSel := func(ns string) labels.Requirement {
		return labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyNamespace, Operator: labels.OpIn, Values: []string{ns}}
	}
	appSel := func(app string) labels.Requirement {
		return labels.Requirement{Source: labels.SourceAny, Key: "app", Operator: labels.OpIn, Values: []string{app}}
	}
	policyIn := func(ns string, port uint16, l3 PeerSelector) []*Entry {
		return []*Entry{{
			Subject: Subject{Selector: labels.NewSelector(nsSel(ns))}, Ingress: true, DefaultDeny: true,
			L3:     []PeerSelector{l3},
			L4:     []PortRule{{Ports: []PortProto{{Port: port, Proto: ProtoTCP}}}},
			Origin: &Origin{Kind: "CiliumNetworkPolicy", Namespace: ns, Name: "p", Path: "spec.ingress[0]"},
		}}
	}
	web := func(ns string) PeerSelector { return LabelPeer{Sel: labels.NewSelector(nsSel(ns), appSel("web"))} }
	e.ReplaceResource("CiliumNetworkPolicy/a/p", policyIn("a", 80, web("a")))
	e.ReplaceResource("CiliumNetworkPolicy/b/p", policyIn("b", 80, web("b")))
	query := func(ids ...*identity.Identity) uint64 {
		before := e.Compiles()
		for _, id := range ids {
			e.Policy(id, "")
		}
		return e.Compiles() - before
	}
	query(a1, a2, b1, b2)
	if n := query(a1, a2, b1, b2); n != 0 {
		t.Fatalf("warm cache recompiled %d policies", n)
	}

	steps := []struct {
		name string
		do   func()
	}{
		{"replace a's policy", func() { e.ReplaceResource("CiliumNetworkPolicy/a/p", policyIn("a", 8080, web("a"))) }},
		{"replace a's policy with one naming b's pods", func() { e.ReplaceResource("CiliumNetworkPolicy/a/p", policyIn("a", 443, web("b"))) }},
		{"delete a's policy", func() { e.ReplaceResource("CiliumNetworkPolicy/a/p", nil) }},
		{"add a's policy back", func() { e.ReplaceResource("CiliumNetworkPolicy/a/p", policyIn("a", 80, web("a"))) }},
	}
	for _, s := range steps {
		s.do()
		if n := query(b1, b2); n != 0 {
			t.Errorf("%s: recompiled %d policies of namespace b", s.name, n)
		}
		// a1 and a2 are selected by the same entries and have the same named ports, so
		// they share one compiled policy: one compile serves both.
		if n := query(a1, a2); n != 1 {
			t.Errorf("%s: recompiled %d policies of namespace a, want 1 (shared by a1 and a2)", s.name, n)
		}
	}

	// A CIDR rule in namespace a allocates a CIDR identity. The maps of b's subjects cannot
	// change (no selector of theirs selects it, and the wildcard peer of an L4-only rule is
	// key 0 whatever it selects), so they need no recompilation.
	t.Run("cidr identity vs wildcard selector", func(t *testing.T) {
		l4only := policyIn("b", 80, nil)
		l4only[0].L3 = []PeerSelector{}
		e.ReplaceResource("CiliumNetworkPolicy/b/p", l4only)
		query(a1, a2, b1, b2)
		e.ReplaceResource("CiliumNetworkPolicy/a/p", policyIn("a", 80, NewCIDRPeer(netip.MustParsePrefix("192.0.2.0/24"), nil)))
		if n := query(b1, b2); n != 0 {
			t.Errorf("allocating a CIDR identity for namespace a's policy recompiled %d policies of namespace b; only policies that expand the wildcard per peer (egress named ports) depend on new identities", n)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Pinning the reference evaluator on the semantics doc (§5 and the §2 rules it rests on).
// Every case is also checked against the compiled engine.

func refRqApp(app string) labels.Requirement {
	return labels.Requirement{Source: labels.SourceAny, Key: "app", Operator: labels.OpIn, Values: []string{app}}
}

func refRqNS(ns string) labels.Requirement {
	return labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyNamespace, Operator: labels.OpIn, Values: []string{ns}}
}

func refPeerApp(app string) PeerSelector { return LabelPeer{Sel: labels.NewSelector(refRqApp(app))} }

func refPeerCIDR(p string, except ...string) PeerSelector {
	var ex []netip.Prefix
	for _, e := range except {
		ex = append(ex, netip.MustParsePrefix(e))
	}
	return NewCIDRPeer(netip.MustParsePrefix(p), ex)
}

func refPeerEntity(name string) []PeerSelector {
	s, ok := EntitySelectors(name, DefaultCluster)
	if !ok {
		panic(name)
	}
	return s
}

func refPorts(pps ...PortProto) PortRule { return PortRule{Ports: pps} }

func refTCP(port uint16) PortProto { return PortProto{Port: port, Proto: ProtoTCP} }

func refHTTPRule(method, path string) *l7.HTTPRule {
	r, err := l7.NewHTTPRule(method, path, "", nil, nil)
	if err != nil {
		panic(err)
	}
	return r
}

func refWithHTTP(pr PortRule, rules ...*l7.HTTPRule) PortRule { pr.HTTP = rules; return pr }

// rule builds a cluster-wide entry selecting pods with app=subject.
func refRule(ingress, deny bool, subject string, l3 []PeerSelector, l4 ...PortRule) *Entry {
	return &Entry{Subject: Subject{Selector: labels.NewSelector(refRqApp(subject))}, Ingress: ingress, Deny: deny, DefaultDeny: true, L3: l3, L4: l4}
}

func refAllowIn(subject string, l3 []PeerSelector, l4 ...PortRule) *Entry {
	return refRule(true, false, subject, l3, l4...)
}
func refAllowEg(subject string, l3 []PeerSelector, l4 ...PortRule) *Entry {
	return refRule(false, false, subject, l3, l4...)
}
func refDenyIn(subject string, l3 []PeerSelector, l4 ...PortRule) *Entry {
	return refRule(true, true, subject, l3, l4...)
}
func refNoDefaultDeny(en *Entry) *Entry { en.DefaultDeny = false; return en }

// refCaseFlow is a flow of a table case. Identities are named: pods by app ("web", "db",
// "other"), reserved identities by entity name, CIDR identities "cidr:<prefix>".
type refCaseFlow struct {
	subject, peer string
	egress        bool
	proto         uint8
	port          uint16
	want          refVerdict
	// Optional HTTP request on a redirected TCP flow and its expected verdict.
	req      *l7.Request
	wantHTTP bool
}

var (
	refAllowed    = refVerdict{Enforced: true, Allowed: true}
	refDropped    = refVerdict{Enforced: true}
	refRedirected = refVerdict{Enforced: true, Allowed: true, Redirect: ParserHTTP}
	refUnenforced = refVerdict{Allowed: true}
	refGetA       = &l7.Request{Method: "GET", Path: "/a"}
	refPostB      = &l7.Request{Method: "POST", Path: "/b"}
)

func refFl(subject, peer string, proto uint8, port uint16, want refVerdict) refCaseFlow {
	return refCaseFlow{subject: subject, peer: peer, proto: proto, port: port, want: want}
}

func (f refCaseFlow) out() refCaseFlow { f.egress = true; return f }

func (f refCaseFlow) http(req *l7.Request, ok bool) refCaseFlow {
	f.req, f.wantHTTP = req, ok
	return f
}

type refCase struct {
	name     string
	opts     *Options // nil: DefaultOptions
	entries  []*Entry
	conflict []string // subjects whose policy cannot be computed
	flows    []refCaseFlow
}

// refCasePods are the pods of the table cases.
func refCasePods() []*identity.Identity {
	pod := func(i int, ns, app string, np map[string]identity.NamedPort) *identity.Identity {
		return &identity.Identity{ID: identity.MinCluster + identity.ID(i), Kind: identity.KindPod, Labels: labels.NewSet(
			fzLabel(labels.SourceK8s, labels.KeyNamespace, ns), fzLabel(labels.SourceK8s, labels.KeyCluster, DefaultCluster), fzLabel(labels.SourceK8s, "app", app)),
			Prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}), 32)}, NamedPorts: np}
	}
	return []*identity.Identity{
		pod(0, "shop", "web", map[string]identity.NamedPort{"http": {Port: 8080, Proto: ProtoTCP}}),
		pod(1, "shop", "db", map[string]identity.NamedPort{"http": {Port: 80, Proto: ProtoTCP}, "pg": {Port: 5432, Proto: ProtoTCP}}),
		pod(2, "other", "other", map[string]identity.NamedPort{"http": {Port: 9090, Proto: ProtoTCP}}),
	}
}

var refCases = []refCase{
	{
		name:    "§2.2 no selecting entry: direction not enforced",
		entries: []*Entry{refAllowIn("db", []PeerSelector{}, refPorts(refTCP(80)))},
		flows:   []refCaseFlow{refFl("web", "world", ProtoTCP, 80, refUnenforced), refFl("db", "world", ProtoTCP, 80, refUnenforced).out()},
	},
	{
		name:    "§5.1 nil L3 (fromEndpoints: []) selects nothing but enables default deny",
		entries: []*Entry{refAllowIn("web", nil, refPorts(refTCP(80)))},
		flows:   []refCaseFlow{refFl("web", "db", ProtoTCP, 80, refDropped), refFl("web", "world", ProtoTCP, 80, refDropped)},
	},
	{
		name:    "§5.1 empty L3 with ports: any peer incl. world and host",
		entries: []*Entry{refAllowIn("web", []PeerSelector{}, refPorts(refTCP(80)))},
		flows: []refCaseFlow{
			refFl("web", "world", ProtoTCP, 80, refAllowed), refFl("web", "other", ProtoTCP, 80, refAllowed),
			refFl("web", "remote-node", ProtoTCP, 80, refAllowed), refFl("web", "world", ProtoTCP, 81, refDropped),
			refFl("web", "world", ProtoUDP, 80, refDropped),
		},
	},
	{
		name:    "§5.2 ingress: [{}] enables default deny and allows nothing",
		entries: []*Entry{refAllowIn("web", []PeerSelector{})},
		flows:   []refCaseFlow{refFl("web", "db", ProtoTCP, 80, refDropped), refFl("web", "world", ProtoICMP, 8, refDropped), refFl("web", "host", ProtoTCP, 80, refAllowed)},
	},
	{
		name:    "§5.3 a lone deny makes the direction default deny",
		entries: []*Entry{refDenyIn("web", refPeerEntity("world"), refPorts(refTCP(22)))},
		flows:   []refCaseFlow{refFl("web", "world", ProtoTCP, 22, refDropped), refFl("web", "db", ProtoTCP, 80, refDropped), refFl("web", "db", ProtoTCP, 80, refUnenforced).out()},
	},
	{
		name:    "§5.3 a deny with enableDefaultDeny false only denies",
		entries: []*Entry{refNoDefaultDeny(refDenyIn("web", refPeerEntity("world"), refPorts(refTCP(22))))},
		flows:   []refCaseFlow{refFl("web", "world", ProtoTCP, 22, refDropped), refFl("web", "world", ProtoTCP, 23, refAllowed), refFl("web", "db", ProtoTCP, 80, refAllowed)},
	},
	{
		name: "§5.4 enableDefaultDeny false never switches off another rule's default deny",
		entries: []*Entry{
			refNoDefaultDeny(refAllowIn("web", []PeerSelector{refPeerApp("db")}, refPorts(refTCP(80)))),
			refAllowIn("web", []PeerSelector{refPeerApp("other")}, refPorts(refTCP(443))),
		},
		flows: []refCaseFlow{refFl("web", "db", ProtoTCP, 80, refAllowed), refFl("web", "db", ProtoTCP, 81, refDropped), refFl("web", "world", ProtoTCP, 443, refDropped)},
	},
	{
		name:    "§5.5 default allow + L7: proxied for visibility, every request passes",
		entries: []*Entry{refNoDefaultDeny(refAllowIn("web", []PeerSelector{refPeerApp("db")}, refWithHTTP(refPorts(refTCP(80)), refHTTPRule("GET", "/a.*"))))},
		flows: []refCaseFlow{
			refFl("web", "db", ProtoTCP, 80, refRedirected).http(refGetA, true), refFl("web", "db", ProtoTCP, 80, refRedirected).http(refPostB, true),
			refFl("web", "world", ProtoTCP, 80, refAllowed), refFl("web", "db", ProtoTCP, 81, refAllowed),
		},
	},
	{
		name:    "§2.5 L7 under default deny: only admitted requests pass",
		entries: []*Entry{refAllowIn("web", []PeerSelector{refPeerApp("db")}, refWithHTTP(refPorts(refTCP(80)), refHTTPRule("GET", "/a.*")))},
		flows: []refCaseFlow{
			refFl("web", "db", ProtoTCP, 80, refRedirected).http(refGetA, true), refFl("web", "db", ProtoTCP, 80, refRedirected).http(refPostB, false),
			refFl("web", "world", ProtoTCP, 80, refDropped), refFl("web", "db", ProtoUDP, 80, refDropped),
		},
	},
	{
		name: "§5.6 L3/L4 allow + L7 allow for the same selector and port: proxied, unrestricted",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{refPeerApp("db")}, refWithHTTP(refPorts(refTCP(80)), refHTTPRule("GET", "/a.*"))),
			refAllowIn("web", []PeerSelector{refPeerApp("db")}, refPorts(refTCP(80))),
		},
		flows: []refCaseFlow{refFl("web", "db", ProtoTCP, 80, refRedirected).http(refPostB, true)},
	},
	{
		name: "§5.7 different selectors covering the same peer: the proxy ORs them",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{refPeerApp("db")}, refWithHTTP(refPorts(refTCP(80)), refHTTPRule("GET", "/a.*"))),
			refAllowIn("web", []PeerSelector{LabelPeer{Sel: labels.NewSelector(refRqNS("shop"))}}, refPorts(refTCP(80))),
		},
		flows: []refCaseFlow{refFl("web", "db", ProtoTCP, 80, refRedirected).http(refPostB, true), refFl("web", "web", ProtoTCP, 80, refAllowed)},
	},
	{
		name: "§2.5 an L3-only allow (port-0 rule list) also unrestricts L7",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{refPeerApp("db")}, refWithHTTP(refPorts(refTCP(80)), refHTTPRule("GET", "/a.*"))),
			refAllowIn("web", []PeerSelector{refPeerApp("db")}),
		},
		flows: []refCaseFlow{refFl("web", "db", ProtoTCP, 80, refRedirected).http(refPostB, true), refFl("web", "db", ProtoUDP, 53, refAllowed)},
	},
	{
		name: "§5.8 a wildcard-peer L7 rule pulls specifically refAllowed peers into the proxy",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{}, refWithHTTP(refPorts(refTCP(80)), refHTTPRule("GET", "/a.*"))),
			refAllowIn("web", []PeerSelector{refPeerApp("db")}, refPorts(refTCP(80))),
		},
		flows: []refCaseFlow{
			refFl("web", "db", ProtoTCP, 80, refRedirected).http(refPostB, true),
			refFl("web", "world", ProtoTCP, 80, refRedirected).http(refPostB, false), refFl("web", "world", ProtoTCP, 80, refRedirected).http(refGetA, true),
		},
	},
	{
		name: "§5.9 HTTP and DNS rules on the same port and selector: the policy cannot be computed",
		entries: []*Entry{
			refAllowEg("web", []PeerSelector{refPeerApp("db")}, refWithHTTP(refPorts(refTCP(53)), refHTTPRule("GET", ""))),
			refAllowEg("web", []PeerSelector{refPeerApp("db")}, PortRule{Ports: []PortProto{{Port: 53, Proto: ProtoAny}}, DNS: []DNSRule{mustDNSRule("", "*")}}),
		},
		conflict: []string{"web"},
	},
	{
		name: "§2.5 TLS merges into HTTP, DNS on another selector does not conflict",
		entries: []*Entry{
			refAllowEg("web", []PeerSelector{refPeerApp("db")}, refWithHTTP(refPorts(refTCP(443)), refHTTPRule("GET", ""))),
			refAllowEg("web", []PeerSelector{refPeerApp("db")}, PortRule{Ports: []PortProto{refTCP(443)}, TLS: true}),
			refAllowEg("web", []PeerSelector{refPeerApp("other")}, PortRule{Ports: []PortProto{refTCP(443)}, DNS: []DNSRule{mustDNSRule("", "*")}}),
		},
		flows: []refCaseFlow{
			refFl("web", "db", ProtoTCP, 443, refRedirected).out().http(refPostB, true),
			refFl("web", "other", ProtoTCP, 443, refVerdict{Enforced: true, Allowed: true, Redirect: ParserDNS}).out(),
		},
	},
	{
		name: "§5.11 an L3 deny beats an L7 allow",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{refPeerApp("db")}, refWithHTTP(refPorts(refTCP(80)), refHTTPRule("GET", ""))),
			refDenyIn("web", []PeerSelector{refPeerApp("db")}),
		},
		flows: []refCaseFlow{refFl("web", "db", ProtoTCP, 80, refDropped), refFl("web", "db", ProtoICMP, 8, refDropped)},
	},
	{
		name: "§5.11 a broader-port deny beats a narrower allow, ranges included",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{}, refPorts(refTCP(85), refTCP(95), PortProto{Port: 53, Proto: ProtoUDP})),
			refDenyIn("web", []PeerSelector{refPeerApp("db")}, refPorts(PortProto{Port: 80, EndPort: 90, Proto: ProtoTCP})),
			refDenyIn("web", []PeerSelector{refPeerApp("other")}, refPorts(PortProto{Proto: ProtoAny})),
		},
		flows: []refCaseFlow{
			refFl("web", "db", ProtoTCP, 85, refDropped), refFl("web", "db", ProtoTCP, 95, refAllowed), refFl("web", "world", ProtoTCP, 85, refAllowed),
			refFl("web", "other", ProtoTCP, 95, refDropped), refFl("web", "other", ProtoUDP, 53, refDropped),
		},
	},
	{
		name: "§5.13 protocol ANY is TCP, UDP and SCTP, never ICMP; L3-only rules allow every protocol",
		entries: []*Entry{
			refAllowIn("web", refPeerEntity("world"), refPorts(PortProto{Proto: ProtoAny})),
			refAllowIn("web", []PeerSelector{refPeerApp("db")}),
		},
		flows: []refCaseFlow{
			refFl("web", "world", ProtoTCP, 1234, refAllowed), refFl("web", "world", ProtoUDP, 1, refAllowed), refFl("web", "world", ProtoSCTP, 9, refAllowed),
			refFl("web", "world", ProtoICMP, 8, refDropped), refFl("web", "world", 47, 0, refDropped),
			refFl("web", "db", ProtoICMP, 8, refAllowed), refFl("web", "db", 47, 0, refAllowed), refFl("web", "db", ProtoICMPv6, 128, refAllowed),
		},
	},
	{
		name: "§2.6 ICMP type 0 is the port-0 key: every ICMP type; other types are exact",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{refPeerApp("db")}, refPorts(PortProto{Port: 0, Proto: ProtoICMP})),
			refAllowIn("web", []PeerSelector{refPeerApp("other")}, refPorts(PortProto{Port: 8, Proto: ProtoICMP})),
		},
		flows: []refCaseFlow{
			refFl("web", "db", ProtoICMP, 0, refAllowed), refFl("web", "db", ProtoICMP, 8, refAllowed), refFl("web", "db", ProtoICMPv6, 128, refDropped),
			refFl("web", "other", ProtoICMP, 8, refAllowed), refFl("web", "other", ProtoICMP, 0, refDropped), refFl("web", "other", ProtoTCP, 8, refDropped),
		},
	},
	{
		name:    "§2.6 port ranges are inclusive; endPort below port is the single port",
		entries: []*Entry{refAllowIn("web", []PeerSelector{}, refPorts(PortProto{Port: 80, EndPort: 90, Proto: ProtoTCP}, PortProto{Port: 443, EndPort: 80, Proto: ProtoTCP}))},
		flows: []refCaseFlow{
			refFl("web", "world", ProtoTCP, 79, refDropped), refFl("web", "world", ProtoTCP, 80, refAllowed), refFl("web", "world", ProtoTCP, 90, refAllowed),
			refFl("web", "world", ProtoTCP, 91, refDropped), refFl("web", "world", ProtoTCP, 443, refAllowed), refFl("web", "world", ProtoTCP, 442, refDropped),
		},
	},
	{
		name: "§5.16 CIDR rules never select pods, nodes or the host by default; 0.0.0.0/0 is not all",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{refPeerCIDR("10.0.0.0/8")}),
			refAllowIn("web", []PeerSelector{refPeerCIDR("0.0.0.0/0")}, refPorts(refTCP(443))),
			refAllowIn("web", []PeerSelector{refPeerCIDR("192.0.2.0/24")}, refPorts(refTCP(80))),
		},
		opts: &Options{},
		flows: []refCaseFlow{
			refFl("web", "host", ProtoTCP, 22, refDropped), refFl("web", "db", ProtoTCP, 22, refDropped), refFl("web", "remote-node", ProtoTCP, 22, refDropped),
			refFl("web", "cidr:10.0.0.0/8", ProtoTCP, 22, refAllowed), refFl("web", "world", ProtoTCP, 443, refAllowed), refFl("web", "world", ProtoTCP, 22, refDropped),
			refFl("web", "host", ProtoTCP, 443, refDropped), refFl("web", "cidr:192.0.2.0/24", ProtoTCP, 443, refAllowed), refFl("web", "cidr:192.0.2.0/24", ProtoTCP, 80, refAllowed),
		},
	},
	{
		name: "§2.7 policy-cidr-match-mode=nodes,pods: CIDRs select nodes and pods by address (not /0 for nodes)",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{refPeerCIDR("10.0.0.0/8")}, refPorts(refTCP(22))),
			refAllowIn("web", []PeerSelector{refPeerCIDR("0.0.0.0/0")}, refPorts(refTCP(443))),
		},
		opts: &Options{CIDRMatch: CIDRMatchMode{Nodes: true, Pods: true}},
		flows: []refCaseFlow{
			refFl("web", "host", ProtoTCP, 22, refAllowed), refFl("web", "db", ProtoTCP, 22, refAllowed), refFl("web", "remote-node", ProtoTCP, 22, refAllowed),
			refFl("web", "db", ProtoTCP, 443, refAllowed), refFl("web", "remote-node", ProtoTCP, 443, refDropped), refFl("web", "world", ProtoTCP, 22, refDropped),
		},
	},
	{
		name: "§5.17 except is carved out of its CIDR entry only",
		entries: []*Entry{
			refAllowEg("web", []PeerSelector{refPeerCIDR("10.0.0.0/8", "10.1.0.0/16")}),
			refAllowEg("db", []PeerSelector{refPeerCIDR("10.2.0.0/16"), refPeerCIDR("10.1.2.0/24")}),
		},
		flows: []refCaseFlow{
			refFl("web", "cidr:10.0.0.0/8", ProtoTCP, 1, refAllowed).out(), refFl("web", "cidr:10.2.0.0/16", ProtoTCP, 1, refAllowed).out(),
			refFl("web", "cidr:10.1.0.0/16", ProtoTCP, 1, refDropped).out(), refFl("web", "cidr:10.1.2.0/24", ProtoTCP, 1, refDropped).out(),
			refFl("db", "cidr:10.1.2.0/24", ProtoTCP, 1, refAllowed).out(),
		},
	},
	{
		name: "§5.22 named ports: ingress on the subject, egress per destination, unknown names select nothing",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{}, refPorts(PortProto{Name: "http", Proto: ProtoTCP}, PortProto{Name: "nope", Proto: ProtoTCP})),
			refAllowIn("db", []PeerSelector{}, refPorts(PortProto{Name: "http", Proto: ProtoTCP})),
			refAllowIn("other", []PeerSelector{}, refPorts(PortProto{Name: "http", Proto: ProtoUDP})),
			refAllowEg("web", []PeerSelector{}, refPorts(PortProto{Name: "http", Proto: ProtoTCP})),
		},
		flows: []refCaseFlow{
			refFl("web", "world", ProtoTCP, 8080, refAllowed), refFl("web", "world", ProtoTCP, 80, refDropped),
			refFl("db", "world", ProtoTCP, 80, refAllowed), refFl("db", "world", ProtoTCP, 8080, refDropped),
			refFl("other", "world", ProtoUDP, 9090, refDropped), refFl("other", "world", ProtoTCP, 9090, refDropped),
			refFl("web", "db", ProtoTCP, 80, refAllowed).out(), refFl("web", "other", ProtoTCP, 9090, refAllowed).out(),
			refFl("web", "other", ProtoTCP, 80, refDropped).out(), refFl("web", "world", ProtoTCP, 80, refDropped).out(),
		},
	},
	{
		name: "§2.6 named port + endPort: a range from the resolved number on ingress, refDropped on egress",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{}, refPorts(PortProto{Name: "http", EndPort: 8090, Proto: ProtoTCP})),
			refAllowEg("web", []PeerSelector{}, refPorts(PortProto{Name: "http", EndPort: 100, Proto: ProtoTCP})),
		},
		flows: []refCaseFlow{
			refFl("web", "world", ProtoTCP, 8085, refAllowed), refFl("web", "world", ProtoTCP, 8090, refAllowed), refFl("web", "world", ProtoTCP, 8091, refDropped),
			refFl("web", "world", ProtoTCP, 8079, refDropped),
			refFl("web", "db", ProtoTCP, 80, refAllowed).out(), refFl("web", "db", ProtoTCP, 81, refDropped).out(),
		},
	},
	{
		name: "§5.24 allow-localhost: the host reaches pods under ingress default deny, unrestricted at L7",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{}, refWithHTTP(refPorts(refTCP(80)), refHTTPRule("GET", "/a.*"))),
			refAllowEg("web", []PeerSelector{refPeerApp("db")}),
		},
		flows: []refCaseFlow{
			refFl("web", "host", ProtoTCP, 22, refAllowed), refFl("web", "host", ProtoICMP, 8, refAllowed),
			refFl("web", "host", ProtoTCP, 80, refRedirected).http(refPostB, true), refFl("web", "world", ProtoTCP, 80, refRedirected).http(refPostB, false),
			refFl("web", "host", ProtoTCP, 22, refDropped).out(),
		},
	},
	{
		name:    "§5.24 allow-localhost off: the host is refDropped like any peer",
		entries: []*Entry{refAllowIn("web", []PeerSelector{refPeerApp("db")})},
		opts:    &Options{},
		flows:   []refCaseFlow{refFl("web", "host", ProtoTCP, 22, refDropped), refFl("web", "db", ProtoTCP, 22, refAllowed)},
	},
	{
		name:    "§2.3 a deny of the host beats allow-localhost",
		entries: []*Entry{refDenyIn("web", refPeerEntity("host"), refPorts(refTCP(22)))},
		flows:   []refCaseFlow{refFl("web", "host", ProtoTCP, 22, refDropped), refFl("web", "host", ProtoTCP, 23, refAllowed)},
	},
	{
		name: "§2.4 L3-only, L4-only and L3+L4 combine as a union",
		entries: []*Entry{
			refAllowIn("web", []PeerSelector{}, refPorts(refTCP(80))),
			refAllowIn("web", []PeerSelector{refPeerApp("db")}),
			refAllowIn("web", refPeerEntity("world"), refPorts(PortProto{Port: 53, Proto: ProtoUDP})),
		},
		flows: []refCaseFlow{
			refFl("web", "other", ProtoTCP, 80, refAllowed), refFl("web", "other", ProtoTCP, 81, refDropped), refFl("web", "db", ProtoTCP, 81, refAllowed),
			refFl("web", "world", ProtoUDP, 53, refAllowed), refFl("web", "world", ProtoTCP, 53, refDropped), refFl("web", "other", ProtoUDP, 53, refDropped),
		},
	},
	{
		name: "§2.8 entities: cluster selects the reserved in-cluster identities and local pods, world only the outside",
		entries: []*Entry{
			refAllowEg("web", refPeerEntity("cluster"), refPorts(refTCP(80))),
			refAllowEg("web", refPeerEntity("world"), refPorts(refTCP(443))),
		},
		flows: []refCaseFlow{
			refFl("web", "host", ProtoTCP, 80, refAllowed).out(), refFl("web", "remote-node", ProtoTCP, 80, refAllowed).out(), refFl("web", "other", ProtoTCP, 80, refAllowed).out(),
			refFl("web", "world", ProtoTCP, 80, refDropped).out(), refFl("web", "world", ProtoTCP, 443, refAllowed).out(), refFl("web", "host", ProtoTCP, 443, refDropped).out(),
		},
	},
}

func TestReferenceSemantics(t *testing.T) {
	for _, c := range refCases {
		t.Run(c.name, func(t *testing.T) {
			opts := DefaultOptions()
			if c.opts != nil {
				opts = *c.opts
			}
			for i, en := range c.entries {
				if en.Origin == nil {
					en.Origin = &Origin{Kind: "CiliumClusterwideNetworkPolicy", Name: "case", Path: fmt.Sprintf("entry[%d]", i)}
				}
			}
			e := NewEngine(opts)
			byName := map[string]*identity.Identity{}
			for _, id := range fzReservedIdentities() {
				e.UpsertIdentity(id)
				byName[identity.ReservedName(id.ID)] = id
			}
			for _, id := range refCasePods() {
				e.UpsertIdentity(id)
				app, _ := id.Labels.Get(labels.SourceK8s, "app")
				byName[app] = id
			}
			e.ReplaceResource("CiliumClusterwideNetworkPolicy/case", c.entries)
			for _, id := range e.SelectorCache().Universe() {
				if id.ID >= identity.LocalScope {
					byName["cidr:"+id.Prefixes[0].String()] = id
				}
			}
			ref := refPolicy{entries: c.entries, opts: opts}
			for _, name := range []string{"web", "db", "other"} {
				want := slices.Contains(c.conflict, name)
				if got := ref.Conflict(byName[name]); got != want {
					t.Errorf("reference: conflict for %s = %v, want %v", name, got, want)
				}
				if got := e.Policy(byName[name], "").Err != nil; got != want {
					t.Errorf("engine: policy error for %s = %v, want %v", name, got, want)
				}
			}
			for _, cf := range c.flows {
				f := refFlow{subject: byName[cf.subject], egress: cf.egress, peer: byName[cf.peer], proto: cf.proto, port: cf.port}
				if f.subject == nil || f.peer == nil {
					t.Fatalf("unknown identity in %+v", cf)
				}
				if got := ref.Decide(f); got != cf.want {
					t.Errorf("reference: %s = %+v, want %+v", f, got, cf.want)
				}
				p := e.Policy(f.subject, "")
				d := p.Lookup(f.egress, f.peer.ID, f.proto, f.port)
				got := refVerdict{Enforced: d.Enforced, Allowed: d.Allowed}
				if d.Allowed && d.Found && d.Entry.Verdict == Redirect {
					got.Redirect = d.Entry.Parser
				}
				if got != cf.want {
					t.Errorf("engine: %s = %+v, want %+v\nmap:\n%s", f, got, cf.want, p.Map)
				}
				if cf.req == nil {
					continue
				}
				if got := ref.AllowsHTTP(f, cf.req); got != cf.wantHTTP {
					t.Errorf("reference: %s %s %s: HTTP refAllowed = %v, want %v", f, cf.req.Method, cf.req.Path, got, cf.wantHTTP)
				}
				if got, _ := p.AllowsHTTP(f.egress, f.peer, f.port, cf.req); got != cf.wantHTTP {
					t.Errorf("engine: %s %s %s: HTTP refAllowed = %v, want %v", f, cf.req.Method, cf.req.Path, got, cf.wantHTTP)
				}
			}
		})
	}
}
