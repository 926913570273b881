package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/labels"
)

// Options are the agent settings that change how policy resolves.
type Options struct {
	// CIDRMatch is policy-cidr-match-mode.
	CIDRMatch CIDRMatchMode
	// AllowLocalhost lets the local node reach its pods under ingress default deny
	// (Cilium's allow-localhost, "always" in Kubernetes mode).
	AllowLocalhost bool
}

// DefaultOptions are Cilium's defaults in Kubernetes mode.
func DefaultOptions() Options { return Options{AllowLocalhost: true} }

type cacheKey struct {
	subject *identity.Identity
	node    string
}

type cidrRef struct {
	id   *identity.Identity
	refs int
}

// Engine is the policy repository, the selector cache and the cache of compiled endpoint
// policies. It is not safe for concurrent use; callers serialise updates and reads (the
// compiled EndpointPolicy values it returns are immutable and may be shared).
type Engine struct {
	opts      Options
	sc        *SelectorCache
	resources map[string][]*Entry
	byNS      map[string][]*Entry // "" holds cluster-wide entries
	cidrs     map[netip.Prefix]*cidrRef
	nextCIDR  identity.ID
	worldIP   *identity.IPCache
	cache     map[cacheKey]*EndpointPolicy
	revision  uint64
	compiles  uint64
	// resByNS indexes resource keys by the namespace of their entries ("" for cluster-wide).
	resByNS map[string]map[string]struct{}
	// peers caches each entry's peer selectors in the selector cache.
	peers map[*Entry][]*CachedSelector
	// lastKeys remembers the size of each subject's last map, to size the next one.
	lastKeys map[*identity.Identity]int
	// classes shares one compiled policy among subjects that the same entries select and
	// that have the same named ports: their maps are identical.
	classes map[string]*EndpointPolicy
}

// NewEngine returns an engine with the reserved identities known.
func NewEngine(opts Options) *Engine {
	e := &Engine{
		opts:      opts,
		sc:        NewSelectorCache(opts.CIDRMatch),
		resources: map[string][]*Entry{},
		byNS:      map[string][]*Entry{},
		cidrs:     map[netip.Prefix]*cidrRef{},
		nextCIDR:  identity.LocalScope,
		worldIP:   identity.NewIPCache(),
		cache:     map[cacheKey]*EndpointPolicy{},
		resByNS:   map[string]map[string]struct{}{},
		peers:     map[*Entry][]*CachedSelector{},
		lastKeys:  map[*identity.Identity]int{},
		classes:   map[string]*EndpointPolicy{},
	}
	return e
}

// Options returns the engine's options.
func (e *Engine) Options() Options { return e.opts }

// Revision counts policy changes.
func (e *Engine) Revision() uint64 { return e.revision }

// Compiles counts endpoint policy compilations (for tests of incrementality).
func (e *Engine) Compiles() uint64 { return e.compiles }

// SelectorCache exposes the selector cache (read-only use).
func (e *Engine) SelectorCache() *SelectorCache { return e.sc }

// UpsertIdentity makes an identity known; compiled policies whose selections change are
// invalidated.
func (e *Engine) UpsertIdentity(id *identity.Identity) {
	e.invalidateSelectors(e.sc.UpsertIdentity(id))
}

// RemoveIdentity forgets an identity.
func (e *Engine) RemoveIdentity(id *identity.Identity) {
	e.invalidateSelectors(e.sc.RemoveIdentity(id))
	for k := range e.cache {
		if k.subject == id {
			e.drop(k)
		}
	}
	delete(e.lastKeys, id)
}

func (e *Engine) invalidateSelectors(keys []string) {
	if len(keys) == 0 {
		return
	}
	changed := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		changed[k] = struct{}{}
	}
	for k, p := range e.cache {
		for sk := range p.selectors {
			if _, ok := changed[sk]; ok {
				e.drop(k)
				break
			}
		}
	}
}

// ReplaceResource sets the entries of one policy object (key like "CiliumNetworkPolicy/ns/name");
// nil entries delete it. Compiled policies of the subjects it selected or selects are
// invalidated; CIDR identities for the prefixes it names are allocated or released.
func (e *Engine) ReplaceResource(key string, entries []*Entry) {
	old := e.resources[key]
	if len(old) == 0 && len(entries) == 0 {
		return
	}
	e.revision++
	for _, p := range cidrPrefixes(entries) {
		e.retainCIDR(p)
	}
	if entries == nil {
		delete(e.resources, key)
	} else {
		e.resources[key] = entries
	}
	touched := map[string]bool{}
	for _, en := range old {
		touched[en.Origin.Namespace] = true
		delete(e.peers, en)
	}
	for _, en := range entries {
		touched[en.Origin.Namespace] = true
		if len(en.L3) > 0 {
			cs := make([]*CachedSelector, len(en.L3))
			for i, s := range en.L3 {
				cs[i] = e.sc.Add(s)
			}
			e.peers[en] = cs
		}
	}
	for ns := range touched {
		if entries != nil {
			if e.resByNS[ns] == nil {
				e.resByNS[ns] = map[string]struct{}{}
			}
			e.resByNS[ns][key] = struct{}{}
		}
		e.reindex(ns)
	}
	// Namespaced rules only select subjects of their namespace.
	clusterWide := touched[""]
	for k := range e.cache {
		if !clusterWide && !touched[nsOf(k.subject)] {
			continue
		}
		if selectsAny(old, k.subject) || selectsAny(entries, k.subject) {
			e.drop(k)
		}
	}
	for _, p := range cidrPrefixes(old) {
		e.releaseCIDR(p)
	}
}

// peerSelectors returns the cached selectors of an entry's peers.
func (e *Engine) peerSelectors(en *Entry) []*CachedSelector {
	if cs, ok := e.peers[en]; ok {
		return cs
	}
	cs := make([]*CachedSelector, len(en.L3))
	for i, s := range en.L3 {
		cs[i] = e.sc.Add(s)
	}
	return cs
}

func selectsAny(entries []*Entry, s *identity.Identity) bool {
	for _, en := range entries {
		if en.Subject.Selector.Matches(s.Labels) {
			return true
		}
	}
	return false
}

// reindex rebuilds the entry list of one namespace, in resource-key order.
func (e *Engine) reindex(ns string) {
	var keys []string
	for k := range e.resByNS[ns] {
		if _, ok := e.resources[k]; ok {
			keys = append(keys, k)
		} else {
			delete(e.resByNS[ns], k)
		}
	}
	sort.Strings(keys)
	var list []*Entry
	for _, k := range keys {
		for _, en := range e.resources[k] {
			if en.Origin.Namespace == ns {
				list = append(list, en)
			}
		}
	}
	if len(list) == 0 {
		delete(e.byNS, ns)
		return
	}
	e.byNS[ns] = list
}

// Resources returns the keys of every policy object, sorted.
func (e *Engine) Resources() []string {
	keys := make([]string, 0, len(e.resources))
	for k := range e.resources {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Entries returns the entries of a policy object.
func (e *Engine) Entries(key string) []*Entry { return e.resources[key] }

func cidrPrefixes(entries []*Entry) []netip.Prefix {
	var out []netip.Prefix
	for _, en := range entries {
		for _, s := range en.L3 {
			if c, ok := s.(CIDRPeer); ok {
				out = append(out, c.Prefix)
				out = append(out, c.Except...)
			}
		}
	}
	return out
}

// retainCIDR allocates (or references) the local-scope identity of a policy prefix. /0 is
// the world identity itself and gets none (as in Cilium).
func (e *Engine) retainCIDR(p netip.Prefix) {
	if p.Bits() == 0 {
		return
	}
	if r, ok := e.cidrs[p]; ok {
		r.refs++
		return
	}
	id := &identity.Identity{ID: e.nextCIDR, Kind: identity.KindWorld, Labels: identity.CIDRLabels(p), Prefixes: []netip.Prefix{p}}
	e.nextCIDR++
	e.cidrs[p] = &cidrRef{id: id, refs: 1}
	e.worldIP.Upsert(p, id)
	e.UpsertIdentity(id)
}

func (e *Engine) releaseCIDR(p netip.Prefix) {
	r, ok := e.cidrs[p]
	if !ok {
		return
	}
	r.refs--
	if r.refs > 0 {
		return
	}
	delete(e.cidrs, p)
	e.worldIP.Delete(p)
	e.RemoveIdentity(r.id)
}

// CIDRPrefixes returns every prefix with a CIDR identity, sorted.
func (e *Engine) CIDRPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(e.cidrs))
	for p := range e.cidrs {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// WorldIdentity returns the identity of an address outside the cluster: the CIDR identity
// of the longest policy prefix containing it, else the reserved world identity.
func (e *Engine) WorldIdentity(addr netip.Addr, world *identity.Identity) *identity.Identity {
	if id, _, ok := e.worldIP.Lookup(addr); ok {
		return id
	}
	return world
}

// LongestPrefix returns the longest policy prefix containing addr.
func (e *Engine) LongestPrefix(addr netip.Addr) (netip.Prefix, bool) {
	_, p, ok := e.worldIP.Lookup(addr)
	return p, ok
}

// Policy returns the compiled policy of a subject identity as seen on node (the node only
// matters when CIDR policies may select nodes, since the host's addresses differ per node).
func (e *Engine) Policy(subject *identity.Identity, node string) *EndpointPolicy {
	if !e.opts.CIDRMatch.Nodes {
		node = ""
	}
	k := cacheKey{subject, node}
	if p, ok := e.cache[k]; ok {
		return p
	}
	entries := e.selecting(subject)
	ck := classKey(entries, subject, node)
	if p, ok := e.classes[ck]; ok {
		e.cache[k] = p
		return p
	}
	p := e.compile(subject, node, entries)
	p.class = ck
	e.classes[ck] = p
	e.cache[k] = p
	return p
}

// classKey identifies the subjects that compile to the same policy: the entries that
// select them, their named ports (ingress named ports resolve on the subject), the node.
func classKey(entries []*Entry, subject *identity.Identity, node string) string {
	var b strings.Builder
	b.Grow(len(entries)*12 + 32)
	for _, en := range entries {
		fmt.Fprintf(&b, "%p,", en)
	}
	b.WriteString("|")
	names := make([]string, 0, len(subject.NamedPorts))
	for n := range subject.NamedPorts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		np := subject.NamedPorts[n]
		fmt.Fprintf(&b, "%s/%d/%d,", n, np.Proto, np.Port)
	}
	b.WriteString("|")
	b.WriteString(node)
	return b.String()
}

// drop removes a compiled policy from the caches.
func (e *Engine) drop(k cacheKey) {
	if p, ok := e.cache[k]; ok {
		delete(e.classes, p.class)
		delete(e.cache, k)
	}
}

// Invalidate drops every compiled policy (used by tests to compare with a full recompute).
func (e *Engine) Invalidate() {
	e.cache = map[cacheKey]*EndpointPolicy{}
	e.classes = map[string]*EndpointPolicy{}
}

// selecting returns the entries whose subject selects s, in a stable order.
func (e *Engine) selecting(s *identity.Identity) []*Entry {
	var out []*Entry
	ns, _ := s.Labels.Get(labels.SourceK8s, labels.KeyNamespace)
	for _, group := range [][]*Entry{e.byNS[""], e.byNS[ns]} {
		for _, en := range group {
			if en.Subject.Selector.Matches(s.Labels) {
				out = append(out, en)
			}
		}
	}
	return out
}

// visible reports whether peer exists from node's point of view: the host identity is the
// local node's, remote-node identities are the other nodes'.
func visible(peer *identity.Identity, node string) bool {
	switch peer.Kind {
	case identity.KindHost:
		return peer.Node == "" || peer.Node == node
	case identity.KindRemoteNode:
		return peer.Node == "" || peer.Node != node
	}
	return true
}
