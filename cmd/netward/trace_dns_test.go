package main

import (
	"strings"
	"testing"
)

const dnsPolicyCluster = `apiVersion: v1
kind: Pod
metadata: {name: app, namespace: x, labels: {app: app}}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: dns, namespace: x, labels: {app: dns}}
status: {podIP: 10.1.0.2}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: app-dns, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: app}}
  egress:
  - toEndpoints: [{matchLabels: {app: dns}}]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules: {dns: [{matchPattern: "*.example.com"}]}
`

func TestTraceDNSName(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "all.yaml", dnsPolicyCluster)
	trace := func(args ...string) (string, string, int) {
		return run(t, "", append([]string{"trace", "-f", dir, "--from", "x/app", "--to", "x/dns"}, args...)...)
	}
	out, _, code := trace("--port", "53/UDP", "--dns-name", "api.example.com")
	if code != 0 || !strings.Contains(out, "ALLOW") || !strings.Contains(out, "dns rule:   CiliumNetworkPolicy x/app-dns spec.egress[0]: matchPattern: *.example.com") ||
		!strings.Contains(out, "DNS lookup of api.example.com. admitted by") || strings.Contains(out, "netward:") {
		t.Errorf("allowed lookup: code %d\n%s", code, out)
	}
	out, _, code = trace("--port", "53/TCP", "--dns-name", "evil.io")
	if code != 0 || !strings.Contains(out, "DENY") || !strings.Contains(out, "REFUSED") {
		t.Errorf("refused lookup: code %d\n%s", code, out)
	}
	for _, bad := range [][]string{
		{"--port", "53/UDP", "--dns-name", "a b.io"},
		{"--port", "0/ICMP", "--dns-name", "a.io"},
		{"--port", "53/TCP", "--dns-name", "a.io", "--http-method", "GET", "--http-path", "/"},
	} {
		if _, errOut, code := trace(bad...); code != 2 || !strings.Contains(errOut, "dns-name") {
			t.Errorf("%v: code %d stderr %q, want a usage error naming --dns-name", bad, code, errOut)
		}
	}
}

func TestCheckDNSLines(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "all.yaml", dnsPolicyCluster)
	exp := writeFile(t, t.TempDir(), "e.tsv", `x/app x/dns 53/UDP allow dns api.example.com
x/app x/dns 53/TCP deny  dns example.com
x/app x/dns 53/UDP allow dns evil.io
`)
	out, _, code := run(t, "", "check", "-f", dir, "--expect", exp)
	if code != 1 || !strings.Contains(out, "2 passed, 1 failed") || !strings.Contains(out, "dns evil.io") {
		t.Errorf("code %d\n%s", code, out)
	}
}
