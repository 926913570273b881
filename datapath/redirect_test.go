//go:build linux

package datapath

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/netward/netward/policy"
)

// runMark test-runs a program on a packet that carries mark (as the kernel would have set
// it before the program: a hairpinned redirect, a proxy socket's SO_MARK).
func runMark(t testing.TB, d *Datapath, egress bool, p pkt, mark uint32) testRun {
	t.Helper()
	prog := d.objs.ToPod
	if egress {
		prog = d.objs.FromPod
	}
	ctxIn := make([]byte, skbCtxSize)
	ctxOut := make([]byte, skbCtxSize)
	binary.NativeEndian.PutUint32(ctxIn[skbMarkOffset:], mark)
	ret, err := prog.Run(&ebpf.RunOptions{Data: p.frame(), Context: ctxIn, ContextOut: ctxOut})
	if err != nil {
		t.Fatalf("prog run: %v", err)
	}
	return testRun{ret: ret, mark: binary.NativeEndian.Uint32(ctxOut[skbMarkOffset:])}
}

func ctFlags(t testing.TB, d *Datapath) map[string]uint32 {
	t.Helper()
	out := map[string]uint32{}
	var k netwardCtKey
	var v netwardCtValue
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		out[fmt.Sprintf("%s:%d->%s:%d dir=%d", addr4(k.Saddr), ntohs(k.Sport), addr4(k.Daddr), ntohs(k.Dport), k.Dir)] = v.Flags
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestProxyMarks checks the programs' side of the redirect wiring (bpf/netward.h, mark
// layout): an ingress redirect is hairpinned (TC_ACT_REDIRECT) with the to-proxy mark;
// from_pod lets the hairpinned packet through untouched even where the pod's egress policy
// would drop it; to_pod lets the proxy's upstream packets whose ingress the proxy judged
// pass (tracked, so the replies pass the pod's egress) and judges the others as usual,
// dropping one that meets an ingress redirect.
func TestProxyMarks(t *testing.T) {
	d := newTestDatapath(t)
	setupTopology(t, d, testEP, FlagIngressEnforced|FlagEgressEnforced)
	e := policy.MapEntry{Verdict: policy.Redirect, Parser: policy.ParserHTTP,
		Precedence: precedence(policy.TierNormal, policy.Redirect, policy.ParserHTTP)}
	d.ProxyPort = func(k policy.Key, _ *policy.MapEntry) uint16 { return 15100 + k.Port }
	// Ingress: 256 -> pod:80 redirects, 256 -> pod:81 is allowed, nothing else; egress:
	// nothing allowed.
	if _, err := d.SetPolicy(testEP, []policy.KeyEntry{{Key: tcpKey(256, false, 80), Entry: e}, allow(tcpKey(256, false, 81))}, nil); err != nil {
		t.Fatal(err)
	}
	events := newEventReader(t, d)

	m0 := mustMetrics(t, d)
	in := tcpFlow(40000, 80)
	r := run(t, d, false, in)
	if r.ret != tcActRedirect || r.mark != ToProxyMark(15180, false) || r.mark != 15180<<16|0x0A00 {
		t.Errorf("ingress redirect: ret %d mark %#x, want %d (hairpin) mark %#x", r.ret, r.mark, tcActRedirect, ToProxyMark(15180, false))
	}
	// The hairpinned packet enters from_pod: the pod's egress (which allows nothing) must
	// not judge it.
	if r := runMark(t, d, true, in, ToProxyMark(15180, false)); r.ret != tcActOK || r.mark != ToProxyMark(15180, false) {
		t.Errorf("hairpinned packet at from_pod: ret %d mark %#x", r.ret, r.mark)
	}
	// A packet the pod sends with such a mark cannot exist (the veth scrubs marks), but an
	// egress to-proxy mark is not a hairpin: judged (and dropped) as usual.
	if r := runMark(t, d, true, pkt{src: podAddr, dst: peer256, proto: policy.ProtoTCP, sport: 1, dport: 80}, ToProxyMark(15180, true)); r.ret != tcActShot {
		t.Errorf("egress-marked packet at from_pod: ret %d, want dropped", r.ret)
	}
	expectMetrics(t, m0, mustMetrics(t, d), map[string]uint64{"redirected": 1, "dropped-default-deny": 1})
	events.drain()

	// The proxy's upstream connection after judging the ingress: passes where the policy
	// has no entry, and is tracked (CT_F_FROM_PROXY) so that the pod's reply passes its
	// egress, which allows nothing.
	m0 = mustMetrics(t, d)
	up := tcpFlow(40001, 8080)
	if r := runMark(t, d, false, up, FromProxyMark(true)); r.ret != tcActOK {
		t.Errorf("from-proxy (ingress judged): ret %d, want forwarded", r.ret)
	}
	key := fmt.Sprintf("%s:%d->%s:%d dir=0", peer256, 40001, podAddr, 8080)
	if f, ok := ctFlags(t, d)[key]; !ok || f != 1<<3 {
		t.Errorf("conntrack of the upstream connection: %v (flags %#x), want CT_F_FROM_PROXY", ok, f)
	}
	if r := run(t, d, true, up.reply()); r.ret != tcActOK {
		t.Errorf("reply to the proxy's upstream connection: ret %d", r.ret)
	}
	// Only the source's egress was judged: the ingress policy decides, as for any packet.
	if r := runMark(t, d, false, tcpFlow(40002, 8080), FromProxyMark(false)); r.ret != tcActShot {
		t.Errorf("from-proxy (egress judged) to a port the ingress denies: ret %d, want dropped", r.ret)
	}
	if r := runMark(t, d, false, tcpFlow(40003, 81), FromProxyMark(false)); r.ret != tcActOK {
		t.Errorf("from-proxy (egress judged) to a port the ingress allows: ret %d, want forwarded", r.ret)
	}
	// ... and a second proxy hop on the node is refused (its replies could not be routed).
	if r := runMark(t, d, false, tcpFlow(40004, 80), FromProxyMark(false)); r.ret != tcActShot {
		t.Errorf("from-proxy (egress judged) meeting an ingress redirect: ret %d, want dropped", r.ret)
	}
	expectMetrics(t, m0, mustMetrics(t, d), map[string]uint64{"forwarded-policy": 2, "forwarded-reply": 1, "dropped-default-deny": 1, "dropped-policy-deny": 1})
	evs := events.drain()
	reasons := map[Reason]int{}
	for _, ev := range evs {
		reasons[ev.Reason]++
	}
	if reasons[ReasonDroppedPolicyDeny] != 1 || reasons[ReasonDroppedDefaultDeny] != 1 || reasons[ReasonForwardedPolicy] != 1 {
		t.Errorf("events %v", evs)
	}
}

// TestInstallRedirect programs the redirect plumbing in a fresh network namespace, twice
// (idempotent), then with other rules (replaced, not added), and removes it.
func TestInstallRedirect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root (network namespaces, nftables)")
	}
	name := fmt.Sprintf("nwredir%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	path := "/var/run/netns/" + name
	cfg := RedirectConfig{NetnsPath: path, Table: 2004, Priority: 9, Rules: []ProxyRedirect{
		{Port: 15100, Listener: 15100}, {Port: 15101, Listener: 15101}, {Port: 15104, Listener: 15104, UDP: true},
	}}
	check := func(what string, want []ProxyRedirect, table int) {
		t.Helper()
		got, err := RedirectRules(path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: rules %+v, want %+v", what, got, want)
		}
		ns, err := netns.GetFromPath(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		rules, err := h.RuleList(netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rules {
			if isRedirectRule(r) {
				n++
				if r.Table != table {
					t.Errorf("%s: ip rule to table %d, want %d", what, r.Table, table)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d fwmark rules, want 1", what, n)
		}
		routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil || len(routes) != 1 || routes[0].Type != 2 /* RTN_LOCAL */ {
			t.Errorf("%s: routes of table %d: %+v %v", what, table, routes, err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := InstallRedirect(cfg); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("install %d", i+1), cfg.Rules, 2004)
	}
	cfg.Rules = []ProxyRedirect{{Port: 16000, Listener: 16001}}
	cfg.Table = 2005
	if err := InstallRedirect(cfg); err != nil {
		t.Fatal(err)
	}
	check("reinstall with other rules", cfg.Rules, 2005)
	if err := RemoveRedirect(cfg); err != nil {
		t.Fatal(err)
	}
	if got, _ := RedirectRules(path); len(got) != 0 {
		t.Errorf("after remove: %+v", got)
	}
	if err := InstallRedirect(RedirectConfig{NetnsPath: path, Table: 254}); err == nil {
		t.Error("the main table was accepted")
	}
}
