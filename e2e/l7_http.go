//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/cni/cnitest"
)

// HTTP outcomes of a request through the datapath and the proxy.
const (
	HTTPOK      = "200"        // the destination answered
	HTTPDenied  = "403"        // the proxy answered 403 Forbidden, "Access denied"
	HTTPDropped = "dropped"    // no connection: the datapath dropped it at L3/L4
	HTTPUpError = "502"        // the proxy allowed it, the destination was unreachable
	httpRefused = "refused"    // never expected: a reset where a listener should be
	httpOther   = "unexpected" // anything else
)

// HTTPServe starts an HTTP/1.1 and h2c (prior knowledge) server at place on each port.
// It answers 200 with "<name> <method> <path> from <client address>" and stops when the
// test ends.
func HTTPServe(t interface {
	Helper()
	Cleanup(func())
	Fatalf(string, ...any)
}, at Place, ports ...uint16) {
	t.Helper()
	for _, port := range ports {
		var ln net.Listener
		err := cnitest.InNetns(at.Netns, func() error {
			var err error
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(at.Addr, port).String())
			return err
		})
		if err != nil {
			t.Fatalf("HTTP server at %s:%d: %v", at.Name, port, err)
		}
		name := at.Name
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "%s %s %s from %s", name, r.Method, r.URL.RequestURI(), r.RemoteAddr)
			}),
			ReadHeaderTimeout: 10 * time.Second,
			Protocols:         new(http.Protocols),
		}
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
}

// HTTPSession is one client connection's worth of requests from a place: net/http with at
// most one connection, dialed inside the source's network namespace, so that successive
// requests share a keep-alive connection (HTTP/1.1) or one HTTP/2 connection (h2c).
type HTTPSession struct {
	From, To Place
	Port     uint16
	H2C      bool

	client *http.Client
	tr     *http.Transport
	mu     sync.Mutex
	conns  int // connections dialed
}

// NewHTTPSession returns a session; dialTimeout is how long a connection may take before
// the flow counts as dropped.
func NewHTTPSession(from, to Place, port uint16, h2c bool, dialTimeout time.Duration) *HTTPSession {
	s := &HTTPSession{From: from, To: to, Port: port, H2C: h2c}
	s.tr = &http.Transport{
		MaxConnsPerHost:       1,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       5 * time.Minute,
		ResponseHeaderTimeout: 8 * time.Second, // beyond the proxy's 5 s dial timeout (502)
		DisableCompression:    true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := cnitest.InNetns(from.Netns, func() error {
				d := net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: from.Addr.AsSlice()}}
				var err error
				c, err = d.DialContext(ctx, "tcp4", addr)
				return err
			})
			if err == nil {
				s.mu.Lock()
				s.conns++
				s.mu.Unlock()
			}
			return c, err
		},
	}
	if h2c {
		s.tr.Protocols = new(http.Protocols)
		s.tr.Protocols.SetUnencryptedHTTP2(true)
	}
	s.client = &http.Client{Transport: s.tr, Timeout: 12 * time.Second}
	return s
}

// Conns is the number of connections the session dialed so far.
func (s *HTTPSession) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Close closes the session's connections.
func (s *HTTPSession) Close() { s.tr.CloseIdleConnections() }

// HTTPCall is one request and what came of it.
type HTTPCall struct {
	Method, Path string
	Headers      []string // "Name: value"
	Outcome      string
	Reused       bool // sent on a connection that had carried a request before
	Err          error
	Body         string
}

// Do sends one request and classifies the outcome.
func (s *HTTPSession) Do(method, path string, headers ...string) HTTPCall {
	call := HTTPCall{Method: method, Path: path, Headers: headers}
	url := fmt.Sprintf("http://%s%s", netip.AddrPortFrom(s.To.Addr, s.Port), path)
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut {
		body = strings.NewReader("payload")
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		call.Outcome, call.Err = httpOther, err
		return call
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) { call.Reused = ci.Reused },
	}))
	resp, err := s.client.Do(req)
	if err != nil {
		call.Err = err
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
			call.Outcome = httpRefused
		case errors.As(err, &ne) && ne.Timeout():
			call.Outcome = HTTPDropped
		default:
			call.Outcome = httpOther
		}
		return call
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	call.Body = string(b)
	switch {
	case resp.StatusCode == http.StatusOK:
		call.Outcome = HTTPOK
	case resp.StatusCode == http.StatusForbidden && call.Body == "Access denied":
		call.Outcome = HTTPDenied
	case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable:
		call.Outcome = HTTPUpError
	default:
		call.Outcome = fmt.Sprintf("status %d", resp.StatusCode)
	}
	return call
}

// ExpectHTTP is what traffic must do for a request, from netward trace: the source's egress
// first (an L3/L4 deny drops the connection; a redirect answers 403 to a request its HTTP
// rules do not admit, before anything reaches the destination), then the destination's
// ingress (an L3/L4 deny drops the connection, or, behind an egress proxy, makes the proxy
// answer 502; a redirect answers 403 to what its rules do not admit).
func ExpectHTTP(r *analysis.Result) string {
	l4Denied := func(s *analysis.Side) bool { return s != nil && !s.Allowed && s.HTTP == nil }
	httpDenied := func(s *analysis.Side) bool { return s != nil && s.HTTP != nil && !s.HTTP.Allowed }
	egressProxied := r.Egress != nil && r.Egress.HTTP != nil
	switch {
	case l4Denied(r.Egress):
		return HTTPDropped
	case httpDenied(r.Egress):
		return HTTPDenied
	case l4Denied(r.Ingress) && egressProxied:
		return HTTPUpError
	case l4Denied(r.Ingress):
		return HTTPDropped
	case httpDenied(r.Ingress):
		return HTTPDenied
	}
	return HTTPOK
}

// TraceHTTP traces one request with netward's analysis.
func TraceHTTP(c *cluster.Cluster, from, to Place, port uint16, method, path string, headers []string) (*analysis.Result, error) {
	req, err := analysis.NewRequest(method, path, headers)
	if err != nil {
		return nil, err
	}
	if req.Host == "" {
		req.Host = netip.AddrPortFrom(to.Addr, port).String() // what net/http sends
	}
	return analysis.Trace(c, analysis.Flow{From: from.Name, To: to.Name, Proto: 6, Port: port, HTTP: req})
}
