package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netward/netward/agent"
)

// statusAgent serves one status answer and the /healthz verdict that goes with it on a
// unix socket.
func statusAgent(t *testing.T, st agent.Status, health string, healthy bool) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nwst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) { json.NewEncoder(w).Encode(st) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(health))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestStatusCommand(t *testing.T) {
	at := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	cluster := agent.Status{Node: "node-1", Kubernetes: "prod", PolicyRevision: 12, Enforcing: "current",
		Endpoints: 3, DatapathLoaded: true, Identities: 9, IPCacheEntries: 14, LastGoodLoad: &at, StatusPending: 2,
		InvalidPolicies: []agent.ObjectIssue{{Object: "CiliumNetworkPolicy shop/bad", Field: "spec.ingress[0].fromCIDR[0]", Message: "not a CIDR"}},
		Proxy: &agent.ProxyStatus{HTTPIngressPort: 15100, HTTPEgressPort: 15101, DNSPort: 15105, HTTPOpenConnections: 7, HTTPRefusedConnections: 1,
			DNSInFlight: 2, DNSTCPConnections: 3, DNSDropped: 4}}
	out, errOut, code := run(t, "", "status", "--api-socket", statusAgent(t, cluster, "ok: enforcing the current policy set", true))
	for _, want := range []string{"source:      cluster prod", "enforcing:   current, policy revision 12 (applied 2026-11-25T21:00:00Z)",
		"2 policy status entries to write", "1 invalid policy issue(s)", "CiliumNetworkPolicy shop/bad: spec.ingress[0].fromCIDR[0]: not a CIDR",
		"L7 proxies:  HTTP on 15100 (ingress) and 15101 (egress), 7 open connections (1 refused since start); DNS on 15105, 2 lookups in flight, 3 TCP connections (4 dropped since start)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("healthy agent: exit %d %s", code, errOut)
	}

	dir := agent.Status{Node: "node-2", PoliciesDir: "/etc/netward", Enforcing: "none", DatapathLoaded: true,
		LastError: &agent.PolicyError{Time: at, Message: "1 problem(s) in /etc/netward; nothing of it was applied",
			Errors: []agent.ObjectIssue{{File: "/etc/netward/p.yaml", Document: 2, Object: "CiliumNetworkPolicy shop/x", Field: "spec.egres", Message: "unknown field"}}}}
	out, errOut, code = run(t, "", "status", "--api-socket", statusAgent(t, dir, "not ready: no valid policy set loaded", false))
	if code != 1 || !strings.Contains(errOut, "not ready: no valid policy set loaded") || !strings.Contains(out, "source:      directory /etc/netward") || !strings.Contains(out, "/etc/netward/p.yaml (document 2): CiliumNetworkPolicy shop/x: spec.egres: unknown field") ||
		strings.Contains(out, "status entries") || strings.Contains(out, "L7 proxies") {
		t.Errorf("unhealthy directory agent: exit %d\n%s", code, out)
	}
	out, _, code = run(t, "", "status", "--api-socket", statusAgent(t, cluster, "ok", true), "-o", "json")
	var got agent.Status
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.PolicyRevision != 12 || len(got.InvalidPolicies) != 1 {
		t.Errorf("json: exit %d %q", code, out)
	}
}
