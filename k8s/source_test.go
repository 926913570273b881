package k8s

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/netward/netward/api"
)

type snapshot struct {
	objs    *api.Objects
	invalid []*api.ObjectError
}

type harness struct {
	kube    *fake.Clientset
	dyn     *dynamicfake.FakeDynamicClient
	src     *Source
	snaps   chan snapshot
	watches atomic.Int32
}

const (
	testDebounce = 100 * time.Millisecond
	// quiet is how long a test waits to be sure no callback comes.
	quiet = 400 * time.Millisecond
)

func newFakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		CNPResource:  "CiliumNetworkPolicyList",
		CCNPResource: "CiliumClusterwideNetworkPolicyList",
	}, objs...)
}

// startSource runs a Source on fake clients holding objs, waits for the first snapshot and
// for every informer's watch to be open (the fake clients drop events sent before).
func startSource(t *testing.T, opts SourceOptions, objs ...runtime.Object) (*harness, snapshot) {
	t.Helper()
	var kubeObjs, dynObjs []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*unstructured.Unstructured); ok {
			dynObjs = append(dynObjs, o)
		} else {
			kubeObjs = append(kubeObjs, o)
		}
	}
	h := &harness{kube: fake.NewClientset(kubeObjs...), dyn: newFakeDynamic(dynObjs...), snaps: make(chan snapshot, 100)}
	count := func(k8stesting.Action) (bool, watch.Interface, error) {
		h.watches.Add(1)
		return false, nil, nil
	}
	h.kube.PrependWatchReactor("*", count)
	h.dyn.PrependWatchReactor("*", count)
	if opts.Debounce == 0 {
		opts.Debounce = testDebounce
	}
	opts.Name = "test"
	opts.OnChange = func(objs *api.Objects, invalid []*api.ObjectError) { h.snaps <- snapshot{objs, invalid} }
	h.src = NewSource(h.kube, h.dyn, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	first := h.next(t)
	if !h.src.HasSynced() {
		t.Fatal("snapshot before HasSynced")
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.watches.Load() < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d watches opened", h.watches.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return h, first
}

func (h *harness) next(t *testing.T) snapshot {
	t.Helper()
	select {
	case s := <-h.snaps:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot within 5s")
	}
	return snapshot{}
}

func (h *harness) none(t *testing.T, why string) {
	t.Helper()
	select {
	case s := <-h.snaps:
		t.Fatalf("%s: unexpected snapshot %v", why, names(s))
	case <-time.After(quiet):
	}
}

// names lists a snapshot as "Kind ns/name" strings, invalid ones marked "!".
func names(s snapshot) []string {
	var out []string
	add := func(kind, ns, name string) {
		if ns != "" {
			name = ns + "/" + name
		}
		out = append(out, kind+" "+name)
	}
	for _, o := range s.objs.Namespaces {
		add("Namespace", "", o.Obj.Name)
	}
	for _, o := range s.objs.Nodes {
		add("Node", "", o.Obj.Name)
	}
	for _, o := range s.objs.Pods {
		add("Pod", o.Obj.Namespace, o.Obj.Name)
	}
	for _, o := range s.objs.NetworkPolicies {
		add("NetworkPolicy", o.Obj.Namespace, o.Obj.Name)
	}
	for _, o := range s.objs.CNPs {
		add("CNP", o.Obj.Namespace, o.Obj.Name)
	}
	for _, o := range s.objs.CCNPs {
		add("CCNP", "", o.Obj.Name)
	}
	for _, e := range s.invalid {
		add("!"+e.Kind, e.Namespace, e.Name)
	}
	return out
}

func wantNames(t *testing.T, s snapshot, want ...string) {
	t.Helper()
	got := names(s)
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot\n got  %q\n want %q", got, want)
	}
}

func namespace(name, rv string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: rv, Labels: labels}}
}

func pod(ns, name, rv, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv, Labels: labels, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: "node-1"},
		Status:     corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, Phase: corev1.PodRunning},
	}
}

func node(name, rv, ip string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: rv},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
	}
}

func netpol(ns, name, rv string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
}

// policy builds a CNP (ns != "") or CCNP from a YAML spec.
func policy(t *testing.T, ns, name, rv, spec string) *unstructured.Unstructured {
	t.Helper()
	kind := api.KindCCNP
	if ns != "" {
		kind = api.KindCNP
	}
	doc := fmt.Sprintf("apiVersion: cilium.io/v2\nkind: %s\nmetadata: {name: %s, namespace: %q, resourceVersion: %q, uid: uid-%s}\nspec:\n%s", kind, name, ns, rv, name, indent(spec))
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	if ns == "" {
		unstructured.RemoveNestedField(u.Object, "metadata", "namespace")
	}
	return u
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

const (
	webSpec = `endpointSelector: {matchLabels: {app: web}}
ingress:
- fromEndpoints: [{matchLabels: {app: api}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]`
	dnsSpec = `endpointSelector: {}
egress:
- toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
  toPorts: [{ports: [{port: "53", protocol: ANY}]}]`
	// A port given as a number: the API server's schema would reject it, a fake client
	// does not; netward's decoder names the field.
	badPortSpec = `endpointSelector: {matchLabels: {app: web}}
ingress:
- toPorts: [{ports: [{port: 80}]}]`
	// Decodes, but a CiliumNetworkPolicy may not use nodeSelector.
	nodeSelectorSpec = `nodeSelector: {matchLabels: {role: edge}}
ingress:
- fromEntities: [world]`
)

func cnpResource(ns string) schema.GroupVersionResource {
	if ns == "" {
		return CCNPResource
	}
	return CNPResource
}

func (h *harness) createPolicy(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	if _, err := h.dyn.Resource(cnpResource(u.GetNamespace())).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) updatePolicy(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	if _, err := h.dyn.Resource(cnpResource(u.GetNamespace())).Namespace(u.GetNamespace()).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) deletePolicy(t *testing.T, ns, name string) {
	t.Helper()
	if err := h.dyn.Resource(cnpResource(ns)).Namespace(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The first snapshot holds every object; an undecodable and an invalid policy are
// reported with their field paths and left out, the others are delivered.
func TestSourceInitialSync(t *testing.T) {
	h, s := startSource(t, SourceOptions{},
		namespace("shop", "1", map[string]string{"team": "shop"}), namespace("default", "2", nil),
		pod("shop", "web-1", "3", "10.0.0.1", map[string]string{"app": "web"}),
		pod("shop", "api-1", "4", "10.0.0.2", map[string]string{"app": "api"}),
		node("node-1", "5", "192.168.0.1"),
		netpol("shop", "deny", "6"),
		policy(t, "shop", "web", "7", webSpec),
		policy(t, "shop", "bad-port", "8", badPortSpec),
		policy(t, "shop", "node-sel", "9", nodeSelectorSpec),
		policy(t, "", "dns", "10", dnsSpec),
	)
	wantNames(t, s,
		"Namespace default", "Namespace shop", "Node node-1",
		"Pod shop/api-1", "Pod shop/web-1", "NetworkPolicy shop/deny",
		"CNP shop/web", "CCNP dns",
		"!CiliumNetworkPolicy shop/bad-port", "!CiliumNetworkPolicy shop/node-sel")
	bad := s.invalid[0].Error()
	for _, want := range []string{"cluster test ciliumnetworkpolicies", "CiliumNetworkPolicy shop/bad-port", "spec.ingress.toPorts.ports.port", "quote it"} {
		if !strings.Contains(bad, want) {
			t.Errorf("decode error %q does not mention %q", bad, want)
		}
	}
	if msg := StatusMessage(s.invalid[1]); !strings.Contains(msg, "nodeSelector") || strings.Contains(msg, "cluster test") {
		t.Errorf("validation error for the status: %q", msg)
	}
	// The objects come decoded: the CNP's rule is there.
	if r := s.objs.CNPs[0].Obj.Spec; r == nil || len(r.Ingress) != 1 || r.Ingress[0].ToPorts[0].Ports[0].Port != "80" {
		t.Errorf("decoded CNP %+v", s.objs.CNPs[0].Obj.Spec)
	}
	if got := s.objs.CNPs[0].Source.String(); got != "cluster test ciliumnetworkpolicies" {
		t.Errorf("source %q", got)
	}
	h.none(t, "nothing changed")
}

func TestSourceEmptyClusterStillDelivers(t *testing.T) {
	_, s := startSource(t, SourceOptions{})
	wantNames(t, s)
}

// Adding, changing and deleting an object of each kind each give one snapshot.
func TestSourceAddUpdateDelete(t *testing.T) {
	h, s := startSource(t, SourceOptions{})
	wantNames(t, s)
	ctx := context.Background()
	core := h.kube.CoreV1()

	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"add namespace", func() { core.Namespaces().Create(ctx, namespace("shop", "1", nil), metav1.CreateOptions{}) }, []string{"Namespace shop"}},
		{"label namespace", func() {
			core.Namespaces().Update(ctx, namespace("shop", "2", map[string]string{"team": "a"}), metav1.UpdateOptions{})
		}, []string{"Namespace shop"}},
		{"add node", func() { core.Nodes().Create(ctx, node("node-1", "3", "192.168.0.1"), metav1.CreateOptions{}) }, []string{"Namespace shop", "Node node-1"}},
		{"readdress node", func() { core.Nodes().Update(ctx, node("node-1", "4", "192.168.0.2"), metav1.UpdateOptions{}) }, []string{"Namespace shop", "Node node-1"}},
		{"add pod", func() {
			core.Pods("shop").Create(ctx, pod("shop", "web-1", "5", "10.0.0.1", map[string]string{"app": "web"}), metav1.CreateOptions{})
		}, []string{"Namespace shop", "Node node-1", "Pod shop/web-1"}},
		{"relabel pod", func() {
			core.Pods("shop").Update(ctx, pod("shop", "web-1", "6", "10.0.0.1", map[string]string{"app": "web2"}), metav1.UpdateOptions{})
		}, []string{"Namespace shop", "Node node-1", "Pod shop/web-1"}},
		{"add networkpolicy", func() {
			h.kube.NetworkingV1().NetworkPolicies("shop").Create(ctx, netpol("shop", "deny", "7"), metav1.CreateOptions{})
		}, []string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny"}},
		{"change networkpolicy", func() {
			np := netpol("shop", "deny", "8")
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			h.kube.NetworkingV1().NetworkPolicies("shop").Update(ctx, np, metav1.UpdateOptions{})
		}, []string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny"}},
		{"add cnp", func() { h.createPolicy(t, policy(t, "shop", "web", "9", webSpec)) },
			[]string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny", "CNP shop/web"}},
		{"change cnp", func() { h.updatePolicy(t, policy(t, "shop", "web", "10", dnsSpec)) },
			[]string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny", "CNP shop/web"}},
		{"add ccnp", func() { h.createPolicy(t, policy(t, "", "dns", "11", dnsSpec)) },
			[]string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny", "CNP shop/web", "CCNP dns"}},
		{"break ccnp", func() { h.updatePolicy(t, policy(t, "", "dns", "12", badPortSpec)) },
			[]string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny", "CNP shop/web", "!CiliumClusterwideNetworkPolicy dns"}},
		{"fix ccnp", func() { h.updatePolicy(t, policy(t, "", "dns", "13", dnsSpec)) },
			[]string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny", "CNP shop/web", "CCNP dns"}},
		{"delete ccnp", func() { h.deletePolicy(t, "", "dns") },
			[]string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny", "CNP shop/web"}},
		{"delete cnp", func() { h.deletePolicy(t, "shop", "web") },
			[]string{"Namespace shop", "Node node-1", "Pod shop/web-1", "NetworkPolicy shop/deny"}},
		{"delete networkpolicy", func() { h.kube.NetworkingV1().NetworkPolicies("shop").Delete(ctx, "deny", metav1.DeleteOptions{}) },
			[]string{"Namespace shop", "Node node-1", "Pod shop/web-1"}},
		{"delete pod", func() { core.Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{}) }, []string{"Namespace shop", "Node node-1"}},
		{"delete node", func() { core.Nodes().Delete(ctx, "node-1", metav1.DeleteOptions{}) }, []string{"Namespace shop"}},
		{"delete namespace", func() { core.Namespaces().Delete(ctx, "shop", metav1.DeleteOptions{}) }, nil},
	}
	for _, st := range steps {
		st.do()
		s := h.next(t)
		got := names(s)
		if !slices.Equal(got, st.want) {
			t.Fatalf("after %s:\n got  %q\n want %q", st.name, got, st.want)
		}
	}
	h.none(t, "after the last step")
}

// Updates that do not change what policy resolution reads, and the same version delivered
// twice, call nobody; the snapshot still holds the newest object.
func TestSourceNoSpuriousChanges(t *testing.T) {
	p := pod("shop", "web-1", "1", "10.0.0.1", map[string]string{"app": "web"})
	cnp := policy(t, "shop", "web", "2", webSpec)
	n := node("node-1", "3", "192.168.0.1")
	h, _ := startSource(t, SourceOptions{}, p, cnp, n)
	ctx := context.Background()

	// The same resourceVersion again (what a relist or a duplicate event brings).
	h.kube.CoreV1().Pods("shop").Update(ctx, p.DeepCopy(), metav1.UpdateOptions{})
	h.updatePolicy(t, cnp.DeepCopy())
	h.none(t, "same resourceVersions")

	// A pod's container statuses and conditions.
	p2 := p.DeepCopy()
	p2.ResourceVersion = "10"
	p2.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	p2.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Ready: true}}
	h.kube.CoreV1().Pods("shop").Update(ctx, p2, metav1.UpdateOptions{})
	// A node's heartbeat.
	n2 := n.DeepCopy()
	n2.ResourceVersion = "11"
	n2.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	h.kube.CoreV1().Nodes().Update(ctx, n2, metav1.UpdateOptions{})
	// A policy's status, as every agent writes it.
	cnp2 := cnp.DeepCopy()
	cnp2.SetResourceVersion("12")
	unstructured.SetNestedField(cnp2.Object, map[string]any{"node-1": map[string]any{"ok": true}}, "status", "nodes")
	h.updatePolicy(t, cnp2)
	h.none(t, "status-only updates")

	objs, _ := h.src.Snapshot()
	if got := objs.Pods[0].Obj.ResourceVersion; got != "10" {
		t.Errorf("snapshot holds pod version %s, want 10", got)
	}
	if got := objs.Nodes[0].Obj.ResourceVersion; got != "11" {
		t.Errorf("snapshot holds node version %s, want 11", got)
	}

	// A change within the debounce window that is undone again.
	h.kube.CoreV1().Pods("shop").Create(ctx, pod("shop", "tmp", "20", "10.0.0.9", nil), metav1.CreateOptions{})
	h.kube.CoreV1().Pods("shop").Delete(ctx, "tmp", metav1.DeleteOptions{})
	h.none(t, "a pod added and deleted within the debounce time")
}

// A burst of changes gives one snapshot with the final state.
func TestSourceDebounce(t *testing.T) {
	h, _ := startSource(t, SourceOptions{Debounce: 300 * time.Millisecond})
	ctx := context.Background()
	for i := range 20 {
		h.kube.CoreV1().Pods("shop").Create(ctx, pod("shop", fmt.Sprintf("p-%02d", i), "1", fmt.Sprintf("10.0.0.%d", i+1), nil), metav1.CreateOptions{})
	}
	// One snapshot with all 20 (two if the machine stalled for longer than the debounce
	// time in the middle of the burst).
	n := 0
	for {
		s := h.next(t)
		n++
		if len(s.objs.Pods) == 20 {
			break
		}
		if n == 2 {
			t.Fatalf("%d snapshots for a burst of 20 changes, the last with %d pods", n, len(s.objs.Pods))
		}
	}
	if n > 1 {
		t.Logf("the burst took %d snapshots", n)
	}
	h.none(t, "after the burst")
}

// Under a constant stream of changes snapshots still come, at least every MaxDelay.
func TestSourceMaxDelay(t *testing.T) {
	h, _ := startSource(t, SourceOptions{Debounce: 200 * time.Millisecond, MaxDelay: 300 * time.Millisecond})
	ctx := context.Background()
	stop := time.Now().Add(1500 * time.Millisecond)
	for i := 0; time.Now().Before(stop); i++ {
		h.kube.CoreV1().Pods("shop").Create(ctx, pod("shop", fmt.Sprintf("p-%03d", i), "1", "10.0.0.1", nil), metav1.CreateOptions{})
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(h.snaps); n < 2 {
		t.Errorf("%d snapshots during 1.5s of changes every 50ms, want at least 2 (MaxDelay 300ms)", n)
	}
}

// After a watch expires the informers relist: objects that did not change change nothing,
// an object deleted while the watch was down disappears.
func TestSourceRelist(t *testing.T) {
	kube := fake.NewClientset(
		pod("shop", "a", "1", "10.0.0.1", nil),
		pod("shop", "b", "2", "10.0.0.2", nil),
		namespace("shop", "3", nil),
	)
	// The pods' watches are ours: the test ends them and sees the informer relist.
	watchers := make(chan *watch.FakeWatcher, 10)
	kube.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		w := watch.NewFake()
		watchers <- w
		return true, w, nil
	})
	snaps := make(chan snapshot, 10)
	src := NewSource(kube, newFakeDynamic(), SourceOptions{Debounce: testDebounce, OnChange: func(o *api.Objects, inv []*api.ObjectError) {
		snaps <- snapshot{o, inv}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	next := func() snapshot {
		t.Helper()
		select {
		case s := <-snaps:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no snapshot")
		}
		return snapshot{}
	}
	wantNames(t, next(), "Namespace shop", "Pod shop/a", "Pod shop/b")
	w := <-watchers

	// Expire the watch: the informer relists and sees the same pods.
	w.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired, Message: "too old resource version"})
	w = <-watchers
	select {
	case s := <-snaps:
		t.Fatalf("relist of unchanged objects delivered %v", names(s))
	case <-time.After(quiet):
	}

	// Delete b behind the watch's back (no event), then expire the watch again.
	if err := kube.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), "shop", "b"); err != nil {
		t.Fatal(err)
	}
	w.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired, Message: "too old resource version"})
	<-watchers
	wantNames(t, next(), "Namespace shop", "Pod shop/a")
}
