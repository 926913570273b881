//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netward/netward/agent"
	"github.com/netward/netward/analysis"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/cni/cnitest"
	"github.com/netward/netward/policy"
)

// l7Request is one request of a session.
type l7Request struct {
	method, path string
	headers      []string
}

func get(path string) l7Request { return l7Request{method: "GET", path: path} }

// l7Session is a series of requests on one client connection.
type l7Session struct {
	from, to string // place names
	port     uint16
	h2c      bool
	reqs     []l7Request
}

// TestL7EndToEnd is the judged L7 test: the real agent runs its proxy in the node's
// namespace, pods attached by the real plugin send real HTTP (net/http, several requests
// per keep-alive connection, and h2c) through the datapath's redirects, egress and
// ingress; every outcome (200 from the destination, 403 "Access denied" from the proxy, or
// a connection dropped at L3/L4) must equal netward trace with the same request, and every
// proxied request must appear on /v1/events. Then the policies change and the requests are
// sent again on the connections opened before the change.
func TestL7EndToEnd(t *testing.T) {
	h := New(t, Config{})
	h.SetCluster("testdata/l7/cluster")
	h.SetPolicies("testdata/l7/policies-1")
	ag := startAgent(t, h)
	written := h.AddPods()
	ag.Settle(t, written)

	places := map[string]Place{}
	for _, p := range h.Places() {
		places[p.Name] = p
	}
	world := h.Config.World.String()
	HTTPServe(t, places["shop/api"], 80, 8080, 9090)
	HTTPServe(t, places["shop/legacy"], 80, 8080)
	HTTPServe(t, places["shop/open"], 80, 8080, agent.DefaultProxyBasePort)
	HTTPServe(t, places[world], 80)

	sessions := []l7Session{
		// Ingress redirect (shop/api's HTTP rules for shop/client): allowed and denied
		// requests on one keep-alive connection, a header rule, bodies.
		{from: "shop/client", to: "shop/api", port: 80, reqs: []l7Request{
			get("/public/a"), get("/private"), get("/public/b?q=1"), {method: "DELETE", path: "/public/a"},
			{method: "POST", path: "/submit", headers: []string{"X-Token: yes"}},
			{method: "POST", path: "/submit", headers: []string{"X-Token: no"}}, get("/public/c"),
		}},
		// The same over h2c (prior knowledge): one stream per request.
		{from: "shop/client", to: "shop/api", port: 80, h2c: true, reqs: []l7Request{
			get("/public/h2"), get("/private/h2"), get("/public/h2-again"),
		}},
		// Egress redirect whose destination's ingress redirects too (shop/client's egress
		// rules and shop/api's ingress rules on 8080): both must admit.
		{from: "shop/client", to: "shop/api", port: 8080, reqs: []l7Request{
			get("/v1/items"), get("/v1/other"), {method: "POST", path: "/v1/items"},
			{method: "DELETE", path: "/v1/items"}, get("/v1/items/7"), get("/admin"),
		}},
		// Egress redirect to a pod whose ingress (no default deny) does not redirect.
		{from: "shop/client", to: "shop/open", port: 8080, reqs: []l7Request{
			get("/e/1"), get("/f"), get("/e/2"),
		}},
		// Egress redirect to the world (the upstream keeps the pod's address; the replies
		// come back through the node's uplink).
		{from: "shop/client", to: world, port: 80, reqs: []l7Request{
			get("/w1"), get("/x"), get("/w2"),
		}},
		// An HTTP rule shadowed by a NetworkPolicy allowing the same peer and port without
		// HTTP rules: every request passes.
		{from: "shop/client", to: "shop/legacy", port: 80, reqs: []l7Request{
			get("/only"), get("/anything"), {method: "DELETE", path: "/z"},
		}},
		// enableDefaultDeny: false: HTTP rules for shop/client, everyone else unaffected.
		{from: "shop/client", to: "shop/open", port: 80, reqs: []l7Request{get("/x1"), get("/y"), get("/x2")}},
		{from: "other/outsider", to: "shop/open", port: 80, reqs: []l7Request{get("/y"), get("/anything")}},
		// Traffic that is not redirected to a port the proxy listens on in the node's
		// namespace reaches its destination (the proxy takes redirects only).
		{from: "other/outsider", to: "shop/open", port: agent.DefaultProxyBasePort, reqs: []l7Request{get("/not-proxied")}},
		// Dropped at L3/L4: shop/client's egress denies 9090; shop/api's ingress does not
		// admit other/outsider; shop/legacy's ingress admits shop/client only.
		{from: "shop/client", to: "shop/api", port: 9090, reqs: []l7Request{get("/public/a")}},
		{from: "other/outsider", to: "shop/api", port: 80, reqs: []l7Request{get("/public/a")}},
		{from: "other/outsider", to: "shop/legacy", port: 80, reqs: []l7Request{get("/only")}},
		// Egress redirect to a pod whose ingress denies the port at L3/L4: the egress proxy
		// admits the request, its upstream connection gets the destination's ingress check
		// like any packet and is dropped, so the proxy answers 502 after its dial timeout.
		{from: "shop/client", to: "shop/legacy", port: 8080, reqs: []l7Request{get("/l")}},
		// The host (allow-localhost) to a pod with HTTP rules for someone else: not proxied.
		{from: "host", to: "shop/api", port: 80, reqs: []l7Request{get("/private")}},
	}
	c1 := h.Cluster()
	open := make([]*HTTPSession, len(sessions))
	results := make([][]HTTPCall, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions {
		from, to := places[s.from], places[s.to]
		if from.Name == "" || to.Name == "" {
			t.Fatalf("session %d: unknown place %q or %q", i, s.from, s.to)
		}
		open[i] = NewHTTPSession(from, to, s.port, s.h2c, 1500*time.Millisecond)
		t.Cleanup(open[i].Close)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range s.reqs {
				results[i] = append(results[i], open[i].Do(r.method, r.path, r.headers...))
			}
		}()
	}
	wg.Wait()
	counts := map[string]int{}
	for i, s := range sessions {
		checkL7Session(t, c1, "policies-1", open[i], s, results[i], false, counts)
	}
	t.Logf("policies-1: %d requests in %d sessions, outcomes %v", countCalls(results), len(sessions), counts)
	if counts[HTTPOK] == 0 || counts[HTTPDenied] == 0 || counts[HTTPDropped] == 0 {
		t.Errorf("the test must see 200, 403 and dropped outcomes: %v", counts)
	}
	checkL7Events(t, h, c1, sessions, open, results)
	// The kept-alive sessions are open in the proxies, which the agent's status shows.
	if st := ag.(*realAgent).a.Status().Proxy; st == nil || st.HTTPIngressPort != agent.DefaultProxyBasePort ||
		st.DNSPort != agent.DefaultProxyBasePort+5 || st.HTTPOpenConnections == 0 {
		t.Errorf("agent status of the proxies: %+v, want their ports and the open connections", st)
	}
	checkFailClosed(t, h, c1, places["other/outsider"], places["shop/open"], 6443)
	dnsSrv := DNSServe(t, places["shop/open"], 5353)
	dnsNames := []string{"web.shop.local", "a.b.shop.local", "api.example.com", "API.Example.COM", "evil.io"}
	var dnsID uint16
	answered, refused := checkDNS(t, h, c1, "policies-1", dnsSrv, places["other/outsider"], places["shop/open"], 5353, dnsNames, &dnsID)
	t.Logf("policies-1: DNS through the proxy: %d lookups answered, %d refused", answered, refused)
	if answered == 0 || refused == 0 {
		t.Errorf("policies-1: the DNS lookups must be answered and refused: %d answered, %d refused", answered, refused)
	}
	// A client without DNS rules (not redirected) reaches the same server directly, after the
	// proxy answered from its address: nothing of the proxy's is left to catch its lookups.
	tr, err := TraceDNS(c1, places["shop/api"], places["shop/open"], policy.ProtoUDP, 5353, "evil.io")
	if err != nil || tr.Egress == nil || tr.Egress.DNS != nil || tr.Egress.Entry != nil && strings.Contains(tr.Egress.Entry.Verdict, "redirect") || ExpectDNS(tr) != DNSAnswered {
		t.Fatalf("premise: shop/api's lookups to shop/open are allowed and not redirected: %v %+v", err, tr)
	}
	for i := range 3 {
		dnsID++
		if l := LookupUDP(places["shop/api"], places["shop/open"], 5353, "evil.io", dnsID, 3*time.Second); l.Outcome != DNSAnswered {
			t.Errorf("lookup %d of a client that is not redirected: %s (%v), want answered by the server", i, l.Outcome, l.Err)
		}
	}

	// Change the policies (shop/api's rules change, the shadowing NetworkPolicy goes) and
	// send again on the connections that are still open.
	changedAt := time.Now()
	h.SetPolicies("testdata/l7/policies-2")
	ag.Settle(t, changedAt)
	c2 := h.Cluster()
	again := map[int][]l7Request{
		0: {get("/public/a"), get("/private"), get("/private/x"), get("/public/b")},
		1: {get("/public/h2"), get("/private/h2")},
		2: {get("/v1/items"), get("/v1/other"), {method: "DELETE", path: "/v1/items"}},
		5: {get("/only"), get("/anything"), {method: "DELETE", path: "/z"}},
	}
	counts = map[string]int{}
	flipped := 0
	for i, reqs := range again {
		var calls []HTTPCall
		for _, r := range reqs {
			calls = append(calls, open[i].Do(r.method, r.path, r.headers...))
		}
		s := sessions[i]
		s.reqs = reqs
		checkL7Session(t, c2, "policies-2", open[i], s, calls, true, counts)
		for _, r := range reqs {
			r1, err1 := TraceHTTP(c1, places[s.from], places[s.to], s.port, r.method, r.path, r.headers)
			r2, err2 := TraceHTTP(c2, places[s.from], places[s.to], s.port, r.method, r.path, r.headers)
			if err1 == nil && err2 == nil && ExpectHTTP(r1) != ExpectHTTP(r2) {
				flipped++
			}
		}
	}
	// The DNS rules changed too: lookups follow the new rules at once (UDP, and TCP on a new
	// connection; the proxy judges each lookup when it arrives).
	dnsSrv.Reset()
	answered, refused = checkDNS(t, h, c2, "policies-2", dnsSrv, places["other/outsider"], places["shop/open"], 5353, dnsNames, &dnsID)
	for _, name := range dnsNames {
		r1, err1 := TraceDNS(c1, places["other/outsider"], places["shop/open"], policy.ProtoUDP, 5353, name)
		r2, err2 := TraceDNS(c2, places["other/outsider"], places["shop/open"], policy.ProtoUDP, 5353, name)
		if err1 == nil && err2 == nil && ExpectDNS(r1) != ExpectDNS(r2) {
			flipped++
		}
	}
	t.Logf("policies-2: DNS: %d lookups answered, %d refused", answered, refused)
	t.Logf("policies-2: outcomes %v; %d requests and lookups changed verdict with the policy", counts, flipped)
	if flipped == 0 {
		t.Error("policies-2 changes no request's or lookup's verdict: the re-check proves nothing")
	}

	// Restart: while no agent runs, the redirect plumbing stays, so a redirected connection
	// goes nowhere (the packets are delivered locally, where no socket takes them; the
	// kernel cannot even reset from the destination's address) instead of reaching its
	// destination unjudged; a new agent adopts the pinned state, replaces the rules and
	// serves the same verdicts.
	if err := ag.(*realAgent).a.Close(); err != nil {
		t.Fatalf("agent close: %v", err)
	}
	down := NewHTTPSession(places["shop/client"], places["shop/api"], 80, false, 1500*time.Millisecond)
	if call := down.Do("GET", "/private"); call.Outcome != HTTPDropped && call.Outcome != httpRefused {
		t.Errorf("no agent: a redirected request got %s (%v %q), want no connection", call.Outcome, call.Err, call.Body)
	}
	down.Close()
	restarted := time.Now()
	ag = startAgent(t, h)
	ag.Settle(t, restarted)
	counts = map[string]int{}
	for _, i := range []int{0, 1, 2, 4, 5, 7, 8, 9} {
		s := sessions[i]
		sess := NewHTTPSession(places[s.from], places[s.to], s.port, s.h2c, 1500*time.Millisecond)
		var calls []HTTPCall
		for _, r := range s.reqs {
			calls = append(calls, sess.Do(r.method, r.path, r.headers...))
		}
		checkL7Session(t, c2, "after a restart", sess, s, calls, false, counts)
		sess.Close()
	}
	t.Logf("after a restart: outcomes %v", counts)
}

func countCalls(r [][]HTTPCall) int {
	n := 0
	for _, c := range r {
		n += len(c)
	}
	return n
}

// checkL7Session compares every call with trace. Sessions whose connection was accepted
// must have used one connection throughout (denied requests keep it open); reuse requires
// every call to ride a connection that already carried a request (after a policy change).
func checkL7Session(t *testing.T, c *cluster.Cluster, what string, s *HTTPSession, sess l7Session, calls []HTTPCall, reuse bool, counts map[string]int) {
	t.Helper()
	connected := false
	for j, call := range calls {
		r := sess.reqs[j]
		tr, err := TraceHTTP(c, s.From, s.To, s.Port, r.method, r.path, r.headers)
		if err != nil {
			t.Fatalf("trace: %v", err)
		}
		want := ExpectHTTP(tr)
		counts[call.Outcome]++
		proto := "HTTP/1.1"
		if s.H2C {
			proto = "h2c"
		}
		desc := fmt.Sprintf("%s: %s -> %s:%d %s %s %s %v", what, s.From.Name, s.To.Name, s.Port, proto, r.method, r.path, r.headers)
		if call.Outcome != want {
			t.Errorf("%s: traffic %s (%v %q), trace says %s (%s)", desc, call.Outcome, call.Err, call.Body, want, tr.Reason)
			continue
		}
		if (want == HTTPOK) != tr.Allowed {
			t.Errorf("%s: outcome %s but trace verdict %s", desc, want, tr.Verdict)
		}
		// The destination sees the request as sent, from the client's own address (the
		// proxy's upstream connection keeps it, so its ingress policy sees the client).
		if want == HTTPOK && !strings.Contains(call.Body, r.method+" "+r.path+" from "+s.From.Addr.String()+":") {
			t.Errorf("%s: the destination saw %q", desc, call.Body)
		}
		if call.Outcome == HTTPOK || call.Outcome == HTTPDenied {
			connected = true
			if reuse && !call.Reused && !s.H2C {
				t.Errorf("%s: sent on a new connection, want the one opened before the change", desc)
			}
		}
	}
	if connected && s.Conns() != 1 {
		t.Errorf("%s: %s -> %s:%d: %d connections for %d requests, want one kept alive", what, s.From.Name, s.To.Name, s.Port, s.Conns(), len(calls))
	}
}

// checkL7Events finds an event on /v1/events for every proxied request: same source,
// destination, method, path and verdict.
func checkL7Events(t *testing.T, h *Harness, c *cluster.Cluster, sessions []l7Session, open []*HTTPSession, results [][]HTTPCall) {
	t.Helper()
	cl := agent.NewClient(h.AgentSocket)
	type key struct{ src, dst, method, path, verdict string }
	want := map[key]int{}
	for i, s := range sessions {
		for j, call := range results[i] {
			if call.Outcome != HTTPOK && call.Outcome != HTTPDenied {
				continue
			}
			r := s.reqs[j]
			tr, err := TraceHTTP(c, open[i].From, open[i].To, s.port, r.method, r.path, r.headers)
			if err != nil || ((tr.Egress == nil || tr.Egress.HTTP == nil) && (tr.Ingress == nil || tr.Ingress.HTTP == nil)) {
				continue // not proxied
			}
			v := "allowed"
			if call.Outcome == HTTPDenied {
				v = "denied"
			}
			want[key{open[i].From.Addr.String(), open[i].To.Addr.String(), r.method, r.path, v}]++
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	var missing []string
	for {
		got := map[key]int{}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cl.Events(ctx, agent.EventFilter{}, func(ev agent.Event) error {
			if ev.L7Protocol == "http" {
				got[key{ev.Source.IP, ev.Destination.IP, ev.HTTPMethod, ev.HTTPPath, ev.HTTPVerdict}]++
				if ev.Endpoint == "" || len(ev.Origins) == 0 && ev.HTTPVerdict == "allowed" {
					t.Errorf("L7 event without endpoint or origins: %+v", ev)
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		missing = missing[:0]
		for k, n := range want {
			if got[k] < n {
				missing = append(missing, fmt.Sprintf("%s -> %s %s %s %s (%d of %d)", k.src, k.dst, k.method, k.path, k.verdict, got[k], n))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("proxied requests without an event on /v1/events:\n  %s", strings.Join(missing, "\n  "))
	}
	t.Logf("events: %d proxied requests, each found on /v1/events", len(want))
}

// checkFailClosed connects to a port whose redirect goes to a parser netward has no proxy
// for (TLS): trace says the datapath redirects it and that netward denies it, and the agent
// must reset the connection without it reaching the destination, and report it on
// /v1/events.
func checkFailClosed(t *testing.T, h *Harness, c *cluster.Cluster, from, to Place, port uint16) {
	t.Helper()
	tr, err := analysis.Trace(c, analysis.Flow{From: from.Name, To: to.Name, Proto: 6, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Egress == nil || tr.Egress.Entry == nil || !strings.Contains(tr.Egress.Entry.Verdict, "tls") {
		t.Fatalf("%s -> %s:%d: trace does not redirect to the TLS proxy: %s", from.Name, to.Name, port, tr.Reason)
	}
	if !strings.Contains(tr.Egress.Enforcement, "denies this flow") {
		t.Errorf("%s -> %s:%d: trace does not say that netward denies the TLS redirect: %q", from.Name, to.Name, port, tr.Egress.Enforcement)
	}
	HTTPServe(t, to, port) // something to reach, were the redirect not enforced
	var tcpErr error
	err = cnitest.InNetns(from.Netns, func() error {
		d := net.Dialer{Timeout: 1500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: from.Addr.AsSlice()}}
		c, err := d.Dial("tcp4", netip.AddrPortFrom(to.Addr, port).String())
		if err != nil {
			tcpErr = err
			return nil
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_, tcpErr = c.Read(make([]byte, 100))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tcpErr == nil || !(errors.Is(tcpErr, syscall.ECONNRESET) || errors.Is(tcpErr, io.EOF) || errors.Is(tcpErr, syscall.ECONNREFUSED)) {
		t.Errorf("TCP to a TLS redirect: %v, want the connection reset", tcpErr)
	}
	found := false
	cl := agent.NewClient(h.AgentSocket)
	for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		cl.Events(ctx, agent.EventFilter{Pod: from.Name}, func(ev agent.Event) error {
			if ev.L7Protocol == "tls" && ev.Verdict == "dropped" && ev.Source.IP == from.Addr.String() &&
				ev.Destination.IP == to.Addr.String() && ev.Port == port && strings.Contains(ev.L7Reason, "fail closed") {
				found = true
			}
			return nil
		})
		cancel()
	}
	if !found {
		t.Errorf("fail-closed TLS redirect: no denied event on /v1/events")
	}
}

// judgeLookup compares a lookup's outcome with trace --dns-name on c, and checks what the
// server saw: an answered lookup came from the client's own address, a refused one never
// reached it. It returns the outcome when it matched trace, "" otherwise (reported).
func judgeLookup(t *testing.T, c *cluster.Cluster, what string, srv *DNSServer, from, to Place, proto uint8, port uint16, l DNSLookup) string {
	t.Helper()
	tr, err := TraceDNS(c, from, to, proto, port, l.Name)
	if err != nil {
		t.Fatal(err)
	}
	want := ExpectDNS(tr)
	desc := fmt.Sprintf("%s: %s -> %s:%d/%s lookup %s", what, from.Name, to.Name, port, l.Proto, l.Name)
	if l.Outcome != want {
		t.Errorf("%s: %s (%v), trace says %s (%s)", desc, l.Outcome, l.Err, want, tr.Reason)
		return ""
	}
	seen := srv.Seen(strings.ToLower(l.Name) + ".")
	switch {
	case want == DNSAnswered && (len(seen) == 0 || seen[len(seen)-1] != from.Addr):
		t.Errorf("%s: answered, but the server saw it from %v, want %s", desc, seen, from.Addr)
	case want == DNSRefused && len(seen) > 0:
		t.Errorf("%s: refused, but the server saw it from %v", desc, seen)
	}
	return want
}

// checkDNS sends lookups over UDP (one socket each) and TCP (one connection for all) to a
// DNS server whose port the source's egress redirects to the DNS proxy: every outcome
// (answered by the server, REFUSED by the proxy, no answer when dropped) must equal netward
// trace --dns-name; the server must see an allowed lookup from the client's own address and
// never a refused one; each lookup must have its event on /v1/events. It returns how many
// lookups were answered and refused.
func checkDNS(t *testing.T, h *Harness, c *cluster.Cluster, what string, srv *DNSServer, from, to Place, port uint16, names []string, id *uint16) (answered, refused int) {
	t.Helper()
	sess, err := NewDNSTCPSession(from, to, port, 1500*time.Millisecond)
	if err != nil {
		t.Fatalf("%s: DNS over TCP to %s:%d: %v", what, to.Name, port, err)
	}
	defer sess.Close()
	type key struct{ name, proto, verdict string }
	want := map[key]int{}
	for _, name := range names {
		for _, proto := range []uint8{policy.ProtoUDP, policy.ProtoTCP} {
			*id++
			var l DNSLookup
			if proto == policy.ProtoUDP {
				l = LookupUDP(from, to, port, name, *id, 3*time.Second)
			} else {
				l = sess.Lookup(name, *id, 3*time.Second)
			}
			switch judgeLookup(t, c, what, srv, from, to, proto, port, l) {
			case DNSAnswered:
				answered++
				want[key{strings.ToLower(name) + ".", l.Proto, "allowed"}]++
			case DNSRefused:
				refused++
				want[key{strings.ToLower(name) + ".", l.Proto, "denied"}]++
			}
		}
	}
	cl := agent.NewClient(h.AgentSocket)
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		got := map[key]int{}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		cl.Events(ctx, agent.EventFilter{Pod: from.Name}, func(ev agent.Event) error {
			if ev.L7Protocol == "dns" && ev.DNSName != "" && ev.Source.IP == from.Addr.String() && ev.Destination.IP == to.Addr.String() {
				got[key{ev.DNSName, strings.ToLower(ev.Proto), ev.DNSVerdict}]++
			}
			return nil
		})
		cancel()
		missing = missing[:0]
		for k, n := range want {
			if got[k] < n {
				missing = append(missing, fmt.Sprintf("%s over %s %s (%d of %d)", k.name, k.proto, k.verdict, got[k], n))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: lookups without their event on /v1/events:\n  %s", what, strings.Join(missing, "\n  "))
	}
	if t.Failed() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl.Events(ctx, agent.EventFilter{Pod: from.Name}, func(ev agent.Event) error {
			if ev.L7Protocol == "dns" {
				t.Logf("%s: DNS event: %s %s:%d -> %s:%d %s %s %s %s: %s", what, ev.Proto, ev.Source.IP, ev.SrcPort, ev.Destination.IP, ev.Port, ev.DNSName, ev.DNSVerdict, ev.DNSRcode, ev.Verdict, ev.L7Reason)
			}
			return nil
		})
		cancel()
	}
	return answered, refused
}
