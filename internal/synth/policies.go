package synth

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/netward/netward/api"
)

// Label keys Cilium policies use to name namespaces.
const (
	cnpNamespace   = "k8s:io.kubernetes.pod.namespace"
	cnpNSLabel     = "io.cilium.k8s.namespace.labels."
	ccnpNamespace  = "io.kubernetes.pod.namespace"
	k8sMetadataKey = "kubernetes.io/metadata.name"
)

// External prefixes policies name (documentation ranges and a few well-known services), with
// an exception inside each where one makes sense.
var cidrPool = []struct {
	cidr   string
	except []string
}{
	{"192.0.2.0/24", []string{"192.0.2.128/25"}},
	{"198.51.100.0/24", []string{"198.51.100.254/32"}},
	{"203.0.113.0/24", nil},
	{"52.94.0.0/16", []string{"52.94.200.0/21"}},
	{"35.190.0.0/17", nil},
	{"140.82.112.0/20", []string{"140.82.121.0/24"}},
	{"151.101.0.0/16", nil},
	{"8.8.8.8/32", nil},
	{"1.1.1.1/32", nil},
}

var fqdns = []string{"api.stripe.com", "hooks.slack.com", "s3.eu-west-1.amazonaws.com", "api.github.com", "oauth2.googleapis.com", "sentry.io"}

func ptr[T any](v T) *T { return &v }

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func selIn(key string, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values}}}
}

// claim reserves a policy's base name (which encodes its template and the workloads it
// names) in a namespace, so that templates are not repeated with the same content; after
// many attempts (a small cluster with many policies) fill sets force and repeats are allowed.
func (g *gen) claim(kind, ns, base string) bool {
	k := kind + "/" + ns + "/" + base
	if g.bases[k] && !g.force {
		return false
	}
	g.bases[k] = true
	return true
}

// fill makes n policies with templates picked at random, each retried until it produces a
// policy not made before.
func (g *gen) fill(n int, templates []func() bool) {
	for range n {
		g.force = false
		for attempt := 1; !templates[g.pick(len(templates))](); attempt++ {
			g.force = attempt >= 50
		}
	}
}

func (g *gen) unique(kind, ns, base string) string {
	name := base
	for i := 2; g.names[kind+"/"+ns+"/"+name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	g.names[kind+"/"+ns+"/"+name] = true
	return name
}

// appNS picks an application namespace, more often a bigger one.
func (g *gen) appNS() *nsInfo {
	a, b := g.apps[g.pick(len(g.apps))], g.apps[g.pick(len(g.apps))]
	if len(b.workloads) > len(a.workloads) {
		return b
	}
	return a
}

// workload picks a workload of ns, preferring one of the given tiers; a namespace without
// workloads gets a placeholder that selects no pod.
func (g *gen) workload(ns *nsInfo, tiers ...string) *workload {
	var cands []*workload
	for _, w := range ns.workloads {
		for _, t := range tiers {
			if w.kind.tier == t {
				cands = append(cands, w)
			}
		}
	}
	if len(cands) == 0 {
		cands = ns.workloads
	}
	if len(cands) == 0 {
		return &workload{ns: ns, app: "api", kind: &appKinds[0], ports: appKinds[0].ports[:1]}
	}
	return cands[g.pick(len(cands))]
}

func (w *workload) port(name string) (portSpec, bool) {
	for _, p := range w.ports {
		if p.name == name {
			return p, true
		}
	}
	return portSpec{}, false
}

func (g *gen) makePolicies() {
	nKNP, nCNP, nCCNP := g.cfg.KindCounts()
	g.makeCCNPs(nCCNP)
	g.makeKNPs(nKNP)
	g.makeCNPs(nCNP)
}

// ---------------------------------------------------------------------------------------
// Kubernetes NetworkPolicies

func (g *gen) addKNP(ns, base string, spec networkingv1.NetworkPolicySpec) bool {
	if !g.claim(api.KindNetworkPolicy, ns, base) {
		return false
	}
	g.objs.NetworkPolicies = append(g.objs.NetworkPolicies, api.Object[networkingv1.NetworkPolicy]{Obj: &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: g.unique(api.KindNetworkPolicy, ns, base), Namespace: ns},
		Spec:       spec,
	}})
	return true
}

func knpPort(proto corev1.Protocol, port intstr.IntOrString) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr(proto), Port: ptr(port)}
}

func knpNum(port int32) networkingv1.NetworkPolicyPort {
	return knpPort(corev1.ProtocolTCP, intstr.FromInt32(port))
}

func knpNamed(name string) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Port: ptr(intstr.FromString(name))}
}

var dnsPeer = networkingv1.NetworkPolicyPeer{
	NamespaceSelector: sel(k8sMetadataKey, "kube-system"),
	PodSelector:       sel("k8s-app", "kube-dns"),
}

func dnsKNPPorts() []networkingv1.NetworkPolicyPort {
	return []networkingv1.NetworkPolicyPort{
		knpPort(corev1.ProtocolUDP, intstr.FromInt32(53)),
		knpPort(corev1.ProtocolTCP, intstr.FromInt32(53)),
	}
}

func (g *gen) makeKNPs(n int) {
	// A default deny per application namespace first (most ingress only, some ingress and
	// egress, each of those followed by a DNS allow when the budget has room).
	dd := min(len(g.apps), (n*3+4)/5)
	for _, ns := range g.apps[:dd] {
		if n == 0 {
			return
		}
		if g.chance(0.25) && n >= 2 {
			ns.denyAllEgress = true
			g.addKNP(ns.name, "default-deny-all", networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			})
			g.addKNP(ns.name, "allow-dns", networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{dnsPeer}, Ports: dnsKNPPorts()}},
			})
			n -= 2
			continue
		}
		g.addKNP(ns.name, "default-deny", networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		})
		n--
	}
	g.fill(n, []func() bool{
		g.knpSameApp, g.knpSameApp, g.knpTierToTier, g.knpTierToTier, g.knpFromNamespace,
		g.knpMonitoring, g.knpPortRange, g.knpEgressExternal, g.knpDBFromBackend, g.knpFromAnywhere,
		g.knpEgressToNamespaces,
	})
}

// knpSameApp: pods of one app talk to each other on their first named port.
func (g *gen) knpSameApp() bool {
	ns := g.appNS()
	w := g.workload(ns)
	return g.addKNP(ns.name, "allow-"+w.app+"-peers", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", w.app),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", w.app)}},
			Ports: []networkingv1.NetworkPolicyPort{knpNamed(w.ports[0].name)},
		}},
	})
}

// knpTierToTier: frontend to backend, backend to data, on numeric ports.
func (g *gen) knpTierToTier() bool {
	ns := g.appNS()
	from, to, ports := "frontend", "backend", []networkingv1.NetworkPolicyPort{knpNum(8080), knpNum(9000)}
	if g.chance(0.5) {
		from, to, ports = "backend", "data", []networkingv1.NetworkPolicyPort{knpNum(5432), knpNum(6379), knpNum(5672)}
	}
	return g.addKNP(ns.name, "allow-"+from+"-to-"+to, networkingv1.NetworkPolicySpec{
		PodSelector: *sel("tier", to),
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("tier", from)}},
			Ports: ports,
		}},
	})
}

// knpFromNamespace: an API accepts another team's namespaces (namespaceSelector on team),
// and that team's gateways in one named namespace (namespaceSelector and podSelector).
func (g *gen) knpFromNamespace() bool {
	ns, peer := g.appNS(), g.appNS()
	w := g.workload(ns, "backend")
	pw := g.workload(peer, "frontend")
	return g.addKNP(ns.name, "allow-"+w.app+"-from-"+peer.team, networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", w.app),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: sel("team", peer.team)},
				{NamespaceSelector: sel(k8sMetadataKey, peer.name), PodSelector: sel("app", pw.app)},
			},
			Ports: []networkingv1.NetworkPolicyPort{knpNum(w.ports[0].port)},
		}},
	})
}

// knpMonitoring: prometheus may scrape every pod of the namespace on its metrics port.
func (g *gen) knpMonitoring() bool {
	ns := g.appNS()
	return g.addKNP(ns.name, "allow-monitoring", networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: sel(k8sMetadataKey, "monitoring"),
				PodSelector:       sel("app", "prometheus"),
			}},
			Ports: []networkingv1.NetworkPolicyPort{knpNamed("metrics")},
		}},
	})
}

// knpPortRange: a port range from the team's prod and staging namespaces (matchExpressions).
func (g *gen) knpPortRange() bool {
	ns := g.appNS()
	w := g.workload(ns, "backend")
	lo := int32(30000 + 100*g.pick(20))
	p := knpNum(lo)
	p.EndPort = ptr(lo + int32(16+g.pick(200)))
	return g.addKNP(ns.name, "allow-"+w.app+"-port-range", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", w.app),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels:      map[string]string{"team": ns.team},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}}},
			}}},
			Ports: []networkingv1.NetworkPolicyPort{p},
		}},
	})
}

// knpEgressExternal: egress to the internet but not to private ranges, plus DNS.
func (g *gen) knpEgressExternal() bool {
	ns := g.appNS()
	w := g.workload(ns, "backend")
	return g.addKNP(ns.name, "allow-"+w.app+"-egress-internet", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", w.app),
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress: []networkingv1.NetworkPolicyEgressRule{
			{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
					CIDR:   "0.0.0.0/0",
					Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.169.254/32"},
				}}},
				Ports: []networkingv1.NetworkPolicyPort{knpNum(443)},
			},
			{To: []networkingv1.NetworkPolicyPeer{dnsPeer}, Ports: dnsKNPPorts()},
		},
	})
}

// knpDBFromBackend: the database accepts backend pods (matchExpressions) on its port.
func (g *gen) knpDBFromBackend() bool {
	ns := g.appNS()
	w := g.workload(ns, "data")
	return g.addKNP(ns.name, w.app+"-from-backend", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", w.app),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: selIn("tier", "backend")}},
			Ports: []networkingv1.NetworkPolicyPort{knpNum(w.ports[0].port)},
		}},
	})
}

// knpFromAnywhere: a frontend's serving port is open to every source.
func (g *gen) knpFromAnywhere() bool {
	ns := g.appNS()
	w := g.workload(ns, "frontend")
	return g.addKNP(ns.name, w.app+"-from-anywhere", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", w.app),
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{knpNamed(w.ports[0].name)}}},
	})
}

// knpEgressToNamespaces: egress to the same team's other environments and to DNS.
func (g *gen) knpEgressToNamespaces() bool {
	ns := g.appNS()
	w := g.workload(ns)
	return g.addKNP(ns.name, "allow-"+w.app+"-egress-team", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", w.app),
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress: []networkingv1.NetworkPolicyEgressRule{
			{
				To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{
						MatchLabels:      map[string]string{"team": ns.team},
						MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"dev"}}},
					},
					PodSelector: selIn("tier", "backend", "data"),
				}},
			},
			{To: []networkingv1.NetworkPolicyPeer{dnsPeer}, Ports: dnsKNPPorts()},
		},
	})
}

// ---------------------------------------------------------------------------------------
// CiliumNetworkPolicies

func (g *gen) addCNP(ns, base string, spec *api.Rule, specs []api.Rule) bool {
	if !g.claim(api.KindCNP, ns, base) {
		return false
	}
	g.objs.CNPs = append(g.objs.CNPs, api.Object[api.CiliumNetworkPolicy]{Obj: &api.CiliumNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "cilium.io/v2", Kind: api.KindCNP},
		ObjectMeta: metav1.ObjectMeta{Name: g.unique(api.KindCNP, ns, base), Namespace: ns},
		Spec:       spec,
		Specs:      specs,
	}})
	return true
}

func ports(proto string, ps ...string) []api.PortRule {
	pp := make([]api.PortProtocol, len(ps))
	for i, p := range ps {
		pp[i] = api.PortProtocol{Port: p, Protocol: proto}
	}
	return []api.PortRule{{Ports: pp}}
}

func denyPorts(proto string, ps ...string) []api.PortDenyRule {
	pp := make([]api.PortProtocol, len(ps))
	for i, p := range ps {
		pp[i] = api.PortProtocol{Port: p, Protocol: proto}
	}
	return []api.PortDenyRule{{Ports: pp}}
}

func num(p int32) string { return fmt.Sprint(p) }

func (g *gen) makeCNPs(n int) {
	g.fill(n, []func() bool{
		g.cnpL7, g.cnpL7, g.cnpCrossNamespace, g.cnpCrossNamespace, g.cnpNamespaceLabels,
		g.cnpEgressCIDR, g.cnpEgressEntities, g.cnpHostHealth, g.cnpDeny, g.cnpDeny, g.cnpMultiSpec,
		g.cnpICMP, g.cnpFQDN, g.cnpTierExpressions, g.cnpEgressDB,
	})
}

// cnpL7: an API reachable from its frontends over HTTP with method/path rules.
func (g *gen) cnpL7() bool {
	ns := g.appNS()
	w := g.workload(ns, "backend")
	fe := g.workload(ns, "frontend")
	pr := ports("TCP", "8080")
	pr[0].Rules = &api.L7Rules{HTTP: []api.PortRuleHTTP{
		{Method: "GET", Path: "/api/v[12]/.*"},
		{Method: "POST", Path: "/api/v1/orders", Headers: []string{"X-Request-Id"}},
		{Method: "GET", Path: "/healthz"},
	}}
	r := &api.Rule{
		EndpointSelector: sel("app", w.app),
		Ingress:          []api.IngressRule{{IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel("app", fe.app)}}, ToPorts: pr}},
		Description:      "HTTP API of " + w.app + " for " + fe.app,
	}
	if g.chance(0.3) {
		r.Log = &api.LogConfig{Value: "l7-" + w.app}
	}
	return g.addCNP(ns.name, w.app+"-http", r, nil)
}

// cnpCrossNamespace: a peer named by k8s:io.kubernetes.pod.namespace.
func (g *gen) cnpCrossNamespace() bool {
	ns, peer := g.appNS(), g.appNS()
	w := g.workload(ns, "backend", "data")
	pw := g.workload(peer, "backend", "frontend")
	port := w.ports[0].name
	if g.chance(0.5) {
		port = num(w.ports[0].port)
	}
	return g.addCNP(ns.name, w.app+"-from-"+peer.name, &api.Rule{
		EndpointSelector: sel("app", w.app),
		Ingress: []api.IngressRule{{
			IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, peer.name, "app", pw.app)}},
			ToPorts:      ports("TCP", port),
		}},
	}, nil)
}

// cnpNamespaceLabels: peers named by namespace labels, on a port range.
func (g *gen) cnpNamespaceLabels() bool {
	ns, peer := g.appNS(), g.appNS()
	w := g.workload(ns, "backend")
	lo := int32(9000 + 10*g.pick(10))
	pr := []api.PortRule{{Ports: []api.PortProtocol{{Port: num(lo), EndPort: lo + 9, Protocol: "TCP"}}}}
	return g.addCNP(ns.name, w.app+"-from-team-"+peer.team, &api.Rule{
		EndpointSelector: sel("app", w.app),
		Ingress: []api.IngressRule{{
			IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel(cnpNSLabel+"team", peer.team, cnpNSLabel+"env", peer.env)}},
			ToPorts:      pr,
		}},
	}, nil)
}

// cnpEgressCIDR: egress to an external prefix with an exception, on HTTPS.
func (g *gen) cnpEgressCIDR() bool {
	ns := g.appNS()
	w := g.workload(ns, "backend")
	c := cidrPool[g.pick(len(cidrPool))]
	r := &api.Rule{EndpointSelector: sel("app", w.app)}
	if g.chance(0.5) {
		r.Egress = []api.EgressRule{{EgressPeers: api.EgressPeers{ToCIDRSet: []api.CIDRRule{{CIDR: c.cidr, ExceptCIDRs: c.except}}}, ToPorts: ports("TCP", "443")}}
	} else {
		r.Egress = []api.EgressRule{{EgressPeers: api.EgressPeers{ToCIDR: []string{c.cidr}}, ToPorts: ports("TCP", "443", "8443")}}
	}
	return g.addCNP(ns.name, w.app+"-egress-external", r, nil)
}

// cnpEgressEntities: egress to the world on HTTPS and to the cluster on the service ports.
func (g *gen) cnpEgressEntities() bool {
	ns := g.appNS()
	w := g.workload(ns, "frontend", "backend")
	return g.addCNP(ns.name, w.app+"-egress-entities", &api.Rule{
		EndpointSelector: sel("app", w.app),
		Egress: []api.EgressRule{
			{EgressPeers: api.EgressPeers{ToEntities: []string{"world"}}, ToPorts: ports("TCP", "443")},
			{EgressPeers: api.EgressPeers{ToEntities: []string{"cluster"}}, ToPorts: ports("TCP", "8080", "9000")},
		},
	}, nil)
}

// cnpHostHealth: kubelet probes from the node; default deny stays off for this rule.
func (g *gen) cnpHostHealth() bool {
	ns := g.appNS()
	w := g.workload(ns)
	return g.addCNP(ns.name, w.app+"-probes", &api.Rule{
		EndpointSelector:  sel("app", w.app),
		Ingress:           []api.IngressRule{{IngressPeers: api.IngressPeers{FromEntities: []string{"host", "remote-node"}}, ToPorts: ports("TCP", w.ports[0].name)}},
		EnableDefaultDeny: api.DefaultDenyConfig{Ingress: ptr(false)},
	}, nil)
}

// cnpDeny: deny rules (world into the namespace, dev namespaces into a data store, the
// cloud metadata service).
func (g *gen) cnpDeny() bool {
	ns := g.appNS()
	switch g.pick(3) {
	case 0:
		return g.addCNP(ns.name, "deny-world-ingress", &api.Rule{
			EndpointSelector: &metav1.LabelSelector{},
			IngressDeny:      []api.IngressDenyRule{{IngressPeers: api.IngressPeers{FromEntities: []string{"world"}}}},
		}, nil)
	case 1:
		w := g.workload(ns, "data")
		return g.addCNP(ns.name, w.app+"-deny-dev", &api.Rule{
			EndpointSelector: sel("app", w.app),
			IngressDeny: []api.IngressDenyRule{{
				IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel(cnpNSLabel+"env", "dev")}},
				ToPorts:      denyPorts("TCP", num(w.ports[0].port)),
			}},
			EnableDefaultDeny: api.DefaultDenyConfig{Ingress: ptr(false)},
		}, nil)
	default:
		w := g.workload(ns)
		return g.addCNP(ns.name, w.app+"-deny-metadata", &api.Rule{
			EndpointSelector: sel("app", w.app),
			EgressDeny: []api.EgressDenyRule{
				{EgressPeers: api.EgressPeers{ToCIDR: []string{"169.254.169.254/32"}}},
				{EgressPeers: api.EgressPeers{ToEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, "kube-system")}}, ToPorts: denyPorts("TCP", "10250", "2379")},
			},
			EnableDefaultDeny: api.DefaultDenyConfig{Egress: ptr(false)},
		}, nil)
	}
}

// cnpMultiSpec: one object with several rules (specs), ingress and egress of one workload.
func (g *gen) cnpMultiSpec() bool {
	ns := g.appNS()
	w := g.workload(ns, "backend")
	data := g.workload(ns, "data")
	fe := g.workload(ns, "frontend")
	return g.addCNP(ns.name, w.app+"-policy", nil, []api.Rule{
		{
			EndpointSelector: sel("app", w.app),
			Ingress: []api.IngressRule{
				{IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel("app", fe.app)}}, ToPorts: ports("TCP", w.ports[0].name)},
				{IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, "monitoring", "app", "prometheus")}}, ToPorts: ports("TCP", "metrics")},
			},
		},
		{
			EndpointSelector: sel("app", w.app),
			Egress: []api.EgressRule{
				{EgressPeers: api.EgressPeers{ToEndpoints: []*metav1.LabelSelector{sel("app", data.app)}}, ToPorts: ports("TCP", num(data.ports[0].port))},
				{EgressPeers: api.EgressPeers{ToEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, "kube-system", "k8s-app", "kube-dns")}}, ToPorts: ports("ANY", "53")},
			},
			Labels: []api.RuleLabel{{Key: "owner", Value: ns.team}},
		},
	})
}

// cnpICMP: pings from the same tier.
func (g *gen) cnpICMP() bool {
	ns := g.appNS()
	w := g.workload(ns)
	return g.addCNP(ns.name, w.app+"-icmp", &api.Rule{
		EndpointSelector: sel("app", w.app),
		Ingress: []api.IngressRule{{
			IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel("tier", w.kind.tier)}},
			ICMPs: []api.ICMPRule{{Fields: []api.ICMPField{
				{Family: "IPv4", Type: ptr(intstr.FromString("EchoRequest"))},
				{Family: "IPv6", Type: ptr(intstr.FromInt32(128))},
			}}},
		}},
	}, nil)
}

// cnpFQDN: egress to a SaaS name, with the DNS rule that lets the proxy learn it.
func (g *gen) cnpFQDN() bool {
	ns := g.appNS()
	w := g.workload(ns, "backend")
	name := fqdns[g.pick(len(fqdns))]
	dns := ports("ANY", "53")
	dns[0].Rules = &api.L7Rules{DNS: []api.PortRuleDNS{{MatchName: name}, {MatchPattern: "*.cluster.local"}}}
	return g.addCNP(ns.name, w.app+"-egress-fqdn", &api.Rule{
		EndpointSelector: sel("app", w.app),
		Egress: []api.EgressRule{
			{EgressPeers: api.EgressPeers{ToEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, "kube-system", "k8s-app", "kube-dns")}}, ToPorts: dns},
			{ToFQDNs: []api.FQDNSelector{{MatchName: name}}, ToPorts: ports("TCP", "443")},
		},
	}, nil)
}

// cnpTierExpressions: subject and peers by matchExpressions.
func (g *gen) cnpTierExpressions() bool {
	ns := g.appNS()
	return g.addCNP(ns.name, "tiers", &api.Rule{
		EndpointSelector: selIn("tier", "frontend", "backend"),
		Ingress: []api.IngressRule{{
			IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{{
				MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"frontend", "backend"}},
					{Key: "version", Operator: metav1.LabelSelectorOpExists},
				},
			}}},
			ToPorts: ports("TCP", "http", "grpc"),
		}},
	}, nil)
}

// cnpEgressDB: an app reaches its database by named port.
func (g *gen) cnpEgressDB() bool {
	ns := g.appNS()
	w := g.workload(ns, "backend")
	data := g.workload(ns, "data")
	return g.addCNP(ns.name, w.app+"-to-"+data.app, &api.Rule{
		EndpointSelector: sel("app", w.app),
		Egress: []api.EgressRule{{
			EgressPeers: api.EgressPeers{ToEndpoints: []*metav1.LabelSelector{sel("app", data.app)}},
			ToPorts:     ports("TCP", data.ports[0].name),
		}},
	}, nil)
}

// ---------------------------------------------------------------------------------------
// CiliumClusterwideNetworkPolicies

func (g *gen) addCCNP(base string, r *api.Rule) bool {
	if !g.claim(api.KindCCNP, "", base) {
		return false
	}
	g.objs.CCNPs = append(g.objs.CCNPs, api.Object[api.CiliumClusterwideNetworkPolicy]{Obj: &api.CiliumClusterwideNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "cilium.io/v2", Kind: api.KindCCNP},
		ObjectMeta: metav1.ObjectMeta{Name: g.unique(api.KindCCNP, "", base)},
		Spec:       r,
	}})
	return true
}

func (g *gen) makeCCNPs(n int) {
	fixed := []func() bool{g.ccnpBaselineDNS, g.ccnpDenyMetadata, g.ccnpKubeDNS, g.ccnpHealth}
	for i := 0; i < n && i < len(fixed); i++ {
		fixed[i]()
	}
	g.fill(n-min(n, len(fixed)), []func() bool{g.ccnpTeamScrape, g.ccnpEnvIsolation, g.ccnpNamespaceEgress, g.ccnpNamespaceEgress, g.ccnpDataStores})
}

// ccnpBaselineDNS: every pod may resolve names through kube-dns (DNS proxy visibility); it
// does not by itself put egress in default deny.
func (g *gen) ccnpBaselineDNS() bool {
	dns := ports("UDP", "53")
	dns[0].Ports = append(dns[0].Ports, api.PortProtocol{Port: "53", Protocol: "TCP"})
	dns[0].Rules = &api.L7Rules{DNS: []api.PortRuleDNS{{MatchPattern: "*"}}}
	return g.addCCNP("baseline-allow-dns", &api.Rule{
		EndpointSelector: &metav1.LabelSelector{},
		Egress: []api.EgressRule{{
			EgressPeers: api.EgressPeers{ToEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, "kube-system", "k8s-app", "kube-dns")}},
			ToPorts:     dns,
		}},
		EnableDefaultDeny: api.DefaultDenyConfig{Egress: ptr(false)},
		Description:       "Platform baseline: cluster DNS for every pod",
	})
}

func (g *gen) ccnpDenyMetadata() bool {
	return g.addCCNP("baseline-deny-cloud-metadata", &api.Rule{
		EndpointSelector:  &metav1.LabelSelector{},
		EgressDeny:        []api.EgressDenyRule{{EgressPeers: api.EgressPeers{ToCIDR: []string{"169.254.169.254/32"}}}},
		EnableDefaultDeny: api.DefaultDenyConfig{Egress: ptr(false)},
		Log:               &api.LogConfig{Value: "cloud-metadata"},
	})
}

func (g *gen) ccnpKubeDNS() bool {
	return g.addCCNP("kube-dns", &api.Rule{
		EndpointSelector: sel(cnpNamespace, "kube-system", "k8s-app", "kube-dns"),
		Ingress: []api.IngressRule{
			{IngressPeers: api.IngressPeers{FromEntities: []string{"cluster"}}, ToPorts: []api.PortRule{{Ports: []api.PortProtocol{{Port: "53", Protocol: "UDP"}, {Port: "53", Protocol: "TCP"}}}}},
			{IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, "monitoring", "app", "prometheus")}}, ToPorts: ports("TCP", "metrics")},
		},
		Egress: []api.EgressRule{
			{EgressPeers: api.EgressPeers{ToEntities: []string{"world"}}, ToPorts: ports("ANY", "53")},
			{EgressPeers: api.EgressPeers{ToEntities: []string{"kube-apiserver"}}, ToPorts: ports("TCP", "443", "6443")},
		},
	})
}

func (g *gen) ccnpHealth() bool {
	return g.addCCNP("baseline-allow-node-probes", &api.Rule{
		EndpointSelector:  &metav1.LabelSelector{},
		Ingress:           []api.IngressRule{{IngressPeers: api.IngressPeers{FromEntities: []string{"host", "health"}}}},
		EnableDefaultDeny: api.DefaultDenyConfig{Ingress: ptr(false)},
	})
}

// ccnpTeamScrape: prometheus scrapes every namespace of a team.
func (g *gen) ccnpTeamScrape() bool {
	ns := g.appNS()
	return g.addCCNP("scrape-team-"+ns.team, &api.Rule{
		EndpointSelector: sel(cnpNSLabel+"team", ns.team),
		Ingress: []api.IngressRule{{
			IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, "monitoring", "app", "prometheus")}},
			ToPorts:      ports("TCP", "metrics"),
		}},
		EnableDefaultDeny: api.DefaultDenyConfig{Ingress: ptr(false)},
	})
}

// ccnpEnvIsolation: dev may not reach prod, except through frontends.
func (g *gen) ccnpEnvIsolation() bool {
	ns := g.appNS()
	return g.addCCNP("isolate-"+ns.team+"-prod-from-dev", &api.Rule{
		EndpointSelector: &metav1.LabelSelector{
			MatchLabels:      map[string]string{cnpNSLabel + "env": "prod", cnpNSLabel + "team": ns.team},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"frontend"}}},
		},
		IngressDeny:       []api.IngressDenyRule{{IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel(cnpNSLabel+"env", "dev")}}}},
		EnableDefaultDeny: api.DefaultDenyConfig{Ingress: ptr(false)},
	})
}

// ccnpNamespaceEgress: egress lockdown of one namespace: its own namespace, the team's
// namespaces, and HTTPS to the world.
func (g *gen) ccnpNamespaceEgress() bool {
	ns := g.appNS()
	return g.addCCNP("egress-"+ns.name, &api.Rule{
		EndpointSelector: sel(ccnpNamespace, ns.name),
		Egress: []api.EgressRule{
			{EgressPeers: api.EgressPeers{ToEndpoints: []*metav1.LabelSelector{sel(cnpNamespace, ns.name)}}},
			{EgressPeers: api.EgressPeers{ToEndpoints: []*metav1.LabelSelector{sel(cnpNSLabel+"team", ns.team)}}, ToPorts: ports("TCP", "8080", "9000", "5432")},
			{EgressPeers: api.EgressPeers{ToEntities: []string{"world"}}, ToPorts: ports("TCP", "443")},
		},
	})
}

// ccnpDataStores: data stores of a team accept its backends, cluster-wide.
func (g *gen) ccnpDataStores() bool {
	ns := g.appNS()
	return g.addCCNP("datastores-"+ns.team, &api.Rule{
		EndpointSelector: sel("tier", "data", cnpNSLabel+"team", ns.team),
		Ingress: []api.IngressRule{{
			IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{sel("tier", "backend", cnpNSLabel+"team", ns.team)}},
			ToPorts:      []api.PortRule{{Ports: []api.PortProtocol{{Port: "5432", Protocol: "TCP"}, {Port: "6379", Protocol: "TCP"}, {Port: "5672", Protocol: "TCP"}}}},
		}},
		IngressDeny: []api.IngressDenyRule{{IngressPeers: api.IngressPeers{FromEntities: []string{"world"}}}},
	})
}
