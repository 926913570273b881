package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/http2/hpack"

	"github.com/netward/netward/l7"
)

// apiRules: GET /public.* and POST /upload from rule "api"; everything else is denied.
func apiRules(t testing.TB) *Rules {
	return NewRules(RuleSet{Origin: "api", HTTP: []*l7.HTTPRule{
		rule(t, "GET|HEAD", "/public.*", "", nil),
		rule(t, "POST", "/upload", "", nil),
		rule(t, "GET", "/stream", "", nil),
	}})
}

// TestAllowedIsForwardedUnchanged checks, byte for byte, that what the backend reads is
// what the client sent: odd field-name case, order, duplicate fields, query, body.
func TestAllowedIsForwardedUnchanged(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	reqs := "GET /public/a?x=1&y=%20 HTTP/1.1\r\nHost: svc:8080\r\nx-lower: v1\r\nX-Dup: a\r\nUser-Agent: raw\r\nX-Dup: b\r\nAccept:    */*   \r\n\r\n" +
		"POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
	c.send(reqs)
	resp, body := c.read("GET")
	if resp.StatusCode != 200 || body != "echo GET /public/a?x=1&y=%20 " {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	resp, body = c.read("POST")
	if resp.StatusCode != 200 || body != "echo POST /upload hello world" || resp.Header.Get("X-Backend") != "1" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if got := h.backend.ln.received(); got != reqs {
		t.Fatalf("the backend received\n%q\nwant\n%q", got, reqs)
	}
	s := h.backend.last(t)
	if s.Header.Get("Content-Type") != "text/plain" || s.Method != "POST" || s.Body != "hello world" {
		t.Fatalf("backend saw %+v", s)
	}
	ev := h.waitEvents(2)
	if ev[0].Verdict != VerdictAllowed || ev[0].Method != "GET" || ev[0].Path != "/public/a?x=1&y=%20" ||
		ev[0].Host != "svc:8080" || ev[0].Dst != testDst || !slices.Equal(ev[0].Origins, []string{"api"}) || ev[0].Src.Addr().String() != "127.0.0.1" {
		t.Fatalf("event %+v", ev[0])
	}
}

// TestDeniedGets403AndConnectionStaysUsable: 403 "Access denied", the denied request's
// body is consumed, the next request on the same connection works; HEAD gets no body.
func TestDeniedGets403AndConnectionStaysUsable(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	c.send("DELETE /public/x HTTP/1.1\r\nHost: svc\r\n\r\n")
	resp, body := c.read("DELETE")
	if resp.StatusCode != 403 || body != "Access denied" || resp.Close {
		t.Fatalf("denied: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	// A denied request with a body (fixed length, then chunked), then an allowed one.
	c.send("PUT /x HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nGET /")
	resp, body = c.read("PUT")
	if resp.StatusCode != 403 || body != "Access denied" {
		t.Fatalf("denied PUT: %d %q", resp.StatusCode, body)
	}
	c.send("PUT /x HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	resp, _ = c.read("PUT")
	if resp.StatusCode != 403 {
		t.Fatalf("denied chunked PUT: %d", resp.StatusCode)
	}
	c.send("HEAD /private HTTP/1.1\r\nHost: svc\r\n\r\n")
	resp, body = c.read("HEAD")
	if resp.StatusCode != 403 || body != "" || resp.ContentLength != 13 {
		t.Fatalf("denied HEAD: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	c.send(get("/public/ok"))
	resp, body = c.read("GET")
	if resp.StatusCode != 200 || body != "echo GET /public/ok " {
		t.Fatalf("after the denials: %d %q", resp.StatusCode, body)
	}
	if h.backend.count() != 1 {
		t.Fatalf("the backend saw %d requests, want 1", h.backend.count())
	}
	ev := h.waitEvents(5)
	for i, want := range []Verdict{VerdictDenied, VerdictDenied, VerdictDenied, VerdictDenied, VerdictAllowed} {
		if ev[i].Verdict != want {
			t.Errorf("event %d: %v, want %v", i, ev[i], want)
		}
	}
	if ev[0].Status != 403 || ev[0].Reason == "" || !slices.Equal(ev[0].Origins, []string{"api"}) {
		t.Errorf("denied event: %+v", ev[0])
	}
}

// TestDeniedLargeBodyClosesAfter403: a body above MaxDiscardBytes is not read; the 403
// says Connection: close. Expect: 100-continue likewise.
func TestDeniedLargeBodyClosesAfter403(t *testing.T) {
	h := newHarness(t, apiRules(t), func(c *Config) { c.MaxDiscardBytes = 1000 })
	c := h.dial()
	c.send("PUT /x HTTP/1.1\r\nHost: svc\r\nContent-Length: 100000\r\n\r\n")
	resp, _ := c.read("PUT")
	if resp.StatusCode != 403 || !resp.Close {
		t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
	}
	if !c.closed(2 * time.Second) {
		t.Fatal("connection not closed")
	}
	c = h.dial()
	c.send("PUT /x HTTP/1.1\r\nHost: svc\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
	resp, _ = c.read("PUT")
	if resp.StatusCode != 403 || !resp.Close {
		t.Fatalf("expect: %d close=%v", resp.StatusCode, resp.Close)
	}
}

// TestKeepAliveReusesOneUpstream: sequential requests on one client connection use one
// upstream connection; a second client gets its own.
func TestKeepAliveReusesOneUpstream(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	for i := 0; i < 5; i++ {
		c.send(get(fmt.Sprintf("/public/%d", i)))
		resp, body := c.read("GET")
		if resp.StatusCode != 200 || body != fmt.Sprintf("echo GET /public/%d ", i) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := h.backend.ln.accepted(); n != 1 {
		t.Fatalf("%d upstream connections, want 1", n)
	}
	c2 := h.dial()
	c2.send(get("/public/other"))
	c2.read("GET")
	if n := h.backend.ln.accepted(); n != 2 {
		t.Fatalf("%d upstream connections, want 2", n)
	}
	// HTTP/1.0 without keep-alive: answered, then closed.
	c3 := h.dial()
	c3.send("GET /public/10 HTTP/1.0\r\n\r\n")
	resp, _ := c3.read("GET")
	if resp.StatusCode != 200 || !c3.closed(2*time.Second) {
		t.Fatal("HTTP/1.0 exchange")
	}
	// Connection: close from the client.
	c4 := h.dial()
	c4.send("GET /nope HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
	resp, _ = c4.read("GET")
	if resp.StatusCode != 403 || !resp.Close || !c4.closed(2*time.Second) {
		t.Fatal("Connection: close on a denied request")
	}
}

// TestPipelining writes several requests at once, allowed and denied mixed, with bodies;
// responses come back in order.
func TestPipelining(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	type rq struct {
		method, wire string
		status       int
		body         string
	}
	rqs := []rq{
		{"GET", get("/public/1"), 200, "echo GET /public/1 "},
		{"GET", get("/private/2"), 403, "Access denied"},
		{"POST", "POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc", 200, "echo POST /upload abc"},
		{"POST", "POST /nope HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nxyz", 403, "Access denied"},
		{"POST", "POST /upload HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 200, "echo POST /upload hi"},
		{"HEAD", "HEAD /public/3 HTTP/1.1\r\nHost: svc\r\n\r\n", 200, ""},
		{"GET", get("/public/4"), 200, "echo GET /public/4 "},
	}
	var all strings.Builder
	for _, r := range rqs {
		all.WriteString(r.wire)
	}
	c.send(all.String())
	for i, r := range rqs {
		resp, body := c.read(r.method)
		if resp.StatusCode != r.status || body != r.body {
			t.Fatalf("response %d: %d %q, want %d %q", i, resp.StatusCode, body, r.status, r.body)
		}
	}
	if n := h.backend.ln.accepted(); n != 1 {
		t.Fatalf("%d upstream connections, want 1", n)
	}
}

// TestChunkedBothWays: a chunked request body with extensions and trailers reaches the
// backend byte for byte; a streamed chunked response with trailers reaches the client.
func TestChunkedBothWays(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	req := "POST /upload HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
	c.send(req)
	resp, body := c.read("POST")
	if resp.StatusCode != 200 || body != "echo POST /upload hello world" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if got := h.backend.ln.received(); got != req {
		t.Fatalf("backend received %q", got)
	}
	if s := h.backend.last(t); s.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("trailer: %v", s.Trailer)
	}
	c.send(get("/stream"))
	resp, body = c.read("GET")
	if resp.StatusCode != 200 || body != "part0;part1;part2;" || !slices.Equal(resp.TransferEncoding, []string{"chunked"}) || resp.Trailer.Get("X-Checksum") != "abc" {
		t.Fatalf("stream: %d %q %v %v", resp.StatusCode, body, resp.TransferEncoding, resp.Trailer)
	}
	// The connection is still in sync.
	c.send(get("/public/after"))
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Fatal("after chunked")
	}
}

// TestStreamingIsNotBuffered: response chunks reach the client while the backend is still
// producing (a server-sent-events-like stream), and a request body streams to the backend.
func TestStreamingIsNotBuffered(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	release := make(chan struct{})
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "first;")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "second")
	}))
	defer ln.Close()
	h := newHarness(t, NewRules(RuleSet{Origin: "all"}), func(c *Config) {
		c.Dial = func(ctx context.Context, n, a string) (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }
	})
	c := h.dial()
	c.send(get("/events"))
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first;" {
		t.Fatalf("first chunk before the backend finished: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" {
		t.Fatalf("rest %q", rest)
	}
}

// TestPolicyChangeBetweenRequests: the decider is consulted per request, so a new rule set
// applies to the next request of an open connection.
func TestPolicyChangeBetweenRequests(t *testing.T) {
	rules := apiRules(t)
	h := newHarness(t, rules, nil)
	c := h.dial()
	c.send(get("/admin"))
	if resp, _ := c.read("GET"); resp.StatusCode != 403 {
		t.Fatal("before the change")
	}
	rules.Set(RuleSet{Origin: "admin", HTTP: []*l7.HTTPRule{rule(t, "GET", "/admin", "", nil)}})
	c.send(get("/admin"))
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Fatal("after allowing /admin")
	}
	c.send(get("/public/x"))
	if resp, _ := c.read("GET"); resp.StatusCode != 403 {
		t.Fatal("after the change /public is no longer allowed")
	}
	rules.Set()
	c.send(get("/admin"))
	if resp, _ := c.read("GET"); resp.StatusCode != 403 {
		t.Fatal("no rules deny everything")
	}
	ev := h.waitEvents(4)
	if !slices.Equal(ev[1].Origins, []string{"admin"}) {
		t.Fatalf("origins %v", ev[1].Origins)
	}
}

// TestUpgrade: an Upgrade the rules deny gets 403 and the connection stays HTTP; an
// allowed one is passed and bytes are then spliced both ways.
func TestUpgrade(t *testing.T) {
	rules := NewRules(RuleSet{Origin: "ws", HTTP: []*l7.HTTPRule{rule(t, "GET", "/ws", "", []string{"Upgrade: echo"})}})
	h := newHarness(t, rules, nil)
	c := h.dial()
	c.send("GET /other HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	if resp, body := c.read("GET"); resp.StatusCode != 403 || body != "Access denied" {
		t.Fatalf("refused upgrade: %d", resp.StatusCode)
	}
	// Allowed: the 101 is relayed, then anything goes both ways, including bytes the
	// client sent right behind the request.
	c.send("GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly;")
	resp, _ := c.read("GET")
	if resp.StatusCode != 101 {
		t.Fatalf("allowed upgrade: %d", resp.StatusCode)
	}
	c.send("ping GET /ws HTTP/1.1\r\n\r\n")
	want := "early;ping GET /ws HTTP/1.1\r\n\r\n"
	got := make([]byte, len(want))
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != want {
		t.Fatalf("echo: %q %v", got, err)
	}
	c.c.(*net.TCPConn).CloseWrite()
	if !c.closed(5 * time.Second) {
		t.Fatal("the tunnel did not end after the client closed")
	}
	if s := h.p.Stats(); s.Upgrades != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestHeaderMatchActions: ADD, DELETE and REPLACE change the forwarded request; LOG and
// every action are reported in the event.
func TestHeaderMatchActions(t *testing.T) {
	r := rule(t, "GET", "/h", "", nil,
		l7.HeaderMatch{Name: "X-Added", Value: "yes", Mismatch: l7.MismatchAdd},
		l7.HeaderMatch{Name: "X-Secret", Value: "ok", Mismatch: l7.MismatchDelete},
		l7.HeaderMatch{Name: "X-Tenant", Value: "t1", Mismatch: l7.MismatchReplace},
		l7.HeaderMatch{Name: "X-Trace", Value: "on", Mismatch: l7.MismatchLog},
		l7.HeaderMatch{Name: "Content-Length", Value: "1000", Mismatch: l7.MismatchReplace}, // never applied
	)
	h := newHarness(t, NewRules(RuleSet{Origin: "hm", HTTP: []*l7.HTTPRule{r}}), nil)
	c := h.dial()
	c.send("GET /h HTTP/1.1\r\nHost: svc\r\nX-Secret: wrong\r\nX-Tenant: t2\r\nX-Tenant: t3\r\nX-Keep: k\r\n\r\n")
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := h.backend.last(t)
	if s.Header.Get("X-Added") != "yes" || s.Header["X-Secret"] != nil || !slices.Equal(s.Header["X-Tenant"], []string{"t1"}) ||
		s.Header.Get("X-Keep") != "k" || s.Header.Get("X-Trace") != "" || s.Header.Get("Content-Length") != "" {
		t.Fatalf("forwarded headers %v", s.Header)
	}
	ev := h.waitEvents(1)[0]
	var acts []string
	for _, op := range ev.HeaderOps {
		acts = append(acts, op.String())
	}
	want := []string{"ADD X-Added=yes", "DELETE X-Secret (was wrong)", "REPLACE X-Tenant=t1 (was t2,t3)", "LOG X-Trace=on", "REPLACE Content-Length=1000"}
	if !slices.Equal(acts, want) {
		t.Fatalf("ops %q, want %q", acts, want)
	}
	// Matching headers: nothing to do, only the (ignored) framing op is reported; the
	// request is forwarded as is.
	c.send("GET /h HTTP/1.1\r\nHost: svc\r\nX-Added: yes\r\nX-Tenant: t1\r\nX-Trace: on\r\n\r\n")
	c.read("GET")
	if ev := h.waitEvents(2)[1]; len(ev.HeaderOps) != 1 || ev.HeaderOps[0].Name != "Content-Length" {
		t.Fatalf("ops %v", ev.HeaderOps)
	}
	if !strings.HasSuffix(h.backend.ln.received(), "GET /h HTTP/1.1\r\nHost: svc\r\nX-Added: yes\r\nX-Tenant: t1\r\nX-Trace: on\r\n\r\n") {
		t.Fatal("not forwarded unchanged")
	}
}

// TestExpectContinueAllowed: the backend's 100 Continue reaches the client, which then
// sends the body.
func TestExpectContinueAllowed(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	c.send("POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue, got %q %v", line, err)
	}
	if l, _ := c.br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("100 Continue head: %q", l)
	}
	c.send("data")
	if resp, body := c.read("POST"); resp.StatusCode != 200 || body != "echo POST /upload data" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// TestUpstreamClosedWhileIdle: when the destination closes a kept connection, the next
// request is sent on a new one (it was never sent on the old).
func TestUpstreamClosedWhileIdle(t *testing.T) {
	h := newHarness(t, apiRules(t), nil, func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond })
	c := h.dial()
	c.send(get("/public/1"))
	c.read("GET")
	time.Sleep(300 * time.Millisecond)
	c.send(get("/public/2"))
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := h.backend.ln.accepted(); n != 2 {
		t.Fatalf("%d upstream connections, want 2", n)
	}
}

// TestDestinationUnreachable: 502, an error event, and the connection stays usable.
func TestDestinationUnreachable(t *testing.T) {
	h := newHarness(t, apiRules(t), func(c *Config) {
		c.Dial = func(ctx context.Context, n, a string) (net.Conn, error) { return nil, fmt.Errorf("no route") }
	})
	c := h.dial()
	c.send(get("/public/1") + get("/private"))
	if resp, _ := c.read("GET"); resp.StatusCode != 502 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp, _ := c.read("GET"); resp.StatusCode != 403 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ev := h.waitEvents(1)[0]; ev.Verdict != VerdictError || ev.Status != 502 || !strings.Contains(ev.Reason, "no route") {
		t.Fatalf("event %+v", ev)
	}
}

// h2Client returns an HTTP/2 prior-knowledge client connection to the proxy.
func h2Client(t *testing.T, h *harness) *http2.ClientConn {
	t.Helper()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
		return net.Dial(n, a)
	}}
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := tr.NewClientConn(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestH2CPriorKnowledge: streams of one HTTP/2 connection are judged one by one,
// concurrently; denied ones get 403, allowed ones the backend's answer, over one upstream
// HTTP/2 connection.
func TestH2CPriorKnowledge(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	cc := h2Client(t, h)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, want, wantBody := fmt.Sprintf("/public/%d?q", i), 200, fmt.Sprintf("echo GET /public/%d?q ", i)
			if i%2 == 1 {
				path, want, wantBody = fmt.Sprintf("/private/%d", i), 403, "Access denied"
			}
			req, _ := http.NewRequest("GET", "http://svc"+path, nil)
			resp, err := cc.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want || string(b) != wantBody || resp.ProtoMajor != 2 {
				errs <- fmt.Errorf("%s: %d %q", path, resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A streamed body with trailers both ways.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://svc/upload", pr)
	req.Trailer = http.Header{"X-Sum": nil}
	go func() {
		pw.Write([]byte("abc"))
		req.Trailer.Set("X-Sum", "3")
		pw.Close()
	}()
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "echo POST /upload abc" {
		t.Fatalf("POST: %d %q", resp.StatusCode, b)
	}
	if s := h.backend.last(t); s.Proto != "HTTP/2.0" || s.Trailer.Get("X-Sum") != "3" || s.Host != "svc" {
		t.Fatalf("backend saw %+v", s)
	}
	req, _ = http.NewRequest("GET", "http://svc/stream", nil)
	resp, err = cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != "part0;part1;part2;" || resp.Trailer.Get("X-Checksum") != "abc" {
		t.Fatalf("stream %q %v", b, resp.Trailer)
	}
	if n := h.backend.ln.accepted(); n != 1 {
		t.Fatalf("%d upstream connections, want 1", n)
	}
	ev := h.waitEvents(22)
	denied := 0
	for _, e := range ev {
		if e.Proto != "HTTP/2.0" {
			t.Fatalf("event %+v", e)
		}
		if e.Verdict == VerdictDenied {
			denied++
		}
	}
	if denied != 10 {
		t.Fatalf("%d denied events, want 10", denied)
	}
}

// TestH2CUpgrade: an HTTP/1.1 request with Upgrade: h2c becomes stream 1 of an HTTP/2
// connection; later streams are judged one by one.
func TestH2CUpgrade(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	c.send("GET /public/up HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "h2c" {
		t.Fatalf("%v %v", resp, err)
	}
	// Speak HTTP/2 on the connection: preface, SETTINGS, then read stream 1's response.
	io.WriteString(c.c, http2.ClientPreface)
	fr := http2.NewFramer(c.c, c.br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	responses := map[uint32]string{}
	bodies := map[uint32]string{}
	ended := map[uint32]bool{}
	sent3 := false
	for !ended[1] || !ended[3] {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v (responses %v)", err, responses)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
			if !sent3 {
				// A second stream the rules deny.
				hbuf.Reset()
				for _, hf := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "svc"}, {":path", "/private"}} {
					enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
				}
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
				sent3 = true
			}
		case *http2.MetaHeadersFrame:
			responses[f.StreamID] = f.PseudoValue("status")
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.DataFrame:
			bodies[f.StreamID] += string(f.Data())
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
	if responses[1] != "200" || bodies[1] != "echo GET /public/up " || responses[3] != "403" || bodies[3] != "Access denied" {
		t.Fatalf("responses %v bodies %v", responses, bodies)
	}
	s := h.backend.last(t)
	if s.Proto != "HTTP/2.0" || s.Header.Get("Upgrade") != "" || s.Header.Get("Http2-Settings") != "" {
		t.Fatalf("backend saw %+v", s)
	}
	ev := h.waitEvents(2)
	slices.SortFunc(ev, func(a, b Event) int { return strings.Compare(b.Path, a.Path) })
	if ev[0].Path != "/public/up" || ev[0].Verdict != VerdictAllowed || ev[1].Path != "/private" || ev[1].Verdict != VerdictDenied {
		t.Fatalf("events %v", ev)
	}
}

// TestH2CUpgradeWithBodyIsDeclined: an h2c upgrade request with a body is served as
// HTTP/1.1, without the upgrade fields (so the destination cannot switch protocols past
// the proxy).
func TestH2CUpgradeWithBodyIsDeclined(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	c.send("POST /upload HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings, keep-alive\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 2\r\n\r\nhi")
	resp, body := c.read("POST")
	if resp.StatusCode != 200 || body != "echo POST /upload hi" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if got := h.backend.ln.received(); got != "POST /upload HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi" {
		t.Fatalf("forwarded %q", got)
	}
}

// TestEventStream dumps events the way `netward observe` would print them.
func TestEventString(t *testing.T) {
	h := newHarness(t, apiRules(t), nil)
	c := h.dial()
	c.send(get("/public/x") + get("/private"))
	c.read("GET")
	c.read("GET")
	ev := h.waitEvents(2)
	for _, e := range ev {
		s := e.String()
		if !strings.Contains(s, "10.0.0.2:8080") || !strings.Contains(s, e.Verdict.String()) {
			t.Fatalf("event string %q", s)
		}
	}
}

// TestResendOnRacingClose: a destination that closes every connection right after its
// response (without saying so) makes the next request hit a closed connection; an
// idempotent request without body is sent again on a new one, a POST gets 502.
func TestResendOnRacingClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns int32
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			go func() {
				defer c.Close()
				r, err := http.ReadRequest(newReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, r.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	h := newHarness(t, allowAll(), func(c *Config) {
		c.Dial = func(ctx context.Context, n, a string) (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }
	})
	c := h.dial()
	for i := 0; i < 3; i++ {
		c.send(get("/again"))
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // the destination's close arrives, unnoticed
	}
	mu.Lock()
	n := conns
	mu.Unlock()
	if n != 3 {
		t.Fatalf("%d upstream connections, want 3", n)
	}
	c.send("POST /once HTTP/1.1\r\nHost: svc\r\nContent-Length: 1\r\n\r\nx")
	if resp, _, err := c.tryRead("POST"); err == nil && resp.StatusCode == 200 {
		t.Fatal("a POST on a closed connection must not be sent twice")
	}
}

// TestH2CUpstreamStreamLimit: when the destination allows fewer concurrent streams than the
// client opens, streams wait for a slot on the one upstream connection; none is cut.
func TestH2CUpstreamStreamLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &teeListener{Listener: ln}
	srv := &http.Server{Handler: h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "slow "+r.URL.Path)
	}), &http2.Server{MaxConcurrentStreams: 2}), ErrorLog: quietLog()}
	go srv.Serve(tl)
	defer srv.Close()
	h := newHarness(t, allowAll(), func(c *Config) {
		c.Dial = func(ctx context.Context, n, a string) (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }
		c.Logf = t.Logf
	})
	cc := h2Client(t, h)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://svc/%d", i), nil)
			resp, err := cc.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != fmt.Sprintf("slow /%d", i) {
				errs <- fmt.Errorf("stream %d: %d %q", i, resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := tl.accepted(); n != 1 {
		t.Fatalf("%d upstream connections, want 1", n)
	}
}
