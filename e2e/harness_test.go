//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/cni"
	"github.com/netward/netward/cni/cnitest"
	"github.com/netward/netward/policy"
)

// testdataPorts are the ports of the policies under testdata, both rounds.
func testdataPorts(t testing.TB) []uint16 {
	t.Helper()
	set := map[uint16]bool{}
	for _, round := range []string{"policies-1", "policies-2"} {
		objs, errs := api.Load([]string{"testdata/cluster", filepath.Join("testdata", round)}, nil)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		c, err := cluster.Build(objs, cluster.Options{Policy: policy.Options{AllowLocalhost: true}})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range PolicyPorts(c) {
			set[p] = true
		}
	}
	var out []uint16
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func TestPolicyPorts(t *testing.T) {
	got := testdataPorts(t)
	want := []uint16{53, 80, 5432, 6379, 7777, 8080, 8125, 9999}
	if !slices.Equal(got, want) {
		t.Errorf("ports %v, want %v", got, want)
	}
}

func TestSplitYAML(t *testing.T) {
	docs := splitYAML("a: 1\n---\nb: 2\n--- \nc: 3\n")
	if len(docs) != 3 || docs[0] != "a: 1\n" || docs[2] != "c: 3\n" {
		t.Errorf("%q", docs)
	}
}

// stubTB records what Report says.
type stubTB struct {
	testing.TB
	errors, logs []string
}

func (s *stubTB) Helper()                   {}
func (s *stubTB) Errorf(f string, a ...any) { s.errors = append(s.errors, fmt.Sprintf(f, a...)) }
func (s *stubTB) Logf(f string, a ...any)   { s.logs = append(s.logs, fmt.Sprintf(f, a...)) }

// The comparator: a leak (traffic passes what trace denies) and a drop trace does not
// explain both fail, with the flow and trace's reason.
func TestReport(t *testing.T) {
	a, b := Place{Name: "ns/a"}, Place{Name: "ns/b"}
	allow := &analysis.Result{Allowed: true, Verdict: "allow", Reason: "no policy"}
	deny := &analysis.Result{Allowed: false, Verdict: "deny", Reason: "default deny: selected by X"}
	results := []Result{
		{Flow: Flow{a, b, policy.ProtoTCP, 80}, Trace: allow, Observed: Observation{Outcome: Allowed}},
		{Flow: Flow{a, b, policy.ProtoUDP, 53}, Trace: deny, Observed: Observation{Outcome: Denied}},
		{Flow: Flow{a, b, policy.ProtoSCTP, 9}, Trace: deny, Observed: Observation{Outcome: Allowed}},
		{Flow: Flow{b, a, policy.ProtoICMP, 8}, Trace: allow, Observed: Observation{Outcome: Denied}, Retried: true},
		{Flow: Flow{b, a, policy.ProtoTCP, 1}, Trace: deny, Observed: Observation{Outcome: Failed, Err: fmt.Errorf("connection refused")}},
	}
	s := &stubTB{TB: t}
	if n := Report(s, "round", results); n != 3 {
		t.Errorf("%d mismatches, want 3", n)
	}
	msg := strings.Join(s.errors, "\n")
	for _, want := range []string{
		"ns/a -> ns/b 9/SCTP: trace says deny, traffic allow",
		"ns/b -> ns/a ICMP echo: trace says allow, traffic deny",
		"ns/b -> ns/a 1/TCP: trace says deny, traffic error (connection refused)",
		"trace: default deny: selected by X",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "80/TCP") || strings.Contains(msg, "53/UDP") {
		t.Errorf("matching flows reported:\n%s", msg)
	}
}

// TestHarnessWithoutPolicies checks the harness itself against a fake agent: pods attached by
// the real plugin binary, the world and the host, and real TCP, UDP, SCTP and ICMP for every
// ordered pair and port. Without policies trace allows everything, so every probe must get
// through; then a blackhole route on the node shows that the prober sees drops, on every
// protocol and in both directions.
func TestHarnessWithoutPolicies(t *testing.T) {
	h := New(t, Config{})
	fake := cnitest.StartFakeAgent(t, h.AgentSocket)
	h.SetCluster("testdata/cluster")
	h.AddPods()
	h.CheckPods()

	regs := fake.Registrations()
	if len(regs) != 6 {
		t.Fatalf("%d registrations, want 6", len(regs))
	}
	c := h.Cluster()
	for _, p := range h.Pods {
		ep, ok := c.Endpoint(p.Key())
		if !ok || !slices.Equal(ep.IPs, []netip.Addr{p.IP}) {
			t.Errorf("pod %s: the manifests do not carry its address %s", p.Key(), p.IP)
		}
		if !h.Config.Subnet.Contains(p.IP) {
			t.Errorf("pod %s got %s outside %s", p.Key(), p.IP, h.Config.Subnet)
		}
	}
	for _, r := range regs {
		if r.PodNamespace == "" || r.PodName == "" || r.HostIfName != cni.HostVethName(r.ContainerID, "eth0") {
			t.Errorf("registration %+v", r)
		}
	}

	flows := h.Flows(testdataPorts(t))
	results := h.Run(c, flows, 64)
	if n := Report(t, "no policies", results); n > 0 {
		t.FailNow()
	}
	for _, r := range results {
		if !r.Trace.Allowed {
			t.Fatalf("trace without policies denies %s: %s", r.Flow, r.Trace.Reason)
		}
	}

	// A blackhole route for one pod on the node: everything to it, and every answer to what
	// it sends, is dropped silently, as the datapath drops.
	victim := h.Pods[0]
	host := cni.HostVethName(victim.ContainerID, "eth0")
	cnitest.IP(t, "-n", h.NodeNetns, "route", "replace", "blackhole", victim.IP.String()+"/32")
	var me, other, world Place
	for _, p := range h.Places() {
		switch {
		case p.Name == victim.Key():
			me = p
		case p.Addr == h.Config.World:
			world = p
		case other.Name == "" && strings.Contains(p.Name, "/"):
			other = p
		}
	}
	var drops []Flow
	for _, pair := range [][2]Place{{me, other}, {other, me}, {world, me}, {me, world}} {
		for _, proto := range []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP} {
			drops = append(drops, Flow{From: pair[0], To: pair[1], Proto: proto, Port: 8080})
		}
		drops = append(drops, Flow{From: pair[0], To: pair[1], Proto: policy.ProtoICMP, Port: 8})
	}
	h.Serve(drops)
	h.Prober.Timeout = 600 * time.Millisecond
	probeAll := func(want Outcome, what string) {
		var wg sync.WaitGroup
		for _, f := range drops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if o := h.Prober.Probe(f.From, f.To, f.Proto, f.Port); o.Outcome != want {
					t.Errorf("%s %s: %s (%v), want %s", f, what, o.Outcome, o.Err, want)
				}
			}()
		}
		wg.Wait()
	}
	probeAll(Denied, "through a blackhole")
	cnitest.IP(t, "-n", h.NodeNetns, "route", "replace", victim.IP.String()+"/32", "dev", host, "scope", "link")
	probeAll(Allowed, "after the blackhole went")
}
