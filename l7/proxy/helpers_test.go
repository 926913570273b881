package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/netward/netward/l7"
)

// seen is a request as the backend received it.
type seen struct {
	Method, URI, Host, Proto string
	Header                   http.Header
	Body                     string
	Trailer                  http.Header
}

// backend is the original destination: an HTTP/1.1 + h2c server that records what it
// receives and answers "echo <method> <uri> <body>". Upgrade: echo is accepted with 101
// and the connection then echoes bytes. /stream answers with a chunked body in pieces.
type backend struct {
	addr string
	srv  *http.Server
	ln   *teeListener
	mu   sync.Mutex
	reqs []seen
}

func newBackend(t testing.TB, opts ...func(*http.Server)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), ln: &teeListener{Listener: ln}}
	mux := http.HandlerFunc(b.serve)
	b.srv = &http.Server{Handler: h2c.NewHandler(mux, &http2.Server{}), ErrorLog: quietLog()}
	for _, o := range opts {
		o(b.srv)
	}
	go b.srv.Serve(b.ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
		hj, _ := w.(http.Hijacker)
		c, brw, err := hj.Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
		return
	}
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.reqs = append(b.reqs, seen{Method: r.Method, URI: r.RequestURI, Host: r.Host, Proto: r.Proto,
		Header: r.Header.Clone(), Body: string(body), Trailer: r.Trailer.Clone()})
	b.mu.Unlock()
	if r.URL.Path == "/stream" {
		w.Header().Set("Trailer", "X-Checksum")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc")
		return
	}
	w.Header().Set("X-Backend", "1")
	fmt.Fprintf(w, "echo %s %s %s", r.Method, r.RequestURI, body)
}

func (b *backend) last(t testing.TB) seen {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatal("the backend received no request")
	}
	return b.reqs[len(b.reqs)-1]
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

// teeListener records every byte the backend reads, per connection, in order.
type teeListener struct {
	net.Listener
	mu    sync.Mutex
	bytes bytes.Buffer
	conns int
}

func (l *teeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns++
	l.mu.Unlock()
	return &teeConn{Conn: c, l: l}, nil
}

func (l *teeListener) received() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes.String()
}

func (l *teeListener) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns
}

type teeConn struct {
	net.Conn
	l *teeListener
}

func (c *teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.mu.Lock()
	c.l.bytes.Write(p[:n])
	c.l.mu.Unlock()
	return n, err
}

// harness is a proxy in front of a backend; the original destination is dst.
type harness struct {
	t       testing.TB
	p       *Proxy
	addr    string
	backend *backend
	mu      sync.Mutex
	events  []Event
}

var testDst = netip.MustParseAddrPort("10.0.0.2:8080")

func newHarness(t testing.TB, d Decider, tweak func(*Config), backendOpts ...func(*http.Server)) *harness {
	t.Helper()
	h := &harness{t: t, backend: newBackend(t, backendOpts...)}
	cfg := Config{
		Decider: d,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if address != testDst.String() {
				return nil, fmt.Errorf("dial %s: want the original destination %s", address, testDst)
			}
			var dl net.Dialer
			return dl.DialContext(ctx, network, h.backend.addr)
		},
		Events: func(e Event) {
			h.mu.Lock()
			h.events = append(h.events, e)
			h.mu.Unlock()
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.p, h.addr = p, ln.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Serve(WithOriginalDestination(ln, testDst))
	}()
	t.Cleanup(func() {
		p.Close()
		<-done
	})
	return h
}

func (h *harness) eventList() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.events...)
}

// waitEvents waits until n events arrived.
func (h *harness) waitEvents(n int) []Event {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := h.eventList()
		if len(ev) >= n || time.Now().After(deadline) {
			if len(ev) < n {
				h.t.Fatalf("got %d events, want %d: %v", len(ev), n, ev)
			}
			return ev
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (h *harness) dial() *client {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return &client{t: h.t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one response to a request with method.
func (c *client) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, body, err := c.tryRead(method)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, body
}

func (c *client) tryRead(method string) (*http.Response, string, error) {
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	return resp, string(b), nil
}

// closed reports whether the proxy closed the connection (EOF or reset) within d.
func (c *client) closed(d time.Duration) bool {
	c.c.SetReadDeadline(time.Now().Add(d))
	_, err := c.br.ReadByte()
	if err == nil {
		return false
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

func rule(t testing.TB, method, path, host string, headers []string, matches ...l7.HeaderMatch) *l7.HTTPRule {
	t.Helper()
	r, err := l7.NewHTTPRule(method, path, host, headers, matches)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: svc\r\n\r\n" }

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
