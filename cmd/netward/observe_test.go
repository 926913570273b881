package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/netward/netward/agent"
)

// TestPrintL7Event: a proxy event prints as a datapath event plus the request, the proxy's
// verdict and status, and the reason of a denial.
func TestPrintL7Event(t *testing.T) {
	ev := agent.Event{
		Time:   time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC),
		Source: agent.Peer{Pod: "shop/client", IP: "10.244.1.2", Identity: 300}, Destination: agent.Peer{Pod: "shop/api", IP: "10.244.1.3", Identity: 301},
		Proto: "TCP", Port: 80, Direction: "ingress", Endpoint: "shop/api", Verdict: "dropped", Reason: "l7-denied",
		Origins:    []string{"CiliumNetworkPolicy shop/api-http spec.ingress[0]"},
		L7Protocol: "http", HTTPVersion: "HTTP/1.1", HTTPMethod: "GET", HTTPPath: "/private", HTTPHost: "api",
		HTTPVerdict: "denied", HTTPStatus: 403, L7Reason: "no HTTP rule admits the request",
	}
	var b bytes.Buffer
	printEvent(&b, ev)
	want := `21:00:00.000 shop/client (300) -> shop/api (301) 80/TCP ingress DROPPED (l7-denied) [HTTP/1.1 GET "/private" host="api" denied 403: no HTTP rule admits the request] by CiliumNetworkPolicy shop/api-http spec.ingress[0]`
	if got := strings.TrimSpace(b.String()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	b.Reset()
	printEvent(&b, agent.Event{Source: agent.Peer{Pod: "a/b"}, Destination: agent.Peer{Pod: "c/d"}, Proto: "UDP", Port: 53,
		Direction: "egress", Verdict: "dropped", Reason: "l7-denied", L7Protocol: "dns", L7Reason: "no dns proxy in netward: redirect denied (fail closed)"})
	if !strings.Contains(b.String(), "53/UDP egress DROPPED (l7-denied) [dns: no dns proxy in netward: redirect denied (fail closed)]") {
		t.Errorf("fail-closed DNS event: %s", b.String())
	}
	b.Reset()
	printEvent(&b, agent.Event{Source: agent.Peer{Pod: "a/b"}, Destination: agent.Peer{Pod: "kube-system/dns"}, Proto: "UDP", Port: 53,
		Direction: "egress", Verdict: "dropped", Reason: "l7-denied", L7Protocol: "dns", DNSName: "evil.io.", DNSType: "A",
		DNSVerdict: "denied", DNSRcode: "Refused", L7Reason: "no DNS rule admits the name", Origins: []string{"CiliumNetworkPolicy a/dns spec.egress[0]"}})
	if !strings.Contains(b.String(), "53/UDP egress DROPPED (l7-denied) [DNS A evil.io. denied Refused: no DNS rule admits the name] by CiliumNetworkPolicy a/dns spec.egress[0]") {
		t.Errorf("DNS proxy event: %s", b.String())
	}
	b.Reset()
	printEvent(&b, agent.Event{Source: agent.Peer{Pod: "a/b"}, Destination: agent.Peer{Pod: "c/d"}, Proto: "TCP", Port: 80})
	if strings.Contains(b.String(), "[") {
		t.Errorf("a datapath event printed an L7 part: %s", b.String())
	}
}
