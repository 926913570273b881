package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/netward/netward/l7"
)

// Flow is one request as the Decider sees it.
type Flow struct {
	// Src is the client; Dst the original destination (the TPROXY socket's local address).
	Src, Dst netip.AddrPort
	// Egress: the request leaves the source endpoint and its egress policy decides;
	// otherwise the destination endpoint's ingress policy does.
	Egress bool
	// Port is the original destination port, the port of the policy lookup.
	Port uint16
	// Proto is "HTTP/1.0", "HTTP/1.1" or "HTTP/2.0".
	Proto string
	// Request is what the L7 rules match: method, path (query included, as sent), host
	// (Host or :authority) and headers (canonical keys). It is only valid during Decide
	// (the proxy reuses it for the next request of the connection): a Decider that keeps
	// it must copy it.
	Request *l7.Request
}

// Decision is the verdict on one request.
type Decision struct {
	Allowed bool
	// Origins are the rules behind the verdict: those that admitted the request, or, when it
	// is denied, those that were consulted and admitted nothing.
	Origins []string
	// HeaderOps are the headerMatches mismatch actions the admitting rules carried out; the
	// proxy applies ADD, DELETE and REPLACE to the forwarded request, LOG is only reported.
	HeaderOps []l7.HeaderOp
	// Reason explains a verdict that did not come from L7 rules (no policy, policy error).
	Reason string
}

// Decider judges requests. Decide is called for every request, so a policy change applies
// to the next request of an open connection. It must be safe for concurrent use and fast:
// it runs on the request path.
type Decider interface {
	Decide(ctx context.Context, f Flow) Decision
}

// DeciderFunc adapts a function to a Decider.
type DeciderFunc func(ctx context.Context, f Flow) Decision

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, fl Flow) Decision { return f(ctx, fl) }

// Verdict is what happened to a request.
type Verdict uint8

// Verdicts.
const (
	VerdictAllowed Verdict = iota + 1 // forwarded to the original destination
	VerdictDenied                     // answered 403 by the proxy
	VerdictError                      // malformed, or the destination could not be reached
)

func (v Verdict) String() string {
	switch v {
	case VerdictAllowed:
		return "allowed"
	case VerdictDenied:
		return "denied"
	case VerdictError:
		return "error"
	}
	return fmt.Sprintf("verdict-%d", uint8(v))
}

// Event is the access log record of one request (one per HTTP/1 request, one per HTTP/2
// stream, one per refused malformed request).
type Event struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	Egress   bool
	Proto    string
	Method   string
	Path     string
	Host     string
	Verdict  Verdict
	// Status is the status the proxy answered itself (403, 400, 431, 502, ...); 0 when the
	// request was forwarded and the destination answers.
	Status    int
	Origins   []string
	HeaderOps []l7.HeaderOp
	// Reason is the decision's reason or what was wrong with the request.
	Reason string
}

func (e Event) String() string {
	dir := "ingress"
	if e.Egress {
		dir = "egress"
	}
	s := fmt.Sprintf("%s %s -> %s %s %s %s host=%q %s", dir, e.Src, e.Dst, e.Proto, e.Method, e.Path, e.Host, e.Verdict)
	if e.Status != 0 {
		s += fmt.Sprintf(" status=%d", e.Status)
	}
	if len(e.Origins) > 0 {
		s += fmt.Sprintf(" by %q", e.Origins)
	}
	for _, op := range e.HeaderOps {
		s += " [" + op.String() + "]"
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Config configures a Proxy. Zero durations and sizes take the defaults below.
type Config struct {
	// Decider judges every request; required.
	Decider Decider
	// Egress is the direction of the connections this proxy serves (Cilium has one proxy
	// port per direction); run one Proxy per direction.
	Egress bool
	// Dial connects to the original destination (address is "ip:port"). The connection's
	// addresses are in the context (ConnFromContext), for a transparent dial that keeps the
	// source address. Default: a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Events receives one event per request, synchronously on the request path and from
	// many goroutines at once: it must be safe for concurrent use and must not block (hand
	// the event to a buffered channel or a ring).
	Events func(Event)
	// Logf reports connection-level problems (upstream failures); nil discards them.
	Logf func(format string, args ...any)

	// ReadHeaderTimeout bounds the time to receive a request head, from its first byte
	// (from the accept for the first request). Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request of a kept-alive connection (and
	// an idle HTTP/2 connection). Default 120s.
	IdleTimeout time.Duration
	// IOTimeout bounds how long a request body read or any write may make no progress.
	// Default 60s.
	IOTimeout time.Duration
	// ResponseTimeout bounds how long reading the destination's response may make no
	// progress; 0 (default) waits as long as the destination takes.
	ResponseTimeout time.Duration
	// DialTimeout bounds connecting to the destination. Default 5s.
	DialTimeout time.Duration

	// MaxHeaderBytes bounds a request head (request line and fields) and a trailer
	// section; larger ones get 431 and the connection is closed. Default 64 KiB (Envoy: 60).
	MaxHeaderBytes int
	// MaxHeaderCount bounds the number of header fields. Default 100 (Envoy's default).
	MaxHeaderCount int
	// MaxConns bounds open client connections; connections beyond are answered 503 and
	// closed. 0 means no limit.
	MaxConns int
	// MaxDiscardBytes is the most of a denied request's body the proxy reads and drops to
	// keep the connection usable; a larger body closes the connection after the 403.
	// Default 256 KiB.
	MaxDiscardBytes int64
	// MaxConcurrentStreams bounds the streams of one HTTP/2 connection. Default 100.
	MaxConcurrentStreams uint32
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.IOTimeout, 60*time.Second)
	def(&c.DialTimeout, 5*time.Second)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxHeaderCount == 0 {
		c.MaxHeaderCount = 100
	}
	if c.MaxDiscardBytes == 0 {
		c.MaxDiscardBytes = 256 << 10
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 100
	}
	if c.Dial == nil {
		// No TCP keep-alive probes: the proxy's own timeouts bound idle connections.
		d := &net.Dialer{KeepAlive: -1}
		c.Dial = d.DialContext
	}
}

// Stats are the proxy's counters.
type Stats struct {
	Accepted, Refused, Open   int64
	Allowed, Denied, Errors   int64
	HeaderTimeouts, Upgrades  int64
	HTTP2Conns, UpstreamDials int64
}

// Proxy is a transparent HTTP/1.1 and h2c proxy that judges every request.
type Proxy struct {
	cfg    Config
	h2     *http2.Server
	h2base *http.Server
	h2t    *http2.Transport

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
	wg        sync.WaitGroup

	accepted, refused, open   atomic.Int64
	allowed, denied, errors   atomic.Int64
	headerTimeouts, upgrades  atomic.Int64
	http2Conns, upstreamDials atomic.Int64
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("proxy closed")

// New returns a proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Decider == nil {
		return nil, errors.New("proxy: a Decider is required")
	}
	cfg.setDefaults()
	p := &Proxy{cfg: cfg, listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	p.h2base = &http.Server{
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		IdleTimeout:    cfg.IdleTimeout,
		ErrorLog:       log.New(logWriter{p}, "", 0),
	}
	p.h2 = &http2.Server{
		MaxConcurrentStreams:         cfg.MaxConcurrentStreams,
		IdleTimeout:                  cfg.IdleTimeout,
		WriteByteTimeout:             cfg.IOTimeout,
		MaxUploadBufferPerConnection: 1 << 20,
		MaxUploadBufferPerStream:     256 << 10,
	}
	p.h2t = &http2.Transport{
		AllowHTTP:                  true,
		DisableCompression:         true,
		StrictMaxConcurrentStreams: true,
		ConnPool:                   h2pool{},
		WriteByteTimeout:           cfg.IOTimeout,
		MaxHeaderListSize:          uint32(cfg.MaxHeaderBytes) * 4,
	}
	return p, nil
}

// Stats returns the current counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted: p.accepted.Load(), Refused: p.refused.Load(), Open: p.open.Load(),
		Allowed: p.allowed.Load(), Denied: p.denied.Load(), Errors: p.errors.Load(),
		HeaderTimeouts: p.headerTimeouts.Load(), Upgrades: p.upgrades.Load(),
		HTTP2Conns: p.http2Conns.Load(), UpstreamDials: p.upstreamDials.Load(),
	}
}

// Serve accepts connections on ln until Close, serving each on its own goroutine. Every
// accepted connection's LocalAddr must be the original destination, as with a TPROXY
// listener (IP_TRANSPARENT); WithOriginalDestination provides one for tests.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.listeners[ln] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off like net/http.
				if backoff == 0 {
					backoff = 5 * time.Millisecond
				} else if backoff *= 2; backoff > time.Second {
					backoff = time.Second
				}
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		p.accepted.Add(1)
		if max := p.cfg.MaxConns; max > 0 && p.open.Load() >= int64(max) {
			p.refuse(c)
			continue
		}
		p.start(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

var refusal = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\nToo many connections")

// refuse answers a connection beyond MaxConns with 503 and closes it, without a goroutine.
func (p *Proxy) refuse(c net.Conn) {
	p.refused.Add(1)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(refusal)
	c.Close()
}

func (p *Proxy) start(nc net.Conn) {
	c := newConn(p, nc)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		nc.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.open.Add(1)
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer func() {
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
			p.open.Add(-1)
			p.wg.Done()
		}()
		c.serve()
	}()
}

// ServeConn serves one already accepted connection and returns when it is done.
func (p *Proxy) ServeConn(nc net.Conn) {
	p.accepted.Add(1)
	c := newConn(p, nc)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		nc.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.open.Add(1)
	p.wg.Add(1)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		p.open.Add(-1)
		p.wg.Done()
	}()
	c.serve()
}

// Close stops every Serve, closes every connection and waits for their goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for ln := range p.listeners {
		ln.Close()
	}
	for c := range p.conns {
		c.abort()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) logf(format string, args ...any) {
	if p.cfg.Logf != nil {
		p.cfg.Logf(format, args...)
	}
}

func (p *Proxy) emit(e Event) {
	switch e.Verdict {
	case VerdictAllowed:
		p.allowed.Add(1)
	case VerdictDenied:
		p.denied.Add(1)
	default:
		p.errors.Add(1)
	}
	if p.cfg.Events != nil {
		e.Time = time.Now()
		p.cfg.Events(e)
	}
}

// ConnInfo is what the proxy knows about a client connection.
type ConnInfo struct {
	Src, Dst netip.AddrPort
	Egress   bool
}

type connInfoKey struct{}

// ConnFromContext returns the client connection of a Dial or Decide call.
func ConnFromContext(ctx context.Context) (ConnInfo, bool) {
	ci, ok := ctx.Value(connInfoKey{}).(ConnInfo)
	return ci, ok
}

// addrPort converts a net.Addr (TCP or anything printing "ip:port").
func addrPort(a net.Addr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return netip.AddrPortFrom(netipAddr(t.IP), uint16(t.Port))
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func netipAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// WithOriginalDestination wraps ln so that every accepted connection reports dst as its
// LocalAddr, as a TPROXY listener reports the original destination. For tests, and for
// setups that learn the destination otherwise.
func WithOriginalDestination(ln net.Listener, dst netip.AddrPort) net.Listener {
	return &origDstListener{Listener: ln, dst: net.TCPAddrFromAddrPort(dst)}
}

type origDstListener struct {
	net.Listener
	dst *net.TCPAddr
}

func (l *origDstListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &origDstConn{Conn: c, dst: l.dst}, nil
}

type origDstConn struct {
	net.Conn
	dst *net.TCPAddr
}

func (c *origDstConn) LocalAddr() net.Addr { return c.dst }

// CloseWrite half-closes the underlying TCP connection.
func (c *origDstConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Underlying returns the wrapped connection.
func (c *origDstConn) Underlying() net.Conn { return c.Conn }
