//go:build linux

package agent

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/netward/netward/datapath"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/l7/proxy"
	"github.com/netward/netward/policy"
)

// TestProxyPorts: every parser and direction has its own port; a pinned redirect entry
// gives its parser back from its precedence or, failing that, from its port; an entry with
// another port than the agent writes reports no parser, so that it is rewritten.
func TestProxyPorts(t *testing.T) {
	kernel := &Agent{cfg: Config{ProxyBasePort: DefaultProxyBasePort}, dp: &datapath.Datapath{}}
	fake := &Agent{cfg: Config{ProxyBasePort: DefaultProxyBasePort}, dp: newFakeDatapath()}
	seen := map[uint16]bool{}
	for p := policy.ParserHTTP; p <= policy.ParserCRD; p++ {
		prec := policy.Precedence(1<<8 | (255 - 1 - map[policy.L7Parser]uint32{policy.ParserHTTP: 101, policy.ParserTLS: 116, policy.ParserDNS: 121, policy.ParserCRD: 126}[p]))
		for _, egress := range []bool{false, true} {
			k := policy.Key{Egress: egress, Proto: policy.ProtoTCP, Port: 80, PrefixLen: 24}
			port := proxyPortOf(DefaultProxyBasePort, p, egress)
			if seen[port] || int(port) < DefaultProxyBasePort || int(port) > DefaultProxyBasePort+7 {
				t.Errorf("%s egress=%v: port %d reused or out of range", p, egress, port)
			}
			seen[port] = true
			if got, ok := parserOfPort(DefaultProxyBasePort, port); !ok || got != p {
				t.Errorf("port %d: parser %s %v, want %s", port, got, ok, p)
			}
			if got := kernel.parserOf(k, datapath.PolicyValue{ProxyPort: port, Precedence: prec}); got != p {
				t.Errorf("pinned %s entry with port %d: parser %s, want %s", p, port, got, p)
			}
			if got := kernel.parserOf(k, datapath.PolicyValue{ProxyPort: port, Precedence: 1 << 8}); got != p {
				t.Errorf("pinned entry with port %d and no parser in its precedence: parser %s, want %s", port, got, p)
			}
			// Written before the proxy started (placeholder ports) or with another base port:
			// rewritten.
			if got := kernel.parserOf(k, datapath.PolicyValue{ProxyPort: 15000 + uint16(p), Precedence: prec}); got != policy.ParserNone {
				t.Errorf("pinned %s entry with the placeholder port: parser %s, want none (rewrite)", p, got)
			}
			if got := kernel.parserOf(k, datapath.PolicyValue{ProxyPort: port + 100, Precedence: prec}); got != policy.ParserNone {
				t.Errorf("pinned %s entry of another base port: parser %s, want none (rewrite)", p, got)
			}
			// Fakes keep the placeholder ports.
			if got := fake.parserOf(k, datapath.PolicyValue{ProxyPort: 15000 + uint16(p), Precedence: 1 << 8}); got != p {
				t.Errorf("fake datapath, placeholder port %d: parser %s, want %s", 15000+uint16(p), got, p)
			}
		}
	}
	if proxyPortOf(DefaultProxyBasePort, policy.ParserHTTP, false) != DefaultProxyBasePort ||
		proxyPortOf(DefaultProxyBasePort, policy.ParserHTTP, true) != DefaultProxyBasePort+1 {
		t.Error("HTTP ports are not base and base+1")
	}
	if _, ok := parserOfPort(DefaultProxyBasePort, DefaultProxyBasePort+8); ok {
		t.Error("a port beyond the 8 proxy ports has a parser")
	}
}

// TestConvertProxyEvent: a proxy access-log record becomes an event of the observe stream,
// with the sides named from the view, the endpoint of the deciding direction, the HTTP
// fields and the rule origins.
func TestConvertProxyEvent(t *testing.T) {
	a := &Agent{}
	client, api := netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("10.244.1.3")
	a.view.Store(&view{node: "node-1", peers: map[netip.Addr]Peer{
		client: {Pod: "shop/client", IP: client.String(), Identity: 300, Kind: "pod", Node: "node-1"},
		api:    {Pod: "shop/api", IP: api.String(), Identity: 301, Kind: "pod", Node: "node-1"},
	}})
	at := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	ev := a.convertProxyEvent(proxy.Event{
		Time: at, Src: netip.AddrPortFrom(client, 40000), Dst: netip.AddrPortFrom(api, 80), Proto: "HTTP/1.1",
		Method: "GET", Path: "/private", Host: "api", Verdict: proxy.VerdictDenied, Status: 403,
		Origins: []string{"CiliumNetworkPolicy shop/api-http spec.ingress[0]"}, Reason: "no HTTP rule admits the request",
		HeaderOps: []l7.HeaderOp{{Action: "LOG", Name: "X-Token"}},
	})
	if ev.Endpoint != "shop/api" || ev.Direction != "ingress" || ev.Source.Pod != "shop/client" || ev.Destination.Identity != 301 ||
		ev.Verdict != "dropped" || ev.Reason != "l7-denied" || ev.HTTPVerdict != "denied" || ev.HTTPStatus != 403 ||
		ev.HTTPMethod != "GET" || ev.HTTPPath != "/private" || ev.HTTPHost != "api" || ev.L7Protocol != "http" ||
		ev.HTTPVersion != "HTTP/1.1" || ev.Port != 80 || ev.SrcPort != 40000 || ev.Proto != "TCP" || !ev.Time.Equal(at) ||
		!slices.Equal(ev.Origins, []string{"CiliumNetworkPolicy shop/api-http spec.ingress[0]"}) || len(ev.HTTPHeaderOps) != 1 {
		t.Errorf("ingress denied: %+v", ev)
	}
	world := netip.MustParseAddr("198.51.100.10")
	ev = a.convertProxyEvent(proxy.Event{Src: netip.AddrPortFrom(client, 1), Dst: netip.AddrPortFrom(world, 80), Egress: true,
		Proto: "HTTP/2.0", Method: "GET", Path: "/w", Verdict: proxy.VerdictAllowed})
	if ev.Endpoint != "shop/client" || ev.Direction != "egress" || ev.Destination.Kind != "world" || ev.Destination.IP != world.String() ||
		ev.Verdict != "forwarded" || ev.HTTPVerdict != "allowed" || ev.HTTPVersion != "HTTP/2.0" {
		t.Errorf("egress allowed: %+v", ev)
	}
	ev = a.convertProxyEvent(proxy.Event{Src: netip.AddrPortFrom(client, 1), Dst: netip.AddrPortFrom(api, 53), Egress: true,
		Proto: "dns/udp", Verdict: proxy.VerdictDenied, Reason: "no dns proxy in netward: redirect denied (fail closed)"})
	if ev.L7Protocol != "dns" || ev.Proto != "UDP" || ev.HTTPVersion != "" || ev.Verdict != "dropped" {
		t.Errorf("fail-closed DNS datagram: %+v", ev)
	}
}
