//go:build linux

package datapath

import (
	"maps"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

const testEP = 11

func allow(k policy.Key) policy.KeyEntry {
	return policy.KeyEntry{Key: k, Entry: policy.MapEntry{Verdict: policy.Allow,
		Precedence: precedence(policy.TierNormal, policy.Allow, policy.ParserNone),
		Origins:    []*policy.Origin{{Kind: "CiliumNetworkPolicy", Namespace: "ns", Name: "allow", Path: k.String()}}}}
}

func deny(k policy.Key) policy.KeyEntry {
	return policy.KeyEntry{Key: k, Entry: policy.MapEntry{Verdict: policy.Deny,
		Precedence: precedence(policy.TierNormal, policy.Deny, policy.ParserNone),
		Origins:    []*policy.Origin{{Kind: "CiliumNetworkPolicy", Namespace: "ns", Name: "deny", Path: k.String()}}}}
}

func tcpKey(id identity.ID, egress bool, port uint16) policy.Key {
	return policy.Key{Identity: id, Egress: egress, Proto: policy.ProtoTCP, Port: port, PrefixLen: 24}
}

func setPolicy(t testing.TB, d *Datapath, jar *CookieJar, entries ...policy.KeyEntry) PolicyDelta {
	t.Helper()
	delta, err := d.SetPolicy(testEP, entries, jar.Cookie)
	if err != nil {
		t.Fatal(err)
	}
	return delta
}

func expectRet(t testing.TB, got testRun, want uint32, what string) {
	t.Helper()
	if got.ret != want {
		t.Errorf("%s: returned %d, want %d", what, got.ret, want)
	}
}

func expectMetrics(t testing.TB, before, after map[string]Counter, want map[string]uint64) {
	t.Helper()
	if got := metricsDelta(before, after); !maps.Equal(got, want) {
		t.Errorf("metrics delta %v, want %v", got, want)
	}
}

// A pod (podAddr, endpoint testEP) talks to peer256 (identity 256).
func tcpFlow(sport, dport uint16) pkt {
	return pkt{src: peer256, dst: podAddr, proto: policy.ProtoTCP, sport: sport, dport: dport}
}

func TestConntrackReplies(t *testing.T) {
	d := newTestDatapath(t)
	jar := NewCookieJar()
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagEgressEnforced)
	events := newEventReader(t, d)
	// Ingress allows 256 -> pod:8080; egress allows nothing (default deny).
	setPolicy(t, d, jar, allow(tcpKey(256, false, 8080)))

	m0 := mustMetrics(t, d)
	in := tcpFlow(40000, 8080)
	expectRet(t, run(t, d, false, in), tcActOK, "new allowed flow")
	evs := events.drain()
	if len(evs) != 1 || evs[0].Reason != ReasonForwardedPolicy || evs[0].Verdict != VerdictForwarded {
		t.Fatalf("events of the new flow: %v", evs)
	}
	if o := jar.Origins(evs[0].Cookie); len(o) != 1 || o[0].Name != "allow" {
		t.Errorf("event cookie %d names %v", evs[0].Cookie, o)
	}
	ct, _ := d.Conntrack()
	if len(ct) != 1 || ct[0].Src != peer256 || ct[0].Dst != podAddr || ct[0].SrcPort != 40000 ||
		ct[0].DstPort != 8080 || ct[0].Egress || ct[0].Endpoint != testEP || ct[0].Proto != policy.ProtoTCP {
		t.Fatalf("conntrack after the new flow: %+v", ct)
	}

	// The reply leaves the pod: egress policy would deny it, conntrack lets it pass.
	expectRet(t, run(t, d, true, in.reply()), tcActOK, "reply")
	// More packets of the flow: the policy is evaluated again (still allowed), no event.
	expectRet(t, run(t, d, false, in), tcActOK, "established")
	if evs := events.drain(); len(evs) != 0 {
		t.Errorf("replies and established packets sent events: %v", evs)
	}
	// The pod opening a connection to the same peer is a new flow: denied by egress.
	out := pkt{src: podAddr, dst: peer256, proto: policy.ProtoTCP, sport: 8080, dport: 40001}
	expectRet(t, run(t, d, true, out), tcActShot, "new egress flow")
	evs = events.drain()
	if len(evs) != 1 || evs[0].Reason != ReasonDroppedDefaultDeny || !evs[0].Egress || evs[0].Cookie != 0 {
		t.Errorf("events of the denied flow: %v", evs)
	}
	// A denied flow creates no entry; its "reply" is policy-checked, not a reply.
	denied := tcpFlow(40002, 9090)
	expectRet(t, run(t, d, false, denied), tcActShot, "denied flow")
	if ct, _ := d.Conntrack(); len(ct) != 1 {
		t.Errorf("a denied flow created conntrack entries: %+v", ct)
	}
	expectRet(t, run(t, d, true, denied.reply()), tcActShot, "reply of a denied flow")
	// A reply only counts at the same endpoint.
	if err := d.SetEndpoint(testIfindex, Endpoint{ID: testEP + 1, Identity: 4242, Flags: FlagIngressEnforced | FlagEgressEnforced}); err != nil {
		t.Fatal(err)
	}
	expectRet(t, run(t, d, true, in.reply()), tcActShot, "reply at another endpoint")
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagEgressEnforced)
	events.drain()

	expectMetrics(t, m0, mustMetrics(t, d), map[string]uint64{
		"forwarded-policy": 2, "forwarded-reply": 1, "dropped-default-deny": 4,
	})

	// Revoking the allow cuts the established flow (as in Cilium), and reports the drop.
	setPolicy(t, d, jar)
	expectRet(t, run(t, d, false, in), tcActShot, "established flow after revocation")
	if evs := events.drain(); len(evs) != 1 || evs[0].Reason != ReasonDroppedDefaultDeny {
		t.Errorf("events of the revoked flow: %v", evs)
	}
	// ... while its replies still pass (nothing to reply to once the peer's packets drop).
	expectRet(t, run(t, d, true, in.reply()), tcActOK, "reply after revocation")
}

func TestICMPConntrack(t *testing.T) {
	d := newTestDatapath(t)
	jar := NewCookieJar()
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagEgressEnforced)
	events := newEventReader(t, d)
	// The pod may ping 256 (ICMP type 8 in the port slot) and talk TCP to it on 443.
	echo := policy.Key{Identity: 256, Egress: true, Proto: policy.ProtoICMP, Port: 8, PrefixLen: 24}
	setPolicy(t, d, jar, allow(echo), allow(tcpKey(256, true, 443)))

	req := pkt{src: podAddr, dst: peer256, proto: policy.ProtoICMP, icmpType: 8, icmpID: 77}
	expectRet(t, run(t, d, true, req), tcActOK, "echo request")
	expectRet(t, run(t, d, false, req.reply()), tcActOK, "echo reply")
	other := req.reply()
	other.icmpID = 78
	expectRet(t, run(t, d, false, other), tcActShot, "echo reply with another id")
	// An echo request from the peer with the same id is not a reply.
	back := pkt{src: peer256, dst: podAddr, proto: policy.ProtoICMP, icmpType: 8, icmpID: 77}
	expectRet(t, run(t, d, false, back), tcActShot, "echo request from the peer")
	evs := events.drain()
	if len(evs) != 3 || evs[0].DstPort != 8 || evs[0].SrcPort != 77 || evs[0].Reason != ReasonForwardedPolicy {
		t.Errorf("events: %v", evs)
	}

	// ICMP errors about a tracked flow are related: they pass without policy.
	tcp := pkt{src: podAddr, dst: peer256, proto: policy.ProtoTCP, sport: 50000, dport: 443}
	expectRet(t, run(t, d, true, tcp), tcActOK, "tcp to 443")
	fragNeeded := pkt{src: peer257, dst: podAddr, proto: policy.ProtoICMP, icmpType: 3, inner: &tcp}
	m0 := mustMetrics(t, d)
	expectRet(t, run(t, d, false, fragNeeded), tcActOK, "ICMP error about the flow")
	expectMetrics(t, m0, mustMetrics(t, d), map[string]uint64{"forwarded-reply": 1})
	unrelated := tcp
	unrelated.dport = 444
	fragNeeded.inner = &unrelated
	expectRet(t, run(t, d, false, fragNeeded), tcActShot, "ICMP error about an unknown flow")
	events.drain()
}

func TestFragments(t *testing.T) {
	d := newTestDatapath(t)
	jar := NewCookieJar()
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagEgressEnforced)
	udp := func(port uint16) policy.Key {
		return policy.Key{Identity: 256, Proto: policy.ProtoUDP, Port: port, PrefixLen: 24}
	}
	setPolicy(t, d, jar, allow(udp(53)))
	first := pkt{src: peer256, dst: podAddr, proto: policy.ProtoUDP, sport: 3333, dport: 53, ipID: 99, moreFrags: true}
	expectRet(t, run(t, d, false, first), tcActOK, "first fragment")
	later := first
	later.fragOff, later.moreFrags = 185, false
	expectRet(t, run(t, d, false, later), tcActOK, "later fragment (ports from the first)")
	unknown := later
	unknown.ipID = 100
	expectRet(t, run(t, d, false, unknown), tcActShot, "fragment of an unseen datagram (port 0)")
}

func TestAuditMode(t *testing.T) {
	d := newTestDatapath(t)
	jar := NewCookieJar()
	setupTopology(t, d, testEP, FlagAudit|FlagIngressEnforced|FlagEgressEnforced)
	events := newEventReader(t, d)
	setPolicy(t, d, jar, allow(tcpKey(256, false, 8080)), deny(tcpKey(256, false, 22)))

	m0 := mustMetrics(t, d)
	expectRet(t, run(t, d, false, tcpFlow(1000, 8080)), tcActOK, "allowed")
	expectRet(t, run(t, d, false, tcpFlow(1001, 22)), tcActOK, "denied in audit mode")
	expectRet(t, run(t, d, false, tcpFlow(1002, 9999)), tcActOK, "default deny in audit mode")
	expectRet(t, run(t, d, false, tcpFlow(1001, 22)), tcActOK, "second packet")
	evs := events.drain()
	if len(evs) != 3 {
		t.Fatalf("events: %v", evs)
	}
	if evs[0].Reason != ReasonForwardedPolicy || evs[0].Verdict != VerdictForwarded {
		t.Errorf("allowed flow event %v", evs[0])
	}
	if evs[1].Reason != ReasonAuditWouldDrop || evs[1].Verdict != VerdictDropped || jar.Origins(evs[1].Cookie)[0].Name != "deny" {
		t.Errorf("deny audit event %v", evs[1])
	}
	if evs[2].Reason != ReasonAuditWouldDrop || evs[2].Verdict != VerdictDropped || evs[2].Cookie != 0 {
		t.Errorf("default deny audit event %v", evs[2])
	}
	expectMetrics(t, m0, mustMetrics(t, d), map[string]uint64{"forwarded-policy": 1, "audit-would-drop": 3})
	ct, _ := d.Conntrack()
	audited := 0
	for _, c := range ct {
		if c.Audit {
			audited++
		}
	}
	if len(ct) != 3 || audited != 2 {
		t.Errorf("conntrack %+v", ct)
	}

	// Leaving audit mode enforces, also on the flows audit let through.
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagEgressEnforced)
	expectRet(t, run(t, d, false, tcpFlow(1001, 22)), tcActShot, "denied after audit mode")
}

func TestUnenforcedAndPolicyError(t *testing.T) {
	d := newTestDatapath(t)
	jar := NewCookieJar()
	events := newEventReader(t, d)
	setupTopology(t, d, testEP, FlagIngressEnforced) // egress not enforced
	setPolicy(t, d, jar)                             // empty: ingress default deny

	m0 := mustMetrics(t, d)
	out := pkt{src: podAddr, dst: peerWorld, proto: policy.ProtoUDP, sport: 5000, dport: 53}
	expectRet(t, run(t, d, true, out), tcActOK, "unenforced egress")
	// Its reply passes the enforced ingress: the unenforced direction still tracks.
	expectRet(t, run(t, d, false, out.reply()), tcActOK, "reply through enforced ingress")
	expectRet(t, run(t, d, false, tcpFlow(1, 80)), tcActShot, "ingress default deny")
	expectMetrics(t, m0, mustMetrics(t, d), map[string]uint64{
		"forwarded-unenforced": 1, "forwarded-reply": 1, "dropped-default-deny": 1,
	})
	if evs := events.drain(); len(evs) != 1 {
		t.Errorf("unenforced traffic sent events: %v", evs)
	}

	// Neither direction enforced: no policy map needed at all.
	if err := d.DeletePolicy(testEP); err != nil {
		t.Fatal(err)
	}
	setupTopology(t, d, testEP, 0)
	expectRet(t, run(t, d, false, tcpFlow(2, 80)), tcActOK, "nothing enforced")
	// Enforced without a policy map: default deny.
	setupTopology(t, d, testEP, FlagIngressEnforced)
	expectRet(t, run(t, d, false, tcpFlow(3, 80)), tcActShot, "enforced without a policy map")
	events.drain()

	// A failed policy drops everything, replies included, whatever the map says.
	setPolicy(t, d, jar, allow(policy.Key{Identity: 0}), allow(policy.Key{Identity: 0, Egress: true}))
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagPolicyError)
	m1 := mustMetrics(t, d)
	expectRet(t, run(t, d, false, tcpFlow(4, 80)), tcActShot, "policy error ingress")
	expectRet(t, run(t, d, true, out), tcActShot, "policy error egress (unenforced)")
	expectRet(t, run(t, d, false, out.reply()), tcActShot, "policy error reply")
	expectMetrics(t, m1, mustMetrics(t, d), map[string]uint64{"dropped-policy-error": 3})
	evs := events.drain()
	if len(evs) != 3 || evs[0].Reason != ReasonDroppedPolicyError || evs[0].PeerIdentity != 256 {
		t.Errorf("policy error events: %v", evs)
	}
	// In audit mode a failed policy is reported, not enforced.
	setupTopology(t, d, testEP, FlagAudit|FlagPolicyError)
	expectRet(t, run(t, d, false, tcpFlow(5, 80)), tcActOK, "policy error in audit mode")
	if evs := events.drain(); len(evs) != 1 || evs[0].Reason != ReasonAuditWouldDrop {
		t.Errorf("audit policy error events: %v", evs)
	}

	// An attached interface without endpoint drops (fail closed); non-IPv4 passes.
	if err := d.DeleteEndpoint(testIfindex); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.PolicyEntries(testEP); ok {
		t.Error("DeleteEndpoint kept the policy map")
	}
	if ct, _ := d.Conntrack(); len(ct) != 0 {
		t.Errorf("DeleteEndpoint kept conntrack entries: %+v", ct)
	}
	expectRet(t, run(t, d, false, tcpFlow(6, 80)), tcActShot, "no endpoint")
	arp := tcpFlow(7, 80).frame()
	arp[12], arp[13] = 0x08, 0x06
	ret, err := d.objs.ToPod.Run(&ebpf.RunOptions{Data: arp})
	if err != nil || ret != tcActOK {
		t.Errorf("ARP: %d %v", ret, err)
	}
}

func TestRedirectMark(t *testing.T) {
	d := newTestDatapath(t)
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagEgressEnforced)
	e := policy.MapEntry{Verdict: policy.Redirect, Parser: policy.ParserHTTP,
		Precedence: precedence(policy.TierNormal, policy.Redirect, policy.ParserHTTP)}
	d.ProxyPort = func(k policy.Key, _ *policy.MapEntry) uint16 { return 40000 + k.Port }
	if _, err := d.SetPolicy(testEP, []policy.KeyEntry{{Key: tcpKey(0, true, 80), Entry: e}}, nil); err != nil {
		t.Fatal(err)
	}
	m0 := mustMetrics(t, d)
	p := pkt{src: podAddr, dst: peerWorld, proto: policy.ProtoTCP, sport: 1234, dport: 80}
	r := run(t, d, true, p)
	if r.ret != tcActOK || r.mark != 40080<<16|0x0A00|1 {
		t.Errorf("redirect: ret %d mark %#x", r.ret, r.mark)
	}
	// The reply is not marked.
	if r := run(t, d, false, p.reply()); r.ret != tcActOK || r.mark != 0 {
		t.Errorf("reply of a redirected flow: ret %d mark %#x", r.ret, r.mark)
	}
	expectMetrics(t, m0, mustMetrics(t, d), map[string]uint64{"redirected": 1, "forwarded-reply": 1})
	if ct, _ := d.Conntrack(); len(ct) != 1 || !ct[0].Redirect {
		t.Errorf("conntrack %+v", ct)
	}
	d.ProxyPort = func(policy.Key, *policy.MapEntry) uint16 { return 0 }
	if _, err := d.SetPolicy(testEP, []policy.KeyEntry{{Key: tcpKey(0, true, 81), Entry: e}}, nil); err == nil {
		t.Error("a redirect without proxy port was accepted")
	}
}

// TestSetPolicyDeltaAndAdoption checks the delta counts, the flip between the two inner
// maps, and that a second Load of the same pins adopts the state of the first.
func TestSetPolicyDeltaAndAdoption(t *testing.T) {
	d := newTestDatapath(t)
	jar := NewCookieJar()
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagEgressEnforced)
	a, b, c := allow(tcpKey(256, false, 80)), allow(tcpKey(256, false, 81)), allow(tcpKey(256, false, 82))

	if got := setPolicy(t, d, jar, a, b); got != (PolicyDelta{Upserted: 2}) {
		t.Errorf("first policy: %+v", got)
	}
	if got := setPolicy(t, d, jar, a, b); !got.Unchanged {
		t.Errorf("same policy: %+v", got)
	}
	// The standby is new (empty): the whole policy is written to it.
	if got := setPolicy(t, d, jar, a, c); got != (PolicyDelta{Upserted: 2}) {
		t.Errorf("second policy: %+v", got)
	}
	// The standby now holds {a, b}: one upsert (c), one delete (b).
	if got := setPolicy(t, d, jar, a, c, deny(tcpKey(256, false, 83))); got != (PolicyDelta{Upserted: 2, Deleted: 1}) {
		t.Errorf("third policy: %+v", got)
	}
	expectRet(t, run(t, d, false, tcpFlow(1, 82)), tcActOK, "82 allowed")
	expectRet(t, run(t, d, false, tcpFlow(2, 81)), tcActShot, "81 revoked")

	// A restarted agent adopts the pinned maps: endpoint, ipcache, policy and conntrack.
	d2, err := Load(d.PinDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if ep, ok, err := d2.GetEndpoint(testIfindex); err != nil || !ok || ep.ID != testEP {
		t.Fatalf("adopted endpoint %+v %v %v", ep, ok, err)
	}
	got, ok, err := d2.PolicyEntries(testEP)
	if err != nil || !ok || len(got) != 3 {
		t.Fatalf("adopted policy %v %v %v", got, ok, err)
	}
	expectRet(t, run(t, d2, false, tcpFlow(1, 82)), tcActOK, "82 via the new loader")
	if ct, _ := d2.Conntrack(); len(ct) != 1 {
		t.Errorf("adopted conntrack %+v", ct)
	}
	if got := setPolicy(t, d2, jar, a, c, deny(tcpKey(256, false, 83))); !got.Unchanged {
		t.Errorf("adopted policy rewritten: %+v", got)
	}
	if got := setPolicy(t, d2, jar, a); got != (PolicyDelta{Upserted: 1}) {
		t.Errorf("after adoption (fresh standby): %+v", got)
	}
	expectRet(t, run(t, d, false, tcpFlow(3, 82)), tcActShot, "82 revoked by the new loader, seen by the old")
	if err := d2.UpsertIPCache(netip.MustParsePrefix("10.9.0.0/16"), 5000); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteIPCache(netip.MustParsePrefix("10.9.0.0/16")); err != nil {
		t.Errorf("shared ipcache: %v", err)
	}
	if err := d.UpsertIPCache(netip.MustParsePrefix("2001:db8::/32"), 5000); err == nil {
		t.Error("IPv6 ipcache prefix accepted")
	}
}
