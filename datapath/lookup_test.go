//go:build linux

package datapath

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"unsafe"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// The lookup precedence is written twice: in Go (policy.MapState.Lookup) and in C
// (policy_lookup in bpf/netward.c). TestLookupMatchesGo runs the same random maps and the
// same probes through both: each map goes through SetPolicy into the kernel, each probe is
// a crafted Ethernet+IPv4 packet test-run through from_pod/to_pod, and the program's return
// code, skb mark and verdict event must be what MapState.Lookup says. Every entry has its
// own cookie, so the event names the exact entry the C chose (tie-breaks included).

// Addresses of the test topology; the ipcache maps the peers to identities.
var (
	podAddr   = netip.MustParseAddr("10.1.0.1")
	peer256   = netip.MustParseAddr("10.0.0.1")
	peer257   = netip.MustParseAddr("10.0.0.2")
	peerHost  = netip.MustParseAddr("10.0.0.4")
	peerZero  = netip.MustParseAddr("10.0.0.5")  // mapped to identity 0 (exercises Lookup's peer==0 case)
	peer300   = netip.MustParseAddr("10.0.1.77") // in 10.0.1.0/24 -> 300: the ipcache is an LPM
	peerWorld = netip.MustParseAddr("192.0.2.1") // not in the ipcache -> world
)

var testIPCache = map[netip.Prefix]identity.ID{
	netip.PrefixFrom(peer256, 32):              256,
	netip.PrefixFrom(peer257, 32):              257,
	netip.PrefixFrom(peerHost, 32):             identity.Host,
	netip.PrefixFrom(peerZero, 32):             0,
	netip.MustParsePrefix("10.0.1.0/24"):       300,
	netip.MustParsePrefix("10.0.0.0/8"):        999, // shorter prefix that the /32s and /24 beat
	netip.PrefixFrom(podAddr, 32):              4242,
	netip.MustParsePrefix("192.0.2.128/25"):    777, // does not cover peerWorld
	netip.MustParsePrefix("198.51.100.0/24"):   778,
	netip.MustParsePrefix("203.0.113.0/24"):    779,
	netip.MustParsePrefix("100.64.0.0/10"):     780,
	netip.MustParsePrefix("172.16.0.0/12"):     781,
	netip.MustParsePrefix("10.255.255.255/32"): 782,
}

var probePeers = []struct {
	addr netip.Addr
	id   identity.ID
}{
	{peer256, 256}, {peer257, 257}, {peerHost, identity.Host}, {peerZero, 0},
	{peer300, 300}, {peerWorld, identity.World},
}

func setupTopology(t testing.TB, d *Datapath, epID uint32, flags EndpointFlags) {
	t.Helper()
	for p, id := range testIPCache {
		if err := d.UpsertIPCache(p, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SetEndpoint(testIfindex, Endpoint{ID: epID, Identity: 4242, Flags: flags}); err != nil {
		t.Fatal(err)
	}
}

var interestingPorts = []uint16{0, 1, 53, 79, 80, 81, 443, 1023, 1024, 8080, 8081, 8191, 8192, 32768, 65534, 65535}

// randomKey draws a key over identities {0, 2, 256, 257}, both directions, protocols
// {any, TCP, UDP, ICMP} and port prefixes of every length (exact ports and ranges).
func randomKey(r *rand.Rand) policy.Key {
	k := policy.Key{
		Identity: []identity.ID{0, identity.World, 256, 257}[r.IntN(4)],
		Egress:   r.IntN(2) == 0,
	}
	switch r.IntN(4) {
	case 0: // any protocol
		return k
	case 1:
		k.Proto = policy.ProtoTCP
	case 2:
		k.Proto = policy.ProtoUDP
	case 3:
		k.Proto = policy.ProtoICMP
	}
	switch r.IntN(4) {
	case 0:
		k.PrefixLen = 8
	case 1:
		k.PrefixLen = 24
	default:
		k.PrefixLen = uint8(9 + r.IntN(15))
	}
	var port uint16
	if k.Proto == policy.ProtoICMP && r.IntN(2) == 0 {
		port = []uint16{0, 3, 8, 11}[r.IntN(4)]
	} else if r.IntN(2) == 0 {
		port = interestingPorts[r.IntN(len(interestingPorts))]
	} else {
		port = uint16(r.IntN(65536))
	}
	k.Port = port & portMask(k.PrefixLen)
	return k
}

// randomEntry draws deny/allow/redirect in two tiers.
func randomEntry(r *rand.Rand) policy.MapEntry {
	tier := policy.Tier(r.IntN(2))
	var e policy.MapEntry
	switch r.IntN(5) {
	case 0, 1:
		e.Verdict = policy.Allow
	case 2, 3:
		e.Verdict = policy.Deny
	default:
		e.Verdict = policy.Redirect
		e.Parser = []policy.L7Parser{policy.ParserHTTP, policy.ParserDNS}[r.IntN(2)]
	}
	e.Precedence = precedence(tier, e.Verdict, e.Parser)
	return e
}

func randomMap(r *rand.Rand, n int) map[policy.Key]policy.MapEntry {
	m := map[policy.Key]policy.MapEntry{}
	for len(m) < n {
		m[randomKey(r)] = randomEntry(r)
	}
	// Give every entry its own origin, hence its own cookie.
	i := 0
	for k, e := range m {
		i++
		e.Origins = []*policy.Origin{{Path: "entry " + strconv.Itoa(i)}}
		m[k] = e
	}
	return m
}

// probePort draws a port (or ICMP type) near the keys' boundaries most of the time.
func probePort(r *rand.Rand, entries []policy.KeyEntry, proto uint8) uint16 {
	if proto == policy.ProtoICMP {
		return []uint16{0, 3, 8, 11, uint16(r.IntN(256))}[r.IntN(5)]
	}
	switch r.IntN(4) {
	case 0:
		return interestingPorts[r.IntN(len(interestingPorts))]
	case 1:
		return uint16(r.IntN(65536))
	}
	// A boundary of some key: its first or last port, or just outside.
	if len(entries) > 0 {
		if k := entries[r.IntN(len(entries))].Key; k.PrefixLen > 8 {
			lo, hi := k.PortRange()
			return []uint16{lo, hi, lo - 1, hi + 1}[r.IntN(4)]
		}
	}
	return uint16(r.IntN(65536))
}

func TestLookupMatchesGo(t *testing.T) {
	d := newTestDatapath(t)
	const epID = 7
	setupTopology(t, d, epID, FlagIngressEnforced|FlagEgressEnforced)
	events := newEventReader(t, d)
	jar := NewCookieJar()

	seed := uint64(os.Getpid())
	if s := os.Getenv("NETWARD_LOOKUP_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (NETWARD_LOOKUP_SEED=%d to replay)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0x6e6574776172))

	const maps, probesPerMap = 60, 120
	sport := uint16(1024)
	probes, mismatches := 0, 0
	verdicts := map[string]int{}
	for mi := 0; mi < maps; mi++ {
		m := randomMap(r, 1+r.IntN(80))
		if mi%10 == 9 {
			m = map[policy.Key]policy.MapEntry{} // empty map: default deny everywhere
		}
		ms := mapStateOf(t, m)
		// The same endpoint every time: exercises the delta and the standby/active flip.
		if _, err := d.SetMapState(epID, ms, jar.Cookie); err != nil {
			t.Fatalf("map %d: SetMapState: %v", mi, err)
		}
		checkKernelPolicy(t, d, epID, ms, jar)
		sorted := ms.Entries()

		for pi := 0; pi < probesPerMap; pi++ {
			peer := probePeers[r.IntN(len(probePeers))]
			egress := r.IntN(2) == 0
			proto := []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoICMP, policy.ProtoSCTP, 47}[r.IntN(5)]
			port := uint16(0)
			if proto != 47 {
				port = probePort(r, sorted, proto)
			}
			sport++
			if sport < 1024 {
				sport = 1024
			}
			p := pkt{proto: proto, sport: sport, dport: port}
			if proto == policy.ProtoICMP {
				p = pkt{proto: proto, icmpType: uint8(port), icmpID: sport}
			}
			if egress {
				p.src, p.dst = podAddr, peer.addr
			} else {
				p.src, p.dst = peer.addr, podAddr
			}

			k, e, found := ms.Lookup(peer.id, egress, proto, port)
			res := run(t, d, egress, p)
			evs := events.drain()
			if _, err := d.FlushConntrack(nil); err != nil {
				t.Fatal(err)
			}
			probes++

			want := expectation(found, &e, jar, egress)
			verdicts[want.reason.String()]++
			desc := func() string {
				return fmt.Sprintf("map %d probe %d: peer %d egress=%v %s/%d: Go says %v (key %v, found %v)\nmap:\n%s",
					mi, pi, peer.id, egress, policy.ProtoName(proto), port, want.reason, k, found, ms)
			}
			if res.ret != want.ret || res.mark != want.mark {
				mismatches++
				t.Errorf("%s\nC returned %d mark %#x, want %d mark %#x", desc(), res.ret, res.mark, want.ret, want.mark)
			}
			if len(evs) != 1 {
				mismatches++
				t.Errorf("%s\ngot %d events, want 1: %v", desc(), len(evs), evs)
			} else if ev := evs[0]; ev.Reason != want.reason || ev.Cookie != want.cookie ||
				ev.Precedence != want.precedence || ev.PeerIdentity != peer.id || ev.Endpoint != epID ||
				ev.Egress != egress || ev.Proto != proto || ev.DstPort != port || ev.Src != p.src || ev.Dst != p.dst {
				mismatches++
				t.Errorf("%s\nevent %+v\nwant reason %v cookie %d (%v) precedence %#x",
					desc(), ev, want.reason, want.cookie, jar.Origins(want.cookie), uint32(want.precedence))
			}
			if mismatches > 10 {
				t.Fatalf("too many mismatches")
			}
		}
	}
	t.Logf("%d maps, %d probes, expected reasons %v", maps, probes, verdicts)
	for _, reason := range []Reason{ReasonForwardedPolicy, ReasonDroppedPolicyDeny, ReasonDroppedDefaultDeny, ReasonRedirected} {
		if verdicts[reason.String()] < 100 {
			t.Errorf("only %d probes with reason %v: the random maps do not cover it", verdicts[reason.String()], reason)
		}
	}
}

type expected struct {
	ret        uint32
	mark       uint32
	reason     Reason
	cookie     uint32
	precedence policy.Precedence
}

// expectation is what the datapath must do for a MapState.Lookup result.
func expectation(found bool, e *policy.MapEntry, jar *CookieJar, egress bool) expected {
	if !found {
		return expected{ret: tcActShot, reason: ReasonDroppedDefaultDeny}
	}
	x := expected{cookie: jar.Cookie(e), precedence: e.Precedence}
	switch e.Verdict {
	case policy.Deny:
		x.ret, x.reason = tcActShot, ReasonDroppedPolicyDeny
	case policy.Redirect:
		dir := uint32(0)
		if egress {
			dir = 1
		}
		// An ingress redirect is hairpinned into the host veth's ingress (bpf_redirect).
		x.ret, x.reason = tcActOK, ReasonRedirected
		if !egress {
			x.ret = tcActRedirect
		}
		x.mark = uint32(DefaultProxyPort(policy.Key{}, e))<<16 | 0x0A00 | dir
	default:
		x.ret, x.reason = tcActOK, ReasonForwardedPolicy
	}
	return x
}

// checkKernelPolicy compares the kernel's active policy map with the MapState.
func checkKernelPolicy(t testing.TB, d *Datapath, epID uint32, ms *policy.MapState, jar *CookieJar) {
	t.Helper()
	got, ok, err := d.PolicyEntries(epID)
	if err != nil || !ok {
		t.Fatalf("PolicyEntries: %v %v", ok, err)
	}
	if len(got) != ms.Len() {
		t.Fatalf("kernel policy map has %d entries, MapState %d", len(got), ms.Len())
	}
	for _, ke := range ms.Entries() {
		v, ok := got[ke.Key]
		if !ok {
			t.Fatalf("kernel policy map lacks %v", ke.Key)
		}
		want := PolicyValue{Deny: ke.Entry.Verdict == policy.Deny, PrefixLen: ke.Key.PrefixLen,
			Precedence: ke.Entry.Precedence, Cookie: jar.Cookie(&ke.Entry)}
		if ke.Entry.Verdict == policy.Redirect {
			want.ProxyPort = DefaultProxyPort(ke.Key, &ke.Entry)
		}
		if v != want {
			t.Fatalf("kernel policy map %v = %+v, want %+v", ke.Key, v, want)
		}
	}
}

// TestKeyConversion checks bpfKey/fromBPFKey: the Cilium layout, and a round trip.
func TestKeyConversion(t *testing.T) {
	cases := []struct {
		k    policy.Key
		want netwardPolicyKey
	}{
		{policy.Key{Identity: 256, Egress: true}, netwardPolicyKey{Prefixlen: 40, Identity: 256, Egress: 1}},
		{policy.Key{Identity: 0, Proto: policy.ProtoTCP, PrefixLen: 8}, netwardPolicyKey{Prefixlen: 48, Protocol: 6}},
		{policy.Key{Identity: 2, Proto: policy.ProtoTCP, Port: 8080, PrefixLen: 24}, netwardPolicyKey{Prefixlen: 64, Identity: 2, Protocol: 6, Dport: htons(8080)}},
		{policy.Key{Identity: 2, Proto: policy.ProtoUDP, Port: 8192, PrefixLen: 8 + 3}, netwardPolicyKey{Prefixlen: 51, Identity: 2, Protocol: 17, Dport: htons(8192)}},
		{policy.Key{Identity: 9, Proto: policy.ProtoICMP, Port: 8, PrefixLen: 24}, netwardPolicyKey{Prefixlen: 64, Identity: 9, Protocol: 1, Dport: htons(8)}},
	}
	for _, c := range cases {
		got, err := bpfKey(c.k)
		if err != nil || got != c.want {
			t.Errorf("bpfKey(%v) = %+v, %v; want %+v", c.k, got, err, c.want)
		}
		if b := (*[12]byte)(unsafe.Pointer(&got)); c.k.PrefixLen == 24 && (b[10] != byte(c.k.Port>>8) || b[11] != byte(c.k.Port)) {
			t.Errorf("bpfKey(%v): dport bytes %x, want network order", c.k, b[10:12])
		}
		back, err := fromBPFKey(got)
		if err != nil || back != c.k {
			t.Errorf("fromBPFKey(%+v) = %v, %v; want %v", got, back, err, c.k)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		k := randomKey(r)
		b, err := bpfKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := fromBPFKey(b); err != nil || back != k {
			t.Fatalf("round trip %v -> %+v -> %v, %v", k, b, back, err)
		}
	}
	if _, err := bpfKey(policy.Key{PrefixLen: 25}); err == nil {
		t.Error("bpfKey accepted prefix length 25")
	}
	// Port bits beyond the prefix are not part of the key.
	a, _ := bpfKey(policy.Key{Proto: 6, Port: 8081, PrefixLen: 8 + 12})
	b, _ := bpfKey(policy.Key{Proto: 6, Port: 8080, PrefixLen: 8 + 12})
	if a != b {
		t.Errorf("masked ports differ: %+v %+v", a, b)
	}
}
