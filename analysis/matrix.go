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
	// HTTP lists the HTTP rules that restrict requests; empty with Proxied means every
	// request passes the proxy.
	HTTP []string `json:"http,omitempty"`
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
	if r.Proxied {
		if len(r.HTTP) == 0 {
			s += " [HTTP any request]"
		} else {
			s += " [HTTP " + strings.Join(r.HTTP, " | ") + "]"
		}
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
func BuildMatrix(ctx context.Context, c *cluster.Cluster, opts MatrixOptions) (*Matrix, error) {
	m := &Matrix{Groups: Groups(c)}
	all := m.Groups
	for i, src := range all {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, dst := range all {
			if src.rep == nil && dst.rep == nil {
				continue
			}
			if ports := pairPorts(c, src, dst); len(ports) > 0 {
				m.Connections = append(m.Connections, Connection{From: src, To: dst, Ports: ports})
			}
		}
		if opts.Progress != nil {
			opts.Progress(i+1, len(all))
		}
	}
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
	http    []string
}

func (d decision) equal(o decision) bool {
	return d.allowed == o.allowed && d.proxied == o.proxied && slices.Equal(d.http, o.http)
}

// pairPorts computes the allowed port ranges from src to dst.
func pairPorts(c *cluster.Cluster, src, dst *Group) []PortRange {
	var egress, ingress *policy.EndpointPolicy
	srcID, dstID := peerIdentity(c, src, dst), peerIdentity(c, dst, src)
	if src.rep != nil {
		egress = c.Policy(src.rep)
	}
	if dst.rep != nil {
		ingress = c.Policy(dst.rep)
	}
	cuts := map[uint8][]uint32{}
	collect := func(p *policy.EndpointPolicy, peer identity.ID, eg bool) {
		if p == nil || !p.Direction(eg).Enforced {
			return
		}
		for _, id := range []identity.ID{peer, 0} {
			for _, k := range p.Map.KeysFor(id, eg) {
				if k.PrefixLen == 0 {
					continue
				}
				lo, hi := k.PortRange()
				cuts[k.Proto] = append(cuts[k.Proto], uint32(lo), uint32(hi)+1)
			}
		}
	}
	collect(egress, dstID.ID, true)
	collect(ingress, srcID.ID, false)
	decide := func(proto uint8, port uint16) decision {
		d := decision{allowed: true}
		for _, side := range []struct {
			p    *policy.EndpointPolicy
			peer *identity.Identity
			eg   bool
		}{{egress, dstID, true}, {ingress, srcID, false}} {
			if side.p == nil {
				continue
			}
			r := side.p.Lookup(side.eg, side.peer.ID, proto, port)
			if !r.Allowed {
				return decision{}
			}
			if r.Found && r.Entry.Verdict == policy.Redirect {
				d.proxied = true
				if r.Entry.Parser == policy.ParserHTTP {
					d.http = append(d.http, httpSummary(side.p, side.eg, side.peer, port)...)
				}
			}
		}
		if d.proxied && slices.Contains(d.http, "") {
			d.http = nil // some allow rule admits every request
		}
		slices.Sort(d.http)
		d.http = slices.Compact(d.http)
		return d
	}
	var out []PortRange
	for _, proto := range scannedProtos {
		lo, end := uint32(1), uint32(65536)
		if proto == policy.ProtoICMP {
			lo, end = 0, 256
		}
		points := append([]uint32{lo, end}, cuts[proto]...)
		slices.Sort(points)
		points = slices.Compact(points)
		var cur *PortRange
		var curD decision
		for i := 0; i+1 < len(points); i++ {
			a, b := points[i], points[i+1]
			if a < lo || a >= end {
				continue
			}
			if b > end {
				b = end
			}
			d := decide(proto, uint16(a))
			if cur != nil && d.equal(curD) && uint32(cur.Hi)+1 == a {
				cur.Hi = uint16(b - 1)
				continue
			}
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			if d.allowed {
				cur = &PortRange{Proto: proto, Lo: uint16(a), Hi: uint16(b - 1), Proxied: d.proxied, HTTP: d.http}
				curD = d
			}
		}
		if cur != nil {
			out = append(out, *cur)
		}
	}
	// everything open on every protocol (and so on other IP protocols too, when no side has
	// a port-specific key) collapses to "any"
	if len(out) == len(scannedProtos) {
		full := true
		for i, r := range out {
			lo, hi := uint16(1), uint16(65535)
			if scannedProtos[i] == policy.ProtoICMP {
				lo, hi = 0, 255
			}
			if r.Proto != scannedProtos[i] || r.Lo != lo || r.Hi != hi || r.Proxied {
				full = false
			}
		}
		// a protocol no port rule can name (GRE) is decided by L3-only entries alone
		if full && decide(47, 0).allowed {
			return []PortRange{{Proto: policy.ProtoAny}}
		}
	}
	return out
}

func httpSummary(p *policy.EndpointPolicy, egress bool, peer *identity.Identity, port uint16) []string {
	var out []string
	for _, r := range p.HTTPRules(egress, peer, port) {
		if r.HTTP == nil {
			return []string{""}
		}
		for _, h := range r.HTTP {
			out = append(out, h.String())
		}
	}
	return out
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
