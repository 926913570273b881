package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Flow is one DNS query to judge.
type Flow struct {
	// Src is the client; Dst the original destination, the DNS server it asked.
	Src, Dst netip.AddrPort
	// Proto is "udp" or "tcp".
	Proto string
	// Name is the question's name in presentation form, ASCII letters lower-cased, fully
	// qualified (trailing dot), e.g. "api.example.com."; the root is ".". A byte of a label
	// that is not printable ASCII (0x21-0x7e), and a backslash, is written \DDD (RFC 1035
	// §5.1), so no name a policy pattern can match is ambiguous. Labels never contain a dot:
	// such a query does not parse.
	Name string
	// Type is the question's type (1 = A, 28 = AAAA, ...).
	Type uint16
}

// Decision is the verdict on one query.
type Decision struct {
	Allowed bool
	// Origins are the policy rules that decided (opaque strings, copied into the event).
	Origins []string
	// Reason explains the verdict (no policy, policy error, ...).
	Reason string
}

// Decider judges queries. Decide is called for every query as it arrives, so a policy change
// applies to the next query. It must be safe for concurrent use, fast, and honour ctx (it is
// cancelled by Close).
type Decider interface {
	Decide(ctx context.Context, f Flow) Decision
}

// DeciderFunc adapts a function to a Decider.
type DeciderFunc func(ctx context.Context, f Flow) Decision

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, fl Flow) Decision { return f(ctx, fl) }

// Verdict is what happened to a query.
type Verdict int

// Verdicts.
const (
	VerdictAllowed Verdict = iota + 1 // forwarded to the original destination
	VerdictDenied                     // answered REFUSED by the proxy
	VerdictError                      // malformed, dropped, or the destination failed
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
	return fmt.Sprintf("verdict-%d", int(v))
}

// Rcodes the proxy answers itself (RFC 1035 §4.1.1).
const (
	RcodeFormErr  = 1
	RcodeServFail = 2
	RcodeRefused  = 5
)

// Event is one query's access-log record.
type Event struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	// Proto is "udp" or "tcp".
	Proto string
	// Name and Type are the question's (Flow.Name's form); empty and 0 when the message
	// did not parse or had no single question.
	Name    string
	Type    uint16
	Verdict Verdict
	// Rcode is the rcode of the answer the client got: the destination's when allowed,
	// 5 (REFUSED) when denied, 2 (SERVFAIL) when the destination failed, 1 (FORMERR) for a
	// query the proxy does not judge; -1 when the client got no answer.
	Rcode   int
	Origins []string
	// Reason is the decision's reason, or what went wrong.
	Reason string
}

func (e Event) String() string {
	s := fmt.Sprintf("dns/%s %s -> %s %q type=%d %s rcode=%d", e.Proto, e.Src, e.Dst, e.Name, e.Type, e.Verdict, e.Rcode)
	if len(e.Origins) > 0 {
		s += fmt.Sprintf(" by %q", e.Origins)
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Config configures a Proxy. Zero durations and sizes take the defaults below.
type Config struct {
	// Decider judges every query; required.
	Decider Decider
	// Events receives one event per query, synchronously on the query path and from many
	// goroutines at once: it must be safe for concurrent use and must not block. May be nil.
	Events func(Event)
	// DialUpstream opens the upstream socket for one query (UDP) or one client connection
	// (TCP): network "udp" or "tcp", src the client, dst the original destination. The agent
	// binds it to the client's address with IP_TRANSPARENT and sets SO_MARK (so that the
	// datapath does not redirect it again). The context carries the deadline of the query
	// (Timeout) and is cancelled by Close. Default: a plain net.Dialer to dst, which loops
	// back into the proxy when dst is the listener itself (tests without TPROXY must set it).
	DialUpstream func(ctx context.Context, network string, src, dst netip.AddrPort) (net.Conn, error)
	// ReplyUDP sends a response datagram to the client (to) from the original destination's
	// address (from): the client only accepts an answer from the address it asked.
	// TransparentReplier gives one for TPROXY. Default: written on the listening socket,
	// right only when the listener itself is the address the client asked (tests without
	// TPROXY).
	ReplyUDP func(from, to netip.AddrPort, b []byte) error
	// Timeout bounds the upstream exchange of one query: dial, send, answer. Default 5s.
	Timeout time.Duration
	// TCPIdleTimeout bounds the wait for each query of a TCP client connection to arrive
	// completely (and each write to the client); the connection is closed beyond it.
	// Default 10s.
	TCPIdleTimeout time.Duration
	// MaxInFlight bounds the UDP queries being judged or forwarded at once; a datagram
	// beyond it is dropped with a VerdictError event. Default 4096.
	MaxInFlight int
	// MaxTCPConns bounds the open TCP client connections; a connection beyond it is closed
	// at once (counted in Stats.TCPRefused, no event: it carried no query yet).
	// Default 1024.
	MaxTCPConns int
	// Logf reports what has no event (listener and connection errors); may be nil.
	Logf func(format string, args ...any)
}

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.TCPIdleTimeout <= 0 {
		c.TCPIdleTimeout = 10 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4096
	}
	if c.MaxTCPConns <= 0 {
		c.MaxTCPConns = 1024
	}
	if c.DialUpstream == nil {
		c.DialUpstream = func(ctx context.Context, network string, src, dst netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dst.String())
		}
	}
}

// Stats are the proxy's counters.
type Stats struct {
	// Events by verdict.
	Allowed, Denied, Errors int64
	// Malformed counts messages dropped because they did not parse or were responses.
	Malformed int64
	// Dropped counts UDP queries dropped beyond MaxInFlight.
	Dropped int64
	// InFlight is the number of UDP queries being judged or forwarded now.
	InFlight int64
	// TCPConns is the number of open TCP client connections; TCPRefused counts those closed
	// at once beyond MaxTCPConns.
	TCPConns, TCPRefused int64
	// UpstreamDials counts DialUpstream calls.
	UpstreamDials int64
}

// Proxy is a transparent DNS proxy that judges every query by its question name.
type Proxy struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}

	mu        sync.Mutex
	closed    bool
	packets   map[*net.UDPConn]struct{}
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup

	allowed, denied, errors atomic.Int64
	malformed, dropped      atomic.Int64
	inFlight                atomic.Int64
	tcpConns, tcpRefused    atomic.Int64
	upstreamDials           atomic.Int64
}

// ErrClosed is returned by ServeUDP and ServeTCP after Close.
var ErrClosed = errors.New("dnsproxy: proxy closed")

// New returns a proxy; it fails when cfg has no Decider.
func New(cfg Config) (*Proxy, error) {
	if cfg.Decider == nil {
		return nil, errors.New("dnsproxy: a Decider is required")
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Proxy{
		cfg:       cfg,
		ctx:       ctx,
		cancel:    cancel,
		sem:       make(chan struct{}, cfg.MaxInFlight),
		packets:   map[*net.UDPConn]struct{}{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
	}, nil
}

// Stats returns the current counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Allowed: p.allowed.Load(), Denied: p.denied.Load(), Errors: p.errors.Load(),
		Malformed: p.malformed.Load(), Dropped: p.dropped.Load(), InFlight: p.inFlight.Load(),
		TCPConns: p.tcpConns.Load(), TCPRefused: p.tcpRefused.Load(),
		UpstreamDials: p.upstreamDials.Load(),
	}
}

// Close stops every ServeUDP and ServeTCP (closing their sockets), closes every client
// connection and upstream socket, cancels the Decider's context and waits for every
// goroutine of the proxy, the serving loops included.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	for pc := range p.packets {
		pc.Close()
	}
	for ln := range p.listeners {
		ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// track registers a goroutine unless the proxy is closed.
func (p *Proxy) track() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
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

// dial opens an upstream socket that Close closes too.
func (p *Proxy) dial(ctx context.Context, network string, src, dst netip.AddrPort) (net.Conn, func(), error) {
	p.upstreamDials.Add(1)
	c, err := p.cfg.DialUpstream(ctx, network, src, dst)
	if err != nil {
		return nil, nil, err
	}
	if c == nil {
		return nil, nil, errors.New("DialUpstream returned no connection")
	}
	stop := context.AfterFunc(p.ctx, func() { c.Close() })
	return c, func() { stop(); c.Close() }, nil
}

// addrPort converts a net.Addr, IPv4-mapped addresses unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return netip.AddrPort{}
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
