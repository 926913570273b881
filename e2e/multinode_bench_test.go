//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/netward/netward/cni/cnitest"
	"github.com/netward/netward/k8s"
)

// Sizes of the Kubernetes benchmark (issue #6: 100 policies, 1,000 pods across the nodes).
const (
	benchPods       = 1000
	benchRealPods   = 6 // network namespaces, 2 a node; the others are API objects only
	benchPolicies   = 100
	benchNamespaces = 10
	benchApps       = 25
)

// TestBenchK8sApplyToEnforcement measures the time from an apply through the API (a
// server-side apply of a CiliumNetworkPolicy's new spec, what `kubectl apply --server-side`
// sends) to its enforcement on all three nodes, on a cluster of 1,000 pods and 100
// policies. It runs only with NETWARD_BENCH_K8S=1 (scripts/bench-k8s.sh); the number of
// applies is NETWARD_BENCH_K8S_APPLIES (default 40, at least 20).
//
// Each apply toggles port 9090 of the measured policy, which governs a client pod on node-1
// and a server pod on node-2 (real network namespaces). For each apply three moments are
// taken, all from the start of the API request:
//
//	agents   every agent's GET /v1/status reports a policy revision above the one it had
//	         before the apply (the agent bumps it after programming the datapath), polled
//	         every 2 ms on each socket;
//	status   the policy's status.nodes has an entry for every node whose localPolicyRevision
//	         is above that node's revision before the apply (a watch on the policy);
//	probe    (applies that open the port) the first new TCP connection client -> server:9090
//	         that succeeds (attempts back to back, 20 ms answer timeout; a connection can
//	         only succeed once node-1's egress and node-2's ingress both allow it).
//
// Applies that close the port are checked after the fact: a connection then times out.
func TestBenchK8sApplyToEnforcement(t *testing.T) {
	if os.Getenv("NETWARD_BENCH_K8S") != "1" {
		t.Skip("SKIPPED: the Kubernetes apply-to-enforcement benchmark runs with NETWARD_BENCH_K8S=1 (scripts/bench-k8s.sh)")
	}
	applies := 40
	if s := os.Getenv("NETWARD_BENCH_K8S_APPLIES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 20 {
			t.Fatalf("NETWARD_BENCH_K8S_APPLIES=%q: want a number >= 20", s)
		}
		applies = n
	}
	m := NewMultiNode(t, MultiNodeConfig{PodCIDRBits: 22})
	ctx := context.Background()
	m.StartAgents()

	// Namespaces, the real pods, then the API-only pods (kubelet emulation: status.podIP from
	// the top of the node's pod CIDR, far from the plugin's allocations at the bottom).
	start := time.Now()
	for i := range benchNamespaces {
		m.CreateNamespace(fmt.Sprintf("bench-%d", i), map[string]string{"team": fmt.Sprintf("t%d", i%5)})
	}
	m.CreateNamespace("bench-real", map[string]string{"team": "real"})
	var real []*MNPod
	for i := range benchRealPods {
		node := m.Nodes[i%len(m.Nodes)]
		app := []string{"client", "server", "other"}[i/len(m.Nodes)%3]
		real = append(real, m.AddPod(PodSpec{Namespace: "bench-real", Name: fmt.Sprintf("%s-%s", app, node.Name), Node: node.Name,
			Labels: map[string]string{"app": app}}))
	}
	client, server := real[0], real[len(m.Nodes)+1] // client-node-1, server-node-2
	if client.Node.Name != "node-1" || server.Node.Name != "node-2" || client.Labels["app"] != "client" || server.Labels["app"] != "server" {
		t.Fatalf("client %s on %s, server %s on %s", client.Key(), client.Node.Name, server.Key(), server.Node.Name)
	}
	apiOnly := benchPods - benchRealPods
	perNode := map[string]int{}
	errs := make(chan error, apiOnly)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range apiOnly {
		n := m.Nodes[i%len(m.Nodes)]
		k := perNode[n.Name]
		perNode[n.Name]++
		ip := lastAddr(n.Subnet, k)
		spec := PodSpec{
			Namespace: fmt.Sprintf("bench-%d", i%benchNamespaces), Name: fmt.Sprintf("pod-%04d", i), Node: n.Name,
			Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%benchApps), "tier": fmt.Sprintf("tier-%d", i%3)},
			Ports:  []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := m.Kube.CoreV1().Pods(spec.Namespace).Create(ctx, PodObject(spec), metav1.CreateOptions{}); err != nil {
				errs <- err
				return
			}
			if err := m.SetPodRunning(ctx, spec.Namespace, spec.Name, n, ip); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d pods (%d with a network namespace) created in %v", benchPods, benchRealPods, time.Since(start).Round(time.Millisecond))

	// 99 policies that stay, and the measured one.
	start = time.Now()
	if err := m.Apply(ctx, benchPolicySet()); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(ctx, benchProbePolicy(false)); err != nil {
		t.Fatal(err)
	}
	objs, invalid := m.Objects(ctx)
	nPol := len(objs.NetworkPolicies) + len(objs.CNPs) + len(objs.CCNPs)
	if len(objs.Pods) != benchPods || nPol != benchPolicies || len(invalid) != 0 {
		t.Fatalf("the cluster has %d pods and %d valid policies (%d invalid), want %d and %d", len(objs.Pods), nPol, len(invalid), benchPods, benchPolicies)
	}
	// Settled: every agent has every pod and node in its ipcache, and every policy's status.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if err := m.WaitAgents(ctx, nil, time.Minute); err != nil {
			t.Fatal(err)
		}
		agentsAt := time.Since(start)
		if err := m.WaitStatus(ctx, nil, nil, nil, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("policy set: agents enforcing %v after the apply, every policy's status.nodes complete after %v", agentsAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		short := ""
		for _, n := range m.Nodes {
			st, err := n.Client.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.IPCacheEntries < benchPods+len(m.Nodes) {
				short = fmt.Sprintf("%s: %d ipcache entries", n.Name, st.IPCacheEntries)
			}
		}
		if short == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after 2 minutes: %s", short)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := m.Cluster(ctx)
	t.Logf("%d policies applied and settled in %v; %d identities", nPol, time.Since(start).Round(time.Millisecond), len(c.Engine.SelectorCache().Universe()))
	for _, n := range m.Nodes {
		st, _ := n.Client.Status(ctx)
		t.Logf("%s: revision %d, %d identities, %d ipcache entries, %d endpoints; %d client-side throttling waits logged so far",
			n.Name, st.PolicyRevision, st.Identities, st.IPCacheEntries, st.Endpoints, countLines(n.Agent, "client-side throttling"))
	}
	if err := m.H.Prober.Serve(server.Place(), map[uint8][]uint16{6: {9090}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)

	type sample struct {
		open                  bool
		agents, status, probe time.Duration
		perNode               map[string]time.Duration
		compute, sinceChange  map[string]time.Duration
	}
	var samples []sample
	ref := k8s.PolicyRef{Kind: "CiliumNetworkPolicy", Namespace: "bench-real", Name: "bench-probe"}
	for i := range applies {
		open := i%2 == 0
		s := sample{open: open, perNode: map[string]time.Duration{}}
		before, err := m.Revisions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w, err := m.Dyn.Resource(k8s.CNPResource).Namespace(ref.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + ref.Name})
		if err != nil {
			t.Fatal(err)
		}
		var bg sync.WaitGroup
		t0 := time.Now()
		done := make(chan struct{})
		var mu sync.Mutex
		for _, n := range m.Nodes {
			bg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					st, err := n.Client.Status(ctx)
					if err == nil && st.PolicyRevision > before[n.Name] {
						mu.Lock()
						s.perNode[n.Name] = time.Since(t0)
						mu.Unlock()
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
		bg.Go(func() {
			defer w.Stop()
			for {
				select {
				case <-done:
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						return
					}
					if ev.Type != watch.Modified && ev.Type != watch.Added {
						continue
					}
					u, ok := ev.Object.(interface{ UnstructuredContent() map[string]any })
					if !ok {
						continue
					}
					st, err := k8s.ReadPolicyStatus(u.UnstructuredContent())
					if err != nil {
						continue
					}
					all := true
					for _, n := range m.Nodes {
						e, ok := st.Nodes[n.Name]
						all = all && ok && e.OK && e.Enforcing && e.Revision > before[n.Name]
					}
					if all {
						mu.Lock()
						s.status = time.Since(t0)
						mu.Unlock()
						return
					}
				}
			}
		})
		if open {
			bg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					if probeConnect(client.Place(), server.Place(), 9090, 20*time.Millisecond) == nil {
						mu.Lock()
						s.probe = time.Since(t0)
						mu.Unlock()
						return
					}
				}
			})
		}
		t0 = time.Now()
		if err := m.Apply(ctx, benchProbePolicy(open)); err != nil {
			t.Fatal(err)
		}
		// Wait for every measurement (or 30 s).
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			complete := len(s.perNode) == len(m.Nodes) && s.status > 0 && (!open || s.probe > 0)
			mu.Unlock()
			if complete {
				break
			}
			if time.Now().After(deadline) {
				close(done)
				bg.Wait()
				t.Fatalf("apply %d (open=%v): not enforced everywhere after 30 s: agents %v, status %v, probe %v", i, open, s.perNode, s.status, s.probe)
			}
			time.Sleep(time.Millisecond)
		}
		close(done)
		bg.Wait()
		for _, d := range s.perNode {
			s.agents = max(s.agents, d)
		}
		if !open {
			// The closed port must be closed now (the agents said they enforce it).
			if err := probeConnect(client.Place(), server.Place(), 9090, time.Second); err == nil {
				t.Errorf("apply %d closed port 9090, every agent reports the new revision, yet a connection succeeded", i)
			}
		}
		s.compute, s.sinceChange = map[string]time.Duration{}, map[string]time.Duration{}
		for _, n := range m.Nodes {
			st, err := n.Client.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.compute[n.Name], s.sinceChange[n.Name] = appliedTimes(n.Agent, st.PolicyRevision)
		}
		samples = append(samples, s)
		t.Logf("apply %2d (%s 9090): agents %v %v, status.nodes %v, probe %v", i, map[bool]string{true: "open ", false: "close"}[open],
			s.agents.Round(time.Millisecond), roundAll(s.perNode), s.status.Round(time.Millisecond), s.probe.Round(time.Millisecond))
		time.Sleep(300 * time.Millisecond)
	}

	// The table.
	var agents, status, probe, compute, since []time.Duration
	for _, s := range samples {
		agents, status = append(agents, s.agents), append(status, s.status)
		if s.open {
			probe = append(probe, s.probe)
		}
		for _, n := range m.Nodes {
			if s.compute[n.Name] > 0 {
				compute = append(compute, s.compute[n.Name])
			}
			if s.sinceChange[n.Name] > 0 {
				since = append(since, s.sinceChange[n.Name])
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apply-to-enforcement, %d nodes, %d pods (%d with a netns), %d policies, %d identities, %d applies\n",
		len(m.Nodes), benchPods, benchRealPods, benchPolicies, len(c.Engine.SelectorCache().Universe()), len(samples))
	fmt.Fprintf(&b, "%-44s %6s %9s %9s %9s %9s\n", "measure (from the start of the apply)", "n", "p50", "p90", "p99", "max")
	row := func(name string, ds []time.Duration) {
		fmt.Fprintf(&b, "%-44s %6d %9s %9s %9s %9s\n", name, len(ds), pct(ds, 50), pct(ds, 90), pct(ds, 99), pct(ds, 100))
	}
	row("agents: /v1/status revision on all nodes", agents)
	row("status.nodes: all nodes, new revision", status)
	row("probe: port opened, first connection", probe)
	row("agent log: detection -> applied (per node)", since)
	row("agent log: compute (per node)", compute)
	t.Logf("\n%s", b.String())
	if out := os.Getenv("NETWARD_BENCH_K8S_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	if p := percentile(agents, 99); p >= time.Second {
		t.Logf("p99 of the agents' apply-to-enforcement is %v: above the 1 s target", p)
	}
}

// lastAddr is the k-th address from the top of p (skipping the broadcast address).
func lastAddr(p netip.Prefix, k int) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(1)<<(32-p.Bits()) - 2 - uint32(k)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// benchPolicySet is 99 policies over the API-only pods: 60 CiliumNetworkPolicies, 29
// NetworkPolicies and 10 CiliumClusterwideNetworkPolicies, each selecting one app.
func benchPolicySet() string {
	var b strings.Builder
	doc := func(s string, args ...any) {
		if b.Len() > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, s, args...)
	}
	for k := range 60 {
		doc(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cnp-%[1]d, namespace: bench-%[2]d}
spec:
  endpointSelector: {matchLabels: {app: app-%[3]d}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: app-%[4]d}}, {matchLabels: {k8s:io.kubernetes.pod.namespace: bench-%[5]d, tier: tier-%[6]d}}]
    toPorts: [{ports: [{port: "%[7]d", protocol: TCP}, {port: http, protocol: TCP}]}]
  egress:
  - toEndpoints: [{matchLabels: {app: app-%[8]d}}]
    toPorts: [{ports: [{port: "%[7]d", protocol: TCP}]}]
  - toCIDR: [198.51.100.%[9]d/32]
`, k, k%benchNamespaces, k%benchApps, (k+1)%benchApps, (k+3)%benchNamespaces, k%3, 8000+k%7, (k+2)%benchApps, k%250)
	}
	for k := range 29 {
		doc(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: knp-%[1]d, namespace: bench-%[2]d}
spec:
  podSelector: {matchLabels: {app: app-%[3]d, tier: tier-%[4]d}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: t%[5]d}}, podSelector: {matchLabels: {app: app-%[6]d}}}]
    ports: [{port: %[7]d, protocol: TCP}, {port: 53, protocol: UDP}]
`, k, k%benchNamespaces, (k*7)%benchApps, k%3, k%5, (k+5)%benchApps, 9000+k%11)
	}
	for k := range 10 {
		doc(`apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ccnp-%[1]d}
spec:
  endpointSelector: {matchLabels: {app: app-%[2]d}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: app-%[3]d}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  ingress:
  - fromEntities: [cluster]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`, k, (k*3)%benchApps, (k+11)%benchApps)
	}
	return b.String()
}

// benchProbePolicy is the measured policy: the server admits the client on 8080, and on
// 9090 when open; the client may reach the server on both (its egress does not change).
func benchProbePolicy(open bool) string {
	ports := `{port: "8080", protocol: TCP}`
	if open {
		ports += `, {port: "9090", protocol: TCP}`
	}
	return fmt.Sprintf(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench-probe, namespace: bench-real}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [%s]}]
`, ports)
}

// probeConnect opens one TCP connection from -> to:port and closes it.
func probeConnect(from, to Place, port uint16, timeout time.Duration) error {
	var c net.Conn
	err := cnitest.InNetns(from.Netns, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: from.Addr.AsSlice()}}
		var err error
		c, err = d.Dial("tcp4", netip.AddrPortFrom(to.Addr, port).String())
		return err
	})
	if err != nil {
		return err
	}
	return c.Close()
}

// appliedTimes reads the agent's log line "policy set applied" of a revision: its compute
// time and the time from the change's detection (after the source's debounce) to applied.
func appliedTimes(p *AgentProc, rev uint64) (compute, sinceChange time.Duration) {
	if len(p.Logs) == 0 {
		return 0, 0
	}
	f, err := os.Open(p.Logs[len(p.Logs)-1])
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	want := fmt.Sprintf("revision=%d ", rev)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="policy set applied"`) || !strings.Contains(line, want) {
			continue
		}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			d, err := time.ParseDuration(v)
			if err != nil {
				continue
			}
			switch k {
			case "compute":
				compute = d
			case "sinceChange":
				sinceChange = d
			}
		}
	}
	return compute, sinceChange
}

func roundAll(m map[string]time.Duration) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k].Round(time.Millisecond)))
	}
	return "(" + strings.Join(parts, " ") + ")"
}

// percentile is the nearest-rank percentile of ds (0 when empty).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func pct(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "-"
	}
	d := percentile(ds, p)
	if d >= 10*time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Microsecond).String()
}

// countLines counts the lines of an agent's current log that contain s.
func countLines(p *AgentProc, s string) int {
	if len(p.Logs) == 0 {
		return 0
	}
	b, err := os.ReadFile(p.Logs[len(p.Logs)-1])
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}
