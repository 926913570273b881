//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestL7DatapathThroughput measures HTTP through the real redirect (pod -> BPF -> TPROXY ->
// the agent's proxy -> pod) against the same traffic without a redirect (pod -> BPF -> pod,
// no policy), keep-alive, with 1 and 16 concurrent net/http clients in the client pod's
// namespace. It is a measurement, not a check: it runs only with NETWARD_BENCH_L7=1 (as
// root) and logs a Markdown table (docs/l7-proxy.md, "Through the datapath").
//
//	NETWARD_BENCH_L7=1 go test ./e2e -run TestL7DatapathThroughput -v -count=1
func TestL7DatapathThroughput(t *testing.T) {
	if os.Getenv("NETWARD_BENCH_L7") == "" {
		t.Skip("SKIPPED: a measurement; set NETWARD_BENCH_L7=1 to run it")
	}
	h := New(t, Config{})
	h.SetCluster("testdata/l7/cluster")
	empty := t.TempDir()
	h.SetPolicies(empty)
	ag := startAgent(t, h)
	written := h.AddPods()
	ag.Settle(t, written)
	places := map[string]Place{}
	for _, p := range h.Places() {
		places[p.Name] = p
	}
	client, api := places["shop/client"], places["shop/api"]
	HTTPServe(t, api, 80)

	policies := map[string]string{
		"ingress redirect": `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/bench.*"}]}}]
`,
		"egress redirect": `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: api}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/bench.*"}]}}]
`,
	}
	n := 20000
	type row struct {
		path     string
		clients  int
		rps      float64
		p50, p99 time.Duration
	}
	var rows []row
	for _, path := range []string{"direct", "ingress redirect", "egress redirect"} {
		dir := t.TempDir()
		if y, ok := policies[path]; ok {
			if err := os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(y), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if path != "direct" { // the agent starts without policies: direct is the first row
			changed := time.Now()
			h.SetPolicies(dir)
			ag.Settle(t, changed)
		}
		// A denied request tells whether the proxy is in the path.
		probe := NewHTTPSession(client, api, 80, false, 2*time.Second)
		check := probe.Do("GET", "/not-bench").Outcome
		probe.Close()
		if want := map[bool]string{true: HTTPOK, false: HTTPDenied}[path == "direct"]; check != want {
			t.Fatalf("%s: a request outside the rules got %s, want %s", path, check, want)
		}
		for _, conc := range []int{1, 16} {
			var (
				mu   sync.Mutex
				lat  []time.Duration
				wg   sync.WaitGroup
				fail string
			)
			per := n / conc
			start := time.Now()
			for c := 0; c < conc; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := NewHTTPSession(client, api, 80, false, 2*time.Second)
					defer s.Close()
					mine := make([]time.Duration, 0, per)
					for i := 0; i < per; i++ {
						t0 := time.Now()
						call := s.Do("GET", "/bench")
						mine = append(mine, time.Since(t0))
						if call.Outcome != HTTPOK {
							mu.Lock()
							fail = fmt.Sprintf("%s: %v", call.Outcome, call.Err)
							mu.Unlock()
							return
						}
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			if fail != "" {
				t.Fatalf("%s, %d clients: %s", path, conc, fail)
			}
			slices.Sort(lat)
			rows = append(rows, row{path: path, clients: conc, rps: float64(len(lat)) / elapsed.Seconds(),
				p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nHTTP/1.1 GET keep-alive, client pod -> server pod on one node, %d requests per row\n\n", n)
	b.WriteString("| path | clients | req/s | vs direct | p50 | p99 | added p99 |\n|---|---:|---:|---:|---:|---:|---:|\n")
	direct := map[int]row{}
	for _, r := range rows {
		if r.path == "direct" {
			direct[r.clients] = r
		}
		d := direct[r.clients]
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f%% | %d µs | %d µs | %+d µs |\n", r.path, r.clients, r.rps, 100*r.rps/d.rps,
			r.p50.Microseconds(), r.p99.Microseconds(), (r.p99 - d.p99).Microseconds())
	}
	t.Log(b.String())
}
