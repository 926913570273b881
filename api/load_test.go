package api

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func errStrings(errs []error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func mustLoadBytes(t *testing.T, name, data string) *Objects {
	t.Helper()
	objs, errs := LoadBytes(name, []byte(data))
	if len(errs) > 0 {
		t.Fatalf("load errors: %q", errStrings(errs))
	}
	return objs
}

func TestLoadMultiDocumentYAML(t *testing.T) {
	// A leading separator does not start a document; a comment-only document counts but holds
	// no object.
	data := "---\n" +
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n" +
		"# only a comment\n---\n" +
		cnp(ing("{}")) + "---\n" +
		knp("{podSelector: {}}") + "...\n"
	objs := mustLoadBytes(t, "multi.yaml", data)
	if len(objs.Namespaces) != 1 || len(objs.CNPs) != 1 || len(objs.NetworkPolicies) != 1 {
		t.Fatalf("got %d namespaces, %d CNPs, %d NetworkPolicies", len(objs.Namespaces), len(objs.CNPs), len(objs.NetworkPolicies))
	}
	if got, want := objs.Namespaces[0].Source, (Source{File: "multi.yaml", Doc: 1}); got != want {
		t.Errorf("namespace source = %+v, want %+v", got, want)
	}
	if got, want := objs.CNPs[0].Source, (Source{File: "multi.yaml", Doc: 3}); got != want {
		t.Errorf("CNP source = %+v, want %+v", got, want)
	}
	if got, want := objs.NetworkPolicies[0].Source.Doc, 4; got != want {
		t.Errorf("NetworkPolicy document = %d, want %d", got, want)
	}
	cnp := objs.CNPs[0].Obj
	if cnp.Name != "p" || cnp.Namespace != "ns" || cnp.Spec == nil || cnp.Spec.EndpointSelector == nil || len(cnp.Spec.Ingress) != 1 {
		t.Errorf("CNP decoded wrongly: %+v", cnp)
	}
}

func TestLoadJSON(t *testing.T) {
	data := `{"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
  "metadata": {"name": "all"},
  "spec": {"endpointSelector": {}, "egress": [{"toEntities": ["world"], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]}}
{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}`
	objs := mustLoadBytes(t, "objs.json", data)
	if len(objs.CCNPs) != 1 || len(objs.Nodes) != 1 {
		t.Fatalf("got %d CCNPs, %d nodes", len(objs.CCNPs), len(objs.Nodes))
	}
	eg := objs.CCNPs[0].Obj.Spec.Egress
	if len(eg) != 1 || !slices.Equal(eg[0].ToEntities, []string{"world"}) || eg[0].ToPorts[0].Ports[0].Port != "443" {
		t.Errorf("CCNP decoded wrongly: %+v", eg)
	}
	if objs.Nodes[0].Source.Doc != 2 {
		t.Errorf("second JSON object is document %d, want 2", objs.Nodes[0].Source.Doc)
	}
}

func TestLoadList(t *testing.T) {
	data := `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: ns}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c, namespace: ns}
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicyList
  items:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: ns}
    spec: {endpointSelector: {}, ingress: [{}]}
`
	objs := mustLoadBytes(t, "list.yaml", data)
	if len(objs.Pods) != 1 || len(objs.CNPs) != 1 {
		t.Fatalf("got %d pods, %d CNPs", len(objs.Pods), len(objs.CNPs))
	}
	if got, want := objs.Pods[0].Source, (Source{File: "list.yaml", Doc: 1, Item: 1}); got != want {
		t.Errorf("pod source = %+v, want %+v", got, want)
	}
	if got, want := objs.Pods[0].Source.String(), "list.yaml (document 1, item 1)"; got != want {
		t.Errorf("pod source string = %q, want %q", got, want)
	}
	// A nested list numbers its items itself.
	if got, want := objs.CNPs[0].Source, (Source{File: "list.yaml", Doc: 1, Item: 1}); got != want {
		t.Errorf("CNP source = %+v, want %+v", got, want)
	}
	if want := []string{"list.yaml (document 1, item 2): skipped v1 ConfigMap ns/c (not a kind netward reads)"}; !slices.Equal(objs.Notes, want) {
		t.Errorf("notes = %q, want %q", objs.Notes, want)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.yaml":            cnp(ing("{}")),
		"sub/b.yml":         "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
		"sub/deeper/c.json": `{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}`,
		"sub/D.YAML":        knp("{podSelector: {}}"),
		"README.md":         "hello: world\n",
		"sub/notes.txt":     "not yaml: [",
		"sub/x.yaml.bak":    "not yaml: [",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objs, errs := Load([]string{dir}, nil)
	if len(errs) > 0 {
		t.Fatalf("load errors: %q", errStrings(errs))
	}
	if len(objs.CNPs) != 1 || len(objs.Namespaces) != 1 || len(objs.Nodes) != 1 || len(objs.NetworkPolicies) != 1 || len(objs.Pods) != 0 {
		t.Fatalf("got %d CNPs, %d namespaces, %d nodes, %d NetworkPolicies, %d pods",
			len(objs.CNPs), len(objs.Namespaces), len(objs.Nodes), len(objs.NetworkPolicies), len(objs.Pods))
	}
	if got, want := objs.Nodes[0].Source.File, filepath.Join(dir, "sub/deeper/c.json"); got != want {
		t.Errorf("node file = %q, want %q", got, want)
	}

	// A single file is read whatever its extension; a missing path is an error.
	objs, errs = Load([]string{filepath.Join(dir, "README.md"), filepath.Join(dir, "missing.yaml")}, nil)
	if len(objs.Notes) != 0 || len(errs) != 2 {
		t.Fatalf("got notes %q, errors %q", objs.Notes, errStrings(errs))
	}
	if !strings.Contains(errs[0].Error(), "README.md (document 1): object: kind: Required value") {
		t.Errorf("first error = %q, want the kind-less README object", errs[0])
	}
	if !os.IsNotExist(errs[1]) {
		t.Errorf("second error = %v, want not-exist", errs[1])
	}
}

func TestLoadStdin(t *testing.T) {
	in := strings.NewReader(cnp(ing("{}")) + "---\n" + ccnp(eg("{}")))
	objs, errs := Load([]string{"-"}, in)
	if len(errs) > 0 {
		t.Fatalf("load errors: %q", errStrings(errs))
	}
	if len(objs.CNPs) != 1 || len(objs.CCNPs) != 1 {
		t.Fatalf("got %d CNPs, %d CCNPs", len(objs.CNPs), len(objs.CCNPs))
	}
	if got, want := objs.CCNPs[0].Source, (Source{File: "-", Doc: 2}); got != want {
		t.Errorf("CCNP source = %+v, want %+v", got, want)
	}
}

func TestLoadSkipsUnknownKinds(t *testing.T) {
	data := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n---\n" +
		"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {bogus: 1}\n---\n" +
		"apiVersion: v1\nkind: ClusterRole\nmetadata: {name: r}\n"
	objs := mustLoadBytes(t, "app.yaml", data)
	want := []string{
		"app.yaml (document 1): skipped apps/v1 Deployment shop/web (not a kind netward reads)",
		"app.yaml (document 2): skipped v1 Service shop/web (not a kind netward reads)",
		"app.yaml (document 3): skipped v1 ClusterRole r (not a kind netward reads)",
	}
	if !slices.Equal(objs.Notes, want) {
		t.Errorf("notes:\n got %q\nwant %q", objs.Notes, want)
	}
}

// loadOneError loads data that must give exactly one error and no objects of that kind.
func loadOneError(t *testing.T, data string) string {
	t.Helper()
	objs, errs := LoadBytes("bad.yaml", []byte(data))
	if len(errs) != 1 {
		t.Fatalf("want exactly one error, got %q", errStrings(errs))
	}
	if len(objs.CNPs)+len(objs.CCNPs)+len(objs.NetworkPolicies) != 0 {
		t.Errorf("an undecodable policy must not be returned")
	}
	var oe *ObjectError
	if e, ok := errs[0].(*ObjectError); ok {
		oe = e
	}
	if oe == nil {
		t.Fatalf("want *ObjectError, got %T", errs[0])
	}
	return errs[0].Error()
}

func TestLoadRejectsOtherCiliumVersions(t *testing.T) {
	got := loadOneError(t, "apiVersion: cilium.io/v2alpha1\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: ns}\nspec: {}\n")
	want := `bad.yaml (document 1): CiliumNetworkPolicy ns/p: apiVersion: Unsupported value: "cilium.io/v2alpha1": supported values: "cilium.io/v2"`
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestLoadRejectsUnknownFields(t *testing.T) {
	got := loadOneError(t, cnp(eg(`{toEndpoints: [{}]}, {toPorts: [{ports: [{port: "80"}]}], toFQDN: [{matchName: x.com}]}`)))
	want := `bad.yaml (document 1): CiliumNetworkPolicy ns/p: spec.egress[1].toFQDN: Invalid value: null: unknown field (misspelt, or not in this kind's schema)`
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// Deny rules take ports only: L7 rules in them are not part of the schema.
	got = loadOneError(t, cnp(ingDeny(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}]}}]}`)))
	want = `bad.yaml (document 1): CiliumNetworkPolicy ns/p: spec.ingressDeny[0].toPorts[0].rules: Invalid value: null: unknown field (misspelt, or not in this kind's schema)`
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// NetworkPolicies are decoded strictly too.
	got = loadOneError(t, knp(`{podSelector: {}, ingress: [{form: [{podSelector: {}}]}]}`))
	if !strings.Contains(got, "spec.ingress[0].form: Invalid value: null: unknown field") {
		t.Errorf("got %q, want an unknown-field error for spec.ingress[0].form", got)
	}
}

func TestLoadNumericPortMustBeQuoted(t *testing.T) {
	got := loadOneError(t, cnp(ing(`{toPorts: [{ports: [{port: 80, protocol: TCP}]}]}`)))
	if !strings.Contains(got, "spec.ingress.toPorts.ports.port") ||
		!strings.Contains(got, "must be of type string, not number (quote it, as the cilium.io/v2 schema requires)") {
		t.Errorf("got %q, want the port path and a hint to quote it", got)
	}
}

func TestLoadPodStatus(t *testing.T) {
	objs := mustLoadBytes(t, "pod.yaml", `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  containers:
  - name: web
    image: nginx
    ports: [{name: http, containerPort: 8080}]
status:
  podIP: 10.0.1.7
  podIPs: [{ip: 10.0.1.7}, {ip: "fd00::7"}]
`)
	if len(objs.Pods) != 1 {
		t.Fatalf("got %d pods", len(objs.Pods))
	}
	pod := objs.Pods[0].Obj
	if pod.Status.PodIP != "10.0.1.7" || len(pod.Status.PodIPs) != 2 || pod.Status.PodIPs[1].IP != "fd00::7" {
		t.Errorf("status decoded wrongly: %+v", pod.Status)
	}
	if pod.Labels["app"] != "web" || pod.Spec.Containers[0].Ports[0].Name != "http" {
		t.Errorf("pod decoded wrongly: %+v", pod)
	}
}

func TestLoadBadInput(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"kind: [", "bad.yaml (document 1): not valid YAML or JSON"},
		{"- a\n- b\n", "bad.yaml (document 1): object: "},
		{"metadata: {name: x}\n", "bad.yaml (document 1): object x: kind: Required value: every object needs apiVersion and kind"},
	} {
		_, errs := LoadBytes("bad.yaml", []byte(tc.data))
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tc.want) {
			t.Errorf("LoadBytes(%q) = %q, want one error starting with %q", tc.data, errStrings(errs), tc.want)
		}
	}
}

// TestLoadYAMLBooleanName: YAML 1.1 reads an unquoted y as true; the error must say which
// field and how to fix it.
func TestLoadYAMLBooleanName(t *testing.T) {
	_, errs := LoadBytes("b.yaml", []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: y}\n"))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "b.yaml (document 1)") || !strings.Contains(errs[0].Error(), "metadata.namespace") || !strings.Contains(errs[0].Error(), "quote the value") {
		t.Fatalf("errs = %v", errs)
	}
}
