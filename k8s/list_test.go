package k8s

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/netward/netward/api"
)

func cnp(name, ns string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
	return u
}

func clients(t *testing.T, dyn ...runtime.Object) *Clients {
	t.Helper()
	kube := kubefake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"team": "a"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "x"}, Status: corev1.PodStatus{PodIP: "10.0.0.1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: "x"}},
	)
	scheme := runtime.NewScheme()
	d := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		CNPResource:  "CiliumNetworkPolicyList",
		CCNPResource: "CiliumClusterwideNetworkPolicyList",
	}, dyn...)
	return &Clients{Kube: kube, Dynamic: d, Name: "test"}
}

func TestListReadsEveryKind(t *testing.T) {
	c := clients(t, cnp("p", "x", map[string]any{
		"endpointSelector": map[string]any{},
		"ingress":          []any{map[string]any{"fromEntities": []any{"world"}}},
	}))
	objs, err := List(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Namespaces) != 1 || len(objs.Pods) != 1 || len(objs.Nodes) != 1 || len(objs.NetworkPolicies) != 1 || len(objs.CNPs) != 1 {
		t.Fatalf("objects: %d ns, %d pods, %d nodes, %d np, %d cnp", len(objs.Namespaces), len(objs.Pods), len(objs.Nodes), len(objs.NetworkPolicies), len(objs.CNPs))
	}
	if got := objs.CNPs[0].Obj.Spec.Ingress[0].FromEntities; len(got) != 1 || got[0] != "world" {
		t.Errorf("CNP decoded as %+v", objs.CNPs[0].Obj.Spec)
	}
	if s := objs.Pods[0].Source.String(); !strings.Contains(s, "cluster test pods") {
		t.Errorf("source %q does not name the cluster", s)
	}
	if errs := api.Validate(objs); len(errs) > 0 {
		t.Errorf("validation: %v", errs)
	}
}

func TestListDecodesCiliumPoliciesStrictly(t *testing.T) {
	c := clients(t, cnp("typo", "x", map[string]any{
		"endpointSelector": map[string]any{},
		"ingres":           []any{},
	}))
	_, err := List(context.Background(), c)
	de, ok := err.(*DecodeError)
	if !ok || len(de.Errs) != 1 || !strings.Contains(de.Errs[0].Error(), "spec.ingres") || !strings.Contains(de.Errs[0].Error(), "CiliumNetworkPolicy x/typo") {
		t.Fatalf("err = %v", err)
	}
}

func TestListWithoutCiliumCRDs(t *testing.T) {
	c := clients(t)
	c.Dynamic.(*dynamicfake.FakeDynamicClient).PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(a.GetResource().GroupResource(), "")
	})
	objs, err := List(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Notes) != 2 || !strings.Contains(objs.Notes[0], "CRDs are not installed") {
		t.Errorf("notes: %v", objs.Notes)
	}
}
