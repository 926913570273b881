package policy

import (
	"net/netip"
	"strings"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/labels"
)

// CIDRMatchMode is Cilium's policy-cidr-match-mode: which in-cluster identities CIDR
// selectors may select besides the world. The zero value is Cilium's default (none).
type CIDRMatchMode struct {
	Nodes bool
	Pods  bool
}

// ParseCIDRMatchMode parses "", "nodes", "pods" or "nodes,pods".
func ParseCIDRMatchMode(s string) (CIDRMatchMode, bool) {
	var m CIDRMatchMode
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "":
		case "nodes":
			m.Nodes = true
		case "pods":
			m.Pods = true
		default:
			return m, false
		}
	}
	return m, true
}

func (m CIDRMatchMode) String() string {
	switch {
	case m.Nodes && m.Pods:
		return "nodes,pods"
	case m.Nodes:
		return "nodes"
	case m.Pods:
		return "pods"
	}
	return ""
}

// PeerSelector selects peer identities.
type PeerSelector interface {
	// Key is canonical: equal selectors have equal keys.
	Key() string
	String() string
	IsWildcard() bool
	Matches(id *identity.Identity, mode CIDRMatchMode) bool
	// namespaces returns the namespaces the selector can only select in, for indexing.
	namespaces() ([]string, bool)
}

// LabelPeer selects identities by labels (fromEndpoints, entities, NetworkPolicy peers).
type LabelPeer struct{ Sel labels.Selector }

// Key implements PeerSelector.
func (p LabelPeer) Key() string { return p.Sel.Key() }

func (p LabelPeer) String() string { return p.Sel.String() }

// IsWildcard implements PeerSelector.
func (p LabelPeer) IsWildcard() bool { return p.Sel.IsWildcard() }

// Matches implements PeerSelector.
func (p LabelPeer) Matches(id *identity.Identity, _ CIDRMatchMode) bool {
	return p.Sel.Matches(id.Labels)
}

func (p LabelPeer) namespaces() ([]string, bool) {
	if v, ok := p.Sel.InValues(labels.SourceK8s, labels.KeyNamespace); ok {
		return v, true
	}
	if v, ok := p.Sel.InValues(labels.SourceAny, labels.KeyNamespace); ok {
		return v, true
	}
	return nil, false
}

// CIDRPeer selects world addresses inside Prefix and outside every Except (fromCIDR,
// fromCIDRSet, ipBlock), and in-cluster addresses as the CIDR match mode allows (§2.7).
type CIDRPeer struct {
	Prefix netip.Prefix
	Except []netip.Prefix
	key    string
}

// NewCIDRPeer builds a CIDR selector.
func NewCIDRPeer(p netip.Prefix, except []netip.Prefix) CIDRPeer {
	k := "cidr:" + p.String()
	for _, e := range except {
		k += " except " + e.String()
	}
	return CIDRPeer{Prefix: p.Masked(), Except: except, key: k}
}

// Key implements PeerSelector.
func (p CIDRPeer) Key() string { return p.key }

func (p CIDRPeer) String() string { return p.key }

// IsWildcard implements PeerSelector.
func (p CIDRPeer) IsWildcard() bool { return false }

func (p CIDRPeer) namespaces() ([]string, bool) { return nil, false }

// Matches implements Cilium's CIDRSelector.Matches over identities that carry the prefixes
// they stand for. A /0 prefix is Cilium's reserved:world requirement: it selects the world,
// pods under "pods" mode, and never nodes (even under "nodes" mode: cilium/cilium#47827).
func (p CIDRPeer) Matches(id *identity.Identity, mode CIDRMatchMode) bool {
	isWorld := id.Labels.Has(labels.SourceReserved, "world")
	isNode := id.Kind == identity.KindHost || id.Kind == identity.KindRemoteNode
	isPod := id.Kind == identity.KindPod
	switch {
	case isWorld:
	case isNode && mode.Nodes:
	case isPod && mode.Pods:
	default:
		return false
	}
	if p.Prefix.Bits() == 0 {
		if !isWorld && !(isPod && len(id.Prefixes) > 0 && p.Prefix.Addr().Is4() == id.Prefixes[0].Addr().Is4()) {
			return false
		}
	} else if !anyInside(id.Prefixes, p.Prefix) {
		return false
	}
	for _, e := range p.Except {
		if anyInside(id.Prefixes, e) {
			return false
		}
	}
	return true
}

// anyInside reports whether one of ps lies inside outer.
func anyInside(ps []netip.Prefix, outer netip.Prefix) bool {
	for _, p := range ps {
		if p.Addr().Is4() == outer.Addr().Is4() && p.Bits() >= outer.Bits() && outer.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// NothingPeer selects nothing: FQDN selectors (netward sees no DNS answers offline),
// entity "none", CIDR groups it cannot resolve.
type NothingPeer struct{ Why string }

// Key implements PeerSelector.
func (p NothingPeer) Key() string { return "none:" + p.Why }

func (p NothingPeer) String() string { return p.Why }

// IsWildcard implements PeerSelector.
func (p NothingPeer) IsWildcard() bool { return false }

// Matches implements PeerSelector.
func (p NothingPeer) Matches(*identity.Identity, CIDRMatchMode) bool { return false }

func (p NothingPeer) namespaces() ([]string, bool) { return []string{}, true }

// wildcardPeer is the selector of L4-only rules: every identity.
var wildcardPeer = LabelPeer{Sel: labels.NewSelector()}

func reservedSel(name string) labels.Selector {
	return labels.NewSelector(labels.Requirement{Source: labels.SourceReserved, Key: name, Operator: labels.OpExists})
}

// EntitySelectors returns the selectors of an entity (§2.8); ok is false for unknown names.
func EntitySelectors(entity, cluster string) ([]PeerSelector, bool) {
	r := func(names ...string) []PeerSelector {
		out := make([]PeerSelector, len(names))
		for i, n := range names {
			out[i] = LabelPeer{Sel: reservedSel(n)}
		}
		return out
	}
	clusterReserved := []string{"host", "remote-node", "init", "ingress", "health", "unmanaged", "kube-apiserver"}
	switch entity {
	case "all":
		return []PeerSelector{wildcardPeer}, true
	case "world":
		return r("world", "world-ipv4", "world-ipv6"), true
	case "world-ipv4", "world-ipv6", "host", "init", "ingress", "health", "unmanaged", "kube-apiserver", "remote-node":
		return r(entity), true
	case "none":
		return []PeerSelector{NothingPeer{Why: "entity none"}}, true
	case "cluster":
		return append(r(clusterReserved...), LabelPeer{Sel: labels.NewSelector(labels.Requirement{
			Source: labels.SourceK8s, Key: labels.KeyCluster, Operator: labels.OpIn, Values: []string{cluster}})}), true
	case "cluster-mesh":
		return append(r(clusterReserved...), LabelPeer{Sel: labels.NewSelector(labels.Requirement{
			Source: labels.SourceAny, Key: labels.KeyCluster, Operator: labels.OpExists})}), true
	}
	return nil, false
}
