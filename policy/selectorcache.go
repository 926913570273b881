package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/netward/netward/identity"
)

// CachedSelector is one distinct selector and the identities it currently selects.
type CachedSelector struct {
	Selector PeerSelector
	selected map[*identity.Identity]struct{}
	sorted   []*identity.Identity // nil when stale
}

// Selections returns the selected identities sorted by ID (shared; do not modify).
func (c *CachedSelector) Selections() []*identity.Identity {
	if c.sorted == nil {
		c.sorted = make([]*identity.Identity, 0, len(c.selected))
		for id := range c.selected {
			c.sorted = append(c.sorted, id)
		}
		identity.SortByID(c.sorted)
	}
	return c.sorted
}

// Selects reports whether id is selected.
func (c *CachedSelector) Selects(id *identity.Identity) bool {
	_, ok := c.selected[id]
	return ok
}

// SelectorCache keeps every distinct selector with its selections, updated incrementally
// as identities are added and removed (Cilium's pkg/policy/selectorcache.go).
type SelectorCache struct {
	mode      CIDRMatchMode
	universe  map[*identity.Identity]struct{}
	byNS      map[string]map[*identity.Identity]struct{}
	selectors map[string]*CachedSelector
}

// NewSelectorCache returns an empty cache.
func NewSelectorCache(mode CIDRMatchMode) *SelectorCache {
	return &SelectorCache{
		mode:      mode,
		universe:  map[*identity.Identity]struct{}{},
		byNS:      map[string]map[*identity.Identity]struct{}{},
		selectors: map[string]*CachedSelector{},
	}
}

func nsOf(id *identity.Identity) string {
	v, _ := id.Labels.Get("k8s", "io.kubernetes.pod.namespace")
	return v
}

// Add returns the cached selector for s, computing its selections the first time.
func (sc *SelectorCache) Add(s PeerSelector) *CachedSelector {
	if c, ok := sc.selectors[s.Key()]; ok {
		return c
	}
	c := &CachedSelector{Selector: s, selected: map[*identity.Identity]struct{}{}}
	candidates := sc.universe
	if nss, ok := s.namespaces(); ok {
		for _, ns := range nss {
			for id := range sc.byNS[ns] {
				if s.Matches(id, sc.mode) {
					c.selected[id] = struct{}{}
				}
			}
		}
	} else {
		for id := range candidates {
			if s.Matches(id, sc.mode) {
				c.selected[id] = struct{}{}
			}
		}
	}
	sc.selectors[s.Key()] = c
	return c
}

// Get returns a cached selector by key.
func (sc *SelectorCache) Get(key string) (*CachedSelector, bool) {
	c, ok := sc.selectors[key]
	return c, ok
}

// Universe returns every identity known to the cache.
func (sc *SelectorCache) Universe() []*identity.Identity {
	out := make([]*identity.Identity, 0, len(sc.universe))
	for id := range sc.universe {
		out = append(out, id)
	}
	identity.SortByID(out)
	return out
}

// UpsertIdentity adds an identity and returns the keys of the selectors that now select it.
func (sc *SelectorCache) UpsertIdentity(id *identity.Identity) []string {
	if _, ok := sc.universe[id]; ok {
		return nil
	}
	sc.universe[id] = struct{}{}
	ns := nsOf(id)
	if ns != "" {
		if sc.byNS[ns] == nil {
			sc.byNS[ns] = map[*identity.Identity]struct{}{}
		}
		sc.byNS[ns][id] = struct{}{}
	}
	var changed []string
	for key, c := range sc.selectors {
		if c.Selector.Matches(id, sc.mode) {
			c.selected[id] = struct{}{}
			c.sorted = nil
			changed = append(changed, key)
		}
	}
	return changed
}

// RemoveIdentity removes an identity and returns the keys of the selectors that selected it.
func (sc *SelectorCache) RemoveIdentity(id *identity.Identity) []string {
	if _, ok := sc.universe[id]; !ok {
		return nil
	}
	delete(sc.universe, id)
	if ns := nsOf(id); ns != "" {
		delete(sc.byNS[ns], id)
	}
	var changed []string
	for key, c := range sc.selectors {
		if _, ok := c.selected[id]; ok {
			delete(c.selected, id)
			c.sorted = nil
			changed = append(changed, key)
		}
	}
	return changed
}

// PeerClasses partitions the given identities into classes that every policy treats alike
// as peers: the same selectors select them and they have the same named ports (which egress
// rules resolve on the peer). Policy maps hold the same keys for every member of a class
// (with the member's own identity), so a lookup for one member answers for all.
func (sc *SelectorCache) PeerClasses(ids []*identity.Identity) map[*identity.Identity]int {
	keys := make([]string, 0, len(sc.selectors))
	for k, c := range sc.selectors {
		if !c.Selector.IsWildcard() {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	want := make(map[*identity.Identity]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	sig := make(map[*identity.Identity][]int32, len(ids))
	for i, k := range keys {
		for id := range sc.selectors[k].selected {
			if want[id] {
				sig[id] = append(sig[id], int32(i))
			}
		}
	}
	classes := map[string]int{}
	out := make(map[*identity.Identity]int, len(ids))
	var b strings.Builder
	for _, id := range ids {
		b.Reset()
		fmt.Fprintf(&b, "%d/%s/", id.Kind, id.Node)
		for _, i := range sig[id] {
			fmt.Fprintf(&b, "%d,", i)
		}
		names := make([]string, 0, len(id.NamedPorts))
		for n := range id.NamedPorts {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "|%s/%d/%d", n, id.NamedPorts[n].Proto, id.NamedPorts[n].Port)
		}
		k := b.String()
		c, ok := classes[k]
		if !ok {
			c = len(classes)
			classes[k] = c
		}
		out[id] = c
	}
	return out
}
