//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/datapath"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// clusterYAML describes node-1 with pods a, b, c in namespace shop; podB is b's metadata.
func clusterYAML(bLabels string) string {
	return `apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 192.168.100.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 192.168.100.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: shop, labels: {app: a}}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: shop, labels: ` + bLabels + `}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
status: {podIP: 10.244.1.11}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: shop, labels: {app: c}}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
status: {podIP: 10.244.1.12}
---
apiVersion: v1
kind: Pod
metadata: {name: r, namespace: shop, labels: {app: r}}
spec: {nodeName: node-2, containers: [{name: c, image: x}]}
status: {podIP: 10.244.2.20}
`
}

func cnp(name, spec string) string {
	return "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: " + name + ", namespace: shop}\nspec:\n" + spec + "\n---\n"
}

// policySets are complete contents of the policy directory.
var policySets = []map[string]string{
	// 0: nothing enforced.
	{"cluster.yaml": clusterYAML("{app: b}")},
	// 1: a may send to b:80, but b only accepts c.
	{"cluster.yaml": clusterYAML("{app: b}"), "p.yaml": cnp("a-out", `  endpointSelector: {matchLabels: {app: a}}
  egress: [{toEndpoints: [{matchLabels: {app: b}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]`) +
		cnp("b-in", `  endpointSelector: {matchLabels: {app: b}}
  ingress: [{fromEndpoints: [{matchLabels: {app: c}}]}]`)},
	// 2: the swap: a may send to c only, b accepts a:80. Neither 1 nor 2 allows a -> b:80.
	{"cluster.yaml": clusterYAML("{app: b}"), "p.yaml": cnp("a-out", `  endpointSelector: {matchLabels: {app: a}}
  egress: [{toEndpoints: [{matchLabels: {app: c}}]}]`) +
		cnp("b-in", `  endpointSelector: {matchLabels: {app: b}}
  ingress: [{fromEndpoints: [{matchLabels: {app: a}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]`)},
	// 3: KNP, CCNP deny, CIDR and entity egress.
	{"cluster.yaml": clusterYAML("{app: b}"), "knp.yaml": `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {}}], ports: [{port: 80}, {port: 8080}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: deny-c}
spec:
  endpointSelector: {}
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: c, k8s:io.kubernetes.pod.namespace: shop}}]}]
---
` + cnp("c-out", `  endpointSelector: {matchLabels: {app: c}}
  egress:
  - toCIDR: [203.0.113.0/24]
  - toEntities: [world]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  - toEndpoints: [{matchLabels: {app: a}}]
    toPorts: [{ports: [{port: web, protocol: TCP}]}]`)},
	// 4: b relabelled to app=b2; a accepts everyone on 80 but app=b2.
	{"cluster.yaml": clusterYAML("{app: b2}"), "p.yaml": cnp("a-in", `  endpointSelector: {matchLabels: {app: a}}
  ingress: [{fromEntities: [all], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: b2}}]}]`)},
	// 5: b is app=b again; a accepts everyone on 80 but app=b. b -> a:80 is denied in 4 and 5.
	{"cluster.yaml": clusterYAML("{app: b}"), "p.yaml": cnp("a-in", `  endpointSelector: {matchLabels: {app: a}}
  ingress: [{fromEntities: [all], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: b}}]}]`)},
	// 6: L7 on b, egress default-allow rules on a, ICMP.
	{"cluster.yaml": clusterYAML("{app: b}"), "p.yaml": cnp("b-http", `  endpointSelector: {matchLabels: {app: b}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: a}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  - fromEndpoints: [{matchLabels: {app: c}}]
    icmps: [{fields: [{type: 8, family: IPv4}]}]`) +
		cnp("a-eg", `  endpointSelector: {matchLabels: {app: a}}
  enableDefaultDeny: {egress: false}
  egressDeny: [{toEndpoints: [{matchLabels: {app: c}}], toPorts: [{ports: [{port: "8080", protocol: TCP}]}]}]`)},
	// 7: everything denied both ways for every pod.
	{"cluster.yaml": clusterYAML("{app: b}"), "p.yaml": `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: lockdown}
spec:
  endpointSelector: {}
  ingress: [{}]
  egress: [{}]
`},
}

func writeSet(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range old {
		if _, keep := files[filepath.Base(f)]; !keep {
			os.Remove(f)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type testPod struct {
	name    string // namespace/name
	ifname  string
	ifindex uint32
	ip      netip.Addr
}

var testPods = []testPod{
	{"shop/a", "nwa", 11, netip.MustParseAddr("10.244.1.10")},
	{"shop/b", "nwb", 12, netip.MustParseAddr("10.244.1.11")},
	{"shop/c", "nwc", 13, netip.MustParseAddr("10.244.1.12")},
}

// external peers: remote pod, world, a CIDR address, the local node, a remote node.
var externalPeers = []string{"10.244.2.20", "8.8.8.8", "203.0.113.5", "192.168.100.1", "192.168.100.2"}

type probePort struct {
	proto uint8
	port  uint16
}

var probePorts = []probePort{{policy.ProtoTCP, 80}, {policy.ProtoTCP, 8080}, {policy.ProtoUDP, 53}, {policy.ProtoICMP, 8}, {policy.ProtoSCTP, 80}}

type flowKey struct {
	from, to string
	probePort
}

// matrix decides every probe flow from the fake datapath's current state.
func (f *fakeDatapath) matrix() map[flowKey]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[flowKey]bool{}
	for _, src := range testPods {
		for _, pp := range probePorts {
			for _, dst := range testPods {
				if dst.name == src.name {
					continue
				}
				out[flowKey{src.name, dst.name, pp}] = f.decideLocked(src.ifindex, true, dst.ip, pp.proto, pp.port) &&
					f.decideLocked(dst.ifindex, false, src.ip, pp.proto, pp.port)
			}
			for _, ext := range externalPeers {
				a := netip.MustParseAddr(ext)
				out[flowKey{src.name, ext, pp}] = f.decideLocked(src.ifindex, true, a, pp.proto, pp.port)
				out[flowKey{ext, src.name, pp}] = f.decideLocked(src.ifindex, false, a, pp.proto, pp.port)
			}
		}
	}
	return out
}

// traceMatrix decides every probe flow with netward trace's engine on the directory.
func traceMatrix(t testing.TB, dir string) map[flowKey]bool {
	t.Helper()
	objs, errs := api.Load([]string{dir}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
	if err != nil {
		t.Fatal(err)
	}
	out := map[flowKey]bool{}
	// Only the local pods' sides: a remote pod's side is its own node's business.
	decide := func(from, to string, pp probePort) {
		r, err := analysis.Trace(c, analysis.Flow{From: from, To: to, Proto: pp.proto, Port: pp.port})
		if err != nil {
			t.Fatalf("trace %s -> %s: %v", from, to, err)
		}
		allowed := true
		for _, s := range []*analysis.Side{r.Egress, r.Ingress} {
			if s != nil && isLocal(s.Endpoint) {
				allowed = allowed && s.Allowed
			}
		}
		out[flowKey{from, to, pp}] = allowed
	}
	for _, src := range testPods {
		for _, pp := range probePorts {
			for _, dst := range testPods {
				if dst.name != src.name {
					decide(src.name, dst.name, pp)
				}
			}
			for _, ext := range externalPeers {
				decide(src.name, ext, pp)
				decide(ext, src.name, pp)
			}
		}
	}
	return out
}

func isLocal(pod string) bool {
	for _, p := range testPods {
		if p.name == pod {
			return true
		}
	}
	return false
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testConfig(t testing.TB, policies, state string) Config {
	return Config{
		Node:        "node-1",
		PoliciesDir: policies,
		StateDir:    state,
		APISocket:   filepath.Join(state, "api.sock"),
		Policy:      policy.DefaultOptions(),
		Logger:      testLogger(t),
	}
}

func fakeNet() *fakeNetwork {
	n := &fakeNetwork{links: map[string]uint32{}, addrs: []netip.Addr{netip.MustParseAddr("192.168.100.1")}}
	for _, p := range testPods {
		n.links[p.ifname] = p.ifindex
	}
	return n
}

func register(t testing.TB, a *Agent, p testPod) EndpointResponse {
	t.Helper()
	ns, name, _ := strings.Cut(p.name, "/")
	resp, err := a.Register(EndpointRequest{ContainerID: "ctr-" + name, Netns: "/var/run/netns/" + name, IfName: "eth0",
		HostIfName: p.ifname, PodNamespace: ns, PodName: name, IPs: []string{p.ip.String()}})
	if err != nil {
		t.Fatalf("register %s: %v", p.name, err)
	}
	return resp
}

func reload(a *Agent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reloadLocked(time.Now(), false)
	a.publishViewLocked()
}

func diffMatrix(got, want map[flowKey]bool) []string {
	var out []string
	for k, w := range want {
		if got[k] != w {
			out = append(out, fmt.Sprintf("%s -> %s %d/%s: datapath %v, trace %v", k.from, k.to, k.port, policy.ProtoName(k.proto), got[k], w))
		}
	}
	slices.Sort(out)
	return out
}

// TestTransitionsNeverWiden moves the agent through every ordered pair of policy sets and
// checks, after every single datapath write, that no flow is allowed that neither the old
// nor the new state allows, and that each state decides every flow as netward trace does.
func TestTransitionsNeverWiden(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	writeSet(t, dir, policySets[0])
	dp := newFakeDatapath()
	a, err := NewWithDatapath(testConfig(t, dir, state), dp, fakeNet())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, p := range testPods {
		register(t, a, p)
	}
	if d := diffMatrix(dp.matrix(), traceMatrix(t, dir)); len(d) > 0 {
		t.Fatalf("set 0 differs from trace:\n%s", strings.Join(d, "\n"))
	}
	// A walk that takes every ordered pair of sets at least once.
	n := len(policySets)
	seq := []int{0}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i == j {
				continue
			}
			if seq[len(seq)-1] != i {
				seq = append(seq, i)
			}
			seq = append(seq, j)
		}
	}
	var mu sync.Mutex
	var seen []map[flowKey]bool
	dp.afterWrite = func() {
		m := dp.matrix()
		mu.Lock()
		seen = append(seen, m)
		mu.Unlock()
	}
	transitions := 0
	for step := 1; step < len(seq); step++ {
		from, to := seq[step-1], seq[step]
		old := dp.matrix()
		mu.Lock()
		seen = nil
		mu.Unlock()
		writeSet(t, dir, policySets[to])
		reload(a)
		if st := a.Status(); st.LastError != nil {
			t.Fatalf("set %d rejected: %+v", to, st.LastError)
		}
		nw := dp.matrix()
		if d := diffMatrix(nw, traceMatrix(t, dir)); len(d) > 0 {
			t.Fatalf("set %d (from %d) differs from trace:\n%s", to, from, strings.Join(d, "\n"))
		}
		mu.Lock()
		for i, m := range seen {
			for k, allowed := range m {
				if allowed && !old[k] && !nw[k] {
					t.Errorf("set %d -> %d: write %d/%d allows %s -> %s %d/%s, which neither the old nor the new state allows",
						from, to, i+1, len(seen), k.from, k.to, k.port, policy.ProtoName(k.proto))
				}
			}
		}
		mu.Unlock()
		transitions++
	}
	t.Logf("%d transitions checked", transitions)
}

func TestInvalidPolicyKeepsLastGood(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	writeSet(t, dir, policySets[1])
	dp := newFakeDatapath()
	a, err := NewWithDatapath(testConfig(t, dir, state), dp, fakeNet())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, p := range testPods {
		register(t, a, p)
	}
	good := dp.matrix()
	rev := a.Status().PolicyRevision
	writes := dp.writes
	// A misspelt field in one policy among valid ones: the whole set is rejected.
	bad := map[string]string{"cluster.yaml": clusterYAML("{app: b}"), "p.yaml": cnp("a-out", `  endpointSelector: {matchLabels: {app: a}}
  egres: [{toEndpoints: [{matchLabels: {app: b}}]}]`) + cnp("open", `  endpointSelector: {}
  ingress: [{fromEntities: [all]}]`)}
	writeSet(t, dir, bad)
	reload(a)
	st := a.Status()
	if st.LastError == nil || st.Enforcing != "last-good" || st.PolicyRevision != rev {
		t.Fatalf("status after an invalid set: %+v", st)
	}
	is := st.LastError.Errors[0]
	if !strings.HasSuffix(is.File, "p.yaml") || is.Object != "CiliumNetworkPolicy shop/a-out" || is.Field != "spec.egres" || is.Document != 1 {
		t.Errorf("issue not located: %+v", is)
	}
	if dp.writes != writes {
		t.Errorf("an invalid set wrote to the datapath (%d writes)", dp.writes-writes)
	}
	if d := diffMatrix(dp.matrix(), good); len(d) > 0 {
		t.Errorf("enforcement changed:\n%s", strings.Join(d, "\n"))
	}
	if msg, ok := a.Health(); !ok || !strings.Contains(msg, "last good") {
		t.Errorf("health %v %q", ok, msg)
	}
	// A translation error (not caught by validation) is rejected too.
	writeSet(t, dir, map[string]string{"cluster.yaml": clusterYAML("{app: b}") + "---\n" + strings.Split(clusterYAML("{app: b}"), "---\n")[3]})
	reload(a)
	if st := a.Status(); st.LastError == nil || !strings.Contains(st.LastError.Errors[0].Message, "defined twice") {
		t.Errorf("duplicate pod not rejected: %+v", st.LastError)
	}
	if dp.writes != writes {
		t.Errorf("a rejected set wrote to the datapath")
	}
	// Fixed: applied.
	writeSet(t, dir, policySets[2])
	reload(a)
	if st := a.Status(); st.LastError != nil || st.Enforcing != "current" || st.PolicyRevision != rev+1 {
		t.Fatalf("status after a fix: %+v", st)
	}
	if d := diffMatrix(dp.matrix(), traceMatrix(t, dir)); len(d) > 0 {
		t.Errorf("differs from trace:\n%s", strings.Join(d, "\n"))
	}
}

func TestIdentitiesStable(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	writeSet(t, dir, policySets[3])
	dp := newFakeDatapath()
	a, err := NewWithDatapath(testConfig(t, dir, state), dp, fakeNet())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{}
	for _, p := range testPods {
		ids[p.name] = register(t, a, p).Identity
	}
	ipc := map[netip.Prefix]identity.ID{}
	for p, id := range dp.ipc {
		ipc[p] = id
	}
	// New pods whose labels sort first shift cluster.Build's numbering; ours stay.
	extra := map[string]string{}
	for k, v := range policySets[3] {
		extra[k] = v
	}
	extra["more.yaml"] = `apiVersion: v1
kind: Pod
metadata: {name: aaa, namespace: aaa, labels: {aaa: "1"}}
spec: {nodeName: node-2, containers: [{name: c, image: x}]}
status: {podIP: 10.244.2.30}
`
	writeSet(t, dir, extra)
	reload(a)
	for _, e := range a.Endpoints() {
		if ids[e.Pod] != e.Identity {
			t.Errorf("%s: identity %d became %d", e.Pod, ids[e.Pod], e.Identity)
		}
	}
	for p, id := range ipc {
		if dp.ipc[p] != id {
			t.Errorf("ipcache %s: %d became %d", p, id, dp.ipc[p])
		}
	}
	if _, ok := dp.ipc[netip.MustParsePrefix("10.244.2.30/32")]; !ok {
		t.Error("new pod not in the ipcache")
	}
	if got := dp.ipc[netip.MustParsePrefix("203.0.113.0/24")]; got&identity.LocalScope == 0 {
		t.Errorf("CIDR identity %d", got)
	}
	if dp.ipc[netip.MustParsePrefix("192.168.100.1/32")] != identity.Host || dp.ipc[netip.MustParsePrefix("192.168.100.2/32")] != identity.RemoteNode {
		t.Errorf("node identities: %v", dp.ipc)
	}
	rev := a.Status().PolicyRevision
	a.Close()
	// A restarted agent (the state file, the same pinned datapath) keeps them, and the
	// revision of the unchanged directory.
	writes := dp.writes
	a2, err := NewWithDatapath(testConfig(t, dir, state), dp, fakeNet())
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	for _, e := range a2.Endpoints() {
		if ids[e.Pod] != e.Identity || e.State != "enforcing" {
			t.Errorf("after restart %s: identity %d (was %d), state %s", e.Pod, e.Identity, ids[e.Pod], e.State)
		}
	}
	for p, id := range ipc {
		if dp.ipc[p] != id {
			t.Errorf("after restart ipcache %s: %d became %d", p, id, dp.ipc[p])
		}
	}
	if got := a2.Status().PolicyRevision; got != rev {
		t.Errorf("revision %d after a restart on an unchanged directory, was %d", got, rev)
	}
	t.Logf("restart wrote %d times", dp.writes-writes)
}

// TestRestartAdoptsPinnedState: an agent that starts with an invalid directory keeps the
// pinned state untouched; a valid directory that changed while no agent ran is reconciled
// from the pinned state without widening.
func TestRestartAdoptsPinnedState(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	writeSet(t, dir, policySets[1])
	dp := newFakeDatapath()
	a, err := NewWithDatapath(testConfig(t, dir, state), dp, fakeNet())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range testPods {
		register(t, a, p)
	}
	a.Close()
	old := dp.matrix()
	writes := dp.writes
	// Invalid while down.
	writeSet(t, dir, map[string]string{"cluster.yaml": clusterYAML("{app: b}"), "p.yaml": "kind: [\n"})
	a2, err := NewWithDatapath(testConfig(t, dir, state), dp, fakeNet())
	if err != nil {
		t.Fatal(err)
	}
	if dp.writes != writes {
		t.Errorf("the pinned state was written before a valid policy set was loaded")
	}
	if d := diffMatrix(dp.matrix(), old); len(d) > 0 {
		t.Errorf("enforcement changed:\n%s", strings.Join(d, "\n"))
	}
	if msg, ok := a2.Health(); !ok || !strings.Contains(msg, "pinned state") {
		t.Errorf("health %v %q", ok, msg)
	}
	st := a2.Status()
	if st.Enforcing != "restored" || st.Endpoints != 3 || st.LastError == nil {
		t.Errorf("status %+v", st)
	}
	for _, e := range a2.Endpoints() {
		if e.State != "restored" || e.Identity == 0 || e.MapEntries == 0 && e.IngressEnforced {
			t.Errorf("restored endpoint %+v", e)
		}
	}
	if _, err := a2.Register(EndpointRequest{ContainerID: "new", HostIfName: "nwa", PodNamespace: "shop", PodName: "x"}); err == nil {
		t.Error("a registration before any valid policy set succeeded")
	}
	a2.Close()
	// Valid but different (the swap) while down: reconciled from the pinned state.
	writeSet(t, dir, policySets[2])
	var mu sync.Mutex
	var seen []map[flowKey]bool
	dp.afterWrite = func() {
		m := dp.matrix()
		mu.Lock()
		seen = append(seen, m)
		mu.Unlock()
	}
	a3, err := NewWithDatapath(testConfig(t, dir, state), dp, fakeNet())
	if err != nil {
		t.Fatal(err)
	}
	defer a3.Close()
	nw := dp.matrix()
	if d := diffMatrix(nw, traceMatrix(t, dir)); len(d) > 0 {
		t.Fatalf("differs from trace:\n%s", strings.Join(d, "\n"))
	}
	for _, m := range seen {
		for k, allowed := range m {
			if allowed && !old[k] && !nw[k] {
				t.Errorf("restart: an intermediate state allows %+v", k)
			}
		}
	}
}

func TestUnknownPodIsRelabelled(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	writeSet(t, dir, policySets[7]) // lockdown: only what the rules allow
	dp := newFakeDatapath()
	nn := fakeNet()
	nn.links["nwx"] = 20
	a, err := NewWithDatapath(testConfig(t, dir, state), dp, nn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	resp, err := a.Register(EndpointRequest{ContainerID: "x1", HostIfName: "nwx", PodNamespace: "shop", PodName: "ghost", IPs: []string{"10.244.1.50"}})
	if err != nil {
		t.Fatal(err)
	}
	ep, _ := a.EndpointDetail("shop/ghost")
	if ep.KnownPod || !ep.IngressEnforced || resp.Pod != "shop/ghost" || dp.attached["nwx"] != 1 {
		t.Fatalf("unknown pod: %+v %+v", ep, resp)
	}
	if slices.Contains(ep.Labels, "k8s:app=ghost") {
		t.Fatal("labels from nowhere")
	}
	files := map[string]string{}
	for k, v := range policySets[7] {
		files[k] = v
	}
	files["ghost.yaml"] = `apiVersion: v1
kind: Pod
metadata: {name: ghost, namespace: shop, labels: {app: ghost}}
spec: {containers: [{name: c, image: x}], serviceAccountName: spooky}
`
	writeSet(t, dir, files)
	reload(a)
	ep, _ = a.EndpointDetail("shop/ghost")
	if !ep.KnownPod || !slices.Contains(ep.Labels, "k8s:app=ghost") || !slices.Contains(ep.Labels, "k8s:io.cilium.k8s.policy.serviceaccount=spooky") || ep.Identity == resp.Identity {
		t.Fatalf("not re-labelled: %+v", ep)
	}
	if dp.ipc[netip.MustParsePrefix("10.244.1.50/32")] != identity.ID(ep.Identity) {
		t.Errorf("ipcache has %d for the pod, want %d", dp.ipc[netip.MustParsePrefix("10.244.1.50/32")], ep.Identity)
	}
	// Idempotent registration.
	again, err := a.Register(EndpointRequest{ContainerID: "x1", HostIfName: "nwx", PodNamespace: "shop", PodName: "ghost", IPs: []string{"10.244.1.50"}})
	if err != nil || again.ID != resp.ID || len(a.Endpoints()) != 1 || dp.attached["nwx"] != 1 {
		t.Fatalf("re-registration: %+v %v", again, err)
	}
	// The veth vanishes without a DELETE: the resync removes the endpoint.
	nn.mu.Lock()
	delete(nn.links, "nwx")
	nn.mu.Unlock()
	a.mu.Lock()
	a.dropVanishedLocked()
	a.mu.Unlock()
	if len(a.Endpoints()) != 0 || dp.attached["nwx"] != 0 || len(dp.eps) != 0 {
		t.Fatalf("vanished endpoint kept: %+v", a.Endpoints())
	}
}

func TestAPI(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	writeSet(t, dir, policySets[1])
	dp := newFakeDatapath()
	a, err := NewWithDatapath(testConfig(t, dir, state), dp, fakeNet())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	post := func(body string) (*http.Response, string) {
		resp, err := http.Post(srv.URL+"/v1/endpoints", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	del := func(path string) int {
		req, _ := http.NewRequest(http.MethodDelete, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	resp, body := post(`{"containerID":"c-a","netns":"/var/run/netns/a","ifName":"eth0","hostIfName":"nwa","podNamespace":"shop","podName":"a","ips":["10.244.1.10"]}`)
	var er EndpointResponse
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &er) != nil || er.ID == 0 || er.Identity < 256 || er.Pod != "shop/a" {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	if dp.attached["nwa"] != 1 {
		t.Fatal("not attached")
	}
	ep, ok, _ := dp.GetEndpoint(11)
	if !ok || ep.ID != er.ID || uint32(ep.Identity) != er.Identity || ep.Flags&datapath.FlagEgressEnforced == 0 {
		t.Fatalf("datapath endpoint %+v", ep)
	}
	if resp, body := post(`{"containerID":"c-z","hostIfName":"nwzz","podNamespace":"shop","podName":"z","ips":["10.244.1.99"]}`); resp.StatusCode != 400 || !strings.Contains(body, "nwzz") {
		t.Errorf("unknown interface: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(`{"containerID":"c-y","hostIfName":"nwa","podNamespace":"shop","podName":"y"}`); resp.StatusCode != 409 {
		t.Errorf("interface taken: %d", resp.StatusCode)
	}
	if resp, _ := post(`{"containerID":"","hostIfName":"nwa"}`); resp.StatusCode != 400 {
		t.Errorf("no container: %d", resp.StatusCode)
	}
	code, body := get("/v1/endpoints")
	var list []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, f := range []string{"id", "containerID", "pod", "namespace", "name", "ips", "identity", "labels", "hostIfName", "netns",
		"policyRevision", "ingressEnforced", "egressEnforced", "ingressDefaultDeny", "egressDefaultDeny", "mapEntries"} {
		if _, ok := list[0][f]; !ok {
			t.Errorf("list entry lacks %q: %s", f, body)
		}
	}
	for _, key := range []string{"shop/a", fmt.Sprint(er.ID), "c-a"} {
		code, body := get("/v1/endpoints/" + key)
		var e Endpoint
		if code != 200 || json.Unmarshal([]byte(body), &e) != nil || e.Pod != "shop/a" || len(e.Map) == 0 || !e.EgressEnforced || !e.EgressDefaultDeny {
			t.Fatalf("get %s: %d %s", key, code, body)
		}
		found := false
		for _, m := range e.Map {
			if strings.Contains(m.Key, "egress") && len(m.Origins) > 0 && strings.Contains(m.Origins[0], "CiliumNetworkPolicy shop/a-out") {
				found = true
			}
		}
		if !found {
			t.Errorf("map entries without origins: %+v", e.Map)
		}
	}
	if code, _ := get("/v1/endpoints/shop/nobody"); code != 404 {
		t.Errorf("unknown endpoint: %d", code)
	}
	code, body = get("/v1/status")
	var st Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Node != "node-1" || st.Endpoints != 1 || st.PolicyRevision != 1 || st.Enforcing != "current" {
		t.Fatalf("status: %d %s", code, body)
	}
	if code, body := get("/healthz"); code != 200 || !strings.HasPrefix(body, "ok") {
		t.Errorf("healthz: %d %s", code, body)
	}
	code, body = get("/metrics")
	for _, m := range []string{"netward_endpoints 1", "netward_policy_revision 1", "netward_policy_regeneration_seconds_bucket",
		`netward_datapath_packets_total{reason="forwarded-policy"} 3`, "netward_policy_errors_total 0", "netward_policy_apply_seconds_count 1"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	// Events: a datapath event becomes a named verdict.
	cookie := uint32(0)
	for _, v := range dp.pols[er.ID] {
		if v.Cookie != 0 && !v.Deny {
			cookie = v.Cookie
		}
	}
	dp.events <- datapath.Event{Time: datapath.MonotonicNow(), Endpoint: er.ID, PeerIdentity: dp.ipc[netip.MustParsePrefix("10.244.1.11/32")],
		Src: netip.MustParseAddr("10.244.1.10"), Dst: netip.MustParseAddr("10.244.1.11"), SrcPort: 40000, DstPort: 80, Proto: 6,
		Egress: true, Verdict: datapath.VerdictForwarded, Reason: datapath.ReasonForwardedPolicy, Cookie: cookie}
	dp.events <- datapath.Event{Time: datapath.MonotonicNow(), Endpoint: er.ID, PeerIdentity: identity.World,
		Src: netip.MustParseAddr("8.8.8.8"), Dst: netip.MustParseAddr("10.244.1.10"), DstPort: 22, Proto: 6,
		Verdict: datapath.VerdictDropped, Reason: datapath.ReasonDroppedDefaultDeny}
	ctxDone := make(chan struct{})
	go func() { // the reader runs in Start; here we pump by hand
		defer close(ctxDone)
		for i := 0; i < 2; i++ {
			a.events.publish(a.convertEvent(<-dp.events))
		}
	}()
	<-ctxDone
	code, body = get("/v1/events?pod=shop/a")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if code != 200 || len(lines) != 2 {
		t.Fatalf("events: %d %s", code, body)
	}
	var ev Event
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Source.Pod != "shop/a" || ev.Destination.Pod != "shop/b" || ev.Port != 80 || ev.Proto != "TCP" || ev.Verdict != "forwarded" ||
		ev.Direction != "egress" || len(ev.Origins) == 0 || !strings.Contains(ev.Origins[0], "a-out") || ev.Node != "node-1" ||
		time.Since(ev.Time) > time.Minute || ev.Source.Identity != er.Identity {
		t.Errorf("event %+v", ev)
	}
	if err := json.Unmarshal([]byte(lines[1]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != "dropped" || ev.Source.Kind != "world" || ev.Reason != "dropped-default-deny" {
		t.Errorf("drop event %+v", ev)
	}
	if code, body := get("/v1/events?verdict=dropped"); code != 200 || strings.Count(body, "\n") != 1 {
		t.Errorf("filtered events: %s", body)
	}
	if code := del("/v1/endpoints/c-a"); code != 200 {
		t.Errorf("delete: %d", code)
	}
	if _, ok, _ := dp.GetEndpoint(11); ok || dp.attached["nwa"] != 0 || dp.pols[er.ID] != nil {
		t.Error("endpoint not removed from the datapath")
	}
	if _, ok := dp.ipc[netip.MustParsePrefix("10.244.1.10/32")]; !ok {
		t.Error("the pod's Pod object still exists: its address stays in the ipcache")
	}
	if code := del("/v1/endpoints/c-a"); code != 404 {
		t.Errorf("delete twice: %d", code)
	}
}

func TestStateFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "endpoints.json")
	st := &persisted{Version: stateVersion, Node: "n", NextEndpointID: 7, PolicyRevision: 3,
		Endpoints:  []*endpointRecord{{ID: 5, ContainerID: "c", HostIfName: "nw1", Ifindex: 9, PodNamespace: "ns", PodName: "p", IPs: []string{"10.0.0.1"}}},
		Identities: map[string]identity.ID{"pod:k8s:app=x": 300},
		IPCache:    map[string]identity.ID{"10.0.0.1/32": 300}}
	if err := writeState(path, st); err != nil {
		t.Fatal(err)
	}
	got, err := readState(path)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := json.Marshal(st)
	b2, _ := json.Marshal(got)
	if string(b1) != string(b2) {
		t.Fatalf("round trip:\n%s\n%s", b1, b2)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	missing, err := readState(filepath.Join(t.TempDir(), "none.json"))
	if err != nil || missing.NextEndpointID != 1 || len(missing.Endpoints) != 0 {
		t.Fatalf("missing state: %+v %v", missing, err)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := readState(path); err == nil {
		t.Error("a corrupt state file was accepted")
	}
}

// TestWatcher: changes are reported once settled; a file being written is waited for.
func TestWatcher(t *testing.T) {
	dir := t.TempDir()
	w := &watcher{dir: dir, poll: 50 * time.Millisecond, debounce: 20 * time.Millisecond, log: testLogger(t)}
	type change struct {
		at      time.Time
		content string
	}
	changes := make(chan change, 10)
	ctx, cancel := contextWithCancel()
	defer cancel()
	go w.run(ctx, func(detected time.Time) {
		b, _ := os.ReadFile(filepath.Join(dir, "p.yaml"))
		changes <- change{detected, string(b)}
	})
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("one"), 0o644)
	select {
	case c := <-changes:
		if c.content != "one" || c.at.Before(start) || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("change %+v after %v", c, time.Since(start))
		}
		t.Logf("reported %v after the write", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Fatal("change not reported")
	}
	// A slow writer: half, a pause longer than the debounce, the rest, close.
	f, err := os.OpenFile(filepath.Join(dir, "p.yaml"), os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("first half ")
	time.Sleep(150 * time.Millisecond)
	f.WriteString("second half")
	f.Close()
	select {
	case c := <-changes:
		if c.content != "first half second half" {
			t.Fatalf("a half-written file was reported: %q", c.content)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("change not reported")
	}
	// Irrelevant files are ignored; a new subdirectory is watched.
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	time.Sleep(20 * time.Millisecond)
	os.WriteFile(filepath.Join(dir, "sub", "q.yml"), []byte("q"), 0o644)
	select {
	case <-changes:
	case <-time.After(2 * time.Second):
		t.Fatal("change in a new subdirectory not reported")
	}
	select {
	case c := <-changes:
		t.Fatalf("spurious change %+v", c)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestMergeEndpoints(t *testing.T) {
	objs, errs := api.LoadBytes("c.yaml", []byte(clusterYAML("{app: b}")))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	recs := []*endpointRecord{
		{ID: 1, ContainerID: "x", PodNamespace: "shop", PodName: "a", IPs: []string{"10.244.1.99"}},
		{ID: 2, ContainerID: "y", PodNamespace: "other", PodName: "new", IPs: []string{"10.244.1.11"}}, // b's address
	}
	merged, known := mergeEndpoints(objs, recs, "node-9")
	if !known["shop/a"] || known["other/new"] {
		t.Fatalf("known %v", known)
	}
	c, err := cluster.Build(merged, cluster.Options{Policy: policy.DefaultOptions()})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Endpoint("shop/a")
	if a.Node != "node-9" || len(a.IPs) != 1 || a.IPs[0].String() != "10.244.1.99" || a.Labels["app"] != "a" {
		t.Errorf("a: %+v", a)
	}
	b, _ := c.Endpoint("shop/b")
	if len(b.IPs) != 0 {
		t.Errorf("b keeps the endpoint's address: %v", b.IPs)
	}
	n, ok := c.Endpoint("other/new")
	if !ok || len(n.Labels) != 0 || n.IPs[0].String() != "10.244.1.11" {
		t.Errorf("unknown pod: %+v", n)
	}
	// The original objects are not modified.
	if objs.Pods[0].Obj.Status.PodIP != "10.244.1.10" {
		t.Error("input modified")
	}
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
