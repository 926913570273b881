package analysis_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/policy"
)

// dnsAndHTTP: app may query dns on 53/UDP with DNS rules, GET on 80/TCP, and TLS to
// api.example.com on 443 (SNI rule).
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
    toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*.example.com"}, {matchName: shop.svc.cluster.local}]}}]
  - toEndpoints: [{matchLabels: {app: dns}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  - toEndpoints: [{matchLabels: {app: dns}}]
    toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [api.example.com]}]`

// Trace follows Cilium's semantics, and says where netward's datapath decides otherwise: a
// redirect to a proxy netward does not have (TLS here) is allowed by Cilium's rules but
// denied by netward's agent; HTTP and egress DNS redirects are enforced as traced.
func TestTraceSaysWhereNetwardEnforcesOtherwise(t *testing.T) {
	c := build(t, dnsAndHTTP)
	for _, tc := range []struct {
		proto uint8
		port  uint16
		note  string
	}{{policy.ProtoTCP, 443, "no tls proxy"}, {policy.ProtoUDP, 53, ""}, {policy.ProtoTCP, 80, ""}} {
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

// Audit reports the same gap before anyone deploys: NW104 for the TLS rule, nothing of the
// kind for the HTTP and DNS rules.
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
	if len(f.Objects) != 1 || !strings.Contains(f.Objects[0], "app-out") || !strings.Contains(f.Objects[0], "egress[2]") ||
		len(f.Pods) != 1 || f.Pods[0] != "shop/app" || !strings.Contains(f.Explanation, "TCP 443") ||
		strings.Contains(f.Explanation, "TCP 80") || strings.Contains(f.Explanation, "UDP 53") {
		t.Errorf("NW104: %+v", f)
	}
}

// Trace judges a DNS lookup as the agent's DNS proxy does (semantics doc §1.4 rules.dns,
// §2.5): the name against every rule for the port and peer; a refused name denies the flow.
func TestTraceDNSLookup(t *testing.T) {
	c := build(t, dnsAndHTTP)
	for _, tc := range []struct {
		name    string
		allowed bool
		matched string
	}{
		{"api.example.com", true, "matchPattern: *.example.com"},
		{"API.Example.COM.", true, "matchPattern: *.example.com"},
		{"shop.svc.cluster.local", true, "matchName: shop.svc.cluster.local"},
		{"a.b.example.com", false, ""},
		{"example.com", false, ""},
	} {
		r, err := analysis.Trace(c, analysis.Flow{From: "shop/app", To: "shop/dns", Proto: policy.ProtoUDP, Port: 53, DNS: tc.name})
		if err != nil {
			t.Fatal(err)
		}
		d := r.Egress.DNS
		if d == nil {
			t.Fatalf("%s: no DNS decision: %s", tc.name, r.Reason)
		}
		if d.Allowed != tc.allowed || r.Allowed != tc.allowed || len(d.Rules) != 2 || d.Name != strings.ToLower(strings.TrimSuffix(tc.name, "."))+"." {
			t.Errorf("%s: %+v (flow allowed %v), want allowed %v with 2 rules considered", tc.name, d, r.Allowed, tc.allowed)
		}
		if tc.allowed && (len(d.Matched) != 1 || !strings.HasSuffix(d.Matched[0], tc.matched)) {
			t.Errorf("%s: matched %v, want %q", tc.name, d.Matched, tc.matched)
		}
		if !tc.allowed && !strings.Contains(r.Reason, "REFUSED") {
			t.Errorf("%s: reason %q does not say the lookup is refused", tc.name, r.Reason)
		}
	}
}

// The matrix names the DNS rules of a DNS redirect, as it does HTTP rules: a port whose
// lookups are restricted lists the rules; one where some rule admits every name says so.
func TestMatrixShowsDNSRules(t *testing.T) {
	c := build(t, dnsAndHTTP)
	m, err := analysis.BuildMatrix(context.Background(), c, analysis.MatrixOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, cn := range m.Connections {
		if cn.From.Namespace == "shop" && strings.Contains(cn.From.Name, "app") && strings.Contains(cn.To.Name, "dns") {
			for _, p := range cn.Ports {
				got = append(got, p.String())
			}
		}
	}
	want := "UDP 53 [DNS matchName: shop.svc.cluster.local | matchPattern: *.example.com]"
	if !slices.Contains(got, want) {
		t.Fatalf("app -> dns: %q, want %q among them", got, want)
	}
}
