package policy_test

import (
	"fmt"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/labels"
	"github.com/netward/netward/policy"
)

// ExampleEngine compiles one CiliumNetworkPolicy rule, written directly in the engine's
// normal form, and asks the compiled policy map for verdicts as the datapath would:
//
//	apiVersion: cilium.io/v2
//	kind: CiliumNetworkPolicy
//	metadata: {name: backend, namespace: shop}
//	spec:
//	  endpointSelector: {matchLabels: {app: backend}}
//	  ingress:
//	  - fromEndpoints: [{matchLabels: {app: frontend}}]
//	    toPorts:
//	    - ports: [{port: "8080", protocol: TCP}]
//	      rules: {http: [{method: GET, path: "/api/.*"}]}
func ExampleEngine() {
	inShop := func(app string) labels.Selector {
		return labels.NewSelector(
			labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyNamespace, Operator: labels.OpIn, Values: []string{"shop"}},
			labels.Requirement{Source: labels.SourceAny, Key: "app", Operator: labels.OpIn, Values: []string{app}},
		)
	}
	pod := func(id identity.ID, app string) *identity.Identity {
		return &identity.Identity{ID: id, Kind: identity.KindPod, Labels: labels.NewSet(
			labels.Label{Source: labels.SourceK8s, Key: labels.KeyNamespace, Value: "shop"},
			labels.Label{Source: labels.SourceK8s, Key: "app", Value: app},
		)}
	}
	frontend, backend, other := pod(256, "frontend"), pod(257, "backend"), pod(258, "other")
	host := &identity.Identity{ID: identity.Host, Kind: identity.KindHost, Labels: identity.ReservedLabels(identity.Host)}

	e := policy.NewEngine(policy.DefaultOptions()) // allow-localhost on, as in Kubernetes
	for _, id := range []*identity.Identity{frontend, backend, other, host} {
		e.UpsertIdentity(id)
	}
	get, _ := l7.NewHTTPRule("GET", "/api/.*", "", nil, nil)
	e.ReplaceResource("CiliumNetworkPolicy/shop/backend", []*policy.Entry{{
		Subject:     policy.Subject{Selector: inShop("backend")},
		Ingress:     true,
		DefaultDeny: true,
		L3:          []policy.PeerSelector{policy.LabelPeer{Sel: inShop("frontend")}},
		L4:          []policy.PortRule{{Ports: []policy.PortProto{{Port: 8080, Proto: policy.ProtoTCP}}, HTTP: []*l7.HTTPRule{get}}},
		Origin:      &policy.Origin{Kind: "CiliumNetworkPolicy", Namespace: "shop", Name: "backend", Path: "spec.ingress[0]"},
	}})

	p := e.Policy(backend, "")
	fmt.Print(p.Map)
	for _, f := range []struct {
		name string
		peer *identity.Identity
		port uint16
	}{{"frontend", frontend, 8080}, {"frontend", frontend, 9090}, {"other", other, 8080}, {"host", host, 9090}} {
		d := p.Lookup(false, f.peer.ID, policy.ProtoTCP, f.port)
		verdict := "drop"
		if d.Allowed {
			verdict = d.Entry.String()
		}
		fmt.Printf("%s -> backend TCP/%d: %s\n", f.name, f.port, verdict)
	}
	for _, req := range []*l7.Request{{Method: "GET", Path: "/api/items"}, {Method: "DELETE", Path: "/api/items"}} {
		ok, _ := p.AllowsHTTP(false, frontend, 8080, req)
		fmt.Printf("%s %s from the frontend: allowed=%v\n", req.Method, req.Path, ok)
	}
	// Output:
	// ingress peer=1 (host) proto=any port=any -> allow
	// ingress peer=256 proto=TCP port=8080 -> redirect(http)
	// frontend -> backend TCP/8080: redirect(http)
	// frontend -> backend TCP/9090: drop
	// other -> backend TCP/8080: drop
	// host -> backend TCP/9090: allow
	// GET /api/items from the frontend: allowed=true
	// DELETE /api/items from the frontend: allowed=false
}
