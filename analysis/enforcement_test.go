package analysis_test

import (
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/policy"
)

// Trace follows Cilium's semantics, and says where netward's datapath decides otherwise: a
// redirect to a proxy netward does not have (DNS here) is allowed by Cilium's rules but
// denied by netward's agent; an HTTP redirect is enforced as traced.
func TestTraceSaysWhereNetwardEnforcesOtherwise(t *testing.T) {
	c := build(t, `apiVersion: v1
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
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]`)
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
