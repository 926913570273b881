//go:build linux

package agent

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"slices"
	"testing"
	"time"

	"github.com/netward/netward/l7/dnsproxy"
	"github.com/netward/netward/l7/proxy"
)

func TestConvertDNSEvent(t *testing.T) {
	a := &Agent{}
	client, dns := netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("10.244.1.9")
	a.view.Store(&view{node: "node-1", peers: map[netip.Addr]Peer{
		client: {Pod: "shop/client", IP: client.String(), Identity: 300, Kind: "pod", Node: "node-1"},
		dns:    {Pod: "kube-system/coredns", IP: dns.String(), Identity: 310, Kind: "pod", Node: "node-1"},
	}})
	at := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
	ev := a.convertDNSEvent(dnsproxy.Event{Time: at, Src: netip.AddrPortFrom(client, 40000), Dst: netip.AddrPortFrom(dns, 53),
		Proto: "udp", Name: "evil.io.", Type: 28, Verdict: dnsproxy.VerdictDenied, Rcode: 5,
		Origins: []string{"CiliumNetworkPolicy shop/dns spec.egress[0]"}, Reason: "no DNS rule admits the name"})
	if ev.Endpoint != "shop/client" || ev.Direction != "egress" || ev.Destination.Pod != "kube-system/coredns" || ev.Proto != "UDP" ||
		ev.Port != 53 || ev.SrcPort != 40000 || ev.L7Protocol != "dns" || ev.DNSName != "evil.io." || ev.DNSType != "AAAA" ||
		ev.DNSVerdict != "denied" || ev.DNSRcode != "Refused" || ev.Verdict != "dropped" || ev.Reason != "l7-denied" ||
		ev.L7Reason != "no DNS rule admits the name" || !ev.Time.Equal(at) || !slices.Equal(ev.Origins, []string{"CiliumNetworkPolicy shop/dns spec.egress[0]"}) {
		t.Errorf("denied lookup: %+v", ev)
	}
	ev = a.convertDNSEvent(dnsproxy.Event{Src: netip.AddrPortFrom(client, 1), Dst: netip.AddrPortFrom(dns, 53), Proto: "tcp",
		Name: "api.example.com.", Type: 1, Verdict: dnsproxy.VerdictAllowed, Rcode: 3})
	if ev.Proto != "TCP" || ev.DNSType != "A" || ev.DNSVerdict != "allowed" || ev.DNSRcode != "NameError" || ev.Verdict != "forwarded" {
		t.Errorf("allowed lookup: %+v", ev)
	}
	ev = a.convertDNSEvent(dnsproxy.Event{Src: netip.AddrPortFrom(client, 1), Dst: netip.AddrPortFrom(dns, 53), Proto: "udp",
		Name: "x.", Type: 65280, Verdict: dnsproxy.VerdictError, Rcode: -1, Reason: "too many DNS queries in flight"})
	if ev.DNSType != "TYPE65280" || ev.DNSRcode != "" || ev.Verdict != "error" || ev.DNSVerdict != "error" {
		t.Errorf("dropped lookup: %+v", ev)
	}
}

// Every L7 verdict is counted by protocol, direction and verdict, as well as published.
func TestL7VerdictMetrics(t *testing.T) {
	a := &Agent{events: newEventHub(16)}
	a.metrics = newMetrics(a)
	client, dns := netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("10.244.1.9")
	a.view.Store(&view{node: "node-1", peers: map[netip.Addr]Peer{client: {Pod: "shop/client", IP: client.String()}}})
	for _, v := range []dnsproxy.Verdict{dnsproxy.VerdictAllowed, dnsproxy.VerdictDenied, dnsproxy.VerdictDenied, dnsproxy.VerdictError} {
		a.publishDNSEvent(dnsproxy.Event{Src: netip.AddrPortFrom(client, 1), Dst: netip.AddrPortFrom(dns, 53), Proto: "udp", Name: "a.", Type: 1, Verdict: v})
	}
	a.publishProxyEvent(proxy.Event{Src: netip.AddrPortFrom(client, 1), Dst: netip.AddrPortFrom(dns, 80), Egress: false,
		Proto: "HTTP/1.1", Method: "GET", Path: "/", Verdict: proxy.VerdictDenied})
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"dns", "egress", "allowed"}, 1}, {[]string{"dns", "egress", "denied"}, 2}, {[]string{"dns", "egress", "error"}, 1},
		{[]string{"http", "ingress", "denied"}, 1}, {[]string{"http", "ingress", "allowed"}, 0},
	} {
		if got := counterValue(t, a.metrics.l7.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("netward_l7_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
