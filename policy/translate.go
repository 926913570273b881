package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netward/netward/api"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/labels"
)

// DefaultCluster is the cluster name Cilium uses when none is configured.
const DefaultCluster = "default"

// Translator turns validated API objects into entries.
type Translator struct {
	Cluster string
}

func (t Translator) cluster() string {
	if t.Cluster == "" {
		return DefaultCluster
	}
	return t.Cluster
}

// CNP translates a CiliumNetworkPolicy (namespace != "") or CiliumClusterwideNetworkPolicy.
func (t Translator) CNP(kind string, p *api.CiliumNetworkPolicy) ([]*Entry, error) {
	ns := p.Namespace
	if kind == api.KindCNP && ns == "" {
		ns = "default"
	}
	if kind == api.KindCCNP {
		ns = ""
	}
	var out []*Entry
	add := func(prefix string, r *api.Rule) error {
		es, err := t.rule(kind, ns, p.Name, prefix, r)
		out = append(out, es...)
		return err
	}
	if p.Spec != nil {
		if err := add("spec", p.Spec); err != nil {
			return nil, err
		}
	}
	for i := range p.Specs {
		if err := add(fmt.Sprintf("specs[%d]", i), &p.Specs[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t Translator) rule(kind, ns, name, path string, r *api.Rule) ([]*Entry, error) {
	var subject labels.Selector
	hostPolicy := r.NodeSelector != nil && r.EndpointSelector == nil
	if hostPolicy {
		// Host policies need Cilium's host firewall, which netward does not model: the rule
		// is validated but selects no endpoint (§2.11).
		subject = labels.NewSelector(labels.Requirement{Source: labels.SourceReserved, Key: "netward-host-firewall-disabled", Operator: labels.OpExists})
	} else {
		ls := r.EndpointSelector
		if ns != "" {
			ls = ls.DeepCopy()
			if ls.MatchLabels == nil {
				ls.MatchLabels = map[string]string{}
			}
			ls.MatchLabels[labels.SourceK8s+":"+labels.KeyNamespace] = ns
		}
		var err error
		if subject, err = labels.FromLabelSelector(ls, labels.SourceAny); err != nil {
			return nil, fmt.Errorf("%s.endpointSelector: %w", path, err)
		}
	}
	rawSubject, _ := labels.FromLabelSelector(r.EndpointSelector, labels.SourceAny)
	matchesInit := rawSubject.HasKey(labels.SourceReserved, "init")
	ddIn := r.EnableDefaultDeny.Ingress == nil || *r.EnableDefaultDeny.Ingress
	ddEg := r.EnableDefaultDeny.Egress == nil || *r.EnableDefaultDeny.Egress
	logValue := ""
	if r.Log != nil {
		logValue = r.Log.Value
	}
	origin := func(section string, i int) *Origin {
		return &Origin{Kind: kind, Namespace: ns, Name: name, Path: fmt.Sprintf("%s.%s[%d]", path, section, i), Log: logValue}
	}
	var out []*Entry
	var auth string
	mk := func(ingress, deny, dd bool, l3 []PeerSelector, l4 []PortRule, o *Origin) {
		out = append(out, &Entry{Subject: Subject{Selector: subject}, Ingress: ingress, Deny: deny, DefaultDeny: dd, L3: l3, L4: l4, Auth: auth, Origin: o})
		auth = ""
	}
	for i, in := range r.Ingress {
		l3, err := t.peers(ns, matchesInit, in.FromEndpoints, in.FromNodes, in.FromEntities, in.FromCIDR, in.FromCIDRSet, nil, in.FromGroups)
		if err != nil {
			return nil, fmt.Errorf("%s.ingress[%d]: %w", path, i, err)
		}
		l4, err := portRules(in.ToPorts, in.ICMPs, true)
		if err != nil {
			return nil, fmt.Errorf("%s.ingress[%d]: %w", path, i, err)
		}
		if in.Authentication != nil {
			auth = in.Authentication.Mode
		}
		mk(true, false, ddIn, l3, l4, origin("ingress", i))
	}
	for i, in := range r.IngressDeny {
		l3, err := t.peers(ns, matchesInit, in.FromEndpoints, in.FromNodes, in.FromEntities, in.FromCIDR, in.FromCIDRSet, nil, in.FromGroups)
		if err != nil {
			return nil, fmt.Errorf("%s.ingressDeny[%d]: %w", path, i, err)
		}
		l4, err := portRules(denyPorts(in.ToPorts), in.ICMPs, false)
		if err != nil {
			return nil, fmt.Errorf("%s.ingressDeny[%d]: %w", path, i, err)
		}
		mk(true, true, ddIn, l3, l4, origin("ingressDeny", i))
	}
	for i, eg := range r.Egress {
		var fqdn []PeerSelector
		for _, f := range eg.ToFQDNs {
			fqdn = append(fqdn, NothingPeer{Why: "toFQDNs " + f.MatchName + f.MatchPattern + " (addresses learned from DNS at run time)"})
		}
		l3, err := t.peers(ns, matchesInit, eg.ToEndpoints, eg.ToNodes, eg.ToEntities, eg.ToCIDR, eg.ToCIDRSet, fqdn, eg.ToGroups)
		if err != nil {
			return nil, fmt.Errorf("%s.egress[%d]: %w", path, i, err)
		}
		l4, err := portRules(eg.ToPorts, eg.ICMPs, true)
		if err != nil {
			return nil, fmt.Errorf("%s.egress[%d]: %w", path, i, err)
		}
		if eg.Authentication != nil {
			auth = eg.Authentication.Mode
		}
		mk(false, false, ddEg, l3, l4, origin("egress", i))
	}
	for i, eg := range r.EgressDeny {
		l3, err := t.peers(ns, matchesInit, eg.ToEndpoints, eg.ToNodes, eg.ToEntities, eg.ToCIDR, eg.ToCIDRSet, nil, eg.ToGroups)
		if err != nil {
			return nil, fmt.Errorf("%s.egressDeny[%d]: %w", path, i, err)
		}
		l4, err := portRules(denyPorts(eg.ToPorts), eg.ICMPs, false)
		if err != nil {
			return nil, fmt.Errorf("%s.egressDeny[%d]: %w", path, i, err)
		}
		mk(false, true, ddEg, l3, l4, origin("egressDeny", i))
	}
	return out, nil
}

// peers merges the peer fields of one element into L3 (Cilium's mergeEndpointSelectors):
// an explicitly empty list in any field selects nothing; no peer field at all is the
// wildcard (an empty non-nil slice).
func (t Translator) peers(ns string, matchesInit bool, endpoints, nodes []*metav1.LabelSelector, entities, cidrs []string, cidrSets []api.CIDRRule, fqdn []PeerSelector, groups []map[string]any) ([]PeerSelector, error) {
	if (endpoints != nil && len(endpoints) == 0) || (nodes != nil && len(nodes) == 0) ||
		(entities != nil && len(entities) == 0) || (cidrs != nil && len(cidrs) == 0) ||
		(cidrSets != nil && len(cidrSets) == 0) {
		return nil, nil
	}
	l3 := make([]PeerSelector, 0, len(endpoints)+len(entities)+len(cidrs)+len(cidrSets)+len(fqdn))
	for j, ep := range endpoints {
		sel, err := t.endpointSelector(ns, ep, matchesInit)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", j, err)
		}
		l3 = append(l3, LabelPeer{Sel: sel})
	}
	for range nodes {
		// fromNodes needs enable-node-selector-labels; validation rejects it, and a rule
		// that got here selects nothing rather than something unintended.
		l3 = append(l3, NothingPeer{Why: "node selector (enable-node-selector-labels is off)"})
	}
	for _, e := range entities {
		sels, ok := EntitySelectors(e, t.cluster())
		if !ok {
			return nil, fmt.Errorf("unknown entity %q", e)
		}
		l3 = append(l3, sels...)
	}
	for _, c := range cidrs {
		p, err := ParseCIDR(c)
		if err != nil {
			return nil, err
		}
		l3 = append(l3, NewCIDRPeer(p, nil))
	}
	for _, cs := range cidrSets {
		if cs.CIDR == "" {
			l3 = append(l3, NothingPeer{Why: "CIDR group " + cs.CIDRGroupRef + " (CiliumCIDRGroup objects are not read)"})
			continue
		}
		p, err := ParseCIDR(cs.CIDR)
		if err != nil {
			return nil, err
		}
		var except []netip.Prefix
		for _, e := range cs.ExceptCIDRs {
			ep, err := ParseCIDR(e)
			if err != nil {
				return nil, err
			}
			except = append(except, ep)
		}
		l3 = append(l3, NewCIDRPeer(p, except))
	}
	l3 = append(l3, fqdn...)
	for range groups {
		l3 = append(l3, NothingPeer{Why: "cloud provider group (resolved by the Cilium operator, not offline)"})
	}
	return l3, nil
}

// endpointSelector applies Cilium's implicit namespacing and cluster scoping to a
// fromEndpoints/toEndpoints selector (§2.10).
func (t Translator) endpointSelector(ns string, ls *metav1.LabelSelector, matchesInit bool) (labels.Selector, error) {
	sel, err := labels.FromLabelSelector(ls, labels.SourceAny)
	if err != nil {
		return sel, err
	}
	if sel.HasKeyPrefix(labels.SourceReserved + ":") {
		return sel, nil
	}
	if !sel.HasKey(labels.SourceK8s, labels.KeyNamespace) && !sel.HasKey(labels.SourceAny, labels.KeyNamespace) {
		if ns == "" {
			if !matchesInit {
				sel = sel.With(labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyNamespace, Operator: labels.OpExists})
			}
		} else if !sel.HasKeyPrefix(labels.SourceK8s+":"+labels.KeyNamespaceLabels) && !sel.HasKeyPrefix(labels.SourceAny+":"+labels.KeyNamespaceLabels) {
			sel = sel.With(labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyNamespace, Operator: labels.OpIn, Values: []string{ns}})
		}
	}
	return t.withCluster(sel), nil
}

func (t Translator) withCluster(sel labels.Selector) labels.Selector {
	if sel.HasKey(labels.SourceK8s, labels.KeyCluster) || sel.HasKey(labels.SourceAny, labels.KeyCluster) {
		return sel
	}
	return sel.With(labels.Requirement{Source: labels.SourceK8s, Key: labels.KeyCluster, Operator: labels.OpIn, Values: []string{t.cluster()}})
}

func denyPorts(ps []api.PortDenyRule) []api.PortRule {
	if ps == nil {
		return nil
	}
	out := make([]api.PortRule, len(ps))
	for i, p := range ps {
		out[i] = api.PortRule{Ports: p.Ports}
	}
	return out
}

// ParseCIDR parses a prefix or a bare address (a /32 or /128).
func ParseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a valid CIDR", s)
	}
	return p.Masked(), nil
}

// ICMP type names Cilium accepts (pkg/policy/api/icmp.go).
var icmpV4Types = map[string]uint16{
	"EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "Echo": 8, "EchoRequest": 8,
	"RouterAdvertisement": 9, "RouterSelection": 10, "TimeExceeded": 11, "ParameterProblem": 12,
	"Timestamp": 13, "TimestampReply": 14, "Photuris": 40, "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43,
}

var icmpV6Types = map[string]uint16{
	"DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3, "ParameterProblem": 4,
	"EchoRequest": 128, "EchoReply": 129, "MulticastListenerQuery": 130, "MulticastListenerReport": 131,
	"MulticastListenerDone": 132, "RouterSolicitation": 133, "RouterAdvertisement": 134,
	"NeighborSolicitation": 135, "NeighborAdvertisement": 136, "RedirectMessage": 137,
	"RouterRenumbering": 138, "ICMPNodeInformationQuery": 139, "ICMPNodeInformationResponse": 140,
	"InverseNeighborDiscoverySolicitation": 141, "InverseNeighborDiscoveryAdvertisement": 142,
	"HomeAgentAddressDiscoveryRequest": 144, "HomeAgentAddressDiscoveryReply": 145,
	"MobilePrefixSolicitation": 146, "MobilePrefixAdvertisement": 147,
	"DuplicateAddressRequestCodeSuffix": 157, "DuplicateAddressConfirmationCodeSuffix": 158,
	"ExtendedEchoRequest": 160, "ExtendedEchoReply": 161,
}

// ICMPType resolves an ICMP type number or name for a family ("IPv4" default, "IPv6").
func ICMPType(family, typ string) (uint16, uint8, error) {
	names, proto := icmpV4Types, ProtoICMP
	if family == "IPv6" {
		names, proto = icmpV6Types, ProtoICMPv6
	}
	if n, ok := names[typ]; ok {
		return n, proto, nil
	}
	v, err := strconv.ParseUint(typ, 10, 8)
	if err != nil {
		return 0, 0, fmt.Errorf("ICMP type %q is neither a number 0-255 nor a known %s type name", typ, familyName(family))
	}
	return uint16(v), proto, nil
}

func familyName(f string) string {
	if f == "" {
		return "IPv4"
	}
	return f
}

// ParsePort parses a port field: a number, or a named port (lower-cased, as Cilium does).
func ParsePort(s string) (port uint16, name string, err error) {
	if s == "" {
		return 0, "", nil
	}
	if v, err := strconv.ParseUint(s, 0, 16); err == nil {
		return uint16(v), "", nil
	}
	if _, err := strconv.ParseInt(s, 0, 64); err == nil {
		return 0, "", fmt.Errorf("port %q is out of range 0-65535", s)
	}
	return 0, strings.ToLower(s), nil
}

func portRules(prs []api.PortRule, icmps []api.ICMPRule, allow bool) ([]PortRule, error) {
	out := make([]PortRule, 0, len(prs)+len(icmps))
	for i, pr := range prs {
		r := PortRule{}
		for j, pp := range pr.Ports {
			port, name, err := ParsePort(pp.Port)
			if err != nil {
				return nil, fmt.Errorf("toPorts[%d].ports[%d]: %w", i, j, err)
			}
			proto, ok := ParseProto(pp.Protocol)
			if !ok || proto == ProtoICMP || proto == ProtoICMPv6 {
				return nil, fmt.Errorf("toPorts[%d].ports[%d]: unsupported protocol %q", i, j, pp.Protocol)
			}
			r.Ports = append(r.Ports, PortProto{Port: port, EndPort: uint16(pp.EndPort), Name: name, Proto: proto})
		}
		if allow {
			if pr.Rules != nil {
				for k, h := range pr.Rules.HTTP {
					hr, err := httpRule(h)
					if err != nil {
						return nil, fmt.Errorf("toPorts[%d].rules.http[%d]: %w", i, k, err)
					}
					r.HTTP = append(r.HTTP, hr)
				}
				for k, d := range pr.Rules.DNS {
					dr, err := NewDNSRule(d.MatchName, d.MatchPattern)
					if err != nil {
						return nil, fmt.Errorf("toPorts[%d].rules.dns[%d]: %w", i, k, err)
					}
					r.DNS = append(r.DNS, dr)
				}
			}
			r.TLS = len(pr.ServerNames) > 0 || pr.TerminatingTLS != nil || pr.OriginatingTLS != nil
			if pr.Listener != nil {
				r.Listener = pr.Listener.EnvoyConfig.Name + "/" + pr.Listener.Name
			}
		}
		out = append(out, r)
	}
	for i, ic := range icmps {
		r := PortRule{}
		for j, f := range ic.Fields {
			typ := ""
			if f.Type != nil {
				typ = f.Type.String()
			}
			n, proto, err := ICMPType(f.Family, typ)
			if err != nil {
				return nil, fmt.Errorf("icmps[%d].fields[%d]: %w", i, j, err)
			}
			r.Ports = append(r.Ports, PortProto{Port: n, Proto: proto})
		}
		out = append(out, r)
	}
	return out, nil
}

func httpRule(h api.PortRuleHTTP) (*l7.HTTPRule, error) {
	var ms []l7.HeaderMatch
	for _, m := range h.HeaderMatches {
		ms = append(ms, l7.HeaderMatch{Name: m.Name, Value: m.Value, Mismatch: l7.MismatchAction(m.Mismatch), FromSecret: m.Secret != nil})
	}
	return l7.NewHTTPRule(h.Method, h.Path, h.Host, h.Headers, ms)
}

// NetworkPolicy translates a Kubernetes NetworkPolicy (§3).
func (t Translator) NetworkPolicy(np *networkingv1.NetworkPolicy) ([]*Entry, error) {
	ns := np.Namespace
	if ns == "" {
		ns = "default"
	}
	origin := func(p string) *Origin {
		return &Origin{Kind: api.KindNetworkPolicy, Namespace: ns, Name: np.Name, Path: p}
	}
	var ingress, egress []*Entry
	for i, in := range np.Spec.Ingress {
		l4, err := knpPorts(in.Ports)
		if err != nil {
			return nil, fmt.Errorf("spec.ingress[%d].ports: %w", i, err)
		}
		if len(in.From) == 0 {
			ingress = append(ingress, &Entry{Ingress: true, L3: []PeerSelector{wildcardPeer}, L4: l4, Origin: origin(fmt.Sprintf("spec.ingress[%d]", i))})
			continue
		}
		for j := range in.From {
			l3, err := t.knpPeer(ns, &in.From[j])
			if err != nil {
				return nil, fmt.Errorf("spec.ingress[%d].from[%d]: %w", i, j, err)
			}
			ingress = append(ingress, &Entry{Ingress: true, L3: l3, L4: l4, Origin: origin(fmt.Sprintf("spec.ingress[%d].from[%d]", i, j))})
		}
	}
	for i, eg := range np.Spec.Egress {
		l4, err := knpPorts(eg.Ports)
		if err != nil {
			return nil, fmt.Errorf("spec.egress[%d].ports: %w", i, err)
		}
		if len(eg.To) == 0 {
			egress = append(egress, &Entry{L3: []PeerSelector{wildcardPeer}, L4: l4, Origin: origin(fmt.Sprintf("spec.egress[%d]", i))})
			continue
		}
		for j := range eg.To {
			l3, err := t.knpPeer(ns, &eg.To[j])
			if err != nil {
				return nil, fmt.Errorf("spec.egress[%d].to[%d]: %w", i, j, err)
			}
			egress = append(egress, &Entry{L3: l3, L4: l4, Origin: origin(fmt.Sprintf("spec.egress[%d].to[%d]", i, j))})
		}
	}
	hasType := func(pt networkingv1.PolicyType) bool {
		for _, x := range np.Spec.PolicyTypes {
			if x == pt {
				return true
			}
		}
		return false
	}
	if len(ingress) == 0 && (hasType(networkingv1.PolicyTypeIngress) || !hasType(networkingv1.PolicyTypeEgress)) {
		ingress = append(ingress, &Entry{Ingress: true, Origin: origin("spec (no ingress rules: ingress is default deny)")})
	}
	if len(egress) == 0 && hasType(networkingv1.PolicyTypeEgress) {
		egress = append(egress, &Entry{Origin: origin("spec (no egress rules: egress is default deny)")})
	}
	ps := np.Spec.PodSelector.DeepCopy()
	if ps.MatchLabels == nil {
		ps.MatchLabels = map[string]string{}
	}
	ps.MatchLabels[labels.KeyNamespace] = ns
	subject, err := labels.FromK8sLabelSelector(ps, labels.SourceK8s)
	if err != nil {
		return nil, fmt.Errorf("spec.podSelector: %w", err)
	}
	out := append(ingress, egress...)
	for _, e := range out {
		e.Subject = Subject{Selector: subject}
		e.DefaultDeny = true
	}
	return out, nil
}

func (t Translator) knpPeer(ns string, peer *networkingv1.NetworkPolicyPeer) ([]PeerSelector, error) {
	if peer.IPBlock != nil {
		p, err := ParseCIDR(peer.IPBlock.CIDR)
		if err != nil {
			return nil, fmt.Errorf("ipBlock.cidr: %w", err)
		}
		var except []netip.Prefix
		for _, e := range peer.IPBlock.Except {
			ep, err := ParseCIDR(e)
			if err != nil {
				return nil, fmt.Errorf("ipBlock.except: %w", err)
			}
			except = append(except, ep)
		}
		return []PeerSelector{NewCIDRPeer(p, except)}, nil
	}
	ps := peer.PodSelector.DeepCopy()
	if ps == nil {
		ps = &metav1.LabelSelector{}
	}
	if ps.MatchLabels == nil {
		ps.MatchLabels = map[string]string{}
	}
	selectsCluster := ps.MatchLabels[labels.KeyCluster] != ""
	for _, e := range ps.MatchExpressions {
		if e.Key == labels.KeyCluster {
			selectsCluster = true
		}
	}
	if !selectsCluster {
		ps.MatchLabels[labels.KeyCluster] = t.cluster()
	}
	if peer.NamespaceSelector != nil {
		for k, v := range peer.NamespaceSelector.MatchLabels {
			ps.MatchLabels[labels.KeyNamespaceLabels+"."+k] = v
		}
		for _, e := range peer.NamespaceSelector.MatchExpressions {
			e2 := *e.DeepCopy()
			e2.Key = labels.KeyNamespaceLabels + "." + e.Key
			ps.MatchExpressions = append(ps.MatchExpressions, e2)
		}
		if len(peer.NamespaceSelector.MatchLabels) == 0 && len(peer.NamespaceSelector.MatchExpressions) == 0 {
			ps.MatchExpressions = append(ps.MatchExpressions, metav1.LabelSelectorRequirement{Key: labels.KeyNamespace, Operator: metav1.LabelSelectorOpExists})
		}
	} else {
		ps.MatchLabels[labels.KeyNamespace] = ns
	}
	sel, err := labels.FromK8sLabelSelector(ps, labels.SourceK8s)
	if err != nil {
		return nil, err
	}
	return []PeerSelector{LabelPeer{Sel: sel}}, nil
}

func knpPorts(ports []networkingv1.NetworkPolicyPort) ([]PortRule, error) {
	var out []PortRule
	for i, p := range ports {
		proto := ProtoTCP
		if p.Protocol != nil {
			var ok bool
			proto, ok = ParseProto(string(*p.Protocol))
			if !ok || proto == ProtoAny || proto == ProtoICMP || proto == ProtoICMPv6 {
				return nil, fmt.Errorf("[%d].protocol: unsupported protocol %q", i, *p.Protocol)
			}
		}
		pp := PortProto{Proto: proto}
		if p.Port != nil {
			port, name, err := ParsePort(p.Port.String())
			if err != nil {
				return nil, fmt.Errorf("[%d].port: %w", i, err)
			}
			pp.Port, pp.Name = port, name
		}
		if p.EndPort != nil {
			pp.EndPort = uint16(*p.EndPort)
		}
		out = append(out, PortRule{Ports: []PortProto{pp}})
	}
	return out, nil
}
