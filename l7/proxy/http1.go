package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/netward/netward/l7"
)

const bufSize = 4 << 10

var endOfHead = []byte("\r\n\r\n")

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
	headPool   = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
	discardW   = sync.Pool{New: func() any { return bufio.NewWriterSize(io.Discard, bufSize) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writerPool.Put(bw)
}

// timedReader bounds every read to perRead without progress, when perRead is set (body
// reads, response reads). To keep timer updates off the hot path the deadline is moved
// only when an eighth of perRead has passed since it was last set, so a stall is cut
// after 7/8 to 8/8 of perRead.
type timedReader struct {
	c       net.Conn
	perRead time.Duration
	set     time.Time
}

// arm switches the per-read deadline on (d > 0) or off.
func (r *timedReader) arm(d time.Duration) {
	r.perRead, r.set = d, time.Time{}
}

func (r *timedReader) Read(p []byte) (int, error) {
	if r.perRead > 0 {
		if now := time.Now(); now.Sub(r.set) > r.perRead/8 {
			r.c.SetReadDeadline(now.Add(r.perRead))
			r.set = now
		}
	}
	return r.c.Read(p)
}

// timedWriter bounds every write to timeout without progress (same throttling as
// timedReader): a peer that stops reading holds a connection at most that long.
type timedWriter struct {
	c       net.Conn
	timeout time.Duration
	set     time.Time
}

func (w *timedWriter) Write(p []byte) (int, error) {
	if w.timeout > 0 {
		if now := time.Now(); now.Sub(w.set) > w.timeout/8 {
			w.c.SetWriteDeadline(now.Add(w.timeout))
			w.set = now
		}
	}
	return w.c.Write(p)
}

// conn is one client connection: HTTP/1.1 requests are served one after the other, in
// order (pipelined requests wait in the socket and the reader), over at most one upstream
// connection to the original destination; an h2c connection is handed to the HTTP/2 server.
type conn struct {
	p      *Proxy
	nc     net.Conn
	info   ConnInfo
	ctx    context.Context
	cancel context.CancelFunc

	rd timedReader
	wr timedWriter
	br *bufio.Reader // nil while idle
	bw *bufio.Writer // nil outside an exchange
	hb *[]byte       // the raw head of the current request
	rq reqHead
	lr l7.Request // what the Decider sees of rq

	mu      sync.Mutex // guards up for abort
	up      net.Conn
	urd     timedReader
	uwr     timedWriter
	upr     *bufio.Reader
	upw     *bufio.Writer
	closing atomic.Bool
	lastErr error
	upFresh bool      // up was dialed for the current request
	upLast  time.Time // when up last completed an exchange

	h2 *h2conn
}

func newConn(p *Proxy, nc net.Conn) *conn {
	c := &conn{p: p, nc: nc}
	c.info = ConnInfo{Src: addrPort(nc.RemoteAddr()), Dst: addrPort(nc.LocalAddr()), Egress: p.cfg.Egress}
	c.ctx, c.cancel = context.WithCancel(context.WithValue(context.Background(), connInfoKey{}, c.info))
	c.rd = timedReader{c: nc}
	c.wr = timedWriter{c: nc, timeout: p.cfg.IOTimeout}
	return c
}

// abort closes both connections from another goroutine (Proxy.Close).
func (c *conn) abort() {
	c.closing.Store(true)
	c.nc.Close()
	c.mu.Lock()
	if c.up != nil {
		c.up.Close()
	}
	c.mu.Unlock()
	c.cancel()
}

func (c *conn) closeUpstream() {
	c.mu.Lock()
	if c.up != nil {
		c.up.Close()
		c.up = nil
	}
	c.mu.Unlock()
	if c.upr != nil {
		putReader(c.upr)
		c.upr = nil
	}
}

func (c *conn) finish() {
	c.cancel()
	c.nc.Close()
	c.closeUpstream()
	if c.br != nil {
		putReader(c.br)
		c.br = nil
	}
	if c.bw != nil {
		putWriter(c.bw)
		c.bw = nil
	}
	if c.hb != nil {
		headPool.Put(c.hb)
		c.hb = nil
	}
}

func (c *conn) serve() {
	defer c.finish()
	headDeadline := time.Now().Add(c.p.cfg.ReadHeaderTimeout)
	first := true
	for {
		wait := headDeadline // the first request: ReadHeaderTimeout from the accept
		if !first {
			wait = time.Now().Add(c.p.cfg.IdleTimeout)
		}
		if !c.awaitRequest(wait) {
			if first && isTimeout(c.lastErr) {
				c.p.headerTimeouts.Add(1)
			}
			return
		}
		if !first {
			headDeadline = time.Now().Add(c.p.cfg.ReadHeaderTimeout)
		}
		first = false
		if c.br == nil {
			c.br = getReader(&c.rd)
		}
		if p, _ := c.br.Peek(c.br.Buffered()); len(p) == 0 || p[0] == '\r' || p[0] == '\n' || !bytes.Contains(p, endOfHead) {
			c.nc.SetReadDeadline(headDeadline) // more to read: ReadHeaderTimeout applies
		}
		if c.hb == nil {
			c.hb = headPool.Get().(*[]byte)
		}
		if b, err := c.br.Peek(1); err == nil && !isTokenByte(b[0]) && b[0] != '\r' && b[0] != '\n' {
			c.refuse(badRequest("not an HTTP request"), nil) // e.g. a TLS ClientHello: fail at once
			return
		}
		raw, err := readHead(c.br, *c.hb, c.p.cfg.MaxHeaderBytes, c.p.cfg.MaxHeaderCount, false, checkRequestLine)
		*c.hb = raw[:0]
		if err != nil {
			var pe *parseError
			switch {
			case err == io.EOF:
			case errors.As(err, &pe):
				c.refuse(pe, raw)
			case isTimeout(err):
				c.p.headerTimeouts.Add(1)
				if len(raw) > 0 {
					c.refuse(&parseError{status: http.StatusRequestTimeout, reason: "request head not received in time"}, raw)
				}
			}
			return
		}
		if pe := parseRequestHead(raw, &c.rq); pe != nil {
			c.refuse(pe, raw)
			return
		}
		if c.rq.preface {
			c.serveH2(nil)
			return
		}
		keep := c.exchange(&c.rq)
		if c.bw != nil {
			putWriter(c.bw)
			c.bw = nil
		}
		if cap(*c.hb) > 16<<10 {
			*c.hb = make([]byte, 0, 1024) // do not keep a huge head buffer around
		}
		headPool.Put(c.hb)
		c.hb = nil
		if !keep || c.closing.Load() {
			return
		}
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// exchange judges one request and answers it: 403, or forwarding and relaying the response.
// It reports whether the connection can serve another request.
func (c *conn) exchange(h *reqHead) bool {
	if h.h2c {
		c.serveH2(h)
		return false
	}
	ev := Event{Src: c.info.Src, Dst: c.info.Dst, Egress: c.info.Egress, Proto: h.proto(),
		Method: h.method, Path: h.path, Host: h.host}
	c.lr = l7.Request{Method: h.method, Path: h.path, Host: h.host, Header: h.header}
	req := &c.lr
	d := c.p.cfg.Decider.Decide(c.ctx, Flow{Src: c.info.Src, Dst: c.info.Dst, Egress: c.info.Egress,
		Port: c.info.Dst.Port(), Proto: ev.Proto, Request: req})
	ev.Origins, ev.HeaderOps, ev.Reason = d.Origins, d.HeaderOps, d.Reason
	c.bw = getWriter(&c.wr)
	if !d.Allowed {
		ev.Verdict, ev.Status = VerdictDenied, http.StatusForbidden
		c.p.emit(ev)
		return c.respondLocal(h, http.StatusForbidden)
	}
	if err := c.ensureUpstream(); err != nil {
		ev.Verdict, ev.Status, ev.Reason = VerdictError, http.StatusBadGateway, "original destination unreachable: "+err.Error()
		c.p.emit(ev)
		c.p.logf("proxy: %s -> %s: %v", c.info.Src, c.info.Dst, err)
		return c.respondLocal(h, http.StatusBadGateway)
	}
	ev.Verdict = VerdictAllowed
	c.p.emit(ev)
	return c.forward(h, d.HeaderOps)
}

// upstreamCheckAfter is how long an upstream connection must have been idle before it is
// checked (one syscall) for a close by the destination. A close that races with a request
// is covered by resending idempotent requests without body once (see forward).
const upstreamCheckAfter = 250 * time.Millisecond

// ensureUpstream makes sure there is a usable connection to the original destination:
// a kept one is reused unless the destination closed it (or sent something unsolicited)
// while the client was idle, then it is replaced: the request was not sent yet.
func (c *conn) ensureUpstream() error {
	if c.up != nil {
		if c.urd.perRead > 0 {
			c.up.SetReadDeadline(time.Time{})
		}
		stale := c.upr != nil && c.upr.Buffered() > 0 ||
			time.Since(c.upLast) > upstreamCheckAfter && !peerAlive(c.up)
		if !stale {
			if c.upr == nil {
				c.upr = getReader(&c.urd)
			}
			c.upFresh = false
			return nil
		}
		c.closeUpstream()
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.p.cfg.DialTimeout)
	defer cancel()
	c.p.upstreamDials.Add(1)
	up, err := c.p.cfg.Dial(ctx, "tcp", c.info.Dst.String())
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closing.Load() {
		c.mu.Unlock()
		up.Close()
		return errors.New("proxy closing")
	}
	c.up = up
	c.mu.Unlock()
	c.urd = timedReader{c: up, perRead: c.p.cfg.ResponseTimeout}
	c.upFresh = true
	c.uwr = timedWriter{c: up, timeout: c.p.cfg.IOTimeout}
	c.upr = getReader(&c.urd)
	return nil
}

// forward sends the request (head rewritten only for header ops or a declined h2c upgrade)
// and its body to the destination and relays the response.
func (c *conn) forward(h *reqHead, ops []l7.HeaderOp) bool {
	head := h.raw
	if changes := headerChanges(h.header, ops); len(changes) > 0 || h.strip {
		head = h.rewrite(changes)
	}
	c.upw = getWriter(&c.uwr)
	defer func() {
		putWriter(c.upw)
		c.upw = nil
	}()
	tunnel := h.method == "CONNECT" || h.upgrade != "" && !h.strip
	for attempt := 0; ; attempt++ {
		if _, err := c.upw.Write(head); err != nil {
			return c.upstreamFailed(h, err)
		}
		var body *bodyCopy
		if h.body != bodyNone {
			body = &bodyCopy{done: make(chan struct{})}
			c.rd.arm(c.p.cfg.IOTimeout)
			up := c.up
			go func() {
				err := c.copyRequestBody(h)
				if err == nil {
					err = c.upw.Flush()
				}
				if err != nil {
					up.Close() // unblocks the response read
				}
				body.err = err
				close(body.done)
			}()
		} else if err := c.upw.Flush(); err != nil {
			if attempt == 0 && c.canResend(h, tunnel) {
				if c.redial() {
					continue
				}
			}
			return c.upstreamFailed(h, err)
		}
		retry := attempt == 0 && c.canResend(h, tunnel)
		keep, upgraded, resend := c.relayResponse(h, tunnel, body, retry)
		if resend {
			if c.redial() {
				continue
			}
			c.writeLocal(h, http.StatusBadGateway, false)
			return false
		}
		if body != nil {
			if !keep && !upgraded {
				c.mu.Lock()
				if c.up != nil {
					c.up.Close()
				}
				c.mu.Unlock()
			}
			<-body.done
			if body.err != nil {
				keep, upgraded = false, false
			}
			c.rd.arm(0)
		}
		if upgraded {
			c.splice()
			return false
		}
		if !keep {
			c.closeUpstream()
		} else {
			c.upLast = time.Now()
			if c.upr.Buffered() == 0 {
				putReader(c.upr) // idle connections hold no buffers
				c.upr = nil
			}
		}
		return keep
	}
}

// canResend reports whether a request may be sent again on a new connection when a reused
// one turns out closed before any byte of a response: idempotent, without body, not a
// tunnel (as net/http's Transport).
func (c *conn) canResend(h *reqHead, tunnel bool) bool {
	if c.upFresh || h.body != bodyNone || tunnel {
		return false
	}
	switch h.method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// redial replaces the upstream connection.
func (c *conn) redial() bool {
	c.closeUpstream()
	if err := c.ensureUpstream(); err != nil {
		c.p.logf("proxy: %s -> %s: redialing: %v", c.info.Src, c.info.Dst, err)
		return false
	}
	c.upw.Reset(&c.uwr)
	return true
}

// bodyCopy is a request body on its way to the destination, relayed concurrently with the
// response (which may come first: Expect: 100-continue, or an early error).
type bodyCopy struct {
	done chan struct{}
	err  error
}

// upstreamFailed answers 502 when the request could not be sent at all.
func (c *conn) upstreamFailed(h *reqHead, err error) bool {
	c.p.logf("proxy: %s -> %s: sending the request: %v", c.info.Src, c.info.Dst, err)
	c.closeUpstream()
	c.respondLocal(h, http.StatusBadGateway)
	return false
}

// copyRequestBody relays the request body to the destination, strictly framed.
func (c *conn) copyRequestBody(h *reqHead) error {
	switch h.body {
	case bodyLength:
		return copyN(c.upw, c.br, h.length)
	case bodyChunked:
		return copyChunked(c.upw, c.br, c.p.cfg.MaxHeaderBytes, true, 0)
	}
	return nil
}

// relayResponse relays the destination's response (interim 1xx responses included) to the
// client. It reports whether the connection can be kept and whether a tunnel (accepted
// Upgrade or CONNECT) starts now.
func (c *conn) relayResponse(h *reqHead, tunnel bool, body *bodyCopy, canRetry bool) (keep, upgraded, retry bool) {
	wrote := false
	hb := headPool.Get().(*[]byte)
	defer func() {
		*hb = (*hb)[:0]
		if cap(*hb) <= 16<<10 {
			headPool.Put(hb)
		}
	}()
	for {
		raw, err := readHead(c.upr, *hb, 4*c.p.cfg.MaxHeaderBytes, 1000, true, nil)
		*hb = raw[:0]
		if canRetry && !wrote && len(raw) == 0 && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) {
			return false, false, true // the reused connection was closed under the request
		}
		var r respHead
		if err == nil {
			err = parseResponseHead(raw, &r)
		}
		if err == nil && r.status == http.StatusSwitchingProtocols &&
			(!tunnel || h.method == "CONNECT" || hasToken([]string{r.upgrade}, "h2c")) {
			// A protocol switch nobody asked for, or to HTTP/2, which would carry requests
			// past the policy: refuse.
			err = errors.New("unexpected 101 Switching Protocols")
		}
		if err != nil {
			status := http.StatusBadGateway
			if body != nil && !wrote {
				// The destination gave up on the request: if the client's body was
				// malformed, say so.
				<-body.done
				if isFraming(body.err) {
					status = http.StatusBadRequest
					err = body.err
				}
			}
			c.p.logf("proxy: %s -> %s: reading the response: %v", c.info.Src, c.info.Dst, err)
			if !wrote {
				c.writeLocal(h, status, false)
				if body == nil || status == http.StatusBadRequest {
					c.lingerClose() // nobody else reads the client now
				}
			}
			return false, false, false
		}
		if _, err := c.bw.Write(raw); err != nil {
			return false, false, false
		}
		wrote = true
		if r.status == http.StatusSwitchingProtocols {
			return false, c.bw.Flush() == nil, false
		}
		if r.status < 200 {
			if c.bw.Flush() != nil {
				return false, false, false
			}
			continue
		}
		if h.method == "CONNECT" && r.status/100 == 2 {
			return false, c.bw.Flush() == nil, false
		}
		kind := r.body
		if h.method == "HEAD" || r.status == http.StatusNoContent || r.status == http.StatusNotModified {
			kind = bodyNone
		}
		switch kind {
		case bodyLength:
			err = copyN(c.bw, c.upr, r.length)
		case bodyChunked:
			err = copyChunked(c.bw, c.upr, 4*c.p.cfg.MaxHeaderBytes, false, 0)
		case bodyUntilClose:
			err = copyUntilEOF(c.bw, c.upr)
		}
		if err == nil {
			err = c.bw.Flush()
		}
		if err != nil {
			c.p.logf("proxy: %s -> %s: relaying the response: %v", c.info.Src, c.info.Dst, err)
			return false, false, false
		}
		return !h.close && !r.close && kind != bodyUntilClose, false, false
	}
}

func isFraming(err error) bool {
	return err == errBadChunk || err == errTrailerSize || err == io.ErrUnexpectedEOF
}

// respondLocal answers a request the proxy does not forward (403, 502). The request body,
// if any, is read and dropped (up to MaxDiscardBytes) so that the next request's framing
// stays right; otherwise, and after Expect: 100-continue, the connection is closed.
func (c *conn) respondLocal(h *reqHead, status int) bool {
	keep := !h.close
	if h.body != bodyNone {
		switch {
		case h.expect, h.body == bodyLength && h.length > c.p.cfg.MaxDiscardBytes:
			keep = false
		default:
			c.rd.arm(c.p.cfg.IOTimeout)
			dw := discardW.Get().(*bufio.Writer)
			var err error
			if h.body == bodyLength {
				err = copyN(dw, c.br, h.length)
			} else {
				err = copyChunked(dw, c.br, c.p.cfg.MaxHeaderBytes, true, c.p.cfg.MaxDiscardBytes)
			}
			dw.Reset(io.Discard)
			discardW.Put(dw)
			c.rd.arm(0)
			if err != nil {
				keep = false
			}
		}
	}
	c.writeLocal(h, status, keep)
	if !keep {
		c.lingerClose()
	}
	return keep
}

var deniedBody = []byte("Access denied")

// localResponse renders a response of the proxy's own.
func localResponse(status int, keep, head bool, http10KeepAlive bool, body []byte) []byte {
	b := make([]byte, 0, 160)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nContent-Type: text/plain\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	if !keep {
		b = append(b, "Connection: close\r\n"...)
	} else if http10KeepAlive {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	if !head {
		b = append(b, body...)
	}
	return b
}

// The 403 variants, rendered once: keep-alive, close; with and without body (HEAD);
// HTTP/1.0 keep-alive.
var denied = func() (m [2][2][2][]byte) {
	for k := 0; k < 2; k++ {
		for hd := 0; hd < 2; hd++ {
			for v := 0; v < 2; v++ {
				m[k][hd][v] = localResponse(http.StatusForbidden, k == 1, hd == 1, v == 1, deniedBody)
			}
		}
	}
	return m
}()

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c *conn) writeLocal(h *reqHead, status int, keep bool) {
	var resp []byte
	head := h != nil && h.method == "HEAD"
	http10 := h != nil && h.minor == 0 && keep
	if status == http.StatusForbidden {
		resp = denied[b2i(keep)][b2i(head)][b2i(http10)]
	} else {
		resp = localResponse(status, keep, head, http10, []byte(http.StatusText(status)))
	}
	if c.bw == nil {
		c.bw = getWriter(&c.wr)
	}
	c.bw.Write(resp)
	c.bw.Flush()
}

// refuse answers a request the proxy could not parse and closes the connection.
func (c *conn) refuse(pe *parseError, raw []byte) {
	ev := Event{Src: c.info.Src, Dst: c.info.Dst, Egress: c.info.Egress, Proto: "HTTP/1.1",
		Verdict: VerdictError, Status: pe.status, Reason: pe.reason}
	if line, _ := nextLine(raw, 0); len(line) > 0 {
		// Best effort: the method of a request line that starts like one.
		for i, b := range line {
			if b == ' ' {
				if isToken(line[:i]) {
					ev.Method = string(line[:i])
				}
				break
			}
			if i > 32 {
				break
			}
		}
	}
	c.p.emit(ev)
	c.writeLocal(nil, pe.status, false)
	c.lingerClose()
}

// lingerClose half-closes the client connection after a final response and drains what the
// client still sends for a short while, so that unread bytes do not turn the close into a
// reset that destroys the response before the client reads it.
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var src io.Reader = c.nc
	if c.br != nil {
		src = c.br
	}
	io.CopyN(io.Discard, src, 256<<10)
	c.nc.Close()
}

// splice connects client and destination byte for byte after an accepted Upgrade or
// CONNECT. When one side has finished sending, the other has IdleTimeout to finish.
func (c *conn) splice() {
	c.p.upgrades.Add(1)
	up := c.up
	c.nc.SetDeadline(time.Time{})
	up.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n := c.br.Buffered(); n > 0 {
			p, _ := c.br.Peek(n)
			if _, err := up.Write(p); err != nil {
				c.nc.Close()
				return
			}
			c.br.Discard(n)
		}
		_, err := io.Copy(underlying(up), underlying(c.nc))
		if err != nil {
			up.Close()
			c.nc.Close()
			return
		}
		closeWrite(up)
		c.nc.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
		up.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
	}()
	var err error
	if n := c.upr.Buffered(); n > 0 {
		p, _ := c.upr.Peek(n)
		_, err = c.nc.Write(p)
		c.upr.Discard(n)
	}
	if err == nil {
		_, err = io.Copy(underlying(c.nc), underlying(up))
	}
	if err != nil {
		up.Close()
		c.nc.Close()
	} else {
		closeWrite(c.nc)
		c.nc.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
		up.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
	}
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// underlying unwraps connection wrappers (WithOriginalDestination) so that io.Copy between
// two TCP connections can splice.
func underlying(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ Underlying() net.Conn })
		if !ok {
			return c
		}
		c = u.Underlying()
	}
}

// framing are the fields header ops may not touch: they decide how the message is
// delimited and routed, and rewriting them would desynchronise the proxy and the
// destination.
var framing = map[string]bool{
	"Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Upgrade": true, "Te": true, "Trailer": true, "Host": true,
	"Http2-Settings": true, "Expect": true,
}

// headerChanges turns header ops into the final values of the fields they change. Ops on
// framing fields and ops with a name or value that is not a valid field are ignored.
func headerChanges(h http.Header, ops []l7.HeaderOp) []headerChange {
	var out []headerChange
	for _, op := range ops {
		if op.Action == l7.MismatchLog {
			continue
		}
		key := http.CanonicalHeaderKey(op.Name)
		if framing[key] || !httpguts.ValidHeaderFieldName(op.Name) || !httpguts.ValidHeaderFieldValue(op.Value) {
			continue
		}
		i := -1
		for j := range out {
			if out[j].key == key {
				i = j
			}
		}
		if i < 0 {
			out = append(out, headerChange{key: key, name: op.Name, values: append([]string(nil), h[key]...)})
			i = len(out) - 1
		}
		switch op.Action {
		case l7.MismatchAdd:
			out[i].values = append(out[i].values, op.Value)
		case l7.MismatchDelete:
			out[i].values = nil
		case l7.MismatchReplace:
			out[i].values = []string{op.Value}
		}
	}
	return out
}

// hotWait is how long a connection waits for its next request with its read buffer before
// dropping it: a busy keep-alive client sends its next request within that time and is
// read with one syscall; an idle connection holds no buffer.
const hotWait = 20 * time.Millisecond

// awaitRequest waits until the client sends the first byte of its next request or the
// deadline passes. Beyond hotWait the connection waits without a buffer.
func (c *conn) awaitRequest(deadline time.Time) bool {
	if c.br != nil && c.br.Buffered() > 0 {
		return true // pipelined
	}
	if c.br == nil {
		c.br = getReader(&c.rd)
	}
	hot := time.Now().Add(hotWait)
	if deadline.Before(hot) {
		hot = deadline
	}
	c.nc.SetReadDeadline(hot)
	_, err := c.br.Peek(1)
	if err == nil {
		return true
	}
	putReader(c.br)
	c.br = nil
	if !isTimeout(err) || !hot.Before(deadline) {
		c.lastErr = err
		return false
	}
	c.nc.SetReadDeadline(deadline)
	c.lastErr = waitReadable(c.nc)
	return c.lastErr == nil
}
