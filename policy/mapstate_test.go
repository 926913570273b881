package policy

import (
	"math/rand/v2"
	"testing"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/labels"
)

// msMinCover is an independent definition of the smallest set of aligned port prefixes
// covering [lo, hi]: walk the binary trie of the port space and take every node that lies
// inside the range. It returns how many prefixes that is.
func msMinCover(lo, hi, nodeLo, nodeHi uint32) int {
	switch {
	case nodeHi < lo || nodeLo > hi:
		return 0
	case lo <= nodeLo && nodeHi <= hi:
		return 1
	}
	mid := nodeLo + (nodeHi-nodeLo+1)/2
	return msMinCover(lo, hi, nodeLo, mid-1) + msMinCover(lo, hi, mid, nodeHi)
}

// msCheckRange checks that rangeToPrefixes(lo, hi) covers every port of the range exactly
// once and nothing else, with aligned prefixes, and as few as possible.
func msCheckRange(t *testing.T, lo, hi uint16) {
	t.Helper()
	ps := rangeToPrefixes(lo, hi)
	next := uint32(lo)
	for _, p := range ps {
		if p.Bits > 16 {
			t.Fatalf("[%d,%d]: prefix %d/%d has more than 16 bits", lo, hi, p.Port, p.Bits)
		}
		size := uint32(1) << (16 - p.Bits)
		if uint32(p.Port)%size != 0 {
			t.Fatalf("[%d,%d]: prefix %d/%d is not aligned", lo, hi, p.Port, p.Bits)
		}
		if uint32(p.Port) != next {
			t.Fatalf("[%d,%d]: prefix %d/%d starts at %d, want %d (gap or overlap): %v", lo, hi, p.Port, p.Bits, p.Port, next, ps)
		}
		next += size
	}
	if next != uint32(hi)+1 {
		t.Fatalf("[%d,%d]: prefixes end at %d: %v", lo, hi, next-1, ps)
	}
	if want := msMinCover(uint32(lo), uint32(hi), 0, 65535); len(ps) != want {
		t.Fatalf("[%d,%d]: %d prefixes, the minimum is %d: %v", lo, hi, len(ps), want, ps)
	}
}

// msCountCovering counts, for every port, how many keys built from the prefixes cover it,
// through maskedKey and Key.Covers as the compiler and the lookup use them.
func msCountCovering(lo, hi uint16, ports []uint16) []int {
	var keys []Key
	for _, p := range rangeToPrefixes(lo, hi) {
		keys = append(keys, maskedKey(7, false, ProtoTCP, p.Port, 8+p.Bits))
	}
	counts := make([]int, len(ports))
	for i, port := range ports {
		for _, k := range keys {
			if k.Covers(ProtoTCP, port) {
				counts[i]++
			}
		}
	}
	return counts
}

func TestRangeToPrefixesExhaustiveSmall(t *testing.T) {
	const n = 140
	for lo := uint16(0); lo < n; lo++ {
		for hi := lo; hi < n; hi++ {
			msCheckRange(t, lo, hi)
		}
	}
	// Literally: every port inside is covered exactly once, no port outside at all.
	var ports []uint16
	for p := range uint16(2 * n) {
		ports = append(ports, p)
	}
	for lo := uint16(0); lo < 70; lo++ {
		for hi := lo; hi < 70; hi++ {
			for i, c := range msCountCovering(lo, hi, ports) {
				want := 0
				if ports[i] >= lo && ports[i] <= hi {
					want = 1
				}
				if c != want {
					t.Fatalf("[%d,%d]: port %d covered %d times, want %d", lo, hi, ports[i], c, want)
				}
			}
		}
	}
}

func TestRangeToPrefixesEdges(t *testing.T) {
	all := make([]uint16, 65536)
	for i := range all {
		all[i] = uint16(i)
	}
	for _, r := range [][2]uint16{
		{0, 65535}, {1, 65535}, {80, 80}, {1024, 65535}, {0, 0}, {65535, 65535}, {0, 65534},
		{1, 65534}, {32767, 32768}, {8000, 8191}, {80, 90}, {443, 8443}, {1023, 1024},
	} {
		lo, hi := r[0], r[1]
		msCheckRange(t, lo, hi)
		for i, c := range msCountCovering(lo, hi, all) {
			want := 0
			if all[i] >= lo && all[i] <= hi {
				want = 1
			}
			if c != want {
				t.Fatalf("[%d,%d]: port %d covered %d times, want %d", lo, hi, all[i], c, want)
			}
		}
	}
	if got := rangeToPrefixes(0, 65535); len(got) != 1 || got[0].Port != 0 || got[0].Bits != 0 {
		t.Errorf("0-65535 = %v, want the single 0-bit prefix", got)
	}
	if got := rangeToPrefixes(80, 80); len(got) != 1 || got[0].Port != 80 || got[0].Bits != 16 {
		t.Errorf("80-80 = %v, want the single exact port", got)
	}
	if got := len(rangeToPrefixes(1, 65535)); got != 16 {
		t.Errorf("1-65535 has %d prefixes, want 16", got)
	}
	if got := len(rangeToPrefixes(1024, 65535)); got != 6 {
		t.Errorf("1024-65535 has %d prefixes, want 6", got)
	}
	if got := rangeToPrefixes(90, 80); len(got) != 0 {
		t.Errorf("an empty range (90-80) gave %v", got)
	}
}

func TestRangeToPrefixesRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		a, b := uint16(r.IntN(65536)), uint16(r.IntN(65536))
		msCheckRange(t, min(a, b), max(a, b))
	}
}

func TestMaskedKey(t *testing.T) {
	cases := []struct {
		port uint16
		plen uint8
		want Key
	}{
		{8085, 0, Key{Identity: 5, Egress: true}},
		{8085, 8, Key{Identity: 5, Egress: true, Proto: ProtoTCP, PrefixLen: 8}},
		{8085, 24, Key{Identity: 5, Egress: true, Proto: ProtoTCP, Port: 8085, PrefixLen: 24}},
		{8085, 20, Key{Identity: 5, Egress: true, Proto: ProtoTCP, Port: 8080, PrefixLen: 20}},
		{65535, 9, Key{Identity: 5, Egress: true, Proto: ProtoTCP, Port: 32768, PrefixLen: 9}},
		{32767, 9, Key{Identity: 5, Egress: true, Proto: ProtoTCP, Port: 0, PrefixLen: 9}},
		{65535, 23, Key{Identity: 5, Egress: true, Proto: ProtoTCP, Port: 65534, PrefixLen: 23}},
	}
	for _, c := range cases {
		if got := maskedKey(5, true, ProtoTCP, c.port, c.plen); got != c.want {
			t.Errorf("maskedKey(port %d, plen %d) = %+v, want %+v", c.port, c.plen, got, c.want)
		}
	}
	// Every key built from a prefix of rangeToPrefixes is a fixed point of maskedKey.
	for _, p := range rangeToPrefixes(1000, 2000) {
		k := maskedKey(1, false, ProtoUDP, p.Port, 8+p.Bits)
		lo, hi := k.PortRange()
		for _, port := range []uint16{lo, hi, lo + (hi-lo)/2} {
			if got := maskedKey(1, false, ProtoUDP, port, k.PrefixLen); got != k {
				t.Errorf("maskedKey(%d, %d) = %v, want %v", port, k.PrefixLen, got, k)
			}
		}
	}
}

func TestKeyPortRangeAndCovers(t *testing.T) {
	cases := []struct {
		key    Key
		lo, hi uint16
		bits   int
	}{
		{Key{PrefixLen: 0}, 0, 65535, 0},
		{Key{Proto: ProtoTCP, PrefixLen: 8}, 0, 65535, 0},
		{Key{Proto: ProtoTCP, Port: 80, PrefixLen: 24}, 80, 80, 16},
		{Key{Proto: ProtoTCP, Port: 8080, PrefixLen: 20}, 8080, 8095, 12},
		{Key{Proto: ProtoTCP, Port: 32768, PrefixLen: 9}, 32768, 65535, 1},
	}
	for _, c := range cases {
		lo, hi := c.key.PortRange()
		if lo != c.lo || hi != c.hi || c.key.PortPrefixBits() != c.bits {
			t.Errorf("%v: range %d-%d bits %d, want %d-%d bits %d", c.key, lo, hi, c.key.PortPrefixBits(), c.lo, c.hi, c.bits)
		}
	}
	l3 := Key{Identity: 9}
	for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6, 47} {
		if !l3.Covers(proto, 1234) {
			t.Errorf("an L3-only key does not cover %s", ProtoName(proto))
		}
	}
	proto := Key{Proto: ProtoUDP, PrefixLen: 8}
	if !proto.Covers(ProtoUDP, 0) || !proto.Covers(ProtoUDP, 65535) || proto.Covers(ProtoTCP, 53) {
		t.Errorf("a protocol-only key must cover every port of that protocol only")
	}
	r := Key{Proto: ProtoTCP, Port: 8080, PrefixLen: 20}
	for port, want := range map[uint16]bool{8079: false, 8080: true, 8095: true, 8096: false} {
		if r.Covers(ProtoTCP, port) != want || r.Covers(ProtoUDP, port) {
			t.Errorf("%v covers TCP/%d = %v, want %v (and never UDP)", r, port, r.Covers(ProtoTCP, port), want)
		}
	}
	icmp := Key{Proto: ProtoICMP, Port: 8, PrefixLen: 24}
	if !icmp.Covers(ProtoICMP, 8) || icmp.Covers(ProtoICMP, 0) || icmp.Covers(ProtoICMPv6, 8) {
		t.Errorf("an ICMP type key covers that type only")
	}
}

func TestPrecedenceOrdering(t *testing.T) {
	// Within a tier, highest first: deny > redirect HTTP > TLS > DNS > CRD > allow (§4).
	for _, tier := range []Tier{TierNormal, TierDefault} {
		order := []Precedence{
			precedenceOf(tier, true, ParserNone),
			precedenceOf(tier, false, ParserHTTP),
			precedenceOf(tier, false, ParserTLS),
			precedenceOf(tier, false, ParserDNS),
			precedenceOf(tier, false, ParserCRD),
			precedenceOf(tier, false, ParserNone),
		}
		for i := 1; i < len(order); i++ {
			if order[i-1] <= order[i] {
				t.Errorf("tier %d: precedence %d (%#x) is not above %d (%#x)", tier, i-1, order[i-1], i, order[i])
			}
		}
		for i, p := range order {
			if p.Tier() != tier {
				t.Errorf("tier %d: precedence %#x decodes to tier %d", tier, p, p.Tier())
			}
			if p.IsDeny() != (i == 0) || p.IsRedirect() != (i > 0 && i < 5) {
				t.Errorf("tier %d: precedence %#x: IsDeny=%v IsRedirect=%v", tier, p, p.IsDeny(), p.IsRedirect())
			}
		}
	}
	// A deny ignores the parser.
	if precedenceOf(TierNormal, true, ParserHTTP) != precedenceOf(TierNormal, true, ParserNone) {
		t.Errorf("a deny's precedence depends on its parser")
	}
	// TierNormal beats TierDefault for every verdict (§2.3: tier before verdict).
	for _, deny := range []bool{false, true} {
		for _, parser := range []L7Parser{ParserNone, ParserHTTP, ParserTLS, ParserDNS, ParserCRD} {
			normal := precedenceOf(TierNormal, deny, parser)
			for _, deny2 := range []bool{false, true} {
				for _, parser2 := range []L7Parser{ParserNone, ParserHTTP, ParserTLS, ParserDNS, ParserCRD} {
					if def := precedenceOf(TierDefault, deny2, parser2); normal <= def {
						t.Errorf("normal(deny=%v,%s)=%#x does not beat default(deny=%v,%s)=%#x", deny, parser, normal, deny2, parser2, def)
					}
				}
			}
		}
	}
}

func TestMapStateLookupTieBreaking(t *testing.T) {
	const peer identity.ID = 300
	allow := MapEntry{Verdict: Allow, Precedence: precedenceOf(TierNormal, false, ParserNone)}
	deny := MapEntry{Verdict: Deny, Precedence: precedenceOf(TierNormal, true, ParserNone)}
	http := MapEntry{Verdict: Redirect, Parser: ParserHTTP, Precedence: precedenceOf(TierNormal, false, ParserHTTP)}
	defAllow := MapEntry{Verdict: Allow, Precedence: precedenceOf(TierDefault, false, ParserNone)}
	l3 := func(id identity.ID) Key { return Key{Identity: id} }
	proto := func(id identity.ID) Key { return Key{Identity: id, Proto: ProtoTCP, PrefixLen: 8} }
	port := func(id identity.ID, p uint16) Key { return Key{Identity: id, Proto: ProtoTCP, Port: p, PrefixLen: 24} }
	type ins struct {
		k Key
		e MapEntry
	}
	cases := []struct {
		name    string
		entries []ins
		port    uint16
		wantKey Key
		want    Verdict
		found   bool
	}{
		{"§2.4 (1) higher precedence first: a wildcard L3 deny beats a specific port allow",
			[]ins{{port(peer, 80), allow}, {l3(0), deny}}, 80, l3(0), Deny, true},
		{"§2.4 (1) a specific L3 deny beats a wildcard port allow",
			[]ins{{l3(peer), deny}, {port(0, 80), allow}}, 80, l3(peer), Deny, true},
		{"§5.8 a wildcard redirect beats a specific allow",
			[]ins{{port(peer, 80), allow}, {proto(0), http}}, 80, proto(0), Redirect, true},
		{"§2.4 (1) a specific redirect beats a wildcard allow of a longer prefix",
			[]ins{{proto(peer), http}, {port(0, 80), allow}}, 80, proto(peer), Redirect, true},
		{"§2.4 (2) equal precedence: the longer prefix wins (wildcard port over specific L3)",
			[]ins{{l3(peer), allow}, {port(0, 80), allow}}, 80, port(0, 80), Allow, true},
		{"§2.4 (2) equal precedence: the longer prefix wins (specific port over wildcard proto)",
			[]ins{{port(peer, 80), allow}, {proto(0), allow}}, 80, port(peer, 80), Allow, true},
		{"§2.4 (3) equal precedence and prefix: the specific identity wins",
			[]ins{{port(peer, 80), allow}, {port(0, 80), MapEntry{Verdict: Allow, Precedence: allow.Precedence, Origins: []*Origin{{Path: "wildcard"}}}}}, 80, port(peer, 80), Allow, true},
		{"§2.3 the normal tier beats the default tier whatever the prefix",
			[]ins{{port(peer, 80), defAllow}, {l3(0), http}}, 80, l3(0), Redirect, true},
		{"§4 each identity's lookup is longest-prefix: a shorter deny of the same identity is not seen",
			[]ins{{l3(peer), deny}, {port(peer, 80), allow}}, 80, port(peer, 80), Allow, true},
		{"§4 the wildcard's longest prefix competes with the specific one",
			[]ins{{l3(0), deny}, {port(0, 80), allow}, {proto(peer), allow}}, 80, port(0, 80), Allow, true},
		{"no covering entry: not found (default deny drops)",
			[]ins{{port(peer, 81), allow}, {Key{Identity: peer, Proto: ProtoUDP, Port: 80, PrefixLen: 24}, allow}, {Key{Identity: peer, Egress: true}, allow}}, 80, Key{}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMapState()
			for _, in := range c.entries {
				m.insert(in.k, in.e)
			}
			k, e, ok := m.Lookup(peer, false, ProtoTCP, c.port)
			if ok != c.found || (ok && (k != c.wantKey || e.Verdict != c.want)) {
				t.Errorf("Lookup = %v %v %v, want %v %v %v\nmap:\n%s", k, e, ok, c.wantKey, c.want, c.found, m)
			}
		})
	}

	// A lookup for the wildcard identity itself only consults the wildcard entries, and
	// directions never mix.
	m := newMapState()
	m.insert(port(0, 80), allow)
	m.insert(Key{Identity: peer, Egress: true}, deny)
	if _, e, ok := m.Lookup(0, false, ProtoTCP, 80); !ok || e.Verdict != Allow {
		t.Errorf("wildcard lookup = %v %v", e, ok)
	}
	if _, _, ok := m.Lookup(peer, true, ProtoTCP, 80); !ok {
		t.Errorf("egress lookup missed the egress entry")
	}
	if _, e, _ := m.Lookup(peer, false, ProtoTCP, 80); e.Verdict != Allow {
		t.Errorf("the egress deny leaked into ingress: %v", e)
	}
	if m.Len() != 2 {
		t.Errorf("Len = %d", m.Len())
	}
	if e, ok := m.Get(port(0, 80)); !ok || e.Verdict != Allow {
		t.Errorf("Get = %v %v", e, ok)
	}
}

// TestMapStatePortRangeLookup: a compiled range answers for every port of the range and
// no other, through the datapath lookup (§2.6 ranges as LPM keys).
func TestMapStatePortRangeLookup(t *testing.T) {
	e := NewEngine(Options{})
	subject := &identity.Identity{ID: 256, Labels: labels.NewSet(fzLabel(labels.SourceK8s, "app", "r"))}
	e.UpsertIdentity(subject)
	e.ReplaceResource("CiliumClusterwideNetworkPolicy/r", []*Entry{{
		Subject: Subject{Selector: labels.NewSelector(refRqApp("r"))}, Ingress: true, DefaultDeny: true, L3: []PeerSelector{},
		L4:     []PortRule{{Ports: []PortProto{{Port: 1000, EndPort: 2999, Proto: ProtoTCP}}}},
		Origin: &Origin{Kind: "CiliumClusterwideNetworkPolicy", Name: "r", Path: "spec.ingress[0]"},
	}})
	p := e.Policy(subject, "")
	for port := range 65536 {
		want := port >= 1000 && port <= 2999
		if got := p.Lookup(false, 12345, ProtoTCP, uint16(port)).Allowed; got != want {
			t.Fatalf("TCP/%d allowed = %v, want %v\n%s", port, got, want, p.Map)
		}
	}
	if p.Lookup(false, 12345, ProtoUDP, 1500).Allowed {
		t.Errorf("UDP/1500 allowed by a TCP range")
	}
}
