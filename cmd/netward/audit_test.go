package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAuditShopText(t *testing.T) {
	out, _, code := run(t, "", "audit", "-f", example)
	if code != 0 {
		t.Fatalf("warnings only, default --fail-on error: code %d\n%s", code, out)
	}
	for _, want := range []string{
		"WARNING NW101: HTTP rules made ineffective",
		"objects:  CiliumNetworkPolicy shop/api spec.ingress[1]",
		"NetworkPolicy shop/allow-monitoring spec.ingress[0].from[0]",
		"pods:     shop/api-5c6b7-fghij",
		"monitoring/prometheus-0",
		"finding(s): 0 error,",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, _, code = run(t, "", "audit", "-f", example, "--fail-on", "warning")
	if code != 1 {
		t.Errorf("--fail-on warning: code %d, want 1", code)
	}
}

func TestAuditJSON(t *testing.T) {
	out, _, code := run(t, "", "audit", "-f", example, "-o", "json", "--fail-on", "info")
	if code != 1 {
		t.Fatalf("code %d", code)
	}
	var rep struct {
		Findings []struct {
			Code, Severity, Title, Explanation string
			Objects, Pods                      []string
		}
		Summary map[string]int
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Findings) == 0 || rep.Findings[0].Code != "NW101" || rep.Findings[0].Severity != "warning" {
		t.Fatalf("findings: %+v", rep.Findings)
	}
	if rep.Summary["warning"] != len(rep.Findings) || rep.Summary["error"] != 0 {
		t.Errorf("summary %v for %d findings", rep.Summary, len(rep.Findings))
	}
}

func TestAuditErrorFindingFails(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.yaml", `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
status: {podIP: 10.1.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
status: {podIP: 10.1.1.2}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: mixed, namespace: x}
spec:
  endpointSelector: {}
  egress:
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system}}]
    toPorts: [{ports: [{port: "53", protocol: TCP}], rules: {dns: [{matchPattern: "*"}]}}]
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system}}]
    toPorts: [{ports: [{port: "53", protocol: TCP}], rules: {http: [{method: GET}]}}]
`)
	out, _, code := run(t, "", "audit", "-f", dir)
	if code != 1 || !strings.Contains(out, "ERROR NW103") || !strings.Contains(out, "CiliumNetworkPolicy x/mixed spec.egress[1]") {
		t.Fatalf("code %d\n%s", code, out)
	}
	if !strings.HasPrefix(out, "ERROR NW103") {
		t.Errorf("errors must come first:\n%s", out)
	}
}

func TestAuditInvalidInput(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.yaml", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromCIDR: ["10.0.0.300/8"]
`)
	_, errOut, code := run(t, "", "audit", "-f", dir)
	if code != 2 || !strings.Contains(errOut, "spec.ingress[0].fromCIDR[0]") {
		t.Errorf("invalid policy: code %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{
		{"audit", "-f", example, "--fail-on", "fatal"},
		{"audit", "-f", example, "-o", "yaml"},
		{"audit"},
	} {
		if _, _, code := run(t, "", args...); code != 2 {
			t.Errorf("%v: code %d, want 2", args, code)
		}
	}
}
