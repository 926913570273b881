package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/netward/netward/api"
	"github.com/netward/netward/k8s/kubetest"
)

// installCRDs creates the generated CRDs and waits until they are served.
func installCRDs(t *testing.T, cfg *rest.Config) {
	t.Helper()
	if err := InstallCRDs(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
}

// TestAgainstAPIServer runs against a real kube-apiserver and etcd (see kubetest): the
// generated CRDs are accepted; every Cilium policy of the examples and of the conformance
// suite is stored as written (nothing pruned or rejected) by the real API server; a Source
// follows the cluster, also across an API server restart; StatusWriter's per-node status
// is stored and shows in the Valid column.
func TestAgainstAPIServer(t *testing.T) {
	bin := kubetest.BinDir(t)
	env := kubetest.Start(t, bin)
	cfg := env.Config
	installCRDs(t, cfg)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("CiliumManifests", func(t *testing.T) { applyCiliumManifests(t, kube, dyn) })
	t.Run("Install", func(t *testing.T) { applyInstall(t, kube) })

	// The Source, on a cluster with the shop example's policies.
	for _, ns := range []string{"shop", "payments", "monitoring"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, namespace(ns, "", map[string]string{"team": ns}), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	var shop []ciliumManifest
	for _, m := range ciliumManifests(t) {
		if strings.Contains(m.where, "examples/shop") {
			shop = append(shop, m)
			createManifest(t, dyn, m)
		}
	}
	if len(shop) != 5 {
		t.Fatalf("the shop example has %d Cilium policies, want 5", len(shop))
	}
	// An invalid policy next to the valid ones: it passes the schema, fails netward's
	// validation (a CiliumNetworkPolicy may not select nodes).
	bad := policy(t, "shop", "bad", "", nodeSelectorSpec)
	unstructured.RemoveNestedField(bad.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(bad.Object, "metadata", "uid")
	if _, err := dyn.Resource(CNPResource).Namespace("shop").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "web"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var calls int
	snaps := make(chan snapshot, 100)
	src := NewSource(kube, dyn, SourceOptions{Name: "test", OnChange: func(o *api.Objects, inv []*api.ObjectError) {
		mu.Lock()
		calls++
		mu.Unlock()
		snaps <- snapshot{o, inv}
	}})
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { src.Run(sctx); close(done) }()
	defer func() { cancel(); <-done }()
	next := func(what string) snapshot {
		t.Helper()
		select {
		case s := <-snaps:
			return s
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no snapshot within 30s", what)
		}
		return snapshot{}
	}
	s := next("initial sync")
	policies := func(s snapshot) []string {
		var out []string
		for _, n := range names(s) {
			if strings.HasPrefix(n, "CNP ") || strings.HasPrefix(n, "CCNP ") || strings.HasPrefix(n, "!") || strings.HasPrefix(n, "Pod ") {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
	want := []string{"!CiliumNetworkPolicy shop/bad", "CCNP baseline-dns", "CNP monitoring/prometheus", "CNP payments/payments", "CNP shop/api", "CNP shop/web", "Pod shop/web-0"}
	if got := policies(s); !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("initial snapshot %q, want %q", got, want)
	}
	if msg := StatusMessage(s.invalid[0]); !strings.Contains(msg, "nodeSelector") {
		t.Errorf("invalid policy's error: %q", msg)
	}

	// Status from two nodes, and the invalid policy's error.
	w := NewStatusWriter(dyn)
	web := PolicyRef{Kind: api.KindCNP, Namespace: "shop", Name: "web"}
	for i, n := range []string{"node-1", "node-2"} {
		if err := w.Report(ctx, web, n, NodeStatus{OK: true, Enforcing: i == 0, Revision: uint64(10 + i), Annotations: map[string]string{"v": "1"}}); err != nil {
			t.Fatal(err)
		}
	}
	badRef := PolicyRef{Kind: api.KindCNP, Namespace: "shop", Name: "bad"}
	if err := w.Report(ctx, badRef, "node-1", NodeStatus{Invalid: true, Error: StatusMessage(s.invalid[0])}); err != nil {
		t.Fatal(err)
	}
	u, err := dyn.Resource(CNPResource).Namespace("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadPolicyStatus(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	if n1, n2 := st.Nodes["node-1"], st.Nodes["node-2"]; !n1.OK || !n1.Enforcing || n1.Revision != 10 || !n2.OK || n2.Enforcing || n2.Revision != 11 || n1.Annotations["v"] != "1" {
		t.Errorf("status %+v", st.Nodes)
	}
	status, _ := json.MarshalIndent(u.Object["status"], "", "  ")
	t.Logf("status of CiliumNetworkPolicy shop/web as stored:\n%s", status)
	// The Valid column, as kubectl get cnp shows it.
	if got := validColumn(t, cfg, "shop"); got["web"] != "True" || got["bad"] != "False" || got["api"] != "" {
		t.Errorf("Valid column %v", got)
	}

	// Status writes are not changes.
	select {
	case s := <-snaps:
		t.Fatalf("status writes delivered a snapshot %v", policies(s))
	case <-time.After(quiet):
	}

	// Restart the API server: the informers reconnect, relisting the same objects
	// delivers nothing, and changes made afterwards arrive.
	mu.Lock()
	before := calls
	mu.Unlock()
	env.RestartAPIServer()
	time.Sleep(2 * time.Second)
	mu.Lock()
	after := calls
	mu.Unlock()
	if after != before {
		t.Errorf("the restart alone delivered %d snapshots", after-before)
	}
	if err := dyn.Resource(CNPResource).Namespace("shop").Delete(ctx, "bad", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s = next("after the API server restart")
	if got := policies(s); !equality.Semantic.DeepEqual(got, want[1:]) {
		t.Fatalf("after deleting shop/bad: %q", got)
	}
}

// applyCiliumManifests creates every Cilium policy of the examples and the conformance
// suite with strict field validation, reads it back and compares: nothing may be rejected,
// pruned or changed (each is deleted afterwards, names repeat across cases).
func applyCiliumManifests(t *testing.T, kube kubernetes.Interface, dyn dynamic.Interface) {
	ctx := context.Background()
	ms := ciliumManifests(t)
	nss := map[string]bool{}
	for _, m := range ms {
		if m.namespace != "" && !nss[m.namespace] {
			nss[m.namespace] = true
			if _, err := kube.CoreV1().Namespaces().Create(ctx, namespace(m.namespace, "", nil), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	accepted, rejected := 0, 0
	for _, m := range ms {
		res := dyn.Resource(cnpResource(m.namespace)).Namespace(m.namespace)
		u := &unstructured.Unstructured{Object: deepCopyJSON(m.obj)}
		created, err := res.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"})
		if err != nil {
			rejected++
			if len(m.decodeErrs) == 0 {
				t.Errorf("%s: the API server rejects %s %s/%s: %v", m.where, m.kind, m.namespace, m.name, err)
			} else {
				t.Logf("%s: rejected (netward rejects it too): %v", m.where, err)
			}
			continue
		}
		accepted++
		for _, f := range []string{"spec", "specs"} {
			if !equality.Semantic.DeepEqual(created.Object[f], m.obj[f]) {
				a, _ := json.Marshal(m.obj[f])
				b, _ := json.Marshal(created.Object[f])
				t.Errorf("%s: %s stored differently:\n wrote  %s\n stored %s", m.where, f, a, b)
			}
		}
		if err := res.Delete(ctx, m.name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("the API server stored %d of %d Cilium policies unchanged, rejected %d", accepted, len(ms), rejected)
}

func createManifest(t *testing.T, dyn dynamic.Interface, m ciliumManifest) {
	t.Helper()
	u := &unstructured.Unstructured{Object: deepCopyJSON(m.obj)}
	if _, err := dyn.Resource(cnpResource(m.namespace)).Namespace(m.namespace).Create(context.Background(), u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
		t.Fatalf("%s: %v", m.where, err)
	}
}

// validColumn reads the CNPs of a namespace as kubectl get does (a Table) and returns the
// Valid column by name.
func validColumn(t *testing.T, cfg *rest.Config, ns string) map[string]string {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, cfg.Host+"/apis/cilium.io/v2/namespaces/"+ns+"/ciliumnetworkpolicies", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	col := -1
	for i, c := range table.ColumnDefinitions {
		if c.Name == "Valid" {
			col = i
		}
	}
	if col < 0 {
		t.Fatalf("no Valid column in %+v", table.ColumnDefinitions)
	}
	out := map[string]string{}
	for _, r := range table.Rows {
		name := fmt.Sprint(r.Cells[0])
		v, _ := r.Cells[col].(string)
		out[name] = v
	}
	return out
}

// applyInstall creates the objects of `netward install` (besides the CRDs, already there)
// with strict field validation: the API server accepts every one of them.
func applyInstall(t *testing.T, kube kubernetes.Interface) {
	y, err := InstallYAML(InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	strict := metav1.CreateOptions{FieldValidation: "Strict"}
	docs := installDocs(t, y)
	var (
		ns      corev1.Namespace
		sa      corev1.ServiceAccount
		role    rbacv1.ClusterRole
		binding rbacv1.ClusterRoleBinding
		cm      corev1.ConfigMap
		ds      appsv1.DaemonSet
	)
	steps := []struct {
		kind   string
		into   any
		create func() error
	}{
		{"Namespace", &ns, func() error { _, err := kube.CoreV1().Namespaces().Create(ctx, &ns, strict); return err }},
		{"ServiceAccount", &sa, func() error {
			_, err := kube.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, &sa, strict)
			return err
		}},
		{"ClusterRole", &role, func() error { _, err := kube.RbacV1().ClusterRoles().Create(ctx, &role, strict); return err }},
		{"ClusterRoleBinding", &binding, func() error {
			_, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &binding, strict)
			return err
		}},
		{"ConfigMap", &cm, func() error { _, err := kube.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, &cm, strict); return err }},
		{"DaemonSet", &ds, func() error { _, err := kube.AppsV1().DaemonSets(ds.Namespace).Create(ctx, &ds, strict); return err }},
	}
	for _, st := range steps {
		strictInto(t, docs[st.kind][0], st.into)
		if err := st.create(); err != nil {
			t.Errorf("the API server rejects the %s: %v", st.kind, err)
		}
	}
}
