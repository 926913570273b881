package api

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadValidate feeds arbitrary bytes through LoadBytes and Validate. Neither may panic, and
// every error either returns must say something.
func FuzzLoadValidate(f *testing.F) {
	seeds := []string{
		cnp(ing(`{fromEndpoints: [{matchLabels: {app: web}}], toPorts: [` + httpTCP80 + `]}`)),
		cnp(eg(`{toFQDNs: [{matchPattern: "*.example.com"}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}, {toEndpoints: [{}], toPorts: [` + dnsUDP53 + `]}`)),
		ccnp(`{nodeSelector: {}, ingress: [{fromCIDRSet: [{cidr: "10.0.0.0/8", except: ["10.1.0.0/16"]}]}], egressDeny: [{toEntities: [world]}]}`),
		knp(`{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "10.0.0.0/8", except: ["10.0.0.0/9"]}}], ports: [{port: 80, endPort: 90}]}]}`),
		// invalid ones
		cnp(`{nodeSelector: {}, endpointSelector: {matchExpressions: [{key: a, operator: In}]}, ingress: [{fromEndpoints: [null], fromCIDR: ["x"], icmps: [{fields: [{type: Foo}, {}]}], toPorts: [{ports: [{port: "0"}], rules: {http: [{path: "("}], dns: [{}], kafka: [{}]}, listener: {envoyConfig: {}, name: ""}}]}]}`),
		cnp(eg(`{toServices: [{k8sServiceSelector: {}}, {k8sService: 1}], toGroups: [{aws: []}], toCIDRSet: [{}, {cidr: "::/0", except: ["10.0.0.0/8", ""]}]}`)),
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n  status: {podIP: x, podIPs: [{ip: y}]}\n",
		"apiVersion: v1\nkind: Node\nmetadata: {}\nstatus: {addresses: [{type: InternalIP, address: \"\"}]}\n",
		`{"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p"}, "specs": [{}, null]}`,
		"---\n---\n",
		"",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// The realistic valid manifests too.
	files, _ := filepath.Glob("testdata/valid/*")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, loadErrs := LoadBytes("fuzz.yaml", data)
		if objs == nil {
			t.Fatal("LoadBytes returned nil objects")
		}
		for _, err := range loadErrs {
			if err == nil || err.Error() == "" {
				t.Fatalf("load error without text: %#v", err)
			}
		}
		for _, err := range Validate(objs) {
			if err == nil || err.Error() == "" {
				t.Fatalf("validation error without text: %#v", err)
			}
			oe, ok := err.(*ObjectError)
			if !ok || len(oe.Errs) == 0 {
				t.Fatalf("validation error is not an ObjectError with field errors: %#v", err)
			}
		}
	})
}
