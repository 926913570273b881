package analysis

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/netward/netward/cluster"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// GroupKind says what a matrix row or column stands for.
type GroupKind string

// Group kinds.
const (
	GroupWorkload   GroupKind = "workload"
	GroupCIDR       GroupKind = "cidr"
	GroupWorld      GroupKind = "world"
	GroupHost       GroupKind = "host"
	GroupRemoteNode GroupKind = "remote-node"
)

// Group is a set of peers that policy cannot tell apart: the pods of one workload with one
// identity, the addresses of one CIDR identity, the rest of the world, the host, the other
// nodes.
type Group struct {
	ID        string             `json:"id"`
	Kind      GroupKind          `json:"kind"`
	Namespace string             `json:"namespace,omitempty"`
	Name      string             `json:"name"`
	Identity  identity.ID        `json:"identity"`
	Pods      []string           `json:"pods,omitempty"`
	Prefix    string             `json:"prefix,omitempty"`
	Except    []string           `json:"except,omitempty"`
	ident     *identity.Identity // the identity as peers see it
	rep       *cluster.Endpoint  // a pod of the workload (policies are per identity)
}

// Label is a short display name.
func (g *Group) Label() string {
	switch g.Kind {
	case GroupWorkload:
		return g.Namespace + "/" + g.Name
	case GroupCIDR:
		return g.Prefix
	}
	return g.Name
}

// PortRange is a run of allowed ports of one protocol with one L7 treatment.
type PortRange struct {
	Proto uint8  `json:"-"`
	Lo    uint16 `json:"-"`
	Hi    uint16 `json:"-"`
	// Proxied is set when the connection goes through the L7 proxy.
	Proxied bool `json:"proxied,omitempty"`
	// Parser is the proxy ("http", "dns", "tls", "crd") when Proxied.
	Parser string `json:"parser,omitempty"`
	// HTTP lists the HTTP rules that restrict requests; empty with Proxied means every
	// request passes the proxy.
	HTTP []string `json:"http,omitempty"`
	// DNS lists the DNS rules that restrict lookups (Parser "dns"); empty means every name
	// passes the DNS proxy.
	DNS []string `json:"dns,omitempty"`
}

// String renders "TCP 8080", "UDP 1000-2000", "ICMP type 8", "any", with L7 notes.
func (r PortRange) String() string {
	var s string
	switch {
	case r.Proto == policy.ProtoAny:
		s = "any"
	case r.Proto == policy.ProtoICMP || r.Proto == policy.ProtoICMPv6:
		if r.Lo == 0 && r.Hi == 255 {
			s = policy.ProtoName(r.Proto)
		} else if r.Lo == r.Hi {
			s = fmt.Sprintf("%s type %d", policy.ProtoName(r.Proto), r.Lo)
		} else {
			s = fmt.Sprintf("%s types %d-%d", policy.ProtoName(r.Proto), r.Lo, r.Hi)
		}
	case r.Lo == 1 && r.Hi == 65535:
		s = policy.ProtoName(r.Proto) + " all ports"
	case r.Lo == r.Hi:
		s = fmt.Sprintf("%s %d", policy.ProtoName(r.Proto), r.Lo)
	default:
		s = fmt.Sprintf("%s %d-%d", policy.ProtoName(r.Proto), r.Lo, r.Hi)
	}
	switch {
	case !r.Proxied:
	case r.Parser == "dns" && len(r.DNS) == 0:
		s += " [DNS any name]"
	case r.Parser == "dns":
		s += " [DNS " + strings.Join(r.DNS, " | ") + "]"
	case r.Parser != "" && r.Parser != "http":
		s += " [" + strings.ToUpper(r.Parser) + " proxy]"
	case len(r.HTTP) == 0:
		s += " [HTTP any request]"
	default:
		s += " [HTTP " + strings.Join(r.HTTP, " | ") + "]"
	}
	return s
}

// Contains reports whether the range allows proto/port.
func (r PortRange) Contains(proto uint8, port uint16) bool {
	if r.Proto == policy.ProtoAny {
		return true
	}
	return r.Proto == proto && port >= r.Lo && port <= r.Hi
}

// Connection is an allowed connection from one group to another.
type Connection struct {
	From  *Group      `json:"-"`
	To    *Group      `json:"-"`
	Ports []PortRange `json:"-"`
}

// Matrix is the complete allowed traffic between groups.
type Matrix struct {
	Groups      []*Group
	Connections []Connection
}

// MatrixOptions narrow what is computed.
type MatrixOptions struct {
	// Progress, when set, is called with (done, total) source groups.
	Progress func(done, total int)
}

// scannedProtos are the protocols whose port space a matrix describes.
var scannedProtos = []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP}

// BuildMatrix computes every allowed connection by looking up the compiled maps: for each
// pair of groups it cuts the port space where some relevant map key starts or ends and
// decides each piece with the same lookup trace uses.
//
// It works on equivalence classes, not pairs of pods: workloads whose pods share a compiled
// policy and a peer class (the same selectors select them) get identical verdicts in every
// direction, so a pair of such buckets is decided once and expanded to its workloads.
func BuildMatrix(ctx context.Context, c *cluster.Cluster, opts MatrixOptions) (*Matrix, error) {
	m := &Matrix{Groups: Groups(c)}
	mc := &matrixCache{sides: map[sideKey]*sideSet{}, inters: map[[2]*sideSet][]PortRange{}, byContent: map[contentKey]*sideSet{}}
	index := make(map[*Group]int, len(m.Groups))
	var workloads, outside []*Group
	var ids []*identity.Identity
	for i, g := range m.Groups {
		index[g] = i
		if g.Kind == GroupWorkload {
			workloads = append(workloads, g)
			ids = append(ids, g.ident)
		} else {
			outside = append(outside, g)
		}
	}
	classes := c.Engine.SelectorCache().PeerClasses(ids)
	type bucketKey struct {
		p     *policy.EndpointPolicy
		class int
	}
	type bucket struct {
		groups []*Group
		p      *policy.EndpointPolicy
		peer   *identity.Identity
		// the port sets towards peers the policy names no key for, per direction
		egressDefault, ingressDefault *sideSet
	}
	byKey := map[bucketKey]*bucket{}
	var buckets []*bucket
	classRep := map[int]*identity.Identity{}
	for _, g := range workloads {
		p := c.Policy(g.rep)
		cl := classes[g.ident]
		if classRep[cl] == nil {
			classRep[cl] = g.ident // one member answers for its whole class
		}
		k := bucketKey{p, cl}
		b, ok := byKey[k]
		if !ok {
			b = &bucket{p: p, peer: classRep[cl]}
			byKey[k] = b
			buckets = append(buckets, b)
		}
		b.groups = append(b.groups, g)
	}
	emit := func(src, dst []*Group, ports []PortRange) {
		if len(ports) == 0 {
			return
		}
		for _, s := range src {
			for _, d := range dst {
				m.Connections = append(m.Connections, Connection{From: s, To: d, Ports: ports})
			}
		}
	}
	// Rows are decided a source bucket at a time: the egress set towards each destination
	// bucket is the policy's default set unless the policy has keys for that bucket's class;
	// the destination's ingress set is its default unless its policy has keys for the
	// source's class. Only pairs where both sets let something through are intersected.
	byPeer := map[identity.ID][]int{}
	for j, b := range buckets {
		b.egressDefault = mc.side(b.p, true, nobody)
		b.ingressDefault = mc.side(b.p, false, nobody)
		byPeer[b.peer.ID] = append(byPeer[b.peer.ID], j)
	}
	type special struct {
		j   int
		set *sideSet
	}
	// namedPeers lists, for one policy and direction, the bucket classes it has keys for
	// and the port set towards each; peers with identical keys share one set.
	namedPeers := func(p *policy.EndpointPolicy, egress bool) []special {
		var out []special
		if p == nil || p.Err != nil || !p.Direction(egress).Enforced {
			return nil
		}
		p.Map.ForEachPeer(egress, func(id identity.ID, d policy.Digest) {
			js, ok := byPeer[id]
			if !ok || id == 0 {
				return
			}
			ck := contentKey{p, egress, d}
			set, ok := mc.byContent[ck]
			if !ok {
				set = computeSide(p, egress, buckets[js[0]].peer)
				mc.byContent[ck] = set
			}
			for _, j := range js {
				out = append(out, special{j, set})
			}
		})
		return out
	}
	egressRows := map[*policy.EndpointPolicy][]special{}
	ingressByPolicy := map[*policy.EndpointPolicy][]special{}
	inList := map[identity.ID][]special{} // source class -> (destination bucket, ingress set)
	for j, b := range buckets {
		named, ok := ingressByPolicy[b.p]
		if !ok {
			named = namedPeers(b.p, false)
			ingressByPolicy[b.p] = named
		}
		for _, sp := range named {
			src := buckets[sp.j].peer.ID
			inList[src] = append(inList[src], special{j, sp.set})
		}
	}
	egress := make([]*sideSet, len(buckets))
	ingress := make([]*sideSet, len(buckets))
	total := len(buckets) + len(outside)
	for i, bs := range buckets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for j, bd := range buckets {
			egress[j] = bs.egressDefault
			ingress[j] = bd.ingressDefault
		}
		row, ok := egressRows[bs.p]
		if !ok {
			row = namedPeers(bs.p, true)
			egressRows[bs.p] = row
		}
		for _, sp := range row {
			egress[sp.j] = sp.set
		}
		for _, sp := range inList[bs.peer.ID] {
			ingress[sp.j] = sp.set
		}
		for j, bd := range buckets {
			if len(egress[j].segs) == 0 || len(ingress[j].segs) == 0 {
				continue
			}
			emit(bs.groups, bd.groups, mc.intersect(egress[j], ingress[j]))
		}
		if opts.Progress != nil {
			opts.Progress(i+1, total)
		}
	}
	// Outside peers (CIDRs, the world, the host, other nodes) pair with every workload; the
	// host and remote nodes are the ones of the workload's node.
	for i, o := range outside {
		for _, b := range buckets {
			for _, g := range b.groups {
				pg := []*Group{g}
				og := []*Group{o}
				emit(og, pg, mc.pairPorts(c, o, g))
				emit(pg, og, mc.pairPorts(c, g, o))
			}
		}
		if opts.Progress != nil {
			opts.Progress(len(buckets)+i+1, total)
		}
	}
	sort.Slice(m.Connections, func(i, j int) bool {
		a, b := m.Connections[i], m.Connections[j]
		if ia, ib := index[a.From], index[b.From]; ia != ib {
			return ia < ib
		}
		return index[a.To] < index[b.To]
	})
	return m, nil
}

// Groups partitions the cluster's peers into matrix groups, sorted: workloads by namespace
// and name, then CIDR ranges, the world, the host and the remote nodes.
func Groups(c *cluster.Cluster) []*Group {
	byKey := map[string]*Group{}
	var gs []*Group
	for _, ep := range c.Endpoints {
		key := ep.Namespace + "/" + ep.Workload + "#" + fmt.Sprint(ep.Identity.ID)
		g, ok := byKey[key]
		if !ok {
			g = &Group{Kind: GroupWorkload, Namespace: ep.Namespace, Name: ep.Workload, Identity: ep.Identity.ID, ident: ep.Identity, rep: ep}
			byKey[key] = g
			gs = append(gs, g)
		}
		g.Pods = append(g.Pods, ep.Name)
	}
	// a workload whose pods have several identities gets one group per identity
	count := map[string]int{}
	for _, g := range gs {
		count[g.Namespace+"/"+g.Name]++
	}
	for _, g := range gs {
		g.ID = "pod:" + g.Namespace + "/" + g.Name
		if count[g.Namespace+"/"+g.Name] > 1 {
			g.ID += fmt.Sprintf("#%d", g.Identity)
			g.Name += fmt.Sprintf(" (identity %d)", g.Identity)
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].ID < gs[j].ID })
	prefixes := c.Engine.CIDRPrefixes()
	for _, p := range prefixes {
		id := c.Engine.WorldIdentity(p.Addr(), nil)
		if id == nil {
			continue
		}
		g := &Group{ID: "cidr:" + p.String(), Kind: GroupCIDR, Name: p.String(), Prefix: p.String(), Identity: id.ID, ident: id}
		for _, q := range prefixes {
			if q != p && q.Bits() > p.Bits() && p.Contains(q.Addr()) && !coveredByLonger(q, p, prefixes) {
				g.Except = append(g.Except, q.String())
			}
		}
		gs = append(gs, g)
	}
	world := c.ReservedIdentity(identity.World)
	gs = append(gs, &Group{ID: "world", Kind: GroupWorld, Name: "world", Identity: world.ID, ident: world})
	if len(prefixes) > 0 {
		gs[len(gs)-1].Name = "world (other addresses)"
	}
	host := c.ReservedIdentity(identity.Host)
	gs = append(gs, &Group{ID: "host", Kind: GroupHost, Name: "host", Identity: host.ID, ident: host})
	rn := c.ReservedIdentity(identity.RemoteNode)
	gs = append(gs, &Group{ID: "remote-node", Kind: GroupRemoteNode, Name: "remote-node", Identity: rn.ID, ident: rn})
	return gs
}

// coveredByLonger reports whether q sits inside another prefix that is itself inside p (so q
// is an exception of that one, not of p).
func coveredByLonger(q, p netip.Prefix, all []netip.Prefix) bool {
	for _, r := range all {
		if r != q && r != p && r.Bits() > p.Bits() && r.Bits() < q.Bits() && p.Contains(r.Addr()) && r.Contains(q.Addr()) {
			return true
		}
	}
	return false
}

// peerIdentity is the identity a group has as seen from the other group (the host is the
// node of the pod at the other end).
func peerIdentity(c *cluster.Cluster, g *Group, other *Group) *identity.Identity {
	if g.Kind == GroupHost && other.rep != nil {
		if n, ok := c.Nodes[other.rep.Node]; ok {
			return n.Host
		}
	}
	if g.Kind == GroupRemoteNode && other.rep != nil {
		for _, name := range c.NodeNames() {
			if name != other.rep.Node {
				return c.Nodes[name].Remote
			}
		}
	}
	return g.ident
}

type decision struct {
	allowed bool
	proxied bool
	parser  string
	http    []string // nil with proxied: every request passes
	dns     []string // nil with proxied: every name passes
}

func (d decision) equal(o decision) bool {
	return d.allowed == o.allowed && d.proxied == o.proxied && d.parser == o.parser && slices.Equal(d.http, o.http) && slices.Equal(d.dns, o.dns)
}

// portSegment is a run of ports of one protocol with one decision.
type portSegment struct {
	proto  uint8
	lo, hi uint32
	d      decision
}

// sideSet is what one endpoint's policy allows in one direction towards one peer: allowed
// segments over TCP, UDP, SCTP and ICMP, and whether other IP protocols pass.
type sideSet struct {
	segs  []portSegment
	other bool
}

var allOpen = func() *sideSet {
	s := &sideSet{other: true}
	for _, proto := range scannedProtos {
		lo, hi := protoSpan(proto)
		s.segs = append(s.segs, portSegment{proto: proto, lo: lo, hi: hi, d: decision{allowed: true}})
	}
	return s
}()

func protoSpan(proto uint8) (uint32, uint32) {
	if proto == policy.ProtoICMP {
		return 0, 255
	}
	return 1, 65535
}

// matrixCache memoises per-side sets and their intersections. Peers that no key of a
// policy names see only its wildcard keys, so they share one "default" set per policy.
type matrixCache struct {
	sides  map[sideKey]*sideSet
	inters map[[2]*sideSet][]PortRange
	// byContent shares the set of peers whose keys in a policy are identical (same keys,
	// same entries, same rules behind them): their lookups and L7 rules are the same.
	byContent map[contentKey]*sideSet
}

type contentKey struct {
	p       *policy.EndpointPolicy
	egress  bool
	content policy.Digest
}

type sideKey struct {
	p      *policy.EndpointPolicy
	egress bool
	peer   identity.ID // 0: a peer the policy does not name
}

// nobody is a peer that no selector but the wildcard selects.
var nobody = &identity.Identity{}

func (mc *matrixCache) side(p *policy.EndpointPolicy, egress bool, peer *identity.Identity) *sideSet {
	if p == nil {
		return allOpen
	}
	if p.Err == nil && !p.Direction(egress).Enforced {
		return allOpen
	}
	k := sideKey{p, egress, peer.ID}
	if s, ok := mc.sides[k]; ok {
		return s
	}
	if peer.ID != 0 && p.Err == nil && len(p.Map.KeysFor(peer.ID, egress)) == 0 {
		s := mc.side(p, egress, nobody)
		mc.sides[k] = s
		return s
	}
	var ck contentKey
	if k.peer != 0 {
		ck = contentKey{p, egress, p.Map.PeerDigest(peer.ID, egress)}
		if s, ok := mc.byContent[ck]; ok {
			mc.sides[k] = s
			return s
		}
	}
	s := computeSide(p, egress, peer)
	mc.sides[k] = s
	if k.peer != 0 {
		mc.byContent[ck] = s
	}
	return s
}

func computeSide(p *policy.EndpointPolicy, egress bool, peer *identity.Identity) *sideSet {
	cuts := map[uint8][]uint32{}
	ids := []identity.ID{0}
	if peer.ID != 0 {
		ids = append(ids, peer.ID)
	}
	for _, id := range ids {
		for _, k := range p.Map.KeysFor(id, egress) {
			if k.PrefixLen == 0 {
				continue
			}
			lo, hi := k.PortRange()
			cuts[k.Proto] = append(cuts[k.Proto], uint32(lo), uint32(hi)+1)
		}
	}
	decide := func(proto uint8, port uint16) decision {
		r := p.Lookup(egress, peer.ID, proto, port)
		if !r.Allowed {
			return decision{}
		}
		d := decision{allowed: true}
		if r.Found && r.Entry.Verdict == policy.Redirect {
			d.proxied = true
			d.parser = r.Entry.Parser.String()
			switch r.Entry.Parser {
			case policy.ParserHTTP:
				d.http = httpSummary(p, egress, peer, port)
			case policy.ParserDNS:
				d.dns = dnsSummary(p, egress, peer, proto, port)
			}
		}
		return d
	}
	s := &sideSet{other: decide(47, 0).allowed}
	for _, proto := range scannedProtos {
		lo, hi := protoSpan(proto)
		points := append([]uint32{lo, hi + 1}, cuts[proto]...)
		slices.Sort(points)
		points = slices.Compact(points)
		for i := 0; i+1 < len(points); i++ {
			a, b := points[i], points[i+1]
			if a < lo || a > hi {
				continue
			}
			d := decide(proto, uint16(a))
			if !d.allowed {
				continue
			}
			if n := len(s.segs); n > 0 && s.segs[n-1].proto == proto && s.segs[n-1].hi+1 == a && s.segs[n-1].d.equal(d) {
				s.segs[n-1].hi = b - 1
				continue
			}
			s.segs = append(s.segs, portSegment{proto: proto, lo: a, hi: b - 1, d: d})
		}
	}
	return s
}

// intersect combines the source's egress and the destination's ingress: a port passes when
// both allow it; it is proxied when either side redirects; the HTTP rules of both sides
// apply.
func (mc *matrixCache) intersect(eg, in *sideSet) []PortRange {
	if len(eg.segs) == 0 || len(in.segs) == 0 {
		return nil
	}
	key := [2]*sideSet{eg, in}
	if r, ok := mc.inters[key]; ok {
		return r
	}
	var out []PortRange
	i, j := 0, 0
	for i < len(eg.segs) && j < len(in.segs) {
		a, b := eg.segs[i], in.segs[j]
		switch {
		case a.proto != b.proto:
			if protoOrder(a.proto) < protoOrder(b.proto) {
				i++
			} else {
				j++
			}
			continue
		case a.hi < b.lo:
			i++
			continue
		case b.hi < a.lo:
			j++
			continue
		}
		lo, hi := max(a.lo, b.lo), min(a.hi, b.hi)
		d := decision{allowed: true, proxied: a.d.proxied || b.d.proxied}
		if d.proxied {
			d.http = mergeHTTP(a.d, b.d)
			d.dns = mergeDNS(a.d, b.d)
			d.parser = mergeParser(a.d, b.d)
		}
		r := PortRange{Proto: a.proto, Lo: uint16(lo), Hi: uint16(hi), Proxied: d.proxied, Parser: d.parser, HTTP: d.http, DNS: d.dns}
		if n := len(out); n > 0 && out[n-1].Proto == r.Proto && uint32(out[n-1].Hi)+1 == lo && out[n-1].Proxied == r.Proxied && out[n-1].Parser == r.Parser &&
			slices.Equal(out[n-1].HTTP, r.HTTP) && slices.Equal(out[n-1].DNS, r.DNS) {
			out[n-1].Hi = r.Hi
		} else {
			out = append(out, r)
		}
		if a.hi < b.hi {
			i++
		} else {
			j++
		}
	}
	if eg.other && in.other && isFullyOpen(out) {
		out = []PortRange{{Proto: policy.ProtoAny}}
	}
	mc.inters[key] = out
	return out
}

// mergeHTTP combines the HTTP rules of two sides: a side that admits every request adds no
// restriction.
func mergeHTTP(a, b decision) []string {
	var out []string
	for _, d := range []decision{a, b} {
		if d.proxied && len(d.http) > 0 {
			out = append(out, d.http...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// mergeDNS combines the DNS rules of two sides (only egress has them).
func mergeDNS(a, b decision) []string {
	var out []string
	for _, d := range []decision{a, b} {
		if d.proxied && len(d.dns) > 0 {
			out = append(out, d.dns...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// mergeParser names the proxy of a range both sides may redirect; HTTP wins because it is
// the one that judges requests.
func mergeParser(a, b decision) string {
	if a.parser == "http" || b.parser == "http" {
		return "http"
	}
	if a.parser != "" {
		return a.parser
	}
	return b.parser
}

func protoOrder(p uint8) int { return slices.Index(scannedProtos, p) }

func isFullyOpen(rs []PortRange) bool {
	if len(rs) != len(scannedProtos) {
		return false
	}
	for i, r := range rs {
		lo, hi := protoSpan(scannedProtos[i])
		if r.Proto != scannedProtos[i] || uint32(r.Lo) != lo || uint32(r.Hi) != hi || r.Proxied {
			return false
		}
	}
	return true
}

// pairPorts computes the allowed port ranges from src to dst.
func (mc *matrixCache) pairPorts(c *cluster.Cluster, src, dst *Group) []PortRange {
	var egress, ingress *policy.EndpointPolicy
	if src.rep != nil {
		egress = c.Policy(src.rep)
	}
	if dst.rep != nil {
		ingress = c.Policy(dst.rep)
	}
	return mc.intersect(mc.side(egress, true, peerIdentity(c, dst, src)), mc.side(ingress, false, peerIdentity(c, src, dst)))
}

// httpSummary lists the HTTP rules restricting requests; nil when some allow rule admits
// every request.
func httpSummary(p *policy.EndpointPolicy, egress bool, peer *identity.Identity, port uint16) []string {
	var out []string
	for _, r := range p.HTTPRules(egress, peer, port) {
		if r.HTTP == nil {
			return nil
		}
		for _, h := range r.HTTP {
			out = append(out, h.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// dnsSummary lists the DNS rules restricting lookups; nil when some allow rule admits every
// name.
func dnsSummary(p *policy.EndpointPolicy, egress bool, peer *identity.Identity, proto uint8, port uint16) []string {
	var out []string
	for _, r := range p.DNSRules(egress, peer, proto, port) {
		if r.DNS == nil {
			return nil
		}
		for _, d := range r.DNS {
			out = append(out, d.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Representative returns a flow endpoint (as trace accepts it) that stands for the group:
// a pod of a workload, an address of a CIDR range that resolves to its identity, an
// address of the rest of the world, "host", or a remote node.
func (g *Group) Representative(c *cluster.Cluster, other *Group) (string, bool) {
	switch g.Kind {
	case GroupWorkload:
		return g.rep.Key(), true
	case GroupHost:
		return "host", other != nil && other.rep != nil
	case GroupRemoteNode:
		if other == nil || other.rep == nil {
			return "", false
		}
		for _, n := range c.NodeNames() {
			if n != other.rep.Node {
				return "node:" + n, true
			}
		}
		return "", false
	case GroupCIDR:
		p := netip.MustParsePrefix(g.Prefix)
		for a, i := p.Addr(), 0; i < 1024 && p.Contains(a); a, i = a.Next(), i+1 {
			if id := c.Engine.WorldIdentity(a, nil); id != nil && id.ID == g.Identity {
				if _, pod := c.EndpointByIP(a); !pod {
					if _, node := c.NodeByIP(a); !node {
						return a.String(), true
					}
				}
			}
		}
		return "", false
	}
	// the world: an address in no policy prefix and not in the cluster
	for _, s := range []string{"203.0.113.1", "198.51.100.1", "192.0.2.1", "8.8.8.8", "1.1.1.1", "100.64.0.1"} {
		a := netip.MustParseAddr(s)
		if _, ok := c.Engine.LongestPrefix(a); ok {
			continue
		}
		if _, pod := c.EndpointByIP(a); pod {
			continue
		}
		if _, node := c.NodeByIP(a); node {
			continue
		}
		return s, true
	}
	return "", false
}
