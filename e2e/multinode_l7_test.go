//go:build linux

package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/netward/netward/agent"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
)

// The L7 round of the multi-node tests: HTTP rules on ports no earlier round used (8181,
// 8182), so that the probes of the other rounds never meet the proxy.
//
//   - pay-http: pay's ingress admits ledger's GET /pay/... and POST /pay/charge with
//     X-Ledger: yes, and the shop namespace's GET /shop/a... on 8181 (an ingress redirect on
//     the node of the pay pod, whatever node the client is on); mon on 8182 at L4 only.
//   - web-http-out: web's egress admits GET /shop/(a|b) to pay on 8181 (an egress redirect on
//     the node of the web pod; with pay-http the connection is judged by two proxies on two
//     nodes: /shop/b passes the first and is denied by the second).
//   - prom-http-out: prom's egress admits GET /metrics to pay on 8182 (an egress redirect
//     whose upstream crosses nodes to a destination that does not redirect).
//   - web-http-out also has DNS rules for the pay pods on 8153 (a DNS server there): the
//     web pod's node's DNS proxy answers *.pay.local from the server on the other node and
//     refuses the rest.
const mnPoliciesL7 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: pay-http, namespace: pay}
spec:
  endpointSelector: {matchLabels: {app: pay}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: ledger}}]
    toPorts:
    - ports: [{port: "8181", protocol: TCP}]
      rules:
        http:
        - {method: GET, path: "/pay/.*"}
        - {method: POST, path: /pay/charge, headers: ["X-Ledger: yes"]}
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: shop}}]
    toPorts:
    - ports: [{port: "8181", protocol: TCP}]
      rules:
        http:
        - {method: GET, path: "/shop/a.*"}
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: mon}}]
    toPorts: [{ports: [{port: "8182", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: shop}}]
    toPorts: [{ports: [{port: "8153", protocol: ANY}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-http-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: pay, app: pay}}]
    toPorts:
    - ports: [{port: "8181", protocol: TCP}]
      rules:
        http:
        - {method: GET, path: "/shop/(a|b)"}
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: pay, app: pay}}]
    toPorts:
    - ports: [{port: "8153", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.pay.local"}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: prom-http-out, namespace: mon}
spec:
  endpointSelector: {matchLabels: {app: prom}}
  egress:
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: pay}}]
    toPorts:
    - ports: [{port: "8182", protocol: TCP}]
      rules:
        http:
        - {method: GET, path: /metrics}
`

// l7CrossNode applies mnPoliciesL7 through the API and sends HTTP between pods of
// different nodes (and of the same node, for comparison) over keep-alive connections:
// every outcome — 200 from the destination, 403 "Access denied" from either node's proxy,
// or a connection dropped at L3/L4 — must equal netward trace with the same request on the
// objects read back from the API, and an allowed request must reach the destination from
// the client's own address.
func (r *mnRun) l7CrossNode() {
	t, m := r.t, r.m
	r.apply(mnPoliciesL7, "CiliumNetworkPolicy pay/pay-http", "CiliumNetworkPolicy shop/web-http-out", "CiliumNetworkPolicy mon/prom-http-out")
	c := m.Cluster(r.ctx)
	places := map[string]Place{}
	for _, p := range m.Places() {
		places[p.Name] = p
	}
	dnsServers := map[string]*DNSServer{}
	for _, name := range []string{"pay/pay-1", "pay/pay-2"} {
		if p, ok := places[name]; ok {
			HTTPServe(t, p, 8181, 8182)
			dnsServers[name] = DNSServe(t, p, 8153)
		}
	}
	pay := []l7Request{
		get("/pay/x"), get("/other"), {method: "POST", path: "/pay/charge", headers: []string{"X-Ledger: yes"}},
		{method: "POST", path: "/pay/charge"}, get("/pay/y"), get("/shop/a"),
	}
	shop := []l7Request{get("/shop/a"), get("/shop/b"), get("/shop/c"), get("/shop/a1"), get("/pay/x")}
	metrics := []l7Request{get("/metrics"), get("/debug"), get("/metrics")}
	var sessions []l7Session
	for _, to := range []string{"pay/pay-1", "pay/pay-2"} {
		sessions = append(sessions,
			l7Session{from: "pay/ledger-1", to: to, port: 8181, reqs: pay},
			l7Session{from: "pay/ledger-1", to: to, port: 8181, h2c: true, reqs: pay[:3]},
			l7Session{from: "shop/web-1", to: to, port: 8181, reqs: shop},
			l7Session{from: "shop/web-2", to: to, port: 8181, reqs: shop},
			l7Session{from: "mon/prom-1", to: to, port: 8182, reqs: metrics},
			l7Session{from: "shop/db-1", to: to, port: 8181, reqs: shop[:1]},
			l7Session{from: "pay/ledger-1", to: to, port: 8182, reqs: metrics[:1]},
		)
	}
	counts := map[string]int{}
	cross, crossProxied := 0, 0
	events := map[string]map[l7EventKey]int{} // node -> events its proxy must report
	for _, s := range sessions {
		from, okFrom := places[s.from]
		to, okTo := places[s.to]
		if !okFrom || !okTo {
			continue // a pod of a removed node
		}
		sess := NewHTTPSession(from, to, s.port, s.h2c, 1500*time.Millisecond)
		var calls []HTTPCall
		for _, rq := range s.reqs {
			calls = append(calls, sess.Do(rq.method, rq.path, rq.headers...))
		}
		sess.Close()
		if r.nodeOf(from) != r.nodeOf(to) {
			cross += len(calls)
			for _, call := range calls {
				if call.Outcome == HTTPOK || call.Outcome == HTTPDenied {
					crossProxied++
				}
			}
			r.expectL7Events(c, s, from, to, calls, events)
		}
		checkL7Session(t, c, "L7 round", sess, s, calls, false, counts)
	}
	r.checkNodeL7Events(events)
	r.dnsCrossNode(c, places, dnsServers)
	t.Logf("L7 round: outcomes %v; %d requests between pods of different nodes, %d of them through a proxy", counts, cross, crossProxied)
	if counts[HTTPOK] == 0 || counts[HTTPDenied] == 0 || counts[HTTPDropped] == 0 || crossProxied == 0 {
		t.Errorf("the L7 round must see 200, 403 and dropped outcomes, and proxied requests across nodes: %v, %d across nodes", counts, crossProxied)
	}
	r.c = c
}

type l7EventKey struct{ src, dst, method, path, verdict string }

// expectL7Events adds the events the proxies must report for the calls of a session between
// pods of different nodes: the source node's proxy judges the source's egress rules, the
// destination node's proxy the destination's ingress rules (when the egress proxy let the
// request through).
func (r *mnRun) expectL7Events(c *cluster.Cluster, s l7Session, from, to Place, calls []HTTPCall, events map[string]map[l7EventKey]int) {
	add := func(node string, k l7EventKey) {
		if events[node] == nil {
			events[node] = map[l7EventKey]int{}
		}
		events[node][k]++
	}
	verdict := func(allowed bool) string {
		if allowed {
			return "allowed"
		}
		return "denied"
	}
	for j, call := range calls {
		rq := s.reqs[j]
		tr, err := TraceHTTP(c, from, to, s.port, rq.method, rq.path, rq.headers)
		if err != nil || ExpectHTTP(tr) != call.Outcome || (call.Outcome != HTTPOK && call.Outcome != HTTPDenied) {
			continue // checkL7Session reports the mismatch; dropped flows have no L7 event
		}
		k := l7EventKey{from.Addr.String(), to.Addr.String(), rq.method, rq.path, ""}
		if tr.Egress != nil && tr.Egress.HTTP != nil {
			k.verdict = verdict(tr.Egress.HTTP.Allowed)
			add(r.nodeOf(from), k)
			if !tr.Egress.HTTP.Allowed {
				continue
			}
		}
		if tr.Ingress != nil && tr.Ingress.HTTP != nil {
			k.verdict = verdict(tr.Ingress.HTTP.Allowed)
			add(r.nodeOf(to), k)
		}
	}
}

// checkNodeL7Events finds every expected event on the /v1/events of the node's own agent.
func (r *mnRun) checkNodeL7Events(want map[string]map[l7EventKey]int) {
	t := r.t
	t.Helper()
	total := 0
	for node, keys := range want {
		cl := r.m.Node(node).Client
		var missing []string
		for deadline := time.Now().Add(10 * time.Second); ; {
			got := map[l7EventKey]int{}
			ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
			err := cl.Events(ctx, agent.EventFilter{}, func(ev agent.Event) error {
				if ev.L7Protocol == "http" {
					got[l7EventKey{ev.Source.IP, ev.Destination.IP, ev.HTTPMethod, ev.HTTPPath, ev.HTTPVerdict}]++
				}
				return nil
			})
			cancel()
			if err != nil {
				t.Fatalf("%s: events: %v", node, err)
			}
			missing = missing[:0]
			for k, n := range keys {
				if got[k] < n {
					missing = append(missing, fmt.Sprintf("%s -> %s %s %s %s (%d of %d)", k.src, k.dst, k.method, k.path, k.verdict, got[k], n))
				}
			}
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: requests its proxy judged without an event on its /v1/events:\n  %s", node, strings.Join(missing, "\n  "))
		}
		for _, n := range keys {
			total += n
		}
	}
	t.Logf("L7 round: %d verdicts on requests between nodes, each found on the judging node's /v1/events", total)
	if total == 0 {
		t.Error("no cross-node request was judged by a proxy: the event check proves nothing")
	}
}

// dnsCrossNode sends DNS lookups (UDP, and TCP on one connection) from the web pods to the
// DNS servers on the pay pods: each outcome must equal trace --dns-name, allowed lookups must
// reach the server from the client's address, refused ones never.
func (r *mnRun) dnsCrossNode(c *cluster.Cluster, places map[string]Place, servers map[string]*DNSServer) {
	t := r.t
	t.Helper()
	names := []string{"a.pay.local", "x.y.pay.local", "evil.io"}
	var id uint16
	outcomes := map[string]int{}
	crossAnswered, crossRefused := 0, 0
	for _, fromName := range []string{"shop/web-1", "shop/web-2"} {
		for toName, srv := range servers {
			from, okFrom := places[fromName]
			to, okTo := places[toName]
			if !okFrom || !okTo {
				continue
			}
			sess, err := NewDNSTCPSession(from, to, 8153, 1500*time.Millisecond)
			for _, name := range names {
				for _, proto := range []uint8{policy.ProtoUDP, policy.ProtoTCP} {
					id++
					var l DNSLookup
					switch {
					case proto == policy.ProtoUDP:
						l = LookupUDP(from, to, 8153, name, id, 3*time.Second)
					case err != nil:
						l = DNSLookup{Name: name, Proto: "tcp", Outcome: DNSNoAnswer, Err: err}
					default:
						l = sess.Lookup(name, id, 3*time.Second)
					}
					outcomes[l.Outcome]++
					want := judgeLookup(t, c, "L7 round", srv, from, to, proto, 8153, l)
					if r.nodeOf(from) != r.nodeOf(to) {
						switch want {
						case DNSAnswered:
							crossAnswered++
						case DNSRefused:
							crossRefused++
						}
					}
				}
				srv.Reset()
			}
			if sess != nil {
				sess.Close()
			}
		}
	}
	t.Logf("L7 round: DNS lookups %v; between nodes %d answered through the DNS proxy, %d refused", outcomes, crossAnswered, crossRefused)
	if crossAnswered == 0 || crossRefused == 0 {
		t.Errorf("the L7 round must see DNS lookups answered and refused across nodes: %d answered, %d refused", crossAnswered, crossRefused)
	}
}
