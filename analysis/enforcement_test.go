package analysis_test

import (
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/policy"
)

// dnsAndHTTP: app may query dns on 53/UDP with DNS rules, and GET on 80/TCP.
const dnsAndHTTP = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: shop, labels: {app: app}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: dns, namespace: shop, labels: {app: dns}}
status: {podIP: 10.0.0.2}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: app-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: app}}
  egress:
  - toEndpoints: [{matchLabels: {app: dns}}]
    toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]
  - toEndpoints: [{matchLabels: {app: dns}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]`

// Trace follows Cilium's semantics, and says where netward's datapath decides otherwise: a
// redirect to a proxy netward does not have (DNS here) is allowed by Cilium's rules but
// denied by netward's agent; an HTTP redirect is enforced as traced.
func TestTraceSaysWhereNetwardEnforcesOtherwise(t *testing.T) {
	c := build(t, dnsAndHTTP)
	for _, tc := range []struct {
		proto uint8
		port  uint16
		note  string
	}{{policy.ProtoUDP, 53, "no dns proxy"}, {policy.ProtoTCP, 80, ""}} {
		r, err := analysis.Trace(c, analysis.Flow{From: "shop/app", To: "shop/dns", Proto: tc.proto, Port: tc.port})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Egress.Allowed {
			t.Errorf("port %d: Cilium's semantics allow it: %s", tc.port, r.Egress.Reason)
		}
		if tc.note == "" && r.Egress.Enforcement != "" || !strings.Contains(r.Egress.Enforcement, tc.note) {
			t.Errorf("port %d: enforcement note %q, want %q", tc.port, r.Egress.Enforcement, tc.note)
		}
	}
}

// Audit reports the same gap before anyone deploys: NW104 for the DNS rule, nothing of the
// kind for the HTTP rule.
func TestAuditReportsL7RulesWithoutProxy(t *testing.T) {
	var got []analysis.Finding
	for _, f := range analysis.Audit(build(t, dnsAndHTTP), nil) {
		if f.Code == analysis.CodeL7NoProxy {
			got = append(got, f)
		}
	}
	if len(got) != 1 {
		t.Fatalf("NW104 findings: %+v, want one", got)
	}
	f := got[0]
	if len(f.Objects) != 1 || !strings.Contains(f.Objects[0], "app-out") || !strings.Contains(f.Objects[0], "egress[0]") ||
		len(f.Pods) != 1 || f.Pods[0] != "shop/app" || !strings.Contains(f.Explanation, "UDP 53") || strings.Contains(f.Explanation, "TCP 80") {
		t.Errorf("NW104: %+v", f)
	}
}
