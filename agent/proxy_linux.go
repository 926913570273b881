package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/datapath"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/l7/dnsproxy"
	"github.com/netward/netward/l7/proxy"
	"github.com/netward/netward/policy"
)

// The agent's L7 proxy (docs/l7-proxy.md, "Redirect wiring"). Redirect entries carry a
// proxy port per parser and direction:
//
//	port = ProxyBasePort + 2*(parser-1) + dir     (dir 1 egress, 0 ingress)
//	HTTP ingress base, HTTP egress base+1, TLS base+2/3, DNS base+4/5, CRD base+6/7
//
// The HTTP ports are served by two l7/proxy instances (one per direction), the egress DNS
// port by the DNS proxy (agent/dnsproxy_linux.go); the ports of the parsers netward has no
// proxy for are served by fail-closed sockets that take every connection and datagram,
// report it as denied and drop it. All listen with IP_TRANSPARENT
// on 127.0.0.1 in the node's network namespace, where datapath.InstallRedirect's TPROXY
// rules hand them the marked packets (and nothing else can reach them).

// maxPeerCache bounds a view's cache of resolved peer identities.
const maxPeerCache = 1 << 16

// proxyPortOf is the proxy port of a parser and direction.
func proxyPortOf(base int, parser policy.L7Parser, egress bool) uint16 {
	if parser < policy.ParserHTTP || parser > policy.ParserCRD {
		parser = policy.ParserCRD // unknown parsers fail closed with the last one
	}
	p := base + 2*(int(parser)-1)
	if egress {
		p++
	}
	return uint16(p)
}

// proxyPortFor is the port this agent writes into a redirect entry of parser p: its layout
// with the kernel's datapath (startProxy sets it), the placeholder otherwise (fakes, which
// never run the proxy).
func (a *Agent) proxyPortFor(k policy.Key, p policy.L7Parser) uint16 {
	if _, ok := a.dp.(*datapath.Datapath); ok {
		return proxyPortOf(a.cfg.ProxyBasePort, p, k.Egress)
	}
	return datapath.DefaultProxyPort(k, &policy.MapEntry{Parser: p})
}

// parserOfPort is the inverse of proxyPortOf for the parser (ok false for a port outside
// the range).
func parserOfPort(base int, port uint16) (parser policy.L7Parser, ok bool) {
	off := int(port) - base
	if off < 0 || off >= 8 {
		return policy.ParserNone, false
	}
	return policy.L7Parser(off/2 + 1), true
}

// l7Proxy is the agent's proxy: listeners, the two HTTP proxies and the view they decide with.
type l7Proxy struct {
	a      *Agent
	base   int
	netns  string
	view   atomic.Pointer[proxyView]
	closer []func()
	wg     sync.WaitGroup
	// The proxies, for status: HTTP by direction (0 ingress, 1 egress) and DNS.
	http [2]*proxy.Proxy
	dns  *dnsproxy.Proxy
}

// status is what the proxies hold now.
func (p *l7Proxy) status() *ProxyStatus {
	st := &ProxyStatus{
		HTTPIngressPort: proxyPortOf(p.base, policy.ParserHTTP, false),
		HTTPEgressPort:  proxyPortOf(p.base, policy.ParserHTTP, true),
		DNSPort:         proxyPortOf(p.base, policy.ParserDNS, true),
	}
	for _, h := range p.http {
		if h != nil {
			s := h.Stats()
			st.HTTPOpenConnections += s.Open
			st.HTTPRefusedConnections += s.Refused
		}
	}
	if p.dns != nil {
		s := p.dns.Stats()
		st.DNSInFlight, st.DNSTCPConnections, st.DNSDropped = s.InFlight, s.TCPConns, s.Dropped+s.TCPRefused
	}
	return st
}

// proxyView is what the deciders read: the built cluster (identities in cluster.Build's
// numbering, the numbering of the compiled policies) and the local endpoints by address.
// It is replaced after every reconciliation; a request reads the current one, so a policy
// change applies to the next request of an open connection.
type proxyView struct {
	cluster *cluster.Cluster
	eps     map[netip.Addr]*proxyEP
	// peers caches the identities of peer addresses as cluster.ResolvePeer gives them from
	// a pod of this node (resolved on first use: publishing stays cheap for big clusters),
	// at most maxPeerCache of them (world addresses are unbounded).
	peers  sync.Map // netip.Addr -> *identity.Identity
	cached atomic.Int32
	// local are the node's own addresses (an upstream connection to them cannot keep the
	// client's address: the replies would not come back through PREROUTING).
	local map[netip.Addr]bool
}

type proxyEP struct {
	cep *cluster.Endpoint
	pol *policy.EndpointPolicy
}

// publish makes d the state the proxy decides with (called with a.mu held after every
// programming; nil receivers ignore it: the proxy is not running).
func (p *l7Proxy) publish(d *desired) {
	if p == nil || d == nil || d.cluster == nil {
		return
	}
	v := &proxyView{cluster: d.cluster, eps: map[netip.Addr]*proxyEP{}, local: map[netip.Addr]bool{}}
	for _, de := range d.eps {
		if de == nil || de.cep == nil {
			continue
		}
		for _, ip := range de.cep.IPs {
			v.eps[ip.Unmap()] = &proxyEP{cep: de.cep, pol: de.pol}
		}
	}
	for ip, peer := range d.peers {
		if peer.Kind == "host" && peer.Node == p.a.cfg.Node {
			v.local[ip] = true
		}
	}
	p.view.Store(v)
}

// peerIdentity is the identity of addr as seen from ep, in the cluster's numbering.
// Every endpoint of the view is on this node, so the result does not depend on ep (the
// node's addresses resolve to the host identity from any of them) and is cached per view.
func (v *proxyView) peerIdentity(addr netip.Addr, ep *proxyEP) *identity.Identity {
	if id, ok := v.peers.Load(addr); ok {
		return id.(*identity.Identity)
	}
	rp, err := v.cluster.ResolvePeer(addr.String(), ep.cep)
	if err != nil || rp.Identity == nil {
		return nil
	}
	if v.cached.Add(1) <= maxPeerCache {
		v.peers.Store(addr, rp.Identity)
	}
	return rp.Identity
}

// lookup is the proxy.PolicyLookup: for egress the source endpoint's policy and the
// destination's identity, for ingress the destination endpoint's policy and the source's.
func (p *l7Proxy) lookup(src, dst netip.AddrPort, egress bool) (*policy.EndpointPolicy, *identity.Identity, bool) {
	v := p.view.Load()
	if v == nil {
		return nil, nil, false
	}
	local, peer := dst.Addr().Unmap(), src.Addr().Unmap()
	if egress {
		local, peer = peer, local
	}
	ep := v.eps[local]
	if ep == nil || ep.pol == nil {
		return nil, nil, false
	}
	id := v.peerIdentity(peer, ep)
	if id == nil {
		return nil, nil, false
	}
	return ep.pol, id, true
}

// ingressRedirects reports whether the destination of an egress-proxied connection is an
// endpoint of this node whose ingress policy redirects it to the proxy as well.
func (p *l7Proxy) ingressRedirects(src, dst netip.AddrPort) bool {
	v := p.view.Load()
	if v == nil {
		return false
	}
	ep := v.eps[dst.Addr().Unmap()]
	if ep == nil || ep.pol == nil {
		return false
	}
	id := v.peerIdentity(src.Addr().Unmap(), ep)
	if id == nil {
		return false
	}
	d := ep.pol.Lookup(false, id.ID, policy.ProtoTCP, dst.Port())
	return d.Enforced && d.Found && d.Entry.Verdict == policy.Redirect
}

// decider judges with the endpoint's current policy (proxy.PolicyDecider). The egress
// proxy also judges the destination's ingress policy when that redirects too (a pod of this
// node with HTTP rules on its ingress): a second proxy hop on the same node could not route
// its replies, so the egress proxy takes both decisions and marks its upstream connection as
// judged at ingress (datapath.FromProxyMark).
type decider struct {
	p      *l7Proxy
	egress bool
	policy *proxy.PolicyDecider
}

func (d *decider) Decide(ctx context.Context, f proxy.Flow) proxy.Decision {
	dec := d.policy.Decide(ctx, f)
	if !d.egress || !dec.Allowed || !d.p.ingressRedirects(f.Src, f.Dst) {
		return dec
	}
	in := f
	in.Egress = false
	idec := d.policy.Decide(ctx, in)
	out := proxy.Decision{Allowed: idec.Allowed, Reason: idec.Reason}
	if !idec.Allowed && out.Reason == "" {
		out.Reason = "the destination's ingress policy admits no such request"
	}
	out.Origins = append(append(out.Origins, dec.Origins...), idec.Origins...)
	out.HeaderOps = append(append(out.HeaderOps, dec.HeaderOps...), idec.HeaderOps...)
	return out
}

// dialer connects the proxy to the original destination from the node's namespace, keeping
// the client's address (IP_TRANSPARENT bind; the replies come back through PREROUTING,
// where the socket rule of datapath.InstallRedirect delivers them locally) and marking the
// socket as the proxy's (SO_MARK, datapath.FromProxyMark) so that to_pod neither redirects
// it again nor, when the proxy judged the destination's ingress, judges it twice.
func (p *l7Proxy) dialer(egress bool, timeout time.Duration) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		ci, ok := proxy.ConnFromContext(ctx)
		if !ok {
			return nil, errors.New("proxy dial without a client connection")
		}
		judged := !egress || p.ingressRedirects(ci.Src, ci.Dst)
		return p.dialFrom(ctx, network, ci.Src, ci.Dst, judged, timeout)
	}
}

// dialFrom connects to dst from the node's namespace for a proxied client src: from src's
// address (IP_TRANSPARENT) unless dst is the node itself, marked as the proxy's
// (datapath.FromProxyMark; judged says whether the proxy took the destination's ingress
// decision too).
func (p *l7Proxy) dialFrom(ctx context.Context, network string, src, dst netip.AddrPort, judged bool, timeout time.Duration) (net.Conn, error) {
	mark := int(datapath.FromProxyMark(judged))
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	v := p.view.Load()
	transparent := v == nil || !v.local[dst.Addr().Unmap()]
	if transparent {
		switch network {
		case "udp", "udp4":
			d.LocalAddr = &net.UDPAddr{IP: src.Addr().Unmap().AsSlice()}
		default:
			d.LocalAddr = &net.TCPAddr{IP: src.Addr().Unmap().AsSlice()}
		}
	}
	d.Control = func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark); serr != nil {
				serr = os.NewSyscallError("setsockopt SO_MARK", serr)
				return
			}
			if transparent {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1); serr != nil {
					serr = os.NewSyscallError("setsockopt IP_TRANSPARENT", serr)
				}
			}
		})
		return errors.Join(err, serr)
	}
	var conn net.Conn
	err := datapath.InNetns(p.netns, func() error {
		var err error
		conn, err = d.DialContext(ctx, network, dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s (mark %#x): %w", network, dst, src.Addr(), mark, err)
	}
	return conn, nil
}

// startProxy starts the L7 proxy of a real datapath: listeners in the node's namespace,
// the nftables and routing plumbing, and the datapath's proxy ports, then rewrites the
// redirect entries already programmed with other ports (the placeholder ports of New, or
// another base port of a previous agent): each endpoint's policy map is swapped atomically.
// With a fake datapath nothing redirects, and nothing is started.
func (a *Agent) startProxy(ctx context.Context) error {
	dp, ok := a.dp.(*datapath.Datapath)
	if !ok {
		return nil
	}
	p := &l7Proxy{a: a, base: a.cfg.ProxyBasePort, netns: a.netnsPath}
	if err := p.listen(ctx); err != nil {
		p.close()
		return fmt.Errorf("L7 proxy: %w", err)
	}
	var rules []datapath.ProxyRedirect
	for parser := policy.ParserHTTP; parser <= policy.ParserCRD; parser++ {
		for _, egress := range []bool{false, true} {
			port := proxyPortOf(p.base, parser, egress)
			rules = append(rules, datapath.ProxyRedirect{Port: port, Listener: port})
			if parser != policy.ParserHTTP {
				rules = append(rules, datapath.ProxyRedirect{Port: port, Listener: port, UDP: true})
			}
		}
	}
	err := datapath.InstallRedirect(datapath.RedirectConfig{
		NetnsPath: a.netnsPath, Table: a.cfg.ProxyRouteTable, Priority: a.cfg.ProxyRulePriority, Rules: rules,
	})
	if err != nil {
		p.close()
		return fmt.Errorf("L7 proxy redirect: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.l7 = p
	dp.ProxyPort = func(k policy.Key, e *policy.MapEntry) uint16 { return a.proxyPortFor(k, e.Parser) }
	p.publish(a.cur)
	if a.cur != nil {
		for cid, ep := range a.eps {
			de := a.cur.eps[cid]
			if de == nil || !ep.prog.matches(de) || !hasRedirect(de.entries) {
				continue // a later reconciliation writes it with the proxy's ports
			}
			if _, err := dp.SetPolicy(ep.rec.ID, de.entries, a.jar.Cookie); err != nil {
				a.log.Error("rewriting the proxy ports of an endpoint's redirects failed", "pod", ep.rec.pod(), "error", err)
			}
		}
	}
	a.log.Info("L7 proxy started", "httpIngressPort", proxyPortOf(p.base, policy.ParserHTTP, false),
		"httpEgressPort", proxyPortOf(p.base, policy.ParserHTTP, true),
		"dnsEgressPort", proxyPortOf(p.base, policy.ParserDNS, true), "failClosedPorts",
		fmt.Sprintf("%d-%d except %d (TLS, DNS at ingress, CRD: denied, no proxy)", p.base+2, p.base+7, proxyPortOf(p.base, policy.ParserDNS, true)),
		"routeTable", a.cfg.ProxyRouteTable, "rulePriority", a.cfg.ProxyRulePriority)
	return nil
}

func hasRedirect(entries []policy.KeyEntry) bool {
	for i := range entries {
		if entries[i].Entry.Verdict == policy.Redirect {
			return true
		}
	}
	return false
}

// stopProxy closes the listeners and every proxied connection. The redirect plumbing stays:
// until the next agent listens, redirected connections are refused instead of passing
// unjudged.
func (a *Agent) stopProxy() {
	a.mu.Lock()
	p := a.l7
	a.mu.Unlock()
	if p != nil {
		p.close()
	}
}

func (p *l7Proxy) close() {
	for _, c := range p.closer {
		c()
	}
	p.closer = nil
	p.wg.Wait()
}

// listen opens every listener in the node's namespace and starts serving.
func (p *l7Proxy) listen(ctx context.Context) error {
	cfg := p.a.cfg
	for _, egress := range []bool{false, true} {
		pr, err := proxy.New(proxy.Config{
			Decider:           &decider{p: p, egress: egress, policy: proxy.NewPolicyDecider(p.lookup)},
			Egress:            egress,
			Dial:              p.dialer(egress, cfg.ProxyDialTimeout),
			Events:            p.a.publishProxyEvent,
			Logf:              func(format string, args ...any) { p.a.log.Debug("L7 proxy: " + fmt.Sprintf(format, args...)) },
			ReadHeaderTimeout: cfg.ProxyReadHeaderTimeout,
			IdleTimeout:       cfg.ProxyIdleTimeout,
			DialTimeout:       cfg.ProxyDialTimeout,
			MaxConns:          cfg.ProxyMaxConns,
		})
		if err != nil {
			return err
		}
		port := proxyPortOf(p.base, policy.ParserHTTP, egress)
		var ln net.Listener
		err = datapath.InNetns(p.netns, func() error {
			var err error
			ln, err = proxy.ListenTransparent(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			return err
		})
		if err != nil {
			pr.Close()
			return fmt.Errorf("listen on %d: %w", port, err)
		}
		p.closer = append(p.closer, func() { pr.Close() })
		p.http[b2i(egress)] = pr
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := pr.Serve(ln); err != nil && !errors.Is(err, proxy.ErrClosed) && !errors.Is(err, net.ErrClosed) {
				p.a.log.Error("L7 proxy listener", "port", port, "error", err)
			}
		}()
	}
	for parser := policy.ParserTLS; parser <= policy.ParserCRD; parser++ {
		for _, egress := range []bool{false, true} {
			if analysis.NetwardProxies(parser, egress) {
				if err := p.listenDNS(ctx); err != nil {
					return err
				}
				continue
			}
			if err := p.failClosed(ctx, parser, egress); err != nil {
				return err
			}
		}
	}
	return nil
}

// failClosed serves the proxy port of a parser netward has no proxy for: every TCP
// connection is reset and every datagram dropped, each reported as a denied event.
func (p *l7Proxy) failClosed(ctx context.Context, parser policy.L7Parser, egress bool) error {
	port := proxyPortOf(p.base, parser, egress)
	reason := fmt.Sprintf("no %s proxy in netward: redirect denied (fail closed)", parser)
	var (
		ln *net.TCPListener
		uc *net.UDPConn
	)
	err := datapath.InNetns(p.netns, func() error {
		l, err := proxy.ListenTransparent(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return err
		}
		ln = l.(*net.TCPListener)
		lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = errors.Join(
					unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1),
					unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1))
			})
			return errors.Join(err, serr)
		}}
		pc, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			ln.Close()
			return err
		}
		uc = pc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fail-closed %s port %d: %w", parser, port, err)
	}
	p.closer = append(p.closer, func() { ln.Close(); uc.Close() })
	p.a.log.Info("L7 redirects without a proxy are denied", "parser", parser.String(), "egress", egress, "port", port)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			src, dst := addrPortOf(c.RemoteAddr()), addrPortOf(c.LocalAddr())
			c.SetLinger(0) // a reset: the client learns at once
			c.Close()
			p.a.publishProxyEvent(proxy.Event{Time: time.Now(), Src: src, Dst: dst, Egress: egress,
				Proto: parser.String(), Verdict: proxy.VerdictDenied, Reason: reason})
		}
	}()
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 2048)
		oob := make([]byte, 128)
		for {
			_, oobn, _, from, err := uc.ReadMsgUDPAddrPort(buf, oob)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					p.a.log.Error("fail-closed UDP socket", "port", port, "error", err)
				}
				return
			}
			p.a.publishProxyEvent(proxy.Event{Time: time.Now(), Src: from, Dst: origDst(oob[:oobn]), Egress: egress,
				Proto: parser.String() + "/udp", Verdict: proxy.VerdictDenied, Reason: reason})
		}
	}()
	return nil
}

// origDst reads IP_ORIGDSTADDR (a sockaddr_in) from a datagram's control messages.
func origDst(oob []byte) netip.AddrPort {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR && len(m.Data) >= 8 {
			port := uint16(m.Data[2])<<8 | uint16(m.Data[3])
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Data[4:8])), port)
		}
	}
	return netip.AddrPort{}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return netip.AddrPortFrom(t.AddrPort().Addr().Unmap(), t.AddrPort().Port())
	}
	return netip.AddrPort{}
}

// publishProxyEvent turns a proxy access-log record into an agent event in the stream of
// `netward observe` (GET /v1/events).
func (a *Agent) publishProxyEvent(e proxy.Event) {
	a.publishL7(a.convertProxyEvent(e))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// l7Outcome is an L7 event's verdict and reason: forwarded (allowed), dropped (denied) or
// error.
func l7Outcome(allowed, denied bool) (verdict, reason string) {
	switch {
	case allowed:
		return "forwarded", "l7-allowed"
	case denied:
		return "dropped", "l7-denied"
	}
	return "error", "l7-error"
}

// l7Peer names an address of an L7 event: the pod or node the view knows, else the world.
func (v *view) l7Peer(addr netip.Addr) Peer {
	addr = addr.Unmap()
	if p, ok := v.peers[addr]; ok {
		return p
	}
	return Peer{IP: addr.String(), Kind: "world", Identity: uint32(identity.World)}
}

// publishL7 counts an L7 verdict (netward_l7_requests_total) and sends it to /v1/events.
func (a *Agent) publishL7(ev Event) {
	if a.metrics != nil {
		verdict := "error"
		switch ev.Verdict {
		case "forwarded":
			verdict = "allowed"
		case "dropped":
			verdict = "denied"
		}
		a.metrics.l7.WithLabelValues(ev.L7Protocol, ev.Direction, verdict).Inc()
	}
	a.events.publish(ev)
}

func (a *Agent) convertProxyEvent(e proxy.Event) Event {
	v := a.view.Load()
	ev := Event{
		Time:        e.Time,
		Node:        v.node,
		Proto:       policy.ProtoName(policy.ProtoTCP),
		Port:        e.Dst.Port(),
		SrcPort:     e.Src.Port(),
		Direction:   "ingress",
		Origins:     e.Origins,
		L7Protocol:  "http",
		HTTPVersion: e.Proto,
		HTTPMethod:  e.Method,
		HTTPPath:    e.Path,
		HTTPHost:    e.Host,
		HTTPVerdict: e.Verdict.String(),
		HTTPStatus:  e.Status,
		L7Reason:    e.Reason,
	}
	if e.Proto != "" && e.Proto[0] != 'H' { // a parser without proxy (fail closed)
		ev.L7Protocol, ev.HTTPVersion = e.Proto, ""
		if len(e.Proto) > 4 && e.Proto[len(e.Proto)-4:] == "/udp" {
			ev.Proto, ev.L7Protocol = policy.ProtoName(policy.ProtoUDP), e.Proto[:len(e.Proto)-4]
		}
	}
	for _, op := range e.HeaderOps {
		ev.HTTPHeaderOps = append(ev.HTTPHeaderOps, op.String())
	}
	ev.Verdict, ev.Reason = l7Outcome(e.Verdict == proxy.VerdictAllowed, e.Verdict == proxy.VerdictDenied)
	ev.Source, ev.Destination = v.l7Peer(e.Src.Addr()), v.l7Peer(e.Dst.Addr())
	if e.Egress {
		ev.Direction = "egress"
		ev.Endpoint = ev.Source.Pod
	} else {
		ev.Endpoint = ev.Destination.Pod
	}
	return ev
}
