package policy_test

import (
	"testing"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/labels"
	"github.com/netward/netward/policy"
)

func appSelector(app string) labels.Selector {
	return labels.NewSelector(labels.Requirement{Source: labels.SourceAny, Key: "app", Operator: labels.OpIn, Values: []string{app}})
}

func appIdentity(id identity.ID, app string) *identity.Identity {
	return &identity.Identity{ID: id, Kind: identity.KindPod, Labels: labels.NewSet(
		labels.Label{Source: labels.SourceK8s, Key: labels.KeyNamespace, Value: "default"},
		labels.Label{Source: labels.SourceK8s, Key: "app", Value: app})}
}

func dnsRule(t *testing.T, name, pattern string) policy.DNSRule {
	t.Helper()
	r, err := policy.NewDNSRule(name, pattern)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// dnsEntry is an egress rule of app=client to app=peer on port 53 with DNS rules.
func dnsEntry(name, peer string, proto uint8, defaultDeny bool, dns ...policy.DNSRule) *policy.Entry {
	return &policy.Entry{
		Subject:     policy.Subject{Selector: appSelector("client")},
		DefaultDeny: defaultDeny,
		L3:          []policy.PeerSelector{policy.LabelPeer{Sel: appSelector(peer)}},
		L4:          []policy.PortRule{{Ports: []policy.PortProto{{Port: 53, Proto: proto}}, DNS: dns}},
		Origin:      &policy.Origin{Kind: "CiliumClusterwideNetworkPolicy", Name: name, Path: "spec.egress[0]"},
	}
}

// Semantics doc §1.4 (rules.dns: egress, TCP/UDP/ANY), §2.5 (L7 lists of rules for the same
// port and peer are a union; a rule without L7 rules admits everything; in a default-allow
// direction L7 rules only give visibility: TestDNSWildcardInDefaultAllow).
func TestAllowsDNS(t *testing.T) {
	client, dns, dns2 := appIdentity(300, "client"), appIdentity(301, "dns"), appIdentity(302, "dns2")
	compile := func(entries ...*policy.Entry) *policy.EndpointPolicy {
		t.Helper()
		e := policy.NewEngine(policy.DefaultOptions())
		for _, id := range []*identity.Identity{client, dns, dns2} {
			e.UpsertIdentity(id)
		}
		e.ReplaceResource("test", entries)
		p := e.Policy(client, "")
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		return p
	}
	type lookup struct {
		peer    *identity.Identity
		proto   uint8
		name    string
		allowed bool
	}
	check := func(what string, p *policy.EndpointPolicy, cases []lookup) {
		t.Helper()
		for _, c := range cases {
			got, matches := p.AllowsDNS(true, c.peer, c.proto, 53, c.name)
			if got != c.allowed {
				t.Errorf("%s: %s to %d over %s: allowed %v, want %v", what, c.name, c.peer.ID, policy.ProtoName(c.proto), got, c.allowed)
			}
			if got && len(matches) == 0 {
				t.Errorf("%s: %s allowed without a matching rule", what, c.name)
			}
		}
	}

	// One rule, UDP and TCP (ANY).
	p := compile(dnsEntry("a", "dns", policy.ProtoAny, true,
		dnsRule(t, "api.example.com", ""), dnsRule(t, "", "*.cluster.local")))
	if d := p.Lookup(true, dns.ID, policy.ProtoUDP, 53); d.Entry.Verdict != policy.Redirect || d.Entry.Parser != policy.ParserDNS {
		t.Fatalf("UDP/53 to dns: %v, want a redirect to the DNS proxy", d.Entry)
	}
	check("one rule", p, []lookup{
		{dns, policy.ProtoUDP, "api.example.com.", true},
		{dns, policy.ProtoTCP, "API.example.com", true},
		{dns, policy.ProtoUDP, "svc.cluster.local.", true},
		{dns, policy.ProtoUDP, "a.svc.cluster.local.", false},
		{dns, policy.ProtoUDP, "www.example.com.", false},
		{dns2, policy.ProtoUDP, "api.example.com.", false}, // no rule covers the peer
	})
	if _, m := p.AllowsDNS(true, dns, policy.ProtoUDP, 53, "svc.cluster.local."); len(m) != 1 || m[0].DNS == nil || m[0].DNS.String() != "matchPattern: *.cluster.local" || m[0].Origin.Name != "a" {
		t.Errorf("matches %+v, want the rule matchPattern *.cluster.local of a", m)
	}

	// Two rules for the same peer and port: the union of their names.
	p = compile(dnsEntry("a", "dns", policy.ProtoUDP, true, dnsRule(t, "a.io", "")),
		dnsEntry("b", "dns", policy.ProtoUDP, true, dnsRule(t, "", "**.b.io")))
	check("union", p, []lookup{
		{dns, policy.ProtoUDP, "a.io.", true}, {dns, policy.ProtoUDP, "x.y.b.io.", true},
		{dns, policy.ProtoUDP, "b.io.", false}, {dns, policy.ProtoTCP, "a.io.", false}, // the rules are UDP only
	})

	// An L4-only rule for the same peer and port admits every name.
	p = compile(dnsEntry("a", "dns", policy.ProtoUDP, true, dnsRule(t, "a.io", "")),
		dnsEntry("l4", "dns", policy.ProtoUDP, true))
	check("with an L4-only rule", p, []lookup{{dns, policy.ProtoUDP, "anything.example.", true}})

	// A default-allow direction (enableDefaultDeny.egress: false): visibility only.
	p = compile(dnsEntry("a", "dns", policy.ProtoUDP, false, dnsRule(t, "a.io", "")))
	check("default allow", p, []lookup{{dns, policy.ProtoUDP, "anything.example.", true}})
}
