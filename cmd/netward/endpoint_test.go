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

// stubAgent serves canned answers of the agent API on a unix socket.
func stubAgent(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nwcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "node-1.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ep := agent.Endpoint{ID: 3, ContainerID: "abc", Pod: "shop/web", Namespace: "shop", Name: "web", IPs: []string{"10.244.1.5"},
		Identity: 4242, Labels: []string{"k8s:app=web"}, HostIfName: "nw123", Netns: "/var/run/netns/web", PolicyRevision: 7,
		IngressEnforced: true, IngressDefaultDeny: true, MapEntries: 1, KnownPod: true, State: "enforcing"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]agent.Endpoint{ep})
	})
	mux.HandleFunc("GET /v1/endpoints/{key...}", func(w http.ResponseWriter, r *http.Request) {
		if k := r.PathValue("key"); k != "shop/web" && k != "3" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": "no endpoint " + k})
			return
		}
		e := ep
		e.Map = []agent.MapEntry{{Key: "ingress peer=300 proto=TCP port=80", Verdict: "allow", Origins: []string{"CiliumNetworkPolicy shop/web-in spec.ingress[0]"}}}
		json.NewEncoder(w).Encode(e)
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		evs := []agent.Event{
			{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Node: "node-1", Source: agent.Peer{Pod: "shop/client", IP: "10.244.1.6", Identity: 300, Kind: "pod"},
				Destination: agent.Peer{Pod: "shop/web", IP: "10.244.1.5", Identity: 4242, Kind: "pod"}, Proto: "TCP", Port: 80, Direction: "ingress",
				Endpoint: "shop/web", Verdict: "forwarded", Reason: "forwarded-policy", Origins: []string{"CiliumNetworkPolicy shop/web-in spec.ingress[0]"}},
			{Time: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC), Node: "node-1", Source: agent.Peer{IP: "8.8.8.8", Identity: 2, Kind: "world"},
				Destination: agent.Peer{Pod: "shop/web", IP: "10.244.1.5", Identity: 4242, Kind: "pod"}, Proto: "ICMP", Port: 8, Direction: "ingress",
				Endpoint: "shop/web", Verdict: "dropped", Reason: "dropped-default-deny", Origins: []string{"default deny: selected by CiliumNetworkPolicy shop/web-in spec.ingress[0]"}},
		}
		enc := json.NewEncoder(w)
		for _, ev := range evs {
			if v := r.URL.Query().Get("verdict"); v != "" && ev.Verdict != v {
				continue
			}
			enc.Encode(ev)
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestEndpointCommands(t *testing.T) {
	sock := stubAgent(t)
	out, errOut, code := run(t, "", "endpoint", "list", "--api-socket", sock)
	if code != 0 || !strings.Contains(out, "shop/web") || !strings.Contains(out, "4242") || !strings.Contains(out, "enforced") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	out, _, code = run(t, "", "endpoint", "list", "--api-socket", sock, "-o", "json")
	var eps []agent.Endpoint
	if code != 0 || json.Unmarshal([]byte(out), &eps) != nil || len(eps) != 1 || eps[0].Identity != 4242 {
		t.Fatalf("list json: %d %q", code, out)
	}
	out, _, code = run(t, "", "endpoint", "get", "shop/web", "--api-socket", sock)
	if code != 0 || !strings.Contains(out, "identity:   4242 k8s:app=web") || !strings.Contains(out, "CiliumNetworkPolicy shop/web-in") {
		t.Fatalf("get: %d %q", code, out)
	}
	_, errOut, code = run(t, "", "endpoint", "get", "shop/nope", "--api-socket", sock)
	if code != 1 || !strings.Contains(errOut, "no endpoint shop/nope") {
		t.Fatalf("get unknown: %d %q", code, errOut)
	}
	_, errOut, code = run(t, "", "endpoint", "list", "--api-socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != 1 || !strings.Contains(errOut, "none.sock") {
		t.Fatalf("no agent: %d %q", code, errOut)
	}
}

func TestObserveCommand(t *testing.T) {
	sock := stubAgent(t)
	out, errOut, code := run(t, "", "observe", "--api-socket", sock, "--follow=false")
	if code != 0 {
		t.Fatalf("observe: %d %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "shop/client (300) -> shop/web (4242) 80/TCP ingress FORWARDED (forwarded-policy) by CiliumNetworkPolicy shop/web-in") ||
		!strings.Contains(lines[1], "world 8.8.8.8 (2) -> shop/web (4242) ICMP type 8 ingress DROPPED (dropped-default-deny) by default deny: selected by") {
		t.Fatalf("observe text:\n%s", out)
	}
	out, _, code = run(t, "", "observe", "--api-socket", sock, "--follow=false", "--verdict", "dropped", "-o", "json")
	var ev agent.Event
	if code != 0 || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &ev) != nil || ev.Verdict != "dropped" || ev.Source.IP != "8.8.8.8" {
		t.Fatalf("observe json: %d %q", code, out)
	}
	if _, _, code := run(t, "", "observe", "--api-socket", sock, "--verdict", "maybe"); code != 2 {
		t.Errorf("bad verdict: exit %d", code)
	}
}
