package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/netward/netward/api"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func patches(dyn *dynamicfake.FakeDynamicClient) []k8stesting.PatchAction {
	var out []k8stesting.PatchAction
	for _, a := range dyn.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			out = append(out, p)
		}
	}
	return out
}

func readStatus(t *testing.T, dyn *dynamicfake.FakeDynamicClient, ref PolicyRef) PolicyStatus {
	t.Helper()
	gvr, _ := ref.resource()
	u, err := dyn.Resource(gvr).Namespace(ref.Namespace).Get(context.Background(), ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadPolicyStatus(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestStatusReportPatch(t *testing.T) {
	dyn := newFakeDynamic(policy(t, "shop", "web", "5", webSpec))
	w := NewStatusWriter(dyn)
	w.Now = func() time.Time { return t0 }
	ref := PolicyRef{Kind: api.KindCNP, Namespace: "shop", Name: "web"}
	err := w.Report(context.Background(), ref, "node-1", NodeStatus{OK: true, Enforcing: true, Revision: 7, Annotations: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	ps := patches(dyn)
	if len(ps) != 1 {
		t.Fatalf("%d patches", len(ps))
	}
	p := ps[0]
	if p.GetSubresource() != "status" || p.GetPatchType() != types.MergePatchType || p.GetNamespace() != "shop" || p.GetName() != "web" {
		t.Errorf("patch %s %s %s/%s", p.GetSubresource(), p.GetPatchType(), p.GetNamespace(), p.GetName())
	}
	// Only this node's key, every field explicit; the Valid condition is new, so it is
	// written with the resourceVersion as a precondition.
	want := `{"metadata":{"resourceVersion":"5"},"status":{"conditions":[{"type":"Valid","status":"True","lastTransitionTime":"2026-11-25T10:00:00Z","message":"Policy validation succeeded"}],"nodes":{"node-1":{"annotations":{"a":"1"},"enforcing":true,"error":null,"lastUpdated":"2026-11-25T10:00:00Z","localPolicyRevision":7,"ok":true}}}}`
	if got := string(p.GetPatch()); got != want {
		t.Errorf("patch\n got  %s\n want %s", got, want)
	}

	// The second report: the condition is already right, so only the node's entry, without
	// a precondition; the annotation that went away is deleted.
	dyn.ClearActions()
	w.Now = func() time.Time { return t0.Add(time.Minute) }
	err = w.Report(context.Background(), ref, "node-1", NodeStatus{OK: true, Enforcing: false, Revision: 8})
	if err != nil {
		t.Fatal(err)
	}
	want = `{"status":{"nodes":{"node-1":{"annotations":null,"enforcing":false,"error":null,"lastUpdated":"2026-11-25T10:01:00Z","localPolicyRevision":8,"ok":true}}}}`
	if got := string(patches(dyn)[0].GetPatch()); got != want {
		t.Errorf("patch\n got  %s\n want %s", got, want)
	}
	// The same report again writes nothing.
	dyn.ClearActions()
	w.Now = func() time.Time { return t0.Add(time.Hour) }
	if err := w.Report(context.Background(), ref, "node-1", NodeStatus{OK: true, Enforcing: false, Revision: 8}); err != nil {
		t.Fatal(err)
	}
	if ps := patches(dyn); len(ps) != 0 {
		t.Errorf("an unchanged report patched: %s", ps[0].GetPatch())
	}
	st := readStatus(t, dyn, ref)
	n := st.Nodes["node-1"]
	if !n.OK || n.Enforcing || n.Revision != 8 || n.Annotations != nil || !n.LastUpdated.Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("node-1 status %+v", n)
	}
}

// Two nodes' reports coexist; an invalid policy gets Valid=False with the validation error
// on every node, and a node's runtime error leaves the condition alone.
func TestStatusTwoNodes(t *testing.T) {
	dyn := newFakeDynamic(policy(t, "", "dns", "1", dnsSpec))
	w := NewStatusWriter(dyn)
	w.Now = func() time.Time { return t0 }
	ref := PolicyRef{Kind: api.KindCCNP, Name: "dns"}
	ctx := context.Background()
	if err := w.Report(ctx, ref, "node-1", NodeStatus{OK: true, Enforcing: true, Revision: 3}); err != nil {
		t.Fatal(err)
	}
	if err := w.Report(ctx, ref, "node-2", NodeStatus{OK: false, Error: "attaching to nwabc: no such device", Revision: 4}); err != nil {
		t.Fatal(err)
	}
	st := readStatus(t, dyn, ref)
	if len(st.Nodes) != 2 || !st.Nodes["node-1"].OK || st.Nodes["node-2"].OK || st.Nodes["node-2"].Error == "" || st.Nodes["node-1"].Error != "" {
		t.Fatalf("nodes %+v", st.Nodes)
	}
	if len(st.Conditions) != 1 || st.Conditions[0].Status != corev1.ConditionTrue {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	// node-2's patch named node-2 only.
	ps := patches(dyn)
	if p := string(ps[len(ps)-1].GetPatch()); strings.Contains(p, "node-1") || strings.Contains(p, "conditions") {
		t.Errorf("node-2's patch %s", p)
	}

	verr := &api.ObjectError{Kind: api.KindCCNP, Name: "dns", Errs: field.ErrorList{field.Invalid(field.NewPath("spec", "egress").Index(0).Child("toPorts"), "x", "bad port")}}
	msg := StatusMessage(verr)
	for _, node := range []string{"node-1", "node-2"} {
		if err := w.Report(ctx, ref, node, NodeStatus{Invalid: true, Error: msg}); err != nil {
			t.Fatal(err)
		}
	}
	st = readStatus(t, dyn, ref)
	if len(st.Conditions) != 1 || st.Conditions[0].Status != corev1.ConditionFalse || st.Conditions[0].Message != msg {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	if !strings.HasPrefix(msg, "spec.egress[0].toPorts: Invalid value") {
		t.Errorf("message %q", msg)
	}
	for _, node := range []string{"node-1", "node-2"} {
		if n := st.Nodes[node]; n.OK || n.Error != msg {
			t.Errorf("%s: %+v", node, n)
		}
	}

	// A node that leaves.
	if err := w.RemoveNode(ctx, ref, "node-2"); err != nil {
		t.Fatal(err)
	}
	if st = readStatus(t, dyn, ref); len(st.Nodes) != 1 {
		t.Errorf("nodes after RemoveNode %+v", st.Nodes)
	}
}

// Concurrent reports of many nodes lose nothing: each patch names its node only.
func TestStatusConcurrentNodes(t *testing.T) {
	dyn := newFakeDynamic(policy(t, "shop", "web", "1", webSpec))
	w := NewStatusWriter(dyn)
	ref := PolicyRef{Kind: api.KindCNP, Namespace: "shop", Name: "web"}
	var wg sync.WaitGroup
	nodes := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Report(context.Background(), ref, n, NodeStatus{OK: true, Enforcing: true}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if st := readStatus(t, dyn, ref); len(st.Nodes) != len(nodes) {
		t.Errorf("%d node entries, want %d", len(st.Nodes), len(nodes))
	}
}

// A conflict on the condition's precondition is retried with the current object.
func TestStatusConflictRetried(t *testing.T) {
	dyn := newFakeDynamic(policy(t, "shop", "web", "1", webSpec))
	conflicts := 0
	dyn.PrependReactor("patch", "ciliumnetworkpolicies", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		var m map[string]any
		_ = json.Unmarshal(p.GetPatch(), &m)
		if _, ok := m["metadata"]; ok && conflicts == 0 {
			conflicts++
			return true, nil, errConflict()
		}
		return false, nil, nil
	})
	w := NewStatusWriter(dyn)
	if err := w.Report(context.Background(), PolicyRef{Kind: api.KindCNP, Namespace: "shop", Name: "web"}, "n", NodeStatus{OK: true}); err != nil {
		t.Fatal(err)
	}
	if conflicts != 1 || len(patches(dyn)) != 2 {
		t.Errorf("conflicts %d, patches %d", conflicts, len(patches(dyn)))
	}
}

// A policy deleted meanwhile is not an error; bad references are.
func TestStatusMissingAndBadRefs(t *testing.T) {
	w := NewStatusWriter(newFakeDynamic())
	ctx := context.Background()
	if err := w.Report(ctx, PolicyRef{Kind: api.KindCNP, Namespace: "x", Name: "gone"}, "n", NodeStatus{OK: true}); err != nil {
		t.Errorf("missing policy: %v", err)
	}
	for _, ref := range []PolicyRef{{Kind: api.KindCNP, Name: "no-ns"}, {Kind: api.KindCCNP, Namespace: "ns", Name: "x"}, {Kind: "Pod", Name: "x"}} {
		if err := w.Report(ctx, ref, "n", NodeStatus{}); err == nil {
			t.Errorf("%v: no error", ref)
		}
	}
	if err := w.Report(ctx, PolicyRef{Kind: api.KindCCNP, Name: "x"}, "", NodeStatus{}); err == nil {
		t.Error("no node name: no error")
	}
}

func errConflict() error {
	return apierrors.NewConflict(CNPResource.GroupResource(), "web", errors.New("the object has been modified"))
}
