package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/netward/netward/datapath"
	"github.com/netward/netward/l7/dnsproxy"
	"github.com/netward/netward/l7/proxy"
	"github.com/netward/netward/policy"
)

// The agent's DNS proxy: the egress DNS port (DNS rules exist on egress only, semantics doc
// §1.4) over UDP and TCP. Each lookup is judged with the source pod's compiled policy at
// the time it arrives (EndpointPolicy.AllowsDNS, the function netward trace --dns-name
// uses); an allowed lookup goes on to the DNS server it was sent to, from the pod's own
// address, and its answer comes back from the server's address; a refused one is answered
// REFUSED, as Cilium's DNS proxy does by default.

// dnsDecider judges lookups (dnsproxy.Decider).
type dnsDecider struct{ p *l7Proxy }

func (d dnsDecider) Decide(_ context.Context, f dnsproxy.Flow) dnsproxy.Decision {
	proto := policy.ProtoUDP
	if f.Proto == "tcp" {
		proto = policy.ProtoTCP
	}
	pol, peer, ok := d.p.lookup(f.Src, f.Dst, true)
	if !ok || pol == nil || peer == nil {
		return dnsproxy.Decision{Reason: "no policy for the lookup's endpoint"}
	}
	if pol.Err != nil {
		return dnsproxy.Decision{Reason: pol.Err.Error()}
	}
	if !pol.Direction(true).Enforced {
		return dnsproxy.Decision{Allowed: true, Reason: "no policy selects the endpoint for egress"}
	}
	port := f.Dst.Port()
	if l4 := pol.Lookup(true, peer.ID, proto, port); !l4.Allowed {
		var origins []string
		for _, o := range l4.Entry.Origins {
			origins = append(origins, o.String())
		}
		reason := "denied at L3/L4"
		if !l4.Found {
			reason = "no rule allows the lookup (default deny)"
		}
		return dnsproxy.Decision{Origins: origins, Reason: reason}
	}
	allowed, matches := pol.AllowsDNS(true, peer, proto, port, f.Name)
	dec := dnsproxy.Decision{Allowed: allowed}
	seen := map[string]bool{}
	add := func(o string) {
		if !seen[o] {
			seen[o] = true
			dec.Origins = append(dec.Origins, o)
		}
	}
	if allowed {
		for _, m := range matches {
			add(m.Origin.String())
		}
		return dec
	}
	for _, r := range pol.DNSRules(true, peer, proto, port) {
		add(r.Origin.String())
	}
	dec.Reason = "no DNS rule admits the name"
	return dec
}

// listenDNS serves the egress DNS port, UDP and TCP, in the node's namespace.
func (p *l7Proxy) listenDNS(ctx context.Context) error {
	cfg := p.a.cfg
	port := proxyPortOf(p.base, policy.ParserDNS, true)
	// Answers go to the client from the address it asked, through a socket bound to that
	// foreign address, made for each answer in the node's namespace (the client's route).
	reply := dnsproxy.TransparentReplier(0)
	dp, err := dnsproxy.New(dnsproxy.Config{
		Decider: dnsDecider{p: p},
		Events:  p.a.publishDNSEvent,
		DialUpstream: func(ctx context.Context, network string, src, dst netip.AddrPort) (net.Conn, error) {
			// The destination's ingress policy judges the lookup as any packet (not judged here).
			return p.dialFrom(ctx, network, src, dst, false, cfg.ProxyDialTimeout)
		},
		ReplyUDP: func(from, to netip.AddrPort, b []byte) error {
			return datapath.InNetns(p.netns, func() error { return reply(from, to, b) })
		},
		Timeout: cfg.ProxyDialTimeout,
		Logf:    func(format string, args ...any) { p.a.log.Debug("DNS proxy: " + fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return err
	}
	var (
		ln net.Listener
		uc *net.UDPConn
	)
	err = datapath.InNetns(p.netns, func() error {
		var err error
		if ln, err = proxy.ListenTransparent(ctx, "tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			return err
		}
		if uc, err = dnsproxy.ListenTransparentUDP(ctx, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			ln.Close()
			return err
		}
		return nil
	})
	if err != nil {
		dp.Close()
		return fmt.Errorf("DNS proxy port %d: %w", port, err)
	}
	p.closer = append(p.closer, func() { dp.Close(); ln.Close(); uc.Close() })
	p.dns = dp
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		if err := dp.ServeTCP(ln); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, dnsproxy.ErrClosed) {
			p.a.log.Error("DNS proxy TCP listener", "port", port, "error", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		if err := dp.ServeUDP(uc); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, dnsproxy.ErrClosed) {
			p.a.log.Error("DNS proxy UDP socket", "port", port, "error", err)
		}
	}()
	return nil
}

// publishDNSEvent turns a DNS proxy record into an agent event (GET /v1/events).
func (a *Agent) publishDNSEvent(e dnsproxy.Event) {
	a.publishL7(a.convertDNSEvent(e))
}

func (a *Agent) convertDNSEvent(e dnsproxy.Event) Event {
	v := a.view.Load()
	ev := Event{
		Time:       e.Time,
		Node:       v.node,
		Proto:      policy.ProtoName(policy.ProtoUDP),
		Port:       e.Dst.Port(),
		SrcPort:    e.Src.Port(),
		Direction:  "egress",
		Origins:    e.Origins,
		L7Protocol: "dns",
		DNSName:    e.Name,
		DNSType:    dnsTypeName(e.Type),
		DNSVerdict: e.Verdict.String(),
		L7Reason:   e.Reason,
	}
	if e.Proto == "tcp" {
		ev.Proto = policy.ProtoName(policy.ProtoTCP)
	}
	if e.Rcode >= 0 {
		ev.DNSRcode = strings.TrimPrefix(dnsmessage.RCode(e.Rcode).String(), "RCode")
	}
	ev.Verdict, ev.Reason = l7Outcome(e.Verdict == dnsproxy.VerdictAllowed, e.Verdict == dnsproxy.VerdictDenied)
	ev.Source, ev.Destination = v.l7Peer(e.Src.Addr()), v.l7Peer(e.Dst.Addr())
	ev.Endpoint = ev.Source.Pod
	return ev
}

// dnsTypeName is "A", "AAAA", ... ("TYPE65" for others, as RFC 3597 writes them).
func dnsTypeName(t uint16) string {
	if s, ok := strings.CutPrefix(dnsmessage.Type(t).String(), "Type"); ok && s != "" && s[0] >= 'A' && s[0] <= 'Z' {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}
