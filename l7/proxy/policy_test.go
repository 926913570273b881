package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/policy"
)

// addrListener gives every accepted connection the addresses queued for it, as the TPROXY
// socket of a pod's connection would have them (RemoteAddr the client pod, LocalAddr the
// original destination).
type addrListener struct {
	net.Listener
	next chan [2]netip.AddrPort
}

func (l *addrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	a := <-l.next
	return &addrConn{Conn: c, src: net.TCPAddrFromAddrPort(a[0]), dst: net.TCPAddrFromAddrPort(a[1])}, nil
}

type addrConn struct {
	net.Conn
	src, dst *net.TCPAddr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.src }
func (c *addrConn) LocalAddr() net.Addr  { return c.dst }
func (c *addrConn) Underlying() net.Conn { return c.Conn }
func (c *addrConn) CloseWrite() error    { return c.Conn.(*net.TCPConn).CloseWrite() }

// policyProxies is an ingress and an egress proxy judging with a cluster's compiled
// policies, in front of one backend, the way the agent will wire them.
type policyProxies struct {
	t       *testing.T
	c       *cluster.Cluster
	backend *backend
	lns     [2]*addrListener // [egress]
	events  chan Event
}

func newPolicyProxies(t *testing.T, c *cluster.Cluster) *policyProxies {
	t.Helper()
	pp := &policyProxies{t: t, c: c, backend: newBackend(t), events: make(chan Event, 16)}
	lookup := func(src, dst netip.AddrPort, egress bool) (*policy.EndpointPolicy, *identity.Identity, bool) {
		self, other := dst.Addr(), src.Addr()
		if egress {
			self, other = src.Addr(), dst.Addr()
		}
		ep, ok := c.EndpointByIP(self)
		if !ok {
			return nil, nil, false
		}
		peer, err := c.ResolvePeer(other.String(), ep)
		if err != nil {
			return nil, nil, false
		}
		return c.Policy(ep), peer.Identity, true
	}
	for i, egress := range []bool{false, true} {
		p, err := New(Config{
			Decider: NewPolicyDecider(lookup),
			Egress:  egress,
			Dial: func(ctx context.Context, n, a string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, n, pp.backend.addr)
			},
			Events: func(e Event) { pp.events <- e },
		})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pp.lns[i] = &addrListener{Listener: ln, next: make(chan [2]netip.AddrPort, 1)}
		go p.Serve(pp.lns[i])
		t.Cleanup(func() { p.Close() })
	}
	return pp
}

// request sends req from src to dst through the proxy of one direction and returns whether
// it was forwarded (200) or denied (403), with the event.
func (pp *policyProxies) request(egress bool, src, dst netip.AddrPort, req *l7.Request) (bool, Event) {
	t := pp.t
	t.Helper()
	ln := pp.lns[0]
	if egress {
		ln = pp.lns[1]
	}
	ln.next <- [2]netip.AddrPort{src, dst}
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.Path, req.Host)
	for k, vs := range req.Header {
		if k == "Host" {
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	c := &client{t: t, c: nc, br: newReader(nc)}
	c.send(b.String())
	resp, body := c.read(req.Method)
	ev := <-pp.events
	switch {
	case resp.StatusCode == 200 && ev.Verdict == VerdictAllowed:
		return true, ev
	case resp.StatusCode == 403 && (body == "Access denied" || req.Method == "HEAD" && body == "") && ev.Verdict == VerdictDenied:
		return false, ev
	}
	t.Fatalf("%s %s: %d %q, event %v", req.Method, req.Path, resp.StatusCode, body, ev)
	return false, ev
}

func buildCluster(t *testing.T, yaml string) *cluster.Cluster {
	t.Helper()
	objs, errs := api.LoadBytes("test.yaml", []byte(yaml))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if errs := api.Validate(objs); len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const shopYAML = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: shop, labels: {app: frontend}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: shop, labels: {app: backend}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: batch, namespace: shop, labels: {app: batch}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: shop, labels: {app: intruder}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.4}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: backend-api, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: backend}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http:
        - {method: GET, path: "/api/.*"}
        - {method: "POST|PUT", path: /api/orders, headers: ["X-Token"]}
        - {method: GET, path: /status, host: "backend(\\.shop)?(:8080)?"}
        - method: DELETE
          path: "/api/orders/[0-9]+"
          headerMatches: [{name: X-Role, value: admin}, {name: X-Audit, value: "on", mismatch: ADD}]
  - fromEndpoints: [{matchLabels: {app: batch}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http: [{method: GET, path: /api/export}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: batch-any, namespace: shop}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: batch}}}]
    ports: [{port: 8080}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: frontend-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: frontend}}
  egress:
  - toEndpoints: [{matchLabels: {app: backend}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http: [{method: GET}, {method: POST, path: /api/orders}]
`

// TestPolicyDeciderEqualsAllowsHTTP: requests sent over the wire through the ingress and
// egress proxies, judged with compiled EndpointPolicies, get exactly the verdict of
// EndpointPolicy.AllowsHTTP on the same request built independently — including the KNP
// that widens batch's access (§2.5), headers, host regexes and headerMatches.
func TestPolicyDeciderEqualsAllowsHTTP(t *testing.T) {
	c := buildCluster(t, shopYAML)
	pp := newPolicyProxies(t, c)
	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	front, back, batch, intruder := ap("10.0.0.1:41000"), ap("10.0.0.2:8080"), ap("10.0.0.3:41000"), ap("10.0.0.4:41000")
	mk := func(method, path, host string, hdr ...string) *l7.Request {
		r := &l7.Request{Method: method, Path: path, Host: host, Header: http.Header{"Host": {host}}}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return r
	}
	reqs := []*l7.Request{
		mk("GET", "/api/items", "backend"),
		mk("GET", "/api", "backend"),
		mk("GET", "/api/items?x=1", "backend"),
		mk("HEAD", "/api/items", "backend"),
		mk("POST", "/api/orders", "backend"),
		mk("POST", "/api/orders", "backend", "X-Token", "t"),
		mk("PUT", "/api/orders", "backend", "X-Token", ""),
		mk("GET", "/status", "backend.shop:8080"),
		mk("GET", "/status", "evil.example"),
		mk("DELETE", "/api/orders/12", "backend", "X-Role", "admin"),
		mk("DELETE", "/api/orders/12", "backend", "X-Role", "user"),
		mk("DELETE", "/api/orders/12a", "backend", "X-Role", "admin"),
		mk("GET", "/api/export", "backend"),
		mk("PATCH", "/anything", "backend"),
	}
	type flow struct {
		name     string
		egress   bool
		src, dst netip.AddrPort
	}
	flows := []flow{
		{"frontend->backend ingress", false, front, back},
		{"batch->backend ingress (widened by the KNP)", false, batch, back},
		{"intruder->backend ingress (no allow)", false, intruder, back},
		{"frontend->backend egress", true, front, back},
	}
	allowedSome, deniedSome := 0, 0
	for _, f := range flows {
		for _, r := range reqs {
			got, ev := pp.request(f.egress, f.src, f.dst, r)
			self, other := f.dst.Addr(), f.src.Addr()
			if f.egress {
				self, other = other, self
			}
			ep, _ := c.EndpointByIP(self)
			peer, _ := c.ResolvePeer(other.String(), ep)
			p := c.Policy(ep)
			want := false
			if l4 := p.Lookup(f.egress, peer.Identity.ID, policy.ProtoTCP, f.dst.Port()); l4.Allowed {
				want, _ = p.AllowsHTTP(f.egress, peer.Identity, f.dst.Port(), r)
			}
			if got != want {
				t.Errorf("%s: %s %s host=%s %v: proxy %v, AllowsHTTP %v (event %v)", f.name, r.Method, r.Path, r.Host, r.Header, got, want, ev)
			}
			if got {
				allowedSome++
			} else {
				deniedSome++
			}
		}
	}
	if allowedSome < 10 || deniedSome < 10 {
		t.Fatalf("a weak table: %d allowed, %d denied", allowedSome, deniedSome)
	}
	// The admitting rule's headerMatches ADD reached the backend.
	got, ev := pp.request(false, front, back, mk("DELETE", "/api/orders/7", "backend", "X-Role", "admin"))
	if !got || len(ev.HeaderOps) != 1 || pp.backend.last(t).Header.Get("X-Audit") != "on" {
		t.Fatalf("headerMatches ADD: %v %v %v", got, ev, pp.backend.last(t).Header)
	}
	if !strings.Contains(ev.Origins[0], "CiliumNetworkPolicy shop/backend-api spec.ingress[0]") {
		t.Fatalf("origins %v", ev.Origins)
	}
}

// TestConformanceHTTPThroughProxy replays every HTTP flow of testdata/conformance (verdicts
// from Cilium v1.20.2's engine) through real proxies: each direction whose map entry
// redirects sends the request through that direction's proxy; the proxy's verdict must
// equal AllowsHTTP, and the flow's overall verdict Cilium's.
func TestConformanceHTTPThroughProxy(t *testing.T) {
	root := filepath.Join("..", "..", "testdata", "conformance")
	dirs, _ := filepath.Glob(filepath.Join(root, "*", "[0-9]*"))
	total, proxied := 0, 0
	for _, dir := range dirs {
		fh, err := os.Open(filepath.Join(dir, "expect.tsv"))
		if err != nil {
			continue
		}
		exps, perrs := analysis.ParseExpectations(fh)
		fh.Close()
		if len(perrs) > 0 {
			t.Fatal(perrs)
		}
		var httpExps []analysis.Expectation
		for _, e := range exps {
			if e.Flow.HTTP != nil {
				httpExps = append(httpExps, e)
			}
		}
		if len(httpExps) == 0 {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "cidr-match-mode")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			continue // the default mode only; CIDR matching is not the proxy's business
		}
		t.Run(filepath.Base(filepath.Dir(dir))+"/"+filepath.Base(dir), func(t *testing.T) {
			objs, errs := api.Load([]string{filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "policies.yaml")}, nil)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			c, err := cluster.Build(objs, cluster.Options{Policy: policy.Options{AllowLocalhost: true}})
			if err != nil {
				t.Fatal(err)
			}
			pp := newPolicyProxies(t, c)
			for _, e := range httpExps {
				n, ok := replay(t, c, pp, e)
				if ok {
					total++
					proxied += n
				}
			}
		})
	}
	t.Logf("%d HTTP flows, %d requests through a proxy", total, proxied)
	if total < 100 || proxied < 100 {
		t.Fatalf("too few flows: %d, %d proxied", total, proxied)
	}
}

// replay decides one expectation with the datapath's map lookup and the proxy; it returns
// how many requests went through a proxy, and false when the flow's ends have no address.
func replay(t *testing.T, c *cluster.Cluster, pp *policyProxies, e analysis.Expectation) (int, bool) {
	t.Helper()
	podOf := func(spec string) *cluster.Endpoint {
		if ep, ok := c.Endpoint(spec); ok {
			return ep
		}
		if ip, err := netip.ParseAddr(spec); err == nil {
			if ep, ok := c.EndpointByIP(ip); ok {
				return ep
			}
		}
		return nil
	}
	fromEP, toEP := podOf(e.Flow.From), podOf(e.Flow.To)
	src, err1 := c.ResolvePeer(e.Flow.From, toEP)
	dst, err2 := c.ResolvePeer(e.Flow.To, fromEP)
	if err1 != nil || err2 != nil {
		t.Fatalf("line %d: %v %v", e.Line, err1, err2)
	}
	addr := func(p cluster.Peer) (netip.Addr, bool) {
		switch {
		case p.Endpoint != nil && len(p.Endpoint.IPs) > 0:
			return p.Endpoint.IPs[0], true
		case p.Addr.IsValid():
			return p.Addr, true
		case p.Node != "":
			if n := c.Nodes[p.Node]; n != nil && len(n.IPs) > 0 {
				return n.IPs[0], true
			}
		}
		return netip.Addr{}, false
	}
	sa, ok1 := addr(src)
	da, ok2 := addr(dst)
	if !ok1 || !ok2 {
		return 0, false
	}
	// The proxy resolves peers from addresses; skip flows where that is ambiguous (a
	// node address standing for "host" of a pod on another node, and the like).
	if src.Endpoint == nil {
		if p, err := c.ResolvePeer(sa.String(), toEP); err != nil || p.Identity != src.Identity {
			return 0, false
		}
	}
	if dst.Endpoint == nil {
		if p, err := c.ResolvePeer(da.String(), fromEP); err != nil || p.Identity != dst.Identity {
			return 0, false
		}
	}
	srcAP, dstAP := netip.AddrPortFrom(sa, 40000), netip.AddrPortFrom(da, e.Flow.Port)
	req := e.Flow.HTTP
	if req.Host == "" {
		req.Header.Set("Host", "")
	}
	allowed, proxied := true, 0
	side := func(ep *cluster.Endpoint, peer cluster.Peer, egress bool) {
		p := c.Policy(ep)
		d := p.Lookup(egress, peer.Identity.ID, policy.ProtoTCP, e.Flow.Port)
		if !d.Enforced {
			return
		}
		if !d.Allowed {
			allowed = false
			return
		}
		if d.Entry.Verdict != policy.Redirect {
			return
		}
		proxied++
		got, ev := pp.request(egress, srcAP, dstAP, req)
		want, _ := p.AllowsHTTP(egress, peer.Identity, e.Flow.Port, req)
		if got != want {
			t.Errorf("line %d %s (%v): proxy %v, AllowsHTTP %v (%v)", e.Line, e.Text, egress, got, want, ev)
		}
		allowed = allowed && got
	}
	if fromEP != nil && src.Endpoint != nil {
		side(fromEP, dst, true)
	}
	if toEP != nil && dst.Endpoint != nil {
		side(toEP, src, false)
	}
	if allowed != e.Allowed {
		t.Errorf("line %d %s: datapath+proxy say %v, Cilium %v", e.Line, e.Text, allowed, e.Allowed)
	}
	return proxied, true
}
