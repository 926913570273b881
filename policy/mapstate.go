package policy

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"strings"
	"sync"

	"github.com/netward/netward/identity"
)

// Key is a policy map key with the layout of Cilium's BPF policy map (bpf/lib/policy.h):
// the peer identity and the direction are always exact; protocol and destination port form
// a 24-bit prefix of which PrefixLen bits are significant. PrefixLen 0 is "any protocol,
// any port" (L3-only rules), 8 is "this protocol, any port", 8+n is a port prefix of n bits,
// 24 an exact port. ICMP types sit in the port slot. Identity 0 is the wildcard ("any peer").
type Key struct {
	Identity  identity.ID
	Egress    bool
	Proto     uint8
	Port      uint16
	PrefixLen uint8
}

// PortPrefixBits is how many bits of the port the key matches.
func (k Key) PortPrefixBits() int {
	if k.PrefixLen <= 8 {
		return 0
	}
	return int(k.PrefixLen) - 8
}

// PortRange is the inclusive range of ports the key covers.
func (k Key) PortRange() (lo, hi uint16) {
	n := k.PortPrefixBits()
	if k.PrefixLen < 8 || n == 0 {
		return 0, 65535
	}
	span := uint16(1<<(16-n)) - 1
	return k.Port, k.Port | span
}

// Covers reports whether the key matches proto/port.
func (k Key) Covers(proto uint8, port uint16) bool {
	if k.PrefixLen == 0 {
		return true
	}
	if k.Proto != proto {
		return false
	}
	lo, hi := k.PortRange()
	return port >= lo && port <= hi
}

func (k Key) String() string {
	dir := "ingress"
	if k.Egress {
		dir = "egress"
	}
	peer := "peer=" + k.Identity.String()
	if k.Identity == 0 {
		peer = "peer=any"
	}
	switch {
	case k.PrefixLen == 0:
		return fmt.Sprintf("%s %s proto=any port=any", dir, peer)
	case k.PrefixLen == 8:
		return fmt.Sprintf("%s %s proto=%s port=any", dir, peer, ProtoName(k.Proto))
	}
	lo, hi := k.PortRange()
	if lo == hi {
		return fmt.Sprintf("%s %s proto=%s port=%d", dir, peer, ProtoName(k.Proto), lo)
	}
	return fmt.Sprintf("%s %s proto=%s port=%d-%d", dir, peer, ProtoName(k.Proto), lo, hi)
}

// masked returns the key of the given prefix length that covers proto/port.
func maskedKey(id identity.ID, egress bool, proto uint8, port uint16, plen uint8) Key {
	k := Key{Identity: id, Egress: egress, PrefixLen: plen}
	if plen >= 8 {
		k.Proto = proto
		n := int(plen) - 8
		if n > 0 {
			k.Port = port &^ (uint16(1<<(16-n)) - 1)
			if n == 16 {
				k.Port = port
			}
		}
	}
	return k
}

// Precedence orders entries; higher wins (Cilium's pkg/policy/types/entry.go): the upper 24
// bits are the inverted priority (tier), the low byte 255 for deny, 2..254 for a proxy
// redirect (inverted listener priority), 1 for a plain allow.
type Precedence uint32

const lowestPriority = 1<<24 - 1

func precedenceOf(tier Tier, deny bool, parser L7Parser) Precedence {
	base := Precedence(lowestPriority-uint32(tier)) << 8
	switch {
	case deny:
		return base | 255
	case parser == ParserNone:
		return base | 1
	}
	lp := parser.listenerPriority()
	return base | Precedence(255-1-lp)
}

// IsDeny reports whether the precedence is a deny.
func (p Precedence) IsDeny() bool { return p&255 == 255 }

// IsRedirect reports whether the precedence is a proxy redirect.
func (p Precedence) IsRedirect() bool { return p&255 > 1 && p&255 < 255 }

// Tier returns the tier encoded in the precedence.
func (p Precedence) Tier() Tier { return Tier(lowestPriority - uint32(p>>8)) }

// MapEntry is the value of a policy map entry.
type MapEntry struct {
	Verdict    Verdict
	Precedence Precedence
	// Parser is the proxy a redirect goes to (HTTP, DNS, TLS, CRD).
	Parser L7Parser
	// Origins are the rules that produced this entry (for an allow: every allow rule at the
	// winning tier that covers the key; for a deny: every deny rule that covers it).
	Origins []*Origin
}

func (e MapEntry) String() string {
	s := e.Verdict.String()
	if e.Verdict == Redirect {
		s += "(" + e.Parser.String() + ")"
	}
	return s
}

// MapState is one endpoint's compiled policy map.
type MapState struct {
	entries map[Key]MapEntry
	// plens[dir] is a bitmask of the prefix lengths present, to skip absent lengths in lookups.
	plens [2]uint32

	indexOnce sync.Once
	byPeer    map[peerDir]*peerIndex
}

type peerIndex struct {
	keys   []Key
	digest Digest
}

// Digest fingerprints everything a policy map holds for one peer: its keys, their entries
// and the rules behind them. Two peers with equal digests in one map get the same lookups
// and the same L7 rules (128 bits, so a collision is not a practical concern).
type Digest [2]uint64

func newMapState() *MapState { return &MapState{entries: map[Key]MapEntry{}} }

// NewMapState builds a map from entries, for consumers that keep or receive maps outside
// the engine (the datapath restoring pinned state, tests). Keys are taken as given.
func NewMapState(entries []KeyEntry) *MapState {
	m := &MapState{entries: make(map[Key]MapEntry, len(entries))}
	for _, ke := range entries {
		m.insert(ke.Key, ke.Entry)
	}
	return m
}

func dirIndex(egress bool) int {
	if egress {
		return 1
	}
	return 0
}

func (m *MapState) insert(k Key, e MapEntry) {
	m.entries[k] = e
	m.plens[dirIndex(k.Egress)] |= 1 << k.PrefixLen
}

// Len is the number of entries.
func (m *MapState) Len() int { return len(m.entries) }

// Get returns the entry of an exact key.
func (m *MapState) Get(k Key) (MapEntry, bool) {
	e, ok := m.entries[k]
	return e, ok
}

// Entries returns every key and entry, sorted.
func (m *MapState) Entries() []KeyEntry {
	out := make([]KeyEntry, 0, len(m.entries))
	for k, e := range m.entries {
		out = append(out, KeyEntry{k, e})
	}
	slices.SortFunc(out, func(a, b KeyEntry) int { return compareKeys(a.Key, b.Key) })
	return out
}

// KeyEntry is one map entry.
type KeyEntry struct {
	Key   Key
	Entry MapEntry
}

func compareKeys(a, b Key) int {
	switch {
	case a.Egress != b.Egress:
		if !a.Egress {
			return -1
		}
		return 1
	case a.Identity != b.Identity:
		if a.Identity < b.Identity {
			return -1
		}
		return 1
	case a.Proto != b.Proto:
		return int(a.Proto) - int(b.Proto)
	case a.Port != b.Port:
		return int(a.Port) - int(b.Port)
	}
	return int(a.PrefixLen) - int(b.PrefixLen)
}

// lpm finds the longest-prefix entry for id.
func (m *MapState) lpm(id identity.ID, egress bool, proto uint8, port uint16) (Key, MapEntry, bool) {
	mask := m.plens[dirIndex(egress)]
	for mask != 0 {
		plen := uint8(31 - bits.LeadingZeros32(mask))
		mask &^= 1 << plen
		k := maskedKey(id, egress, proto, port, plen)
		if e, ok := m.entries[k]; ok {
			return k, e, true
		}
	}
	return Key{}, MapEntry{}, false
}

// Lookup is the datapath's policy lookup: a longest-prefix lookup for the peer identity and
// one for the wildcard identity; the higher precedence wins, then the longer prefix, then
// the specific identity (bpf/lib/policy.h, semantics doc §2.4). found is false when no entry
// matches (the packet is dropped by default deny).
func (m *MapState) Lookup(peer identity.ID, egress bool, proto uint8, port uint16) (Key, MapEntry, bool) {
	k1, e1, ok1 := m.lpm(peer, egress, proto, port)
	if peer == 0 {
		return k1, e1, ok1
	}
	k2, e2, ok2 := m.lpm(0, egress, proto, port)
	switch {
	case !ok1:
		return k2, e2, ok2
	case !ok2:
		return k1, e1, ok1
	case e2.Precedence > e1.Precedence:
		return k2, e2, true
	case e2.Precedence == e1.Precedence && k2.PrefixLen > k1.PrefixLen:
		return k2, e2, true
	}
	return k1, e1, true
}

// String dumps the map, one entry a line.
func (m *MapState) String() string {
	var b strings.Builder
	for _, ke := range m.Entries() {
		fmt.Fprintf(&b, "%s -> %s\n", ke.Key, ke.Entry)
	}
	return b.String()
}

// rangeToPrefixes splits [lo, hi] into aligned port prefixes (bits of the port, 0..16).
func rangeToPrefixes(lo, hi uint16) []struct {
	Port uint16
	Bits uint8
} {
	var out []struct {
		Port uint16
		Bits uint8
	}
	cur := uint32(lo)
	end := uint32(hi)
	for cur <= end {
		size := uint32(1)
		bitsN := 16
		for bitsN > 0 {
			next := size << 1
			if cur&(next-1) != 0 || cur+next-1 > end {
				break
			}
			size = next
			bitsN--
		}
		out = append(out, struct {
			Port uint16
			Bits uint8
		}{uint16(cur), uint8(bitsN)})
		cur += size
	}
	return out
}

// KeysFor returns the keys of one peer identity (0 for the wildcard) in one direction,
// sorted. Analyses use it to find where verdicts can change across the port space.
func (m *MapState) KeysFor(id identity.ID, egress bool) []Key {
	m.indexOnce.Do(m.index)
	if pi := m.byPeer[peerDir{id, egress}]; pi != nil {
		return pi.keys
	}
	return nil
}

// PeerDigest fingerprints the keys of one peer (see Digest); the zero Digest means none.
func (m *MapState) PeerDigest(id identity.ID, egress bool) Digest {
	m.indexOnce.Do(m.index)
	if pi := m.byPeer[peerDir{id, egress}]; pi != nil {
		return pi.digest
	}
	return Digest{}
}

// index groups the keys by peer and fingerprints each peer's keys. The per-key hashes are
// summed, so the order of iteration does not matter.
func (m *MapState) index() {
	m.byPeer = map[peerDir]*peerIndex{}
	seed := maphash.MakeSeed()
	originHash := map[*Origin]uint64{}
	for k, e := range m.entries {
		pd := peerDir{k.Identity, k.Egress}
		pi := m.byPeer[pd]
		if pi == nil {
			pi = &peerIndex{}
			m.byPeer[pd] = pi
		}
		pi.keys = append(pi.keys, k)
		h0 := mix(uint64(k.Proto) | uint64(k.Port)<<8 | uint64(k.PrefixLen)<<24 | uint64(e.Verdict)<<32 | uint64(e.Parser)<<40 | uint64(len(e.Origins))<<48)
		h1 := mix(h0 ^ uint64(e.Precedence)<<7)
		h0 = mix(h0 + uint64(e.Precedence))
		for _, o := range e.Origins {
			oh, ok := originHash[o]
			if !ok {
				oh = maphash.Comparable(seed, o)
				originHash[o] = oh
			}
			h0 = mix(h0 ^ oh)
			h1 = mix(h1 + oh)
		}
		pi.digest[0] += h0
		pi.digest[1] += h1
	}
	for _, pi := range m.byPeer {
		slices.SortFunc(pi.keys, compareKeys)
	}
}

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

type peerDir struct {
	id     identity.ID
	egress bool
}

// Peers returns the peer identities (0 for the wildcard) that have keys in one direction.
func (m *MapState) Peers(egress bool) []identity.ID {
	m.KeysFor(0, egress) // builds the index
	var out []identity.ID
	for pd := range m.byPeer {
		if pd.egress == egress {
			out = append(out, pd.id)
		}
	}
	slices.Sort(out)
	return out
}

// ForEachPeer calls fn for every peer identity with keys in one direction (0, the wildcard,
// included), with the digest of its keys, in no particular order.
func (m *MapState) ForEachPeer(egress bool, fn func(id identity.ID, d Digest)) {
	m.indexOnce.Do(m.index)
	for pd, pi := range m.byPeer {
		if pd.egress == egress {
			fn(pd.id, pi.digest)
		}
	}
}
