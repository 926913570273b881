package identity

import (
	"net/netip"
	"slices"
)

// IPCache maps prefixes to identities and answers longest-prefix lookups, like Cilium's
// cilium_ipcache map. Exact addresses of pods and nodes are /32 (or /128) entries; CIDR
// identities are entries of their prefix.
type IPCache struct {
	byBits map[int]map[netip.Prefix]*Identity
	bits   []int // present prefix lengths, longest first
}

// NewIPCache returns an empty cache.
func NewIPCache() *IPCache { return &IPCache{byBits: map[int]map[netip.Prefix]*Identity{}} }

// Upsert maps p (masked) to id.
func (c *IPCache) Upsert(p netip.Prefix, id *Identity) {
	p = p.Masked()
	m := c.byBits[p.Bits()]
	if m == nil {
		m = map[netip.Prefix]*Identity{}
		c.byBits[p.Bits()] = m
		c.bits = append(c.bits, p.Bits())
		slices.SortFunc(c.bits, func(a, b int) int { return b - a })
	}
	m[p] = id
}

// Delete removes the entry for p.
func (c *IPCache) Delete(p netip.Prefix) {
	p = p.Masked()
	if m := c.byBits[p.Bits()]; m != nil {
		delete(m, p)
	}
}

// Lookup returns the identity of the longest prefix containing addr.
func (c *IPCache) Lookup(addr netip.Addr) (*Identity, netip.Prefix, bool) {
	for _, b := range c.bits {
		if b > addr.BitLen() {
			continue
		}
		p, err := addr.Prefix(b)
		if err != nil {
			continue
		}
		if id, ok := c.byBits[b][p]; ok {
			return id, p, true
		}
	}
	return nil, netip.Prefix{}, false
}

// Entries calls fn for every entry, longest prefixes first.
func (c *IPCache) Entries(fn func(netip.Prefix, *Identity)) {
	for _, b := range c.bits {
		keys := make([]netip.Prefix, 0, len(c.byBits[b]))
		for p := range c.byBits[b] {
			keys = append(keys, p)
		}
		slices.SortFunc(keys, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
		for _, p := range keys {
			fn(p, c.byBits[b][p])
		}
	}
}
