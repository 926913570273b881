//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/cni/cnitest"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/k8s"
	"github.com/netward/netward/policy"
)

// The multi-node test's cluster: three namespaces, eight pods on three nodes.
//
//	node-1: shop/web-1 (app=web)  shop/db-1 (app=db, pg 5432)  pay/ledger-1 (app=ledger)
//	node-2: shop/web-2 (app=web)  pay/pay-1 (app=pay, 9090)    mon/prom-1 (app=prom)
//	node-3: shop/api-1 (app=api, http 8080, metrics 9100)      pay/pay-2 (app=pay, 9090)
var mnNamespaces = map[string]map[string]string{
	"shop": {"team": "shop"}, "pay": {"team": "pay"}, "mon": {"team": "mon"},
}

var mnPods = []PodSpec{
	{Namespace: "shop", Name: "web-1", Node: "node-1", Labels: map[string]string{"app": "web"}},
	{Namespace: "shop", Name: "db-1", Node: "node-1", Labels: map[string]string{"app": "db"},
		Ports: []corev1.ContainerPort{{Name: "pg", ContainerPort: 5432, Protocol: corev1.ProtocolTCP}}},
	{Namespace: "pay", Name: "ledger-1", Node: "node-1", Labels: map[string]string{"app": "ledger"}},
	{Namespace: "shop", Name: "web-2", Node: "node-2", Labels: map[string]string{"app": "web"}},
	{Namespace: "pay", Name: "pay-1", Node: "node-2", Labels: map[string]string{"app": "pay"},
		Ports: []corev1.ContainerPort{{Name: "api", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}},
	{Namespace: "mon", Name: "prom-1", Node: "node-2", Labels: map[string]string{"app": "prom"}},
	{Namespace: "shop", Name: "api-1", Node: "node-3", Labels: map[string]string{"app": "api"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9100, Protocol: corev1.ProtocolTCP}}},
	{Namespace: "pay", Name: "pay-2", Node: "node-3", Labels: map[string]string{"app": "pay"},
		Ports: []corev1.ContainerPort{{Name: "api", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}},
}

// Round 1: two NetworkPolicies, three CiliumNetworkPolicies (one invalid), two
// CiliumClusterwideNetworkPolicies.
const mnPolicies1 = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: http, protocol: TCP}]
  - from: [{namespaceSelector: {matchLabels: {team: mon}}}]
    ports: [{port: 9100, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}, {podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432, protocol: TCP}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: pay-in, namespace: pay}
spec:
  endpointSelector: {matchLabels: {app: pay}}
  ingress:
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: shop, app: api}}]
    toPorts: [{ports: [{port: "9090", protocol: TCP}, {port: "5353", protocol: UDP}]}]
  - fromCIDR: [192.168.100.200/32]
    toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: ledger}}]
    toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
  - fromEntities: [remote-node]
    toPorts: [{ports: [{port: "9100", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: api}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
  - toEntities: [cluster]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad-cidr, namespace: pay}
spec:
  endpointSelector: {matchLabels: {app: ledger}}
  egress:
  - toCIDR: [10.0.0.300/32]
  - toEndpoints: [{matchLabels: {app: pay}}]
    toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: prom-scrape}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: mon, app: prom}}
  egress:
  - toEndpoints: [{}]
    toPorts: [{ports: [{port: "9100", protocol: TCP}, {port: "9100", protocol: UDP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: web-never-db}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: shop, app: db}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: shop, app: web}}]
`

// Round 2 (with web-2 relabelled app=canary): pay-in drops api's UDP 5353 and admits the
// mon namespace on 9100; api-in no longer admits mon.
const mnPolicies2 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: pay-in, namespace: pay}
spec:
  endpointSelector: {matchLabels: {app: pay}}
  ingress:
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: shop, app: api}}]
    toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
  - fromCIDR: [192.168.100.200/32]
    toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: ledger}}]
    toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: mon}}]
    toPorts: [{ports: [{port: "9100", protocol: TCP}]}]
  - fromEntities: [remote-node]
    toPorts: [{ports: [{port: "9100", protocol: TCP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: http, protocol: TCP}]
`

// Round 3, after the API server restart: prom scrapes over TCP only.
const mnPolicies3 = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: prom-scrape}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: mon, app: prom}}
  egress:
  - toEndpoints: [{}]
    toPorts: [{ports: [{port: "9100", protocol: TCP}]}]
`

// Round 4, after node-2's agent restart: db admits the mon namespace on 9100.
const mnPolicies4 = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}, {podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432, protocol: TCP}]
  - from: [{namespaceSelector: {matchLabels: {team: mon}}}]
    ports: [{port: 9100, protocol: TCP}]
`

// mnRun is the state of the multi-node test between its phases.
type mnRun struct {
	t       *testing.T // the current phase
	parent  *testing.T
	m       *MultiNode
	ctx     context.Context
	c       *cluster.Cluster // what the cluster resolves to now
	invalid []*api.ObjectError
	ports   []uint16
}

// TestMultiNodeKubernetes is issue #6's end-to-end test: a real kube-apiserver, three nodes
// (network namespaces on a fabric bridge, native routing), a `netward agent --kubeconfig`
// per node, eight pods attached by the real CNI plugin, policies of all three kinds applied
// through the API (one deliberately invalid). Every ordered pair of pods (and the world) is
// probed with TCP, UDP, SCTP and ICMP on every port of the policies plus an unlisted one,
// cross-node and same-node, and each outcome is compared with netward trace on the objects
// read back from the API. Then: a policy update and a pod label change; an API server
// restart; an agent restart (kill -9, with probes of denied flows during the gap); a node
// removed. After each, enforcement is observed on every node (agent revisions, status.nodes,
// the flows the change flips) and all pairs are checked again. Last, CNPs with HTTP rules:
// requests between pods of different nodes through one or two nodes' proxies (l7CrossNode).
func TestMultiNodeKubernetes(t *testing.T) {
	r := startMultiNodeRun(t, MultiNodeConfig{})
	_ = r.phase("Enforce", r.enforce) &&
		r.phase("PolicyUpdateAndRelabel", r.updateAndRelabel) &&
		r.phase("APIServerRestart", r.apiServerRestart) &&
		r.phase("AgentRestart", func() { r.agentRestart("node-2") }) &&
		r.phase("NodeRemoved", func() { r.nodeRemoved("node-3") }) &&
		r.phase("L7", r.l7CrossNode)
}

// TestMultiNodeKubernetesVXLAN is the first two phases and the L7 phase of TestMultiNodeKubernetes with the
// nodes' pod CIDRs routed over a VXLAN overlay instead of natively: pod addresses travel
// encapsulated, and every node still sees (and judges) the real pod addresses.
func TestMultiNodeKubernetesVXLAN(t *testing.T) {
	r := startMultiNodeRun(t, MultiNodeConfig{Overlay: "vxlan"})
	tx := map[string]uint64{}
	for _, n := range r.m.Nodes {
		sent, _, err := r.m.VXLANPackets(n)
		if err != nil {
			t.Fatal(err)
		}
		tx[n.Name] = sent
	}
	if !r.phase("Enforce", r.enforce) {
		return
	}
	for _, n := range r.m.Nodes {
		sent, recv, err := r.m.VXLANPackets(n)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: vxlan0 sent %d packets during round 1, received %d in all", n.Name, sent-tx[n.Name], recv)
		if sent-tx[n.Name] < 100 {
			t.Errorf("%s sent %d packets over vxlan0 during round 1: the cross-node traffic did not take the overlay", n.Name, sent-tx[n.Name])
		}
	}
	_ = r.phase("PolicyUpdateAndRelabel", r.updateAndRelabel) &&
		r.phase("L7", r.l7CrossNode)
}

// startMultiNodeRun builds the cluster of the multi-node tests: three nodes with their
// agents, the namespaces and the eight pods, settled.
func startMultiNodeRun(t *testing.T, cfg MultiNodeConfig) *mnRun {
	m := NewMultiNode(t, cfg) // skips loudly unless root with NETWARD_KUBE_APISERVER
	ctx := context.Background()
	m.StartAgents()
	for ns, labels := range mnNamespaces {
		m.CreateNamespace(ns, labels)
	}
	for _, s := range mnPods {
		m.AddPod(s)
	}
	if err := m.WaitAgents(ctx, nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Pods {
		t.Logf("pod %s on %s: %s", p.Key(), p.Node.Name, p.IP)
	}
	return &mnRun{t: t, parent: t, m: m, ctx: ctx}
}

// phase runs one phase as a subtest. Each phase builds on the previous one: run the next
// only when this one passed. The agents' logs are printed when the test fails.
func (r *mnRun) phase(name string, f func()) bool {
	return r.parent.Run(name, func(st *testing.T) {
		r.t, r.m.T, r.m.H.T = st, st, st // helpers fail the phase that calls them
		defer func() { r.t, r.m.T, r.m.H.T = r.parent, r.parent, r.parent }()
		f()
	})
}

// apply applies manifests through the API and waits until every live agent's revision is
// above its revision before the apply, every endpoint enforces, and the Cilium policies'
// status is right on every live node (changed: the policies the apply changes, which must
// show a new localPolicyRevision). It returns the time from the apply to that point.
func (r *mnRun) apply(manifests string, changed ...string) time.Duration {
	t, m := r.t, r.m
	t.Helper()
	since, err := m.Revisions(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if manifests != "" {
		if err := m.Apply(r.ctx, manifests); err != nil {
			t.Fatal(err)
		}
	}
	return r.waitEnforced(start, since, changed...)
}

func (r *mnRun) waitEnforced(start time.Time, since map[string]uint64, changed ...string) time.Duration {
	t, m := r.t, r.m
	t.Helper()
	if err := m.WaitAgents(r.ctx, since, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	agents := time.Since(start)
	_, r.invalid = m.Objects(r.ctx)
	ch := map[string]bool{}
	for _, c := range changed {
		ch[c] = true
	}
	if err := m.WaitStatus(r.ctx, r.invalid, ch, since, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	t.Logf("enforced on %v: agents' revisions %v -> %s after %v; status.nodes complete after %v",
		m.LiveNodes(), since, r.revString(), agents.Round(time.Millisecond), total.Round(time.Millisecond))
	return total
}

func (r *mnRun) revString() string {
	revs, err := r.m.Revisions(r.ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint(revs)
}

// next reads the cluster back from the API and returns it with the flows over the ports of
// every cluster so far, and the flows whose verdict changed since the previous one.
func (r *mnRun) next(places []Place, isEndpoint func(Place) bool) (c *cluster.Cluster, flows, flips []Flow) {
	t := r.t
	t.Helper()
	c = r.m.Cluster(r.ctx)
	// Every port any round's policies named so far, and the unlisted ControlPort.
	ports := append(PolicyPorts(c), r.ports...)
	slices.Sort(ports)
	r.ports = slices.Compact(ports)
	flows = AllFlows(places, isEndpoint, r.ports, []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP}, true)
	if r.c != nil {
		flips = changedFlows(t, r.c, c, flows)
	}
	return c, flows, flips
}

// check probes every flow and compares it with trace on c.
func (r *mnRun) check(what string, c *cluster.Cluster, flows []Flow) []Result {
	r.t.Helper()
	start := time.Now()
	res := r.m.H.Run(c, flows, 128)
	cross, same := 0, 0
	for _, f := range flows {
		switch a, b := r.nodeOf(f.From), r.nodeOf(f.To); {
		case a == "" || b == "":
		case a == b:
			same++
		default:
			cross++
		}
	}
	r.t.Logf("%s: %d flows (%d between pods or nodes on different nodes, %d on the same node) probed in %v", what, len(flows), cross, same, time.Since(start).Round(time.Millisecond))
	Report(r.t, what, res)
	return res
}

// nodeOf is the node a pod or a node place is on ("" for others).
func (r *mnRun) nodeOf(p Place) string {
	if n, ok := strings.CutPrefix(p.Name, "node:"); ok {
		return n
	}
	for _, pod := range r.m.Pods {
		if pod.Key() == p.Name {
			return pod.Node.Name
		}
	}
	return ""
}

// waitFlips waits until the flows a change flips show the new verdict (the datapath of
// every node involved applied it).
func (r *mnRun) waitFlips(what string, c *cluster.Cluster, flips []Flow) {
	r.t.Helper()
	cross := 0
	for _, f := range flips {
		if a, b := r.nodeOf(f.From), r.nodeOf(f.To); a != "" && b != "" && a != b {
			cross++
		}
	}
	r.t.Logf("%s flips %d flows (%d of them cross-node)", what, len(flips), cross)
	if len(flips) == 0 {
		r.t.Fatalf("%s flips no verdict: checking it would prove nothing", what)
	}
	if bad := r.m.H.WaitFor(c, flips, 20*time.Second); len(bad) > 0 {
		Report(r.t, what+" (flows the change flips, after 20 s)", bad)
	}
}

func (r *mnRun) enforce() {
	t, m := r.t, r.m
	d := r.apply(mnPolicies1, "CiliumNetworkPolicy pay/pay-in", "CiliumNetworkPolicy shop/web-out",
		"CiliumClusterwideNetworkPolicy prom-scrape", "CiliumClusterwideNetworkPolicy web-never-db")
	t.Logf("round 1 applied and enforced on every node in %v", d.Round(time.Millisecond))
	// The test's premise: exactly the one deliberately invalid policy is invalid, for its CIDR.
	if len(r.invalid) != 1 || r.invalid[0].Kind != api.KindCNP || r.invalid[0].Namespace != "pay" || r.invalid[0].Name != "bad-cidr" ||
		!strings.Contains(k8s.StatusMessage(r.invalid[0]), "10.0.0.300") {
		t.Fatalf("invalid policies %v: want exactly CiliumNetworkPolicy pay/bad-cidr (its CIDR)", r.invalid)
	}
	sts, err := m.PolicyStatuses(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := sts["CiliumNetworkPolicy pay/bad-cidr"]
	for _, c := range bad.Conditions {
		t.Logf("pay/bad-cidr: condition %s=%s: %s", c.Type, c.Status, c.Message)
	}
	for _, n := range m.LiveNodes() {
		t.Logf("pay/bad-cidr: status.nodes.%s: ok=%v error=%q", n, bad.Nodes[n].OK, bad.Nodes[n].Error)
	}
	c, flows, _ := r.next(m.Places(), IsPodPlace)
	t.Logf("ports %v: %d flows", r.ports, len(flows))
	r.check("round 1", c, flows)
	r.c = c
}

func (r *mnRun) updateAndRelabel() {
	t, m := r.t, r.m
	since, err := m.Revisions(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Apply(r.ctx, mnPolicies2); err != nil {
		t.Fatal(err)
	}
	if err := m.SetPodLabels(r.ctx, "shop", "web-2", map[string]string{"app": "canary"}); err != nil {
		t.Fatal(err)
	}
	d := r.waitEnforced(start, since, "CiliumNetworkPolicy pay/pay-in")
	t.Logf("round 2 (policy update + relabel) enforced in %v", d.Round(time.Millisecond))
	c, flows, flips := r.next(m.Places(), IsPodPlace)
	r.waitFlips("the update and the relabel", c, flips)
	r.check("round 2", c, flows)
	r.c = c
}

// Guard probes flows in a loop until stopped: a flow trace denies that gets any answer is a
// violation; a flow trace allows that fails twice in a row is a broken flow. The flows'
// destinations must be served (Harness.Serve).
type Guard struct {
	p       *Prober // denied flows: 500 ms answer timeout
	pa      *Prober // allowed flows: the usual 1.5 s
	denied  []Flow
	allowed []Flow
	phase   atomic.Value
	stop    chan struct{}
	done    chan struct{}

	mu         sync.Mutex
	rounds     map[string]int
	violations []string
	broken     []string
}

// StartGuard starts probing: denied and allowed flows, concurrently, round after round
// (denied flows with a 500 ms answer timeout, so that rounds are short; an allowed flow
// answers within milliseconds).
func StartGuard(denied, allowed []Flow, phase string) *Guard {
	g := &Guard{p: &Prober{Timeout: 500 * time.Millisecond}, pa: NewProber(), denied: denied, allowed: allowed,
		stop: make(chan struct{}), done: make(chan struct{}), rounds: map[string]int{}}
	g.phase.Store(phase)
	go g.run()
	return g
}

// SetPhase names what happens now (in the report).
func (g *Guard) SetPhase(p string) { g.phase.Store(p) }

func (g *Guard) run() {
	defer close(g.done)
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		phase := g.phase.Load().(string)
		var wg sync.WaitGroup
		for _, f := range g.denied {
			wg.Go(func() {
				// Anything but silence is a violation: every destination is served, so even
				// a refusal means the packet went through.
				if o := g.p.Probe(f.From, f.To, f.Proto, f.Port); o.Outcome != Denied {
					g.mu.Lock()
					g.violations = append(g.violations, fmt.Sprintf("%s [%s] %s: trace denies it, it got through (%s, %v)", time.Now().Format("15:04:05.000"), phase, f, o.Outcome, o.Err))
					g.mu.Unlock()
				}
			})
		}
		for _, f := range g.allowed {
			wg.Go(func() {
				o := g.pa.Probe(f.From, f.To, f.Proto, f.Port)
				if o.Outcome != Allowed {
					o = g.pa.Probe(f.From, f.To, f.Proto, f.Port)
				}
				if o.Outcome != Allowed {
					g.mu.Lock()
					g.broken = append(g.broken, fmt.Sprintf("%s [%s] %s: trace allows it, %s twice (%v)", time.Now().Format("15:04:05.000"), phase, f, o.Outcome, o.Err))
					g.mu.Unlock()
				}
			})
		}
		wg.Wait()
		g.mu.Lock()
		g.rounds[phase]++
		g.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the probes and fails t for every violation and broken flow.
func (g *Guard) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	t.Logf("guard: %d denied and %d allowed flows probed in rounds per phase %v: %d violations, %d broken", len(g.denied), len(g.allowed), g.rounds, len(g.violations), len(g.broken))
	if len(g.violations) > 0 {
		t.Errorf("flows trace denies got through (%d):\n  %s", len(g.violations), strings.Join(first(g.violations, 40), "\n  "))
	}
	if len(g.broken) > 0 {
		t.Errorf("flows trace allows failed (%d):\n  %s", len(g.broken), strings.Join(first(g.broken, 40), "\n  "))
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// guardFlows picks, among flows matching keep, up to nDenied flows trace denies and nAllowed
// it allows on every given cluster, TCP and UDP only (they answer at once when allowed),
// spread evenly over the list.
func guardFlows(t testing.TB, flows []Flow, keep func(Flow) bool, nDenied, nAllowed int, cs ...*cluster.Cluster) (denied, allowed []Flow) {
	t.Helper()
	var cand []Flow
	for _, f := range flows {
		if (f.Proto == policy.ProtoTCP || f.Proto == policy.ProtoUDP) && keep(f) {
			cand = append(cand, f)
		}
	}
	verdict := make([]int, len(cand)) // 1 allowed everywhere, -1 denied everywhere, 0 mixed
	for i, c := range cs {
		res, err := Expect(c, cand)
		if err != nil {
			t.Fatal(err)
		}
		for j, r := range res {
			v := -1
			if r.Allowed {
				v = 1
			}
			if i == 0 {
				verdict[j] = v
			} else if verdict[j] != v {
				verdict[j] = 0
			}
		}
	}
	var d, a []Flow
	for j, f := range cand {
		switch verdict[j] {
		case -1:
			d = append(d, f)
		case 1:
			a = append(a, f)
		}
	}
	return spread(d, nDenied), spread(a, nAllowed)
}

func spread(fs []Flow, n int) []Flow {
	if len(fs) <= n {
		return fs
	}
	out := make([]Flow, 0, n)
	for i := range n {
		out = append(out, fs[i*len(fs)/n])
	}
	return out
}

func (r *mnRun) crossNode(f Flow) bool {
	a, b := r.nodeOf(f.From), r.nodeOf(f.To)
	return a == "" || b == "" || a != b
}

func (r *mnRun) apiServerRestart() {
	t, m := r.t, r.m
	_, flows, _ := r.next(m.Places(), IsPodPlace)
	denied, allowed := guardFlows(t, flows, r.crossNode, 40, 16, r.c)
	r.m.H.Serve(append(slices.Clone(denied), allowed...))
	g := StartGuard(denied, allowed, "before the restart")
	time.Sleep(time.Second)
	g.SetPhase("API server down/restarting")
	start := time.Now()
	m.API.RestartAPIServer()
	t.Logf("kube-apiserver restarted in %v", time.Since(start).Round(time.Millisecond))
	g.SetPhase("after the restart")
	// The agents' watches reconnect; nothing changed, so the revision must stay enforced.
	time.Sleep(2 * time.Second)
	if err := m.WaitAgents(r.ctx, nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	g.Stop(t)
	// A policy change made after the restart is enforced on every node.
	r.changeRound("round 3 (after the API server restart)", mnPolicies3, "CiliumClusterwideNetworkPolicy prom-scrape")
}

// changeRound applies manifests through the API and waits until every node enforces them,
// then until the flows they flip show the new verdict, then checks every flow.
func (r *mnRun) changeRound(what, manifests string, changed ...string) {
	r.t.Helper()
	d := r.apply(manifests, changed...)
	r.t.Logf("%s enforced in %v", what, d.Round(time.Millisecond))
	c, flows, flips := r.next(r.m.Places(), IsPodPlace)
	r.waitFlips(what, c, flips)
	r.check(what, c, flows)
	r.c = c
}

func (r *mnRun) agentRestart(node string) {
	t, m := r.t, r.m
	n := m.Node(node)
	before, err := n.Client.Endpoints(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	statusBefore, err := m.PolicyStatuses(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, flows, _ := r.next(m.Places(), IsPodPlace)
	touches := func(f Flow) bool { return r.nodeOf(f.From) == node || r.nodeOf(f.To) == node }
	denied, allowed := guardFlows(t, flows, touches, 48, 16, r.c)
	r.m.H.Serve(append(slices.Clone(denied), allowed...))
	g := StartGuard(denied, allowed, "agent up")
	time.Sleep(time.Second)
	if err := n.Agent.Kill(); err != nil {
		t.Fatal(err)
	}
	g.SetPhase(node + " agent killed")
	killed := time.Now()
	time.Sleep(3 * time.Second)
	if err := n.Agent.Start(); err != nil {
		t.Fatal(err)
	}
	g.SetPhase(node + " agent restarting")
	if err := n.Agent.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	after, err := n.Client.Endpoints(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAdopted(t, before, after)
	if err := m.WaitAgents(r.ctx, nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: agent down %v, settled %v after the kill", node, 3*time.Second, time.Since(killed).Round(time.Millisecond))
	g.SetPhase(node + " agent restarted")
	// The restarted agent's status entries are still right.
	if err := m.WaitStatus(r.ctx, r.invalid, nil, nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	g.Stop(t)
	if statusAfter, err := m.PolicyStatuses(r.ctx); err == nil {
		var revs []string
		for ref, st := range statusAfter {
			if b, a := statusBefore[ref].Nodes[node], st.Nodes[node]; b.Revision != a.Revision {
				revs = append(revs, fmt.Sprintf("%s %d->%d", ref, b.Revision, a.Revision))
			}
		}
		slices.Sort(revs)
		// No policy changed: the revision that first carried each version stays.
		if len(revs) > 0 {
			t.Errorf("the restart changed status.nodes.%s.localPolicyRevision of unchanged policies: %v", node, revs)
		}
	} else {
		t.Fatal(err)
	}
	r.check("after the agent restart", r.c, flows)
	// A change after the restart is enforced by the new agent too.
	r.changeRound("round 4 (after the agent restart)", mnPolicies4)
}

func (r *mnRun) nodeRemoved(node string) {
	t, m := r.t, r.m
	n := m.Node(node)
	var gone []*MNPod
	for _, p := range m.Pods {
		if p.Node == n {
			gone = append(gone, p)
		}
	}
	// Premise: every other node's ipcache knows the removed node's pods as pods, and the
	// node's address as a remote node.
	for _, o := range m.Nodes {
		if o == n {
			continue
		}
		for _, p := range gone {
			id, found, err := o.IPCacheIdentity(p.IP)
			if err != nil || !found || id < identity.MinCluster {
				t.Fatalf("before the removal, %s's ipcache has %s (%s) as identity %d (found %v, %v)", o.Name, p.IP, p.Key(), id, found, err)
			}
		}
		if id, found, err := o.IPCacheIdentity(n.IP); err != nil || !found || (id != identity.RemoteNode && id < identity.RemoteNodeScope) {
			t.Fatalf("before the removal, %s's ipcache has %s's address %s as identity %d (found %v, %v), want a remote node", o.Name, n.Name, n.IP, id, found, err)
		}
	}
	stayed := func(f Flow) bool {
		a, b := r.nodeOf(f.From), r.nodeOf(f.To)
		return a != node && b != node
	}
	_, flows, _ := r.next(m.Places(), IsPodPlace)
	policiesBefore, err := m.PolicyStatuses(r.ctx)
	if err != nil {
		t.Fatal(err)
	}

	// The removal, as the node lifecycle controller and the pod GC do it: the Node object and
	// the node's pods are deleted (force: no kubelet confirms).
	c4 := r.c
	since, err := m.Revisions(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	delete(since, node)
	denied, allowed := guardFlows(t, flows, stayed, 40, 16, c4)
	r.m.H.Serve(append(slices.Clone(denied), allowed...))
	g := StartGuard(denied, allowed, "before the removal")
	time.Sleep(time.Second)
	g.SetPhase(node + " removed")
	start := time.Now()
	zero := int64(0)
	for _, p := range gone {
		if err := m.Kube.CoreV1().Pods(p.Namespace).Delete(r.ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Kube.CoreV1().Nodes().Delete(r.ctx, node, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The other agents drop the node's pods from their ipcache.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		for _, o := range m.Nodes {
			if o == n {
				continue
			}
			// No /32 entry left, and the datapath's lookup finds no pod or node identity
			// (world, or a CIDR identity of some policy's prefix covering the address).
			for _, a := range append([]netip.Addr{n.IP}, podIPs(gone)...) {
				host, err := o.IPCacheHasHost(a)
				id, _, err2 := o.IPCacheIdentity(a)
				if err != nil || err2 != nil || host || (id != identity.World && id < identity.LocalScope) {
					left = append(left, fmt.Sprintf("%s: %s -> /32 entry %v, identity %d (%v %v)", o.Name, a, host, id, err, err2))
				}
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the removal, ipcaches still have the removed node's addresses: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s removed: the other nodes' ipcaches dropped its address and its %d pods after %v", node, len(gone), time.Since(start).Round(time.Millisecond))
	// The node is gone: detach its pods and stop its agent; the addresses stay routed to it.
	for _, p := range gone {
		if err := m.DetachPod(p); err != nil {
			t.Errorf("%v\n%s", err, n.Agent.LogTail(30))
		}
	}
	if err := n.Agent.Stop(); err != nil {
		t.Errorf("%v", err)
	}
	if testing.Verbose() {
		t.Logf("the removed node's agent, stopped:\n%s", n.Agent.LogTail(15))
	}
	n.Removed = true
	if err := m.WaitAgents(r.ctx, since, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	g.Stop(t)

	// No policy lost: every policy is still there and enforced by the remaining nodes.
	policiesAfter, err := m.PolicyStatuses(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(policiesAfter) != len(policiesBefore) {
		t.Errorf("%d Cilium policies before the removal, %d after", len(policiesBefore), len(policiesAfter))
	}
	if err := m.WaitStatus(r.ctx, r.invalid, nil, nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The departed node's entries are removed from every policy's status, the invalid one's
	// too (one agent cleans them up).
	deadline = time.Now().Add(30 * time.Second)
	for {
		sts, err := m.PolicyStatuses(r.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var stale []string
		for ref, st := range sts {
			if _, ok := st.Nodes[node]; ok {
				stale = append(stale, ref)
			}
		}
		slices.Sort(stale)
		if len(stale) == 0 {
			t.Logf("status.nodes.%s removed from every policy %v after the removal", node, time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("30 s after the removal, status.nodes.%s is still in %v", node, stale)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Someone else now sends from the removed pods' addresses: a plain network namespace
	// behind the removed node with those addresses (no agent, no CNI). Trace knows them only
	// as addresses (world); the remaining nodes must judge them the same way.
	ghostNetns := m.Prefix + "gh"
	cnitest.AddNetns(t, ghostNetns)
	gl := m.Prefix + "gh"
	ip := func(args ...string) { t.Helper(); cnitest.IP(t, args...) }
	ip("link", "add", gl, "netns", n.Netns, "type", "veth", "peer", "name", "eth0", "netns", ghostNetns)
	t.Cleanup(func() { cnitest.IP(t, "-n", n.Netns, "link", "del", gl) })
	ip("-n", n.Netns, "addr", "add", "169.254.2.1/32", "dev", gl)
	ip("-n", n.Netns, "link", "set", gl, "up")
	ip("-n", ghostNetns, "link", "set", "eth0", "up")
	ip("-n", ghostNetns, "route", "add", "169.254.2.1", "dev", "eth0", "scope", "link")
	ip("-n", ghostNetns, "route", "add", "default", "via", "169.254.2.1", "dev", "eth0")
	places := m.Places()
	var ghosts []Place
	for _, p := range gone {
		ip("-n", ghostNetns, "addr", "add", p.IP.String()+"/32", "dev", "eth0")
		ip("-n", n.Netns, "route", "add", p.IP.String()+"/32", "dev", gl)
		ghosts = append(ghosts, Place{Name: p.IP.String(), Netns: cnitest.NetnsPath(ghostNetns), Addr: p.IP})
	}
	places = append(places, ghosts...)
	isGhost := func(p Place) bool { return slices.ContainsFunc(ghosts, func(g Place) bool { return g.Name == p.Name }) }
	c, all, _ := r.next(places, IsPodPlace)
	// The guard judged its flows by the cluster before the removal; they must not change
	// verdict with it (only the removed node's flows do).
	for _, set := range []struct {
		flows []Flow
		want  bool
	}{{denied, false}, {allowed, true}} {
		res, err := Expect(c, set.flows)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range res {
			if x.Allowed != set.want {
				t.Errorf("guard flow %s: trace says %s after the removal, %v before", set.flows[i], x.Verdict, set.want)
			}
		}
	}
	var ghostFlows []Flow
	for _, f := range all {
		if isGhost(f.From) || isGhost(f.To) {
			ghostFlows = append(ghostFlows, f)
		}
	}
	// Premise: the removal changes verdicts of the ghost flows (trace by address: the removed
	// pod before, world after), so the check below shows the ipcache change.
	flips := changedFlows(t, c4, c, ghostFlows)
	t.Logf("%d flows from and to the removed pods' addresses; %d of them have another verdict now that the addresses are no pod's", len(ghostFlows), len(flips))
	if len(flips) == 0 {
		t.Fatal("the removal changes no verdict of the removed pods' addresses: the check would prove nothing")
	}
	r.check(fmt.Sprintf("after %s's removal (remaining pods, world, and the removed pods' addresses)", node), c, all)
	r.c = c
}

func podIPs(pods []*MNPod) []netip.Addr {
	var out []netip.Addr
	for _, p := range pods {
		out = append(out, p.IP)
	}
	return out
}
