package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/netward/netward/l7"
)

// h2conn serves an h2c client connection: the HTTP/2 server of x/net/http2 handles the
// framing, and every stream is judged and, when allowed, forwarded over one HTTP/2
// (prior knowledge) connection to the original destination.
type h2conn struct {
	c       *conn
	mu      sync.Mutex
	cc      *http2.ClientConn
	retired []*http2.ClientConn // replaced after a GOAWAY; their streams may still run
}

// bufConn is the client connection read through the reader that already holds its
// first bytes.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

var h2cSwitch = []byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")

// hopByHop are the HTTP/1 fields of an h2c upgrade request that do not exist in HTTP/2
// (RFC 9113 §8.2.2); Host becomes :authority.
var hopByHop = []string{"Connection", "Upgrade", "Http2-Settings", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Host"}

// serveH2 serves the connection as HTTP/2: after the preface line ("PRI * HTTP/2.0", h nil)
// or an h2c upgrade request h, which becomes stream 1.
func (c *conn) serveH2(h *reqHead) {
	c.p.http2Conns.Add(1)
	hc := &h2conn{c: c}
	c.h2 = hc
	defer hc.close()
	c.closeUpstream() // an HTTP/1 connection of earlier requests is not used any more
	opts := &http2.ServeConnOpts{Context: c.ctx, BaseConfig: c.p.h2base, Handler: hc}
	if h == nil {
		c.nc.SetReadDeadline(time.Now().Add(c.p.cfg.ReadHeaderTimeout))
		p, err := c.br.Peek(6)
		if err != nil || string(p) != "SM\r\n\r\n" {
			if err == nil || !isTimeout(err) {
				c.refuse(badRequest("malformed HTTP/2 connection preface"), []byte("PRI"))
			}
			return
		}
		c.br.Discard(6)
		opts.SawClientPreface = true
	} else {
		u, err := url.ParseRequestURI(h.path)
		if err != nil {
			c.refuse(badRequest("malformed request target"), h.raw)
			return
		}
		hdr := h.header
		for _, k := range hopByHop {
			delete(hdr, k)
		}
		req := &http.Request{
			Method: h.method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: hdr, Host: h.host, RequestURI: h.path, Body: http.NoBody,
			RemoteAddr: c.nc.RemoteAddr().String(),
		}
		opts.UpgradeRequest = req.WithContext(c.ctx)
		opts.Settings = h.settings
		if c.bw == nil {
			c.bw = getWriter(&c.wr)
		}
		c.bw.Write(h2cSwitch)
		if c.bw.Flush() != nil {
			return
		}
	}
	c.nc.SetDeadline(time.Time{})
	br := c.br
	c.br = nil // owned by the HTTP/2 server from now on; never pooled again
	c.p.h2.ServeConn(&bufConn{Conn: c.nc, r: br}, opts)
}

func (hc *h2conn) close() {
	hc.mu.Lock()
	if hc.cc != nil {
		hc.cc.Close()
		hc.cc = nil
	}
	for _, cc := range hc.retired {
		cc.Close()
	}
	hc.retired = nil
	hc.mu.Unlock()
}

type h2connKey struct{}

// h2pool is the connection pool of the proxy's HTTP/2 transport: the connection of the
// client connection a stream comes from (in the request's context).
type h2pool struct{}

func (h2pool) GetClientConn(req *http.Request, addr string) (*http2.ClientConn, error) {
	hc, ok := req.Context().Value(h2connKey{}).(*h2conn)
	if !ok {
		return nil, errors.New("proxy: HTTP/2 request without its client connection")
	}
	return hc.client()
}

// MarkDead needs nothing: client replaces a connection that can take no more requests.
func (h2pool) MarkDead(*http2.ClientConn) {}

// client returns the HTTP/2 connection to the original destination, dialing it when there
// is none or the current one is no longer usable (GOAWAY, closed). The transport is strict
// about the destination's stream limit: a stream waits for a slot rather than opening
// another connection.
func (hc *h2conn) client() (*http2.ClientConn, error) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.cc != nil && hc.cc.CanTakeNewRequest() {
		return hc.cc, nil
	}
	if hc.cc != nil {
		hc.retired = append(hc.retired, hc.cc)
		hc.cc = nil
	}
	c := hc.c
	ctx, cancel := context.WithTimeout(c.ctx, c.p.cfg.DialTimeout)
	defer cancel()
	c.p.upstreamDials.Add(1)
	up, err := c.p.cfg.Dial(ctx, "tcp", c.info.Dst.String())
	if err != nil {
		return nil, err
	}
	cc, err := c.p.h2t.NewClientConn(up)
	if err != nil {
		up.Close()
		return nil, err
	}
	// Until the destination's SETTINGS arrive the transport assumes 100 concurrent
	// streams, so a burst of client streams could exceed a lower limit and be reset with
	// PROTOCOL_ERROR. A server's SETTINGS is its first frame (RFC 9113 §3.4), so once the
	// answer to a PING is read its stream limit is known.
	if err := cc.Ping(ctx); err != nil {
		cc.Close()
		return nil, fmt.Errorf("HTTP/2 connection preface: %w", err)
	}
	hc.cc = cc
	return cc, nil
}

// ServeHTTP judges one stream and answers it: 403, or the destination's response.
func (hc *h2conn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := hc.c
	path := r.RequestURI
	ev := Event{Src: c.info.Src, Dst: c.info.Dst, Egress: c.info.Egress, Proto: "HTTP/2.0",
		Method: r.Method, Path: path, Host: r.Host}
	if r.Method == http.MethodConnect {
		ev.Verdict, ev.Status, ev.Reason = VerdictError, http.StatusNotImplemented, "CONNECT over HTTP/2 is not supported"
		c.p.emit(ev)
		http.Error(w, http.StatusText(http.StatusNotImplemented), http.StatusNotImplemented)
		return
	}
	req := &l7.Request{Method: r.Method, Path: path, Host: r.Host, Header: r.Header}
	d := c.p.cfg.Decider.Decide(r.Context(), Flow{Src: c.info.Src, Dst: c.info.Dst, Egress: c.info.Egress,
		Port: c.info.Dst.Port(), Proto: "HTTP/2.0", Request: req})
	ev.Origins, ev.HeaderOps, ev.Reason = d.Origins, d.HeaderOps, d.Reason
	if !d.Allowed {
		ev.Verdict, ev.Status = VerdictDenied, http.StatusForbidden
		c.p.emit(ev)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "13")
		w.WriteHeader(http.StatusForbidden)
		w.Write(deniedBody)
		return
	}
	if _, err := hc.client(); err != nil {
		ev.Verdict, ev.Status, ev.Reason = VerdictError, http.StatusBadGateway, "original destination unreachable: "+err.Error()
		c.p.emit(ev)
		http.Error(w, http.StatusText(http.StatusBadGateway), http.StatusBadGateway)
		return
	}
	ev.Verdict = VerdictAllowed
	c.p.emit(ev)

	hdr := r.Header
	if changes := headerChanges(hdr, d.HeaderOps); len(changes) > 0 {
		hdr = hdr.Clone()
		for _, ch := range changes {
			if ch.values == nil {
				delete(hdr, ch.key)
			} else {
				hdr[ch.key] = ch.values
			}
		}
	}
	u := &url.URL{Scheme: "http", Host: r.Host, Opaque: path}
	if strings.HasPrefix(path, "//") {
		if pu, err := url.ParseRequestURI(path); err == nil {
			u = pu
			u.Scheme, u.Host = "http", r.Host
		}
	}
	out := (&http.Request{
		Method: r.Method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Host: r.Host,
		Header: hdr, Body: r.Body, ContentLength: r.ContentLength, Trailer: r.Trailer,
	}).WithContext(r.Context())
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	// The transport's pool is this connection's (h2pool): it retries a stream the
	// destination refused unprocessed (REFUSED_STREAM, GOAWAY) on the same or a new
	// connection, as net/http does.
	resp, err := c.p.h2t.RoundTrip(out.WithContext(context.WithValue(r.Context(), h2connKey{}, hc)))
	if err != nil {
		c.p.logf("proxy: %s -> %s: HTTP/2 stream: %v", c.info.Src, c.info.Dst, err)
		http.Error(w, http.StatusText(http.StatusBadGateway), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	wh := w.Header()
	for k, vv := range resp.Header {
		wh[k] = vv
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	bp := bulkPool.Get().(*[]byte)
	defer bulkPool.Put(bp)
	for {
		n, err := resp.Body.Read(*bp)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			c.p.logf("proxy: %s -> %s: HTTP/2 response body: %v", c.info.Src, c.info.Dst, err)
			panic(http.ErrAbortHandler) // resets the stream
		}
	}
	for k, vv := range resp.Trailer {
		wh[http.TrailerPrefix+k] = vv
	}
}

// logWriter adapts Config.Logf to the log.Logger of the HTTP/2 server.
type logWriter struct{ p *Proxy }

func (w logWriter) Write(b []byte) (int, error) {
	w.p.logf("%s", strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
