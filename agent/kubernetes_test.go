//go:build linux

package agent

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/k8s"
	"github.com/netward/netward/k8s/kubetest"
)

// applier is `kubectl apply --prune` for the kinds of the test sets: it creates or updates
// every object of a set (Pods' status through the status subresource, as the kubelet
// would) and deletes the Pods and policies of the previous set that the new one lacks.
type applier struct {
	t       testing.TB
	dyn     dynamic.Interface
	applied map[string]objRef
}

type objRef struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
}

var kindResources = map[string]schema.GroupVersionResource{
	"Node":                           {Version: "v1", Resource: "nodes"},
	"Namespace":                      {Version: "v1", Resource: "namespaces"},
	"Pod":                            {Version: "v1", Resource: "pods"},
	"NetworkPolicy":                  {Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	"CiliumNetworkPolicy":            k8s.CNPResource,
	"CiliumClusterwideNetworkPolicy": k8s.CCNPResource,
}

func newApplier(t testing.TB, cfg *rest.Config) *applier {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{t: t, dyn: dyn, applied: map[string]objRef{}}
}

func (ap *applier) apply(files map[string]string) {
	ap.t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	// In name order: cluster.yaml (the namespace) before the policies that live in it.
	for _, name := range slices.Sorted(maps.Keys(files)) {
		for _, doc := range strings.Split(files[name], "\n---\n") {
			if strings.TrimSpace(strings.Trim(doc, "-\n")) == "" {
				continue
			}
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				ap.t.Fatalf("test manifest: %v\n%s", err, doc)
			}
			u := &unstructured.Unstructured{Object: obj}
			gvr, ok := kindResources[u.GetKind()]
			if !ok {
				ap.t.Fatalf("applier: kind %s", u.GetKind())
			}
			var ri dynamic.ResourceInterface = ap.dyn.Resource(gvr)
			if ns := u.GetNamespace(); ns != "" {
				ri = ap.dyn.Resource(gvr).Namespace(ns)
			}
			key := u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
			seen[key] = true
			ap.applied[key] = objRef{gvr, u.GetNamespace(), u.GetName()}
			cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				cur, err = ri.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"})
			case err == nil:
				u.SetResourceVersion(cur.GetResourceVersion())
				cur, err = ri.Update(ctx, u, metav1.UpdateOptions{FieldValidation: "Strict"})
			}
			if err != nil {
				ap.t.Fatalf("applying %s: %v", key, err)
			}
			if st, ok := obj["status"]; ok && u.GetKind() == "Pod" {
				cur.Object["status"] = st
				if _, err := ri.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
					ap.t.Fatalf("pod status %s: %v", key, err)
				}
			}
		}
	}
	zero := int64(0)
	for key, ref := range ap.applied {
		if seen[key] || ref.gvr.Resource == "namespaces" || ref.gvr.Resource == "nodes" {
			continue // no namespace controller runs: namespaces would never go away
		}
		var ri dynamic.ResourceInterface = ap.dyn.Resource(ref.gvr)
		if ref.namespace != "" {
			ri = ap.dyn.Resource(ref.gvr).Namespace(ref.namespace)
		}
		if err := ri.Delete(ctx, ref.name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			ap.t.Fatalf("deleting %s: %v", key, err)
		}
		delete(ap.applied, key)
	}
}

// policyStatus reads a policy's status.
func (ap *applier) policyStatus(gvr schema.GroupVersionResource, ns, name string) (k8s.PolicyStatus, error) {
	var ri dynamic.ResourceInterface = ap.dyn.Resource(gvr)
	if ns != "" {
		ri = ap.dyn.Resource(gvr).Namespace(ns)
	}
	u, err := ri.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return k8s.PolicyStatus{}, err
	}
	return k8s.ReadPolicyStatus(u.Object)
}

// eventually polls cond until it returns "" or the timeout ends, then fails with its last
// complaint.
func eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// traceOf is what netward trace decides for the local pods on a set of files.
func traceOf(t testing.TB, files map[string]string) map[flowKey]bool {
	t.Helper()
	dir := t.TempDir()
	writeSet(t, dir, files)
	return traceMatrix(t, dir)
}

const invalidCNP = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress: [{fromCIDR: [10.0.0.0/33]}]
`

// TestKubernetesSource runs two agents (fake datapaths) against a real kube-apiserver:
// policies, pods and relabels applied through the API are enforced as netward trace
// decides; an invalid policy is reported in its status and the others still enforce; every
// valid policy's status.nodes shows both nodes enforcing it at the right revision; both
// agents give every pod the same identity number; an API server restart loses nothing.
func TestKubernetesSource(t *testing.T) {
	bin := kubetest.BinDir(t)
	env := kubetest.Start(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := k8s.InstallCRDs(ctx, env.Config); err != nil {
		t.Fatal(err)
	}
	ap := newApplier(t, env.Config)
	set := func(i int, extra string) map[string]string {
		files := map[string]string{}
		for k, v := range policySets[i] {
			files[k] = v
		}
		if extra != "" {
			files["extra.yaml"] = extra
		}
		return files
	}
	ap.apply(set(1, invalidCNP))
	var startWith func(node string, addr string, links map[string]uint32, state string, dp *fakeDatapath) (*Agent, *fakeDatapath)

	start := func(node string, addr string, links map[string]uint32) (*Agent, *fakeDatapath) {
		return startWith(node, addr, links, t.TempDir(), newFakeDatapath())
	}
	startWith = func(node string, addr string, links map[string]uint32, state string, dp *fakeDatapath) (*Agent, *fakeDatapath) {
		cfg := testConfig(t, "", state)
		cfg.Node, cfg.Kubernetes, cfg.KubernetesName = node, env.Config, "test"
		nn := &fakeNetwork{links: links, addrs: []netip.Addr{netip.MustParseAddr(addr)}}
		a, err := NewWithDatapath(cfg, dp, nn)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a, dp
	}
	a1, dp1 := start("node-1", "192.168.100.1", fakeNet().links)
	a2, dp2 := start("node-2", "192.168.100.2", map[string]uint32{})
	for _, p := range testPods {
		register(t, a1, p)
	}
	// On failure (also from t.Fatal in eventually) show what each agent holds.
	defer func() {
		if t.Failed() {
			for _, a := range []*Agent{a1, a2} {
				b, _ := os.ReadFile(filepath.Join(a.cfg.StateDir, stateFileName))
				t.Logf("%s state: %s", a.cfg.Node, b)
			}
		}
	}()

	// converged waits until both agents applied a revision after `after` and wrote every
	// status entry, and node-1's datapath decides as trace does on files.
	converged := func(what string, after [2]uint64, files map[string]string) [2]uint64 {
		t.Helper()
		want := traceOf(t, files)
		var revs [2]uint64
		eventually(t, 30*time.Second, func() string {
			for i, a := range []*Agent{a1, a2} {
				st := a.Status()
				if st.PolicyRevision <= after[i] || st.StatusPending > 0 || st.Enforcing != "current" {
					return fmt.Sprintf("%s: agent %s: revision %d (after %d), %d status writes pending, enforcing %q",
						what, st.Node, st.PolicyRevision, after[i], st.StatusPending, st.Enforcing)
				}
				revs[i] = st.PolicyRevision
			}
			if d := diffMatrix(dp1.matrix(), want); len(d) > 0 {
				return fmt.Sprintf("%s: node-1 differs from trace:\n%s", what, strings.Join(d, "\n"))
			}
			return ""
		})
		return revs
	}
	checkStatus := func(what string, names []string, revs [2]uint64) {
		t.Helper()
		for _, name := range names {
			st, err := ap.policyStatus(k8s.CNPResource, "shop", name)
			if err != nil {
				t.Fatalf("%s: %s: %v", what, name, err)
			}
			for i, node := range []string{"node-1", "node-2"} {
				ns, ok := st.Nodes[node]
				if !ok || !ns.OK || !ns.Enforcing || ns.Error != "" || ns.Revision == 0 || ns.Revision > revs[i] {
					t.Errorf("%s: CNP shop/%s status.nodes.%s = %+v (present %v; agent revision %d)", what, name, node, ns, ok, revs[i])
				}
			}
			if len(st.Conditions) != 1 || st.Conditions[0].Type != "Valid" || st.Conditions[0].Status != "True" {
				t.Errorf("%s: CNP shop/%s conditions %+v", what, name, st.Conditions)
			}
		}
	}

	// 1. Set 1 plus an invalid policy: the valid ones enforce (trace on set 1 alone).
	revs := converged("set 1 + invalid", [2]uint64{}, set(1, ""))
	checkStatus("set 1", []string{"a-out", "b-in"}, revs)
	bad, err := ap.policyStatus(k8s.CNPResource, "shop", "bad")
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"node-1", "node-2"} {
		ns := bad.Nodes[node]
		if ns.OK || ns.Enforcing || !strings.Contains(ns.Error, "fromCIDR") {
			t.Errorf("invalid CNP: status.nodes.%s = %+v", node, ns)
		}
	}
	if len(bad.Conditions) != 1 || bad.Conditions[0].Status != "False" || !strings.Contains(bad.Conditions[0].Message, "fromCIDR") {
		t.Errorf("invalid CNP: conditions %+v", bad.Conditions)
	}
	if st := a1.Status(); len(st.InvalidPolicies) != 1 || st.InvalidPolicies[0].Object != "CiliumNetworkPolicy shop/bad" {
		t.Errorf("agent status: invalid policies %+v", st.InvalidPolicies)
	}

	// 2. The same labels get the same identity number on both nodes, and it is the
	// deterministic one.
	// Pods and policies reach each agent through separate informers, so an agent may
	// apply a revision with new policies before it sees a relabel: the nodes agree
	// eventually, not at every revision.
	sameIdentities := func(what string) {
		t.Helper()
		eventually(t, 30*time.Second, func() string {
			dp1.mu.Lock()
			dp2.mu.Lock()
			defer dp1.mu.Unlock()
			defer dp2.mu.Unlock()
			for _, ip := range []string{"10.244.1.10", "10.244.1.11", "10.244.1.12", "10.244.2.20"} {
				p := netip.MustParsePrefix(ip + "/32")
				id1, ok1 := dp1.ipc[p]
				id2, ok2 := dp2.ipc[p]
				if !ok1 || !ok2 || id1 != id2 || id1 < identity.AllocFirst || id1 > identity.AllocLast {
					return fmt.Sprintf("%s: pod %s has identity %d (%v) on node-1 and %d (%v) on node-2", what, ip, id1, ok1, id2, ok2)
				}
			}
			// Each node is itself the host and the other a remote node.
			if dp1.ipc[netip.MustParsePrefix("192.168.100.1/32")] != identity.Host || dp2.ipc[netip.MustParsePrefix("192.168.100.1/32")] != identity.RemoteNode {
				return fmt.Sprintf("%s: node-1's address: %d on node-1, %d on node-2", what, dp1.ipc[netip.MustParsePrefix("192.168.100.1/32")], dp2.ipc[netip.MustParsePrefix("192.168.100.1/32")])
			}
			return ""
		})
	}
	sameIdentities("set 1")

	// 3. A policy update and the invalid policy deleted.
	ap.apply(set(2, ""))
	revs = converged("set 2", revs, set(2, ""))
	checkStatus("set 2", []string{"a-out", "b-in"}, revs)
	for _, name := range []string{"a-out", "b-in"} {
		st, _ := ap.policyStatus(k8s.CNPResource, "shop", name)
		if got := st.Nodes["node-1"].Revision; got != revs[0] {
			t.Errorf("set 2: %s changed, so its localPolicyRevision on node-1 is %d, want the new revision %d", name, got, revs[0])
		}
	}
	if st := a1.Status(); len(st.InvalidPolicies) != 0 {
		t.Errorf("deleted invalid policy still reported: %+v", st.InvalidPolicies)
	}

	// 4. A pod relabelled through the API (set 4: b is app=b2).
	ap.apply(set(4, ""))
	revs = converged("set 4 (relabel)", revs, set(4, ""))
	sameIdentities("set 4")

	// 5. The API server restarts; a change made afterwards is enforced.
	env.RestartAPIServer()
	ap.apply(set(5, ""))
	revs = converged("set 5 (after an API server restart)", revs, set(5, ""))
	checkStatus("set 5", []string{"a-in"}, revs)
	sameIdentities("set 5")

	// 6. node-1's agent restarts on an unchanged cluster: same revision, same status (the
	// revision that first carried each policy version is kept in the state file).
	before, _ := ap.policyStatus(k8s.CNPResource, "shop", "a-in")
	a1.Close()
	a1, _ = startWith("node-1", "192.168.100.1", fakeNet().links, a1.cfg.StateDir, dp1)
	eventually(t, 30*time.Second, func() string {
		if st := a1.Status(); st.Enforcing != "current" || st.StatusPending > 0 {
			return fmt.Sprintf("restarted agent: %+v", st)
		}
		return ""
	})
	if st := a1.Status(); st.PolicyRevision != revs[0] {
		t.Errorf("restart on an unchanged cluster moved the revision from %d to %d", revs[0], st.PolicyRevision)
	}
	after, _ := ap.policyStatus(k8s.CNPResource, "shop", "a-in")
	if b, a := before.Nodes["node-1"], after.Nodes["node-1"]; b.Revision != a.Revision || !b.LastUpdated.Equal(&a.LastUpdated) {
		t.Errorf("restart changed node-1's status of a-in: %+v -> %+v", b, a)
	}
	if d := diffMatrix(dp1.matrix(), traceOf(t, set(5, ""))); len(d) > 0 {
		t.Errorf("after the restart node-1 differs from trace:\n%s", strings.Join(d, "\n"))
	}

	// 7. node-2 leaves the cluster: node-1 (the first node by name) removes its entries.
	a2.Close()
	if err := ap.dyn.Resource(kindResources["Node"]).Delete(ctx, "node-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		st, err := ap.policyStatus(k8s.CNPResource, "shop", "a-in")
		if err != nil {
			return err.Error()
		}
		if _, ok := st.Nodes["node-2"]; ok || !st.Nodes["node-1"].Enforcing {
			return fmt.Sprintf("after node-2 left: status.nodes %+v", st.Nodes)
		}
		return ""
	})
}
