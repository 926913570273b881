package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
	"time"

	"github.com/netward/netward/l7"
)

func fuzzRuleSets(t testing.TB) []RuleSet {
	return []RuleSet{
		{Origin: "a", HTTP: []*l7.HTTPRule{
			rule(t, "GET|HEAD", "/public/.*", "", nil),
			rule(t, "POST", "/api/[a-z]+", "api\\.example\\.com(:[0-9]+)?", []string{"X-Token"}),
			rule(t, "", "/h", "", []string{"X-Env: prod"},
				l7.HeaderMatch{Name: "X-Tenant", Value: "t1", Mismatch: l7.MismatchReplace},
				l7.HeaderMatch{Name: "X-Drop", Value: "ok", Mismatch: l7.MismatchDelete},
				l7.HeaderMatch{Name: "X-Add", Value: "1", Mismatch: l7.MismatchAdd},
				l7.HeaderMatch{Name: "X-Log", Mismatch: l7.MismatchLog}),
		}},
		{Origin: "b", HTTP: []*l7.HTTPRule{
			rule(t, "DELETE", ".*", "", nil, l7.HeaderMatch{Name: "X-Role", Value: "admin"}),
		}},
	}
}

var fuzzSeeds = []string{
	"GET /public/a HTTP/1.1\r\nHost: svc\r\n\r\n",
	"POST /api/x HTTP/1.1\r\nHost: api.example.com:8080\r\nX-Token: t\r\nContent-Length: 3\r\n\r\nabc",
	"POST /api/x HTTP/1.1\r\nHost: api.example.com\r\nX-Token: t\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
	"PUT /h HTTP/1.1\r\nHost: h\r\nX-Env: prod\r\nX-Drop: no\r\nX-Tenant: t2\r\n\r\n",
	"DELETE /x HTTP/1.1\r\nHost: h\r\nX-Role: admin\r\n\r\n",
	"GET http://api.example.com/public/x?q HTTP/1.1\r\nHost: other\r\n\r\n",
	"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
	"\x16\x03\x01\x00\xa5\x01\x00",
}

// FuzzHTTPRequestMatching feeds arbitrary bytes to the proxy's request parser and decision.
// It must never panic, and whenever a request parses:
//   - the decision equals l7 rule matching (AllowsHTTP semantics) of the same parsed fields;
//   - header ops applied to the raw head give a head that parses again, with the same
//     request line and the changed fields;
//   - if net/http also accepts it, both agree on the method, the host, the header fields
//     and the body framing, and for a chunked body our validating relay passes the bytes
//     through unchanged and net/http decodes the same payload from them (no desync between
//     the proxy and a destination built on net/http).
func FuzzHTTPRequestMatching(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	sets := fuzzRuleSets(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang is a failure too, reported with its input.
		tm := time.AfterFunc(3*time.Second, func() { panic(fmt.Sprintf("HANG on %q", data)) })
		defer tm.Stop()
		br := bufio.NewReaderSize(bytes.NewReader(data), 256)
		raw, err := readHead(br, nil, 4096, 50, false, checkRequestLine)
		if err != nil {
			return
		}
		var h reqHead
		if pe := parseRequestHead(raw, &h); pe != nil {
			if pe.status < 400 || pe.status > 505 || pe.reason == "" {
				t.Fatalf("parse error %+v", pe)
			}
			return
		}
		if h.preface {
			return
		}
		req := &l7.Request{Method: h.method, Path: h.path, Host: h.host, Header: h.header}
		d := decideSets(sets, req)
		want := false
		for _, s := range sets {
			for _, r := range s.HTTP {
				want = want || r.Matches(req)
			}
		}
		if d.Allowed != want {
			t.Fatalf("decision %v, rule matching %v for %q", d.Allowed, want, raw)
		}
		if !d.Allowed && len(d.HeaderOps) > 0 {
			t.Fatalf("header ops on a denied request")
		}

		// Header ops rewrite the head into one that parses again.
		if changes := headerChanges(h.header, d.HeaderOps); len(changes) > 0 || h.strip {
			out := h.rewrite(changes)
			var h2 reqHead
			if pe := parseRequestHead(out, &h2); pe != nil {
				t.Fatalf("rewritten head %q does not parse: %v", out, pe)
			}
			if h2.method != h.method || h2.target != h.target || h2.body != h.body || h2.length != h.length {
				t.Fatalf("rewrite changed the request: %q -> %q", raw, out)
			}
			for _, c := range changes {
				if got := h2.header[c.key]; strings.Join(got, "\x00") != strings.Join(c.values, "\x00") {
					t.Fatalf("field %s: %q, want %q", c.key, got, c.values)
				}
			}
		}

		// Differential against net/http.
		rest, _ := io.ReadAll(br)
		nreq, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(append(append([]byte(nil), raw...), rest...))))
		if err != nil {
			return
		}
		if nreq.Method != h.method || nreq.Host != h.host {
			t.Fatalf("net/http: %s host %q; proxy: %s host %q", nreq.Method, nreq.Host, h.method, h.host)
		}
		for k, vs := range nreq.Header {
			if strings.Join(vs, "\x00") != strings.Join(h.header[k], "\x00") {
				t.Fatalf("field %s: net/http %q, proxy %q", k, vs, h.header[k])
			}
		}
		switch h.body {
		case bodyNone:
			if nreq.ContentLength != 0 || len(nreq.TransferEncoding) != 0 {
				t.Fatalf("framing: proxy none, net/http CL %d TE %v", nreq.ContentLength, nreq.TransferEncoding)
			}
		case bodyLength:
			if nreq.ContentLength != h.length {
				t.Fatalf("framing: proxy CL %d, net/http %d", h.length, nreq.ContentLength)
			}
		case bodyChunked:
			if len(nreq.TransferEncoding) != 1 || nreq.TransferEncoding[0] != "chunked" {
				t.Fatalf("framing: proxy chunked, net/http %v", nreq.TransferEncoding)
			}
			var out bytes.Buffer
			bw := bufio.NewWriter(&out)
			src := bufio.NewReader(bytes.NewReader(rest))
			if err := copyChunked(bw, src, 4096, true, 0); err != nil {
				return
			}
			bw.Flush()
			if !bytes.HasPrefix(rest, out.Bytes()) {
				t.Fatalf("the relay changed the body: %q -> %q", rest, out.Bytes())
			}
			ours, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(out.Bytes())))
			if err != nil {
				t.Fatalf("net/http cannot decode the body the proxy relayed: %q: %v", out.Bytes(), err)
			}
			theirs, err := io.ReadAll(nreq.Body)
			if err != nil {
				t.Fatalf("net/http rejects a body the proxy relays: %q: %v", out.Bytes(), err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Fatalf("payload: proxy %q, net/http %q", ours, theirs)
			}
		}
	})
}

// FuzzProxyConnection sends arbitrary bytes through a running proxy: it must not panic, must
// close or answer every connection, and must keep serving a normal request.
func FuzzProxyConnection(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("GET /public/a HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\nPOST /api/x HTTP/1.1\r\nHost: api.example.com\r\nX-Token: 1\r\nContent-Length: 2\r\n\r\nhi"))
	h := newHarness(f, NewRules(fuzzRuleSets(f)...), func(c *Config) {
		c.ReadHeaderTimeout = 200 * time.Millisecond
		c.IOTimeout = 200 * time.Millisecond
		c.IdleTimeout = 200 * time.Millisecond
		c.MaxHeaderBytes = 4096
		c.Events = nil
	})
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil && isTimeout(err) {
			t.Fatalf("the proxy neither answered nor closed within 5s")
		}
		if n++; n%50 == 0 {
			o, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			cl := &client{t: t, c: o, br: bufio.NewReader(o)}
			cl.send("GET /public/ok HTTP/1.1\r\nHost: h\r\n\r\n")
			if resp, _ := cl.read("GET"); resp.StatusCode != 200 {
				t.Fatalf("a normal request: %d", resp.StatusCode)
			}
		}
	})
}
