package api

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
)

// Validate checks every object the way the Kubernetes API server (with Cilium v1.20's CRD
// schemas installed) and Cilium's agent (Rule.Sanitize, CiliumNetworkPolicy.Parse) would, and
// returns one *ObjectError per invalid object, each carrying every problem found in it.
// The errors are ordered by where the objects were read (file, document, list item).
//
// Agent options are modelled at netward's fixed values: enable-node-selector-labels off,
// enable-extended-ip-protocols off, enable-icmp-rules on, enable-l7-proxy on.
func Validate(objs *Objects) []error {
	if objs == nil {
		return nil
	}
	var found []*ObjectError
	add := func(src Source, kind, ns, name string, errs field.ErrorList) {
		if len(errs) > 0 {
			found = append(found, &ObjectError{Source: src, Kind: kind, Namespace: ns, Name: name, Errs: errs})
		}
	}
	for _, o := range objs.Namespaces {
		if o.Obj != nil {
			add(o.Source, KindNamespace, "", o.Obj.Name, validateNamespace(o.Obj))
		}
	}
	for _, o := range objs.Pods {
		if o.Obj != nil {
			add(o.Source, KindPod, o.Obj.Namespace, o.Obj.Name, validatePod(o.Obj))
		}
	}
	for _, o := range objs.Nodes {
		if o.Obj != nil {
			add(o.Source, KindNode, "", o.Obj.Name, validateNode(o.Obj))
		}
	}
	for _, o := range objs.NetworkPolicies {
		if o.Obj != nil {
			add(o.Source, KindNetworkPolicy, o.Obj.Namespace, o.Obj.Name, validateNetworkPolicy(o.Obj))
		}
	}
	for _, o := range objs.CNPs {
		if o.Obj != nil {
			add(o.Source, KindCNP, o.Obj.Namespace, o.Obj.Name, validateCiliumPolicy(o.Obj, false))
		}
	}
	for _, o := range objs.CCNPs {
		if o.Obj != nil {
			add(o.Source, KindCCNP, "", o.Obj.Name, validateCiliumPolicy(o.Obj, true))
		}
	}
	slices.SortStableFunc(found, func(a, b *ObjectError) int {
		return cmp.Or(
			cmp.Compare(a.Source.File, b.Source.File),
			cmp.Compare(a.Source.Doc, b.Source.Doc),
			cmp.Compare(a.Source.Item, b.Source.Item),
		)
	})
	if len(found) == 0 {
		return nil
	}
	out := make([]error, len(found))
	for i, e := range found {
		out[i] = e
	}
	return out
}

// noValue leaves the value out of an Invalid/NotSupported message.
var noValue = field.OmitValueType{}

// ---------------------------------------------------------------------------------------------
// Namespaces, Pods, Nodes: light checks (these come from a cluster or from tests, not from
// policy authors).

func validateName(name, kind string, dnsLabel bool) field.ErrorList {
	p := field.NewPath("metadata", "name")
	if name == "" {
		return field.ErrorList{field.Required(p, "every "+kind+" needs a name")}
	}
	var msgs []string
	if dnsLabel {
		msgs = validation.IsDNS1123Label(name)
	} else {
		msgs = validation.IsDNS1123Subdomain(name)
	}
	var errs field.ErrorList
	for _, m := range msgs {
		errs = append(errs, field.Invalid(p, name, m))
	}
	return errs
}

func validateNamespaceField(ns string) field.ErrorList {
	var errs field.ErrorList
	if ns == "" {
		return nil
	}
	for _, m := range validation.IsDNS1123Label(ns) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), ns, m))
	}
	return errs
}

func validateNamespace(ns *corev1.Namespace) field.ErrorList {
	// Namespace names become the io.kubernetes.pod.namespace label value: DNS-1123 labels.
	return validateName(ns.Name, KindNamespace, true)
}

const ipMsg = "must be a valid IP address (e.g. 10.9.8.7 or 2001:db8::ffff)"

func isIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

func validatePod(pod *corev1.Pod) field.ErrorList {
	errs := validateName(pod.Name, KindPod, false)
	st := field.NewPath("status")
	if ip := pod.Status.PodIP; ip != "" && !isIP(ip) {
		errs = append(errs, field.Invalid(st.Child("podIP"), ip, ipMsg))
	}
	for i, pip := range pod.Status.PodIPs {
		p := st.Child("podIPs").Index(i).Child("ip")
		if !isIP(pip.IP) {
			errs = append(errs, field.Invalid(p, pip.IP, ipMsg))
		}
		if i == 0 && pod.Status.PodIP != "" && pip.IP != pod.Status.PodIP {
			errs = append(errs, field.Invalid(p, pip.IP, "must match status.podIP"))
		}
	}
	return errs
}

func validateNode(node *corev1.Node) field.ErrorList {
	errs := validateName(node.Name, KindNode, false)
	for i, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if !isIP(a.Address) {
			errs = append(errs, field.Invalid(field.NewPath("status", "addresses").Index(i).Child("address"), a.Address,
				fmt.Sprintf("an %s address %s", a.Type, ipMsg)))
		}
	}
	return errs
}

// ---------------------------------------------------------------------------------------------
// Kubernetes NetworkPolicy: k8s.io/kubernetes pkg/apis/networking/validation
// (ValidateNetworkPolicy), plus what Cilium's ParseNetworkPolicy needs to parse.

func validateNetworkPolicy(np *networkingv1.NetworkPolicy) field.ErrorList {
	errs := validateName(np.Name, KindNetworkPolicy, false)
	errs = append(errs, validateNamespaceField(np.Namespace)...)
	spec := field.NewPath("spec")
	opts := metav1validation.LabelSelectorValidationOptions{}
	errs = append(errs, metav1validation.ValidateLabelSelector(&np.Spec.PodSelector, opts, spec.Child("podSelector"))...)
	for i, in := range np.Spec.Ingress {
		p := spec.Child("ingress").Index(i)
		for j := range in.Ports {
			errs = append(errs, validateNPPort(&in.Ports[j], p.Child("ports").Index(j))...)
		}
		for j := range in.From {
			errs = append(errs, validateNPPeer(&in.From[j], p.Child("from").Index(j))...)
		}
	}
	for i, eg := range np.Spec.Egress {
		p := spec.Child("egress").Index(i)
		for j := range eg.Ports {
			errs = append(errs, validateNPPort(&eg.Ports[j], p.Child("ports").Index(j))...)
		}
		for j := range eg.To {
			errs = append(errs, validateNPPeer(&eg.To[j], p.Child("to").Index(j))...)
		}
	}
	pt := spec.Child("policyTypes")
	if len(np.Spec.PolicyTypes) > 2 {
		errs = append(errs, field.Invalid(pt, np.Spec.PolicyTypes, "may not specify more than two policyTypes"))
	} else {
		for i, t := range np.Spec.PolicyTypes {
			if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
				errs = append(errs, field.NotSupported(pt.Index(i), t, []string{"Ingress", "Egress"}))
			}
		}
	}
	return errs
}

func validateNPPort(port *networkingv1.NetworkPolicyPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Protocol != nil {
		switch *port.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, field.NotSupported(p.Child("protocol"), *port.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
	}
	switch {
	case port.Port == nil:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is not specified"))
		}
	case port.Port.Type == intstr.Int:
		for _, m := range validation.IsValidPortNum(int(port.Port.IntVal)) {
			errs = append(errs, field.Invalid(p.Child("port"), port.Port.IntVal, m))
		}
		if port.EndPort != nil {
			if *port.EndPort < port.Port.IntVal {
				errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
			}
			for _, m := range validation.IsValidPortNum(int(*port.EndPort)) {
				errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, m))
			}
		}
	default:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
		}
		for _, m := range validation.IsValidPortName(port.Port.StrVal) {
			errs = append(errs, field.Invalid(p.Child("port"), port.Port.StrVal, m))
		}
	}
	return errs
}

func validateNPPeer(peer *networkingv1.NetworkPolicyPeer, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	opts := metav1validation.LabelSelectorValidationOptions{}
	n := 0
	if peer.PodSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.PodSelector, opts, p.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, opts, p.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		n++
		errs = append(errs, validateIPBlock(peer.IPBlock, p.Child("ipBlock"))...)
	}
	if n == 0 {
		errs = append(errs, field.Required(p, "must specify a peer"))
	} else if n > 1 && peer.IPBlock != nil {
		errs = append(errs, field.Forbidden(p, "may not specify both ipBlock and another peer"))
	}
	return errs
}

func validateIPBlock(b *networkingv1.IPBlock, p *field.Path) field.ErrorList {
	if b.CIDR == "" {
		return field.ErrorList{field.Required(p.Child("cidr"), "")}
	}
	cidr, errs := npCIDR(b.CIDR, p.Child("cidr"))
	for i, ex := range b.Except {
		ep := p.Child("except").Index(i)
		exPrefix, exErrs := npCIDR(ex, ep)
		errs = append(errs, exErrs...)
		if len(exErrs) > 0 || !cidr.IsValid() {
			continue
		}
		// Strict subset, as the API server requires (Cilium itself would accept except == cidr).
		if exPrefix.Bits() <= cidr.Bits() || !cidr.Contains(exPrefix.Addr()) {
			errs = append(errs, field.Invalid(ep, ex, "must be a strict subset of `cidr`"))
		}
	}
	return errs
}

// npCIDR parses an ipBlock CIDR. The API server accepts what net.ParseCIDR accepts, tolerating
// leading zeros; Cilium parses it with net/netip, which does not tolerate them.
func npCIDR(s string, p *field.Path) (netip.Prefix, field.ErrorList) {
	pfx, err := netip.ParsePrefix(s)
	if err == nil {
		return pfx, nil
	}
	if _, err := netip.ParsePrefix(withoutLeadingZeros(s)); err == nil {
		return netip.Prefix{}, field.ErrorList{field.Invalid(p, s, "must not have leading zeros: Cilium parses prefixes with net/netip, which rejects them")}
	}
	return netip.Prefix{}, field.ErrorList{field.Invalid(p, s, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")}
}

// withoutLeadingZeros drops leading zeros from the octets of an IPv4 address and from a
// prefix length, which is what the API server's "sloppy" CIDR parser tolerates.
func withoutLeadingZeros(s string) string {
	trim := func(x string) string {
		if t := strings.TrimLeft(x, "0"); t != "" {
			return t
		}
		if x == "" {
			return x
		}
		return "0"
	}
	addr, bits, hasBits := strings.Cut(s, "/")
	if !strings.Contains(addr, ":") {
		octets := strings.Split(addr, ".")
		for i := range octets {
			octets[i] = trim(octets[i])
		}
		addr = strings.Join(octets, ".")
	}
	if hasBits {
		return addr + "/" + trim(bits)
	}
	return addr
}

// ---------------------------------------------------------------------------------------------
// CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy: pkg/k8s/apis/cilium.io/v2 cnp_types.go
// and ccnp_types.go (Parse), pkg/policy/api/rule_validation.go (Rule.Sanitize and friends), and
// the cilium.io/v2 CRD schema generated from the kubebuilder markers in pkg/policy/api/*.go.

const (
	maxPorts      = 40 // rule_validation.go maxPorts, CRD maxItems
	maxICMPFields = 40 // rule_validation.go maxICMPFields, CRD maxItems
	maxLogValue   = 32 // rule.go LogConfig.Value MaxLength
	maxFQDNLength = 255
)

type policyChecker struct {
	clusterwide bool
	errs        field.ErrorList
}

func (c *policyChecker) add(errs ...*field.Error) { c.errs = append(c.errs, errs...) }

func validateCiliumPolicy(cnp *CiliumNetworkPolicy, clusterwide bool) field.ErrorList {
	c := &policyChecker{clusterwide: clusterwide}
	kind := KindCNP
	if clusterwide {
		kind = KindCCNP
	}
	// cnp_types.go Parse: "CiliumNetworkPolicy must have name"; the API server wants a
	// DNS-1123 subdomain.
	if cnp.Name == "" {
		c.add(field.Required(field.NewPath("metadata", "name"), kind+" must have name"))
	} else {
		c.add(validateName(cnp.Name, kind, false)...)
	}
	if !clusterwide {
		c.add(validateNamespaceField(cnp.Namespace)...)
	}
	// CRD CEL rule "spec or specs must be provided"; Parse: ErrEmptyCNP.
	if cnp.Spec == nil && cnp.Specs == nil {
		c.add(field.Required(field.NewPath("spec"), "spec or specs must be provided"))
	}
	if cnp.Spec != nil {
		c.rule(cnp.Spec, field.NewPath("spec"))
	}
	for i := range cnp.Specs {
		c.rule(&cnp.Specs[i], field.NewPath("specs").Index(i))
	}
	return c.errs
}

func (c *policyChecker) rule(r *Rule, p *field.Path) {
	// rule_validation.go Rule.Sanitize; CRD anyOf ingress/ingressDeny/egress/egressDeny.
	if len(r.Ingress) == 0 && len(r.IngressDeny) == 0 && len(r.Egress) == 0 && len(r.EgressDeny) == 0 {
		c.add(field.Required(p, "rule must have at least one of ingress, ingressDeny, egress, egressDeny"))
	}
	// Rule.Sanitize; CRD oneOf endpointSelector/nodeSelector.
	switch {
	case r.EndpointSelector == nil && r.NodeSelector == nil:
		c.add(field.Required(p.Child("endpointSelector"), "rule must have one of endpointSelector or nodeSelector"))
	case r.EndpointSelector != nil && r.NodeSelector != nil:
		c.add(field.Forbidden(p.Child("nodeSelector"), "rule cannot have both endpointSelector and nodeSelector"))
	}
	if r.EndpointSelector != nil {
		c.add(ciliumSelector(r.EndpointSelector, p.Child("endpointSelector"))...)
	}
	if r.NodeSelector != nil {
		// cnp_types.go Parse: only CCNPs may select nodes (host policies).
		if !c.clusterwide {
			c.add(field.Forbidden(p.Child("nodeSelector"), "rule cannot have NodeSelector: only a CiliumClusterwideNetworkPolicy may select nodes"))
		}
		c.add(ciliumSelector(r.NodeSelector, p.Child("nodeSelector"))...)
	}
	hostPolicy := r.NodeSelector != nil

	for i, l := range r.Labels {
		if l.Key == "" {
			c.add(field.Required(p.Child("labels").Index(i).Child("key"), ""))
		}
	}
	if r.Log != nil {
		lp := p.Child("log", "value")
		if n := utf8.RuneCountInString(r.Log.Value); n > maxLogValue {
			c.add(field.Invalid(lp, r.Log.Value, fmt.Sprintf("must be at most %d characters (it is %d)", maxLogValue, n)))
		}
		if !printableRe.MatchString(r.Log.Value) {
			c.add(field.Invalid(lp, r.Log.Value, "must contain only printable characters"))
		}
	}

	for i := range r.Ingress {
		c.ingress(&r.Ingress[i], p.Child("ingress").Index(i), hostPolicy)
	}
	for i := range r.IngressDeny {
		c.ingressDeny(&r.IngressDeny[i], p.Child("ingressDeny").Index(i))
	}
	for i := range r.Egress {
		c.egress(&r.Egress[i], p.Child("egress").Index(i), hostPolicy)
	}
	for i := range r.EgressDeny {
		c.egressDeny(&r.EgressDeny[i], p.Child("egressDeny").Index(i))
	}
}

// printableRe is the CRD pattern of log.value: no Unicode "Other" characters.
var printableRe = regexp.MustCompile(`^\PC*$`)

// peerKind is one L3 peer field of an ingress/egress element, in Cilium's l3Members sense.
type peerKind struct {
	name string
	n    int
}

// peerCombination reports every peer kind used together with the first one present
// (rule_validation.go IngressCommonRule.sanitize / EgressCommonRule.sanitize: "combining X and
// Y is not supported yet"). Only non-empty fields count, as in Cilium (len() > 0).
func (c *policyChecker) peerCombination(kinds []peerKind, p *field.Path, direction string) {
	first := ""
	for _, k := range kinds {
		if k.n == 0 {
			continue
		}
		if first == "" {
			first = k.name
			continue
		}
		c.add(field.Forbidden(p.Child(k.name), fmt.Sprintf(
			"combining %s and %s is not supported yet: use a separate %s element for each peer kind", first, k.name, direction)))
	}
}

const nodeSelectorLabelsMsg = `FromNodes/ToNodes rules can only be applied when the "enable-node-selector-labels" flag is set, and netward models this agent option as off`

func (c *policyChecker) ingressPeers(in *IngressPeers, p *field.Path, direction string) {
	c.peerCombination([]peerKind{
		{"fromEndpoints", len(in.FromEndpoints)},
		{"fromCIDR", len(in.FromCIDR)},
		{"fromCIDRSet", len(in.FromCIDRSet)},
		{"fromEntities", len(in.FromEntities)},
		{"fromNodes", len(in.FromNodes)},
		{"fromGroups", len(in.FromGroups)},
	}, p, direction)
	if len(in.FromRequires) > 0 {
		c.add(field.Forbidden(p.Child("fromRequires"), "fromRequires is deprecated and no longer supported (the cilium.io/v2 schema allows at most 0 items)"))
	}
	if len(in.FromNodes) > 0 {
		c.add(field.Forbidden(p.Child("fromNodes"), nodeSelectorLabelsMsg))
	}
	c.selectors(in.FromEndpoints, p.Child("fromEndpoints"))
	c.selectors(in.FromNodes, p.Child("fromNodes"))
	c.cidrs(in.FromCIDR, p.Child("fromCIDR"))
	c.cidrSets(in.FromCIDRSet, p.Child("fromCIDRSet"))
	c.entities(in.FromEntities, p.Child("fromEntities"))
	c.groups(in.FromGroups, p.Child("fromGroups"))
}

func (c *policyChecker) egressPeers(eg *EgressPeers, fqdns []FQDNSelector, p *field.Path, direction string) {
	kinds := []peerKind{
		{"toEndpoints", len(eg.ToEndpoints)},
		{"toCIDR", len(eg.ToCIDR)},
		{"toCIDRSet", len(eg.ToCIDRSet)},
		{"toEntities", len(eg.ToEntities)},
		{"toServices", len(eg.ToServices)},
		{"toGroups", len(eg.ToGroups)},
		{"toNodes", len(eg.ToNodes)},
		{"toFQDNs", len(fqdns)},
	}
	c.peerCombination(kinds, p, direction)
	if len(eg.ToRequires) > 0 {
		c.add(field.Forbidden(p.Child("toRequires"), "toRequires is deprecated and no longer supported (the cilium.io/v2 schema allows at most 0 items)"))
	}
	if len(eg.ToNodes) > 0 {
		c.add(field.Forbidden(p.Child("toNodes"), nodeSelectorLabelsMsg))
	}
	c.selectors(eg.ToEndpoints, p.Child("toEndpoints"))
	c.selectors(eg.ToNodes, p.Child("toNodes"))
	c.cidrs(eg.ToCIDR, p.Child("toCIDR"))
	c.cidrSets(eg.ToCIDRSet, p.Child("toCIDRSet"))
	c.entities(eg.ToEntities, p.Child("toEntities"))
	c.groups(eg.ToGroups, p.Child("toGroups"))
	c.services(eg.ToServices, p.Child("toServices"))
}

// icmpWithPorts: rule_validation.go errUnsupportedICMPWithToPorts.
func (c *policyChecker) icmpWithPorts(nICMP, nPorts int, p *field.Path) {
	if nICMP > 0 && nPorts > 0 {
		c.add(field.Forbidden(p.Child("icmps"), "the ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts"))
	}
}

func (c *policyChecker) ingress(in *IngressRule, p *field.Path, hostPolicy bool) {
	c.ingressPeers(&in.IngressPeers, p, "ingress")
	c.icmpWithPorts(len(in.ICMPs), len(in.ToPorts), p)
	for i := range in.ToPorts {
		c.portRule(&in.ToPorts[i], p.Child("toPorts").Index(i), true, hostPolicy)
	}
	for i := range in.ICMPs {
		c.icmpRule(&in.ICMPs[i], p.Child("icmps").Index(i))
	}
	c.authentication(in.Authentication, p.Child("authentication"))
}

func (c *policyChecker) ingressDeny(in *IngressDenyRule, p *field.Path) {
	c.ingressPeers(&in.IngressPeers, p, "ingressDeny")
	c.icmpWithPorts(len(in.ICMPs), len(in.ToPorts), p)
	for i := range in.ToPorts {
		c.ports(in.ToPorts[i].Ports, p.Child("toPorts").Index(i).Child("ports"), false)
	}
	for i := range in.ICMPs {
		c.icmpRule(&in.ICMPs[i], p.Child("icmps").Index(i))
	}
}

func (c *policyChecker) egress(eg *EgressRule, p *field.Path, hostPolicy bool) {
	c.egressPeers(&eg.EgressPeers, eg.ToFQDNs, p, "egress")
	c.icmpWithPorts(len(eg.ICMPs), len(eg.ToPorts), p)
	for i := range eg.ToPorts {
		c.portRule(&eg.ToPorts[i], p.Child("toPorts").Index(i), false, hostPolicy)
	}
	for i := range eg.ICMPs {
		c.icmpRule(&eg.ICMPs[i], p.Child("icmps").Index(i))
	}
	for i, f := range eg.ToFQDNs {
		c.fqdnSelector(f.MatchName, f.MatchPattern, p.Child("toFQDNs").Index(i))
	}
	c.authentication(eg.Authentication, p.Child("authentication"))
}

func (c *policyChecker) egressDeny(eg *EgressDenyRule, p *field.Path) {
	c.egressPeers(&eg.EgressPeers, nil, p, "egressDeny")
	c.icmpWithPorts(len(eg.ICMPs), len(eg.ToPorts), p)
	for i := range eg.ToPorts {
		c.ports(eg.ToPorts[i].Ports, p.Child("toPorts").Index(i).Child("ports"), false)
	}
	for i := range eg.ICMPs {
		c.icmpRule(&eg.ICMPs[i], p.Child("icmps").Index(i))
	}
}

// ---- selectors -------------------------------------------------------------------------------

func (c *policyChecker) selectors(sels []*metav1.LabelSelector, p *field.Path) {
	for i, s := range sels {
		c.add(ciliumSelector(s, p.Index(i))...)
	}
}

var selectorOperators = []metav1.LabelSelectorOperator{
	metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist,
}

// ciliumSelector is pkg/policy/api selector.go EndpointSelector.Sanitize, i.e. pkg/labels
// validation.go ValidateLabelSelector: Kubernetes label selector rules, except that keys may
// carry a Cilium source prefix ("k8s:app", "reserved:host").
func ciliumSelector(sel *metav1.LabelSelector, p *field.Path) field.ErrorList {
	if sel == nil {
		return field.ErrorList{field.Invalid(p, nil, "must be a label selector object")}
	}
	var errs field.ErrorList
	keys := make([]string, 0, len(sel.MatchLabels))
	for k := range sel.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		kp := p.Child("matchLabels").Key(k)
		for _, m := range ciliumLabelKey(k) {
			errs = append(errs, field.Invalid(kp, k, m))
		}
		for _, m := range validation.IsValidLabelValue(sel.MatchLabels[k]) {
			errs = append(errs, field.Invalid(kp, sel.MatchLabels[k], m))
		}
	}
	for i, r := range sel.MatchExpressions {
		rp := p.Child("matchExpressions").Index(i)
		switch r.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(r.Values) == 0 {
				errs = append(errs, field.Required(rp.Child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(r.Values) > 0 {
				errs = append(errs, field.Forbidden(rp.Child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
			}
		default:
			errs = append(errs, field.NotSupported(rp.Child("operator"), r.Operator, selectorOperators))
		}
		for _, m := range ciliumLabelKey(r.Key) {
			errs = append(errs, field.Invalid(rp.Child("key"), r.Key, m))
		}
		for j, v := range r.Values {
			for _, m := range validation.IsValidLabelValue(v) {
				errs = append(errs, field.Invalid(rp.Child("values").Index(j), v, m))
			}
		}
	}
	return errs
}

var labelSourceRe = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// ciliumLabelKey is pkg/labels validation.go IsValidCiliumLabelKey.
func ciliumLabelKey(key string) []string {
	parts := strings.Split(key, ":")
	var errs []string
	labelKey := parts[0]
	switch len(parts) {
	case 1:
	case 2:
		if !labelSourceRe.MatchString(parts[0]) {
			errs = append(errs, "label source should be a non empty string with only alphanumeric characters")
		}
		labelKey = parts[1]
	default:
		return []string{"a valid label key only support ':' character as a source separator with non empty value"}
	}
	return append(errs, validation.IsQualifiedName(labelKey)...)
}

// ---- CIDRs -----------------------------------------------------------------------------------

// bareIPDetail marks the one schema rule the Cilium agent itself does not enforce: it reads a
// bare address as a /32 (or /128). ValidateLenient turns it into a warning.
const bareIPDetail = "must be a CIDR prefix such as 192.0.2.1/32: the cilium.io/v2 schema declares format: cidr, so the API server rejects a bare IP"

// ciliumCIDR checks a fromCIDR/toCIDR entry, a cidrSet cidr or an except entry. The CRD declares
// them format: cidr (the API server parses them with net.ParseCIDR, so a bare IP is rejected),
// and Cilium parses them with net/netip (rule_validation.go CIDR.sanitize, CIDRRule.sanitize).
func ciliumCIDR(s string, p *field.Path) (netip.Prefix, *field.Error) {
	if s == "" {
		return netip.Prefix{}, field.Required(p, "IP must be specified, as a CIDR prefix such as 192.0.2.0/24")
	}
	pfx, err := netip.ParsePrefix(s)
	switch {
	case err == nil:
		return pfx, nil
	case isIP(s):
		return netip.Prefix{}, field.Invalid(p, s, bareIPDetail)
	}
	if _, err := netip.ParsePrefix(withoutLeadingZeros(s)); err == nil {
		return netip.Prefix{}, field.Invalid(p, s, "unable to parse CIDR: leading zeros are not accepted (Cilium parses prefixes with net/netip)")
	}
	return netip.Prefix{}, field.Invalid(p, s, "unable to parse CIDR: must be a prefix such as 10.0.0.0/8 or 2001:db8::/32")
}

func (c *policyChecker) cidrs(list []string, p *field.Path) {
	for i, s := range list {
		if _, err := ciliumCIDR(s, p.Index(i)); err != nil {
			c.add(err)
		}
	}
}

var cidrGroupRefRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// cidrSets: rule_validation.go CIDRRule.sanitize and the CRD oneOf cidr/cidrGroupRef/cidrGroupSelector.
func (c *policyChecker) cidrSets(list []CIDRRule, p *field.Path) {
	for i := range list {
		r := &list[i]
		rp := p.Index(i)
		n := 0
		if r.CIDR != "" {
			n++
		}
		if r.CIDRGroupRef != "" {
			n++
			if len(r.CIDRGroupRef) > 253 {
				c.add(field.TooLong(rp.Child("cidrGroupRef"), r.CIDRGroupRef, 253))
			} else if !cidrGroupRefRe.MatchString(r.CIDRGroupRef) {
				c.add(field.Invalid(rp.Child("cidrGroupRef"), r.CIDRGroupRef, "must be the name of a CiliumCIDRGroup (a lowercase DNS-1123 subdomain)"))
			}
		}
		if r.CIDRGroupSelector != nil {
			n++
			c.add(ciliumSelector(r.CIDRGroupSelector, rp.Child("cidrGroupSelector"))...)
		}
		switch {
		case n == 0:
			c.add(field.Required(rp, "one of cidr, cidrGroupRef, or cidrGroupSelector is required"))
		case n > 1:
			c.add(field.Forbidden(rp, "more than one of cidr, cidrGroupRef, or cidrGroupSelector may not be set"))
		}
		var allow netip.Prefix
		if r.CIDR != "" {
			var err *field.Error
			if allow, err = ciliumCIDR(r.CIDR, rp.Child("cidr")); err != nil {
				c.add(err)
			}
		}
		for j, ex := range r.ExceptCIDRs {
			ep := rp.Child("except").Index(j)
			exPrefix, err := ciliumCIDR(ex, ep)
			if err != nil {
				c.add(err)
				continue
			}
			// Only checked against a cidr; with group references except is carried as is.
			if !allow.IsValid() {
				continue
			}
			if allow.Bits() > exPrefix.Bits() || !allow.Contains(exPrefix.Addr()) {
				c.add(field.Invalid(ep, ex, fmt.Sprintf("allow CIDR prefix %s does not contain exclude CIDR prefix %s", r.CIDR, ex)))
			}
		}
	}
}

// ---- entities, groups, services --------------------------------------------------------------

// crdEntities is the Entity enum of the cilium.io/v2 CRD (pkg/policy/api/entity.go).
var crdEntities = []string{"all", "world", "cluster", "cluster-mesh", "host", "init", "ingress",
	"unmanaged", "remote-node", "health", "none", "kube-apiserver"}

func (c *policyChecker) entities(list []string, p *field.Path) {
	for i, e := range list {
		switch {
		case slices.Contains(crdEntities, e):
		case e == "world-ipv4" || e == "world-ipv6":
			c.add(field.Invalid(p.Index(i), e, "entity "+e+" is known to Cilium's agent but is not in the cilium.io/v2 entity enum, so the API server rejects it; use world, or toCIDR 0.0.0.0/0 or ::/0"))
		default:
			c.add(field.NotSupported(p.Index(i), e, crdEntities))
		}
	}
}

// Schema of fromGroups/toGroups items (pkg/policy/api/groups.go), checked by a strict decode.
type groupsSchema struct {
	AWS *struct {
		Labels              map[string]string `json:"labels,omitempty"`
		SecurityGroupsIds   []string          `json:"securityGroupsIds,omitempty"`
		SecurityGroupsNames []string          `json:"securityGroupsNames,omitempty"`
		Region              string            `json:"region,omitempty"`
	} `json:"aws,omitempty"`
}

// Schema of toServices items (pkg/policy/api/service.go).
type serviceSchema struct {
	K8sServiceSelector *struct {
		Selector  *metav1.LabelSelector `json:"selector"`
		Namespace string                `json:"namespace,omitempty"`
	} `json:"k8sServiceSelector,omitempty"`
	K8sService *struct {
		ServiceName string `json:"serviceName,omitempty"`
		Namespace   string `json:"namespace,omitempty"`
	} `json:"k8sService,omitempty"`
}

// strictItem decodes a free-form item into its schema, reporting unknown fields and wrong
// types under p. It returns false if the item does not match the schema.
func (c *policyChecker) strictItem(item map[string]any, into any, p *field.Path) bool {
	raw, err := json.Marshal(item)
	if err != nil {
		c.add(field.Invalid(p, noValue, err.Error()))
		return false
	}
	strictErrs, err := sigsjson.UnmarshalStrict(raw, into, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err == nil && len(strictErrs) == 0 {
		return true
	}
	var all []error
	if err != nil {
		all = append(all, err)
	}
	all = append(all, strictErrs...)
	for _, e := range all {
		msg := strings.TrimPrefix(e.Error(), "json: ")
		if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
			name = strings.Trim(name, `"`)
			c.add(field.Invalid(p.Child(name), noValue, "unknown field (misspelt, or not in the cilium.io/v2 schema)"))
			continue
		}
		c.add(field.Invalid(p, noValue, msg))
	}
	return false
}

func (c *policyChecker) groups(list []map[string]any, p *field.Path) {
	for i, g := range list {
		var s groupsSchema
		c.strictItem(g, &s, p.Index(i))
	}
}

func (c *policyChecker) services(list []map[string]any, p *field.Path) {
	for i, svc := range list {
		var s serviceSchema
		ip := p.Index(i)
		if !c.strictItem(svc, &s, ip) {
			continue
		}
		if sel := s.K8sServiceSelector; sel != nil {
			if sel.Selector == nil {
				c.add(field.Required(ip.Child("k8sServiceSelector", "selector"), ""))
			} else {
				c.add(ciliumSelector(sel.Selector, ip.Child("k8sServiceSelector", "selector"))...)
			}
		}
	}
}

// ---- ports -----------------------------------------------------------------------------------

// isSvcName is pkg/iana IsSvcName: 1-15 characters, letters, digits and single inner '-', at
// least one letter. Cilium accepts upper case and lower-cases the name.
var svcNameRe = regexp.MustCompile(`^([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*$`)

func isSvcName(s string) bool { return len(s) > 0 && len(s) <= 15 && svcNameRe.MatchString(s) }

var (
	l4Protocols       = []string{"TCP", "UDP", "SCTP", "ANY"}
	extendedProtocols = []string{"VRRP", "IGMP", "GRE", "IPIP", "IPV6", "ESP", "AH"}
)

// portInfo is what portRule needs to know about one sanitized port.
type portInfo struct {
	numeric bool
	value   uint64
}

// ports checks a ports list (PortRule.sanitize / PortDenyRule.sanitize, PortProtocol.sanitize).
func (c *policyChecker) ports(list []PortProtocol, p *field.Path, hasDNS bool) []portInfo {
	if len(list) > maxPorts {
		c.add(field.TooMany(p, len(list), maxPorts))
	}
	infos := make([]portInfo, len(list))
	for i := range list {
		pp := &list[i]
		ip := p.Index(i)
		proto := pp.Protocol
		switch {
		case proto == "" || slices.Contains(l4Protocols, proto):
		case slices.Contains(extendedProtocols, proto):
			c.add(field.Forbidden(ip.Child("protocol"), "protocol "+proto+` requires the agent option "enable-extended-ip-protocols", and netward models it as off`))
		case slices.Contains(l4Protocols, strings.ToUpper(proto)) || slices.Contains(extendedProtocols, strings.ToUpper(proto)):
			c.add(field.Invalid(ip.Child("protocol"), proto, fmt.Sprintf("must be upper case (%q): the cilium.io/v2 schema enum is case-sensitive", strings.ToUpper(proto))))
		default:
			c.add(field.NotSupported(ip.Child("protocol"), proto, l4Protocols))
		}

		switch {
		case pp.Port == "":
			c.add(field.Required(ip.Child("port"), `port must be specified: use "0" for all ports (an empty port is only accepted with the agent option "enable-extended-ip-protocols", which netward models as off)`))
		case isSvcName(pp.Port):
			// A named port, resolved against container ports.
		default:
			if pp.Port != "0" && slices.Contains(extendedProtocols, strings.ToUpper(proto)) {
				c.add(field.Invalid(ip.Child("port"), pp.Port, "port must be empty or 0 for protocol "+strings.ToUpper(proto)))
			}
			// Like Cilium: strconv.ParseUint with base 0 ("010" is 8).
			v, err := strconv.ParseUint(pp.Port, 0, 16)
			if err != nil {
				c.add(field.Invalid(ip.Child("port"), pp.Port, "unable to parse port: must be a number 0-65535 or an IANA service name (1-15 letters, digits and '-', at least one letter, no leading, trailing or double '-')"))
				break
			}
			infos[i] = portInfo{numeric: true, value: v}
			if hasDNS && uint64(max(pp.EndPort, 0)) > v {
				c.add(field.Forbidden(ip.Child("endPort"), "DNS rules do not support port ranges"))
			}
		}
		if pp.EndPort < 0 || pp.EndPort > 65535 {
			c.add(field.Invalid(ip.Child("endPort"), pp.EndPort, "must be between 0 and 65535, inclusive"))
		}
	}
	return infos
}

var serverNameRe = regexp.MustCompile(`^([-a-zA-Z0-9_*]+[.]?)+$`)

// portRule is rule_validation.go PortRule.sanitize and L7Rules.sanitize, plus the CRD schema of
// PortRule (pkg/policy/api/l4.go) and the listener check of pkg/policy/l4.go createL4Filter.
func (c *policyChecker) portRule(pr *PortRule, p *field.Path, ingress, hostPolicy bool) {
	rules := pr.Rules
	hasHTTP := rules != nil && len(rules.HTTP) > 0
	hasDNS := rules != nil && len(rules.DNS) > 0
	hasL7 := hasHTTP || hasDNS
	rp := p.Child("rules")

	infos := c.ports(pr.Ports, p.Child("ports"), hasDNS)

	// L7 only on TCP, except DNS; and never on port 0.
	if hasL7 {
		for i, pp := range pr.Ports {
			ip := p.Child("ports").Index(i)
			if infos[i].numeric && infos[i].value == 0 {
				c.add(field.Invalid(ip.Child("port"), pp.Port, "L7 rules can not be used when a port is 0"))
			}
			if hasDNS {
				continue
			}
			proto := strings.ToUpper(pp.Protocol)
			if proto == "" {
				proto = "ANY"
			}
			if proto != "TCP" {
				c.add(field.Invalid(ip.Child("protocol"), pp.Protocol, fmt.Sprintf("L7 rules can only apply to TCP (not %s) except for DNS rules: set protocol: TCP", proto)))
			}
		}
	}

	// serverNames (CRD: minItems 1, set, pattern, maxLength 255).
	snp := p.Child("serverNames")
	if pr.ServerNames != nil && len(pr.ServerNames) == 0 {
		c.add(field.TooFew(snp, 0, 1))
	}
	for i, sn := range pr.ServerNames {
		switch {
		case sn == "":
			c.add(field.Required(snp.Index(i), "empty server name is not allowed"))
		case len(sn) > maxFQDNLength:
			c.add(field.TooLong(snp.Index(i), sn, maxFQDNLength))
		case !serverNameRe.MatchString(sn):
			c.add(field.Invalid(snp.Index(i), sn, "must be a DNS name, optionally with '*' wildcards"))
		}
		if slices.Contains(pr.ServerNames[:i], sn) {
			c.add(field.Duplicate(snp.Index(i), sn))
		}
	}
	if len(pr.ServerNames) > 0 && hasL7 && pr.TerminatingTLS == nil {
		c.add(field.Forbidden(snp, "ServerNames are not allowed with L7 rules without TLS termination: add terminatingTLS"))
	}
	c.tlsContext(pr.TerminatingTLS, p.Child("terminatingTLS"))
	c.tlsContext(pr.OriginatingTLS, p.Child("originatingTLS"))

	if l := pr.Listener; l != nil {
		lp := p.Child("listener")
		if ingress {
			c.add(field.Forbidden(lp, fmt.Sprintf("Listener is not allowed on ingress (%s)", l.Name)))
		}
		if hasL7 {
			c.add(field.Forbidden(lp, fmt.Sprintf("Listener is not allowed with L7 rules (%s)", l.Name)))
		}
		if l.Name == "" {
			c.add(field.Required(lp.Child("name"), ""))
		}
		if l.EnvoyConfig.Name == "" {
			c.add(field.Required(lp.Child("envoyConfig", "name"), ""))
		}
		switch l.EnvoyConfig.Kind {
		case "", "CiliumClusterwideEnvoyConfig":
		case "CiliumEnvoyConfig":
			if c.clusterwide {
				c.add(field.Forbidden(lp.Child("envoyConfig", "kind"), fmt.Sprintf("Listener %q in CCNP can not use Kind CiliumEnvoyConfig: a clusterwide policy can only use a CiliumClusterwideEnvoyConfig", l.Name)))
			}
		default:
			c.add(field.NotSupported(lp.Child("envoyConfig", "kind"), l.EnvoyConfig.Kind, []string{"CiliumEnvoyConfig", "CiliumClusterwideEnvoyConfig"}))
		}
		if l.Priority != 0 && (l.Priority < 1 || l.Priority > 100) {
			c.add(field.Invalid(lp.Child("priority"), l.Priority, "must be between 1 and 100, inclusive"))
		}
	}

	if rules == nil {
		return
	}
	removed := false
	if rules.Kafka != nil {
		removed = true
		c.add(field.Forbidden(rp.Child("kafka"), "Kafka L7 rules were removed in Cilium 1.20"))
	}
	if rules.L7Proto != "" {
		removed = true
		c.add(field.Forbidden(rp.Child("l7proto"), "generic L7 rules (l7proto/l7) were removed in Cilium 1.20"))
	}
	if rules.L7 != nil {
		removed = true
		c.add(field.Forbidden(rp.Child("l7"), "generic L7 rules (l7proto/l7) were removed in Cilium 1.20"))
	}
	// CRD oneOf http/dns; L7Rules.sanitize "multiple L7 protocol rule types".
	switch {
	case rules.HTTP != nil && rules.DNS != nil:
		c.add(field.Forbidden(rp, "multiple L7 protocol rule types specified in single rule: use either http or dns"))
	case rules.HTTP == nil && rules.DNS == nil && !removed:
		c.add(field.Required(rp, "must specify one of http or dns (omit rules to have no L7 rules)"))
	}
	if ingress && hostPolicy && hasL7 {
		c.add(field.Forbidden(rp, "L7 policy is not supported on host ingress yet"))
	}
	if ingress && hasDNS {
		c.add(field.Forbidden(rp.Child("dns"), "DNS rules are not allowed on ingress (L7 protocol DNS is supported on egress only)"))
	}
	if !ingress && hostPolicy && hasHTTP {
		c.add(field.Forbidden(rp.Child("http"), "L7 protocol HTTP is not supported on host egress yet"))
	}
	if hasDNS && len(pr.Ports) == 0 {
		c.add(field.Required(p.Child("ports"), "port 53 must be specified for DNS rules"))
	}
	for i := range rules.HTTP {
		c.httpRule(&rules.HTTP[i], rp.Child("http").Index(i))
	}
	for i, d := range rules.DNS {
		c.fqdnSelector(d.MatchName, d.MatchPattern, rp.Child("dns").Index(i))
	}
}

func (c *policyChecker) tlsContext(t *TLSContext, p *field.Path) {
	if t == nil {
		return
	}
	if t.Secret == nil {
		c.add(field.Required(p.Child("secret"), "a TLS context needs a secret"))
	} else if t.Secret.Name == "" {
		c.add(field.Required(p.Child("secret", "name"), ""))
	}
}

var mismatchActions = []string{"LOG", "ADD", "DELETE", "REPLACE"}

// httpRule is pkg/policy/api/http.go PortRuleHTTP.Sanitize. Cilium only compiles path and
// method; netward also compiles host, which its L7 engine (and Envoy) treat as a regexp.
func (c *policyChecker) httpRule(h *PortRuleHTTP, p *field.Path) {
	for _, f := range []struct{ name, value string }{{"path", h.Path}, {"method", h.Method}, {"host", h.Host}} {
		if f.value == "" {
			continue
		}
		if _, err := regexp.Compile(f.value); err != nil {
			c.add(field.Invalid(p.Child(f.name), f.value, "must be a valid regular expression: "+err.Error()))
		}
	}
	for i, m := range h.HeaderMatches {
		mp := p.Child("headerMatches").Index(i)
		if m.Name == "" {
			c.add(field.Required(mp.Child("name"), "Header name missing"))
		}
		if m.Mismatch != "" && !slices.Contains(mismatchActions, m.Mismatch) {
			c.add(field.NotSupported(mp.Child("mismatch"), m.Mismatch, mismatchActions))
		}
		if m.Secret != nil && m.Secret.Name == "" {
			c.add(field.Required(mp.Child("secret", "name"), "Secret name missing"))
		}
	}
}

var (
	// CRD patterns of FQDNSelector / PortRuleDNS (pkg/policy/api/fqdn.go).
	matchNameRe    = regexp.MustCompile(`^([-a-zA-Z0-9_]+[.]?)+$`)
	matchPatternRe = regexp.MustCompile(`^([-a-zA-Z0-9_*]+[.]?)+$`)
)

// fqdnSelector checks a toFQDNs entry or a rules.dns entry: CRD oneOf matchName/matchPattern,
// patterns and maxLength; fqdn.go FQDNSelector.sanitize and PortRuleDNS.Sanitize.
func (c *policyChecker) fqdnSelector(name, pattern string, p *field.Path) {
	switch {
	case name != "" && pattern != "":
		c.add(field.Forbidden(p, "only one of matchName or matchPattern is allowed in an FQDNSelector"))
	case name == "" && pattern == "":
		c.add(field.Required(p, "one of matchName or matchPattern is required"))
	}
	if name != "" {
		switch {
		case len(name) > maxFQDNLength:
			c.add(field.TooLong(p.Child("matchName"), name, maxFQDNLength))
		case !matchNameRe.MatchString(name):
			c.add(field.Invalid(p.Child("matchName"), name, "Invalid characters in MatchName: only 0-9, a-z, A-Z, '-', '_' and '.' between labels are allowed"))
		}
	}
	if pattern != "" {
		switch {
		case len(pattern) > maxFQDNLength:
			c.add(field.TooLong(p.Child("matchPattern"), pattern, maxFQDNLength))
		case !matchPatternRe.MatchString(pattern):
			c.add(field.Invalid(p.Child("matchPattern"), pattern, "Invalid characters in MatchPattern: only 0-9, a-z, A-Z, '-', '_', '*' and '.' between labels are allowed"))
		}
	}
}

// ---- ICMP, authentication --------------------------------------------------------------------

// ICMP type names per family (pkg/policy/api/icmp.go).
var (
	icmpV4Names = []string{"EchoReply", "DestinationUnreachable", "Redirect", "Echo", "EchoRequest",
		"RouterAdvertisement", "RouterSelection", "TimeExceeded", "ParameterProblem", "Timestamp",
		"TimestampReply", "Photuris", "ExtendedEchoRequest", "ExtendedEchoReply"}
	icmpV6Names = []string{"DestinationUnreachable", "PacketTooBig", "TimeExceeded", "ParameterProblem",
		"EchoRequest", "EchoReply", "MulticastListenerQuery", "MulticastListenerReport",
		"MulticastListenerDone", "RouterSolicitation", "RouterAdvertisement", "NeighborSolicitation",
		"NeighborAdvertisement", "RedirectMessage", "RouterRenumbering", "ICMPNodeInformationQuery",
		"ICMPNodeInformationResponse", "InverseNeighborDiscoverySolicitation",
		"InverseNeighborDiscoveryAdvertisement", "HomeAgentAddressDiscoveryRequest",
		"HomeAgentAddressDiscoveryReply", "MobilePrefixSolicitation", "MobilePrefixAdvertisement",
		"DuplicateAddressRequestCodeSuffix", "DuplicateAddressConfirmationCodeSuffix",
		"ExtendedEchoRequest", "ExtendedEchoReply"}
	// The numeric part of the CRD pattern of ICMPField.type.
	icmpNumberRe = regexp.MustCompile(`^([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])$`)
)

// icmpRule is rule_validation.go ICMPRule.verify, icmp.go ICMPField.UnmarshalJSON and the CRD
// schema of ICMPField.
func (c *policyChecker) icmpRule(r *ICMPRule, p *field.Path) {
	fp := p.Child("fields")
	if len(r.Fields) > maxICMPFields {
		c.add(field.TooMany(fp, len(r.Fields), maxICMPFields))
	}
	for i, f := range r.Fields {
		ip := fp.Index(i)
		family := f.Family
		names := icmpV4Names
		other, otherFamily := icmpV6Names, "IPv6"
		switch family {
		case "", "IPv4":
			family = "IPv4"
		case "IPv6":
			names, other, otherFamily = icmpV6Names, icmpV4Names, "IPv4"
		default:
			c.add(field.NotSupported(ip.Child("family"), f.Family, []string{"IPv4", "IPv6"}))
		}
		tp := ip.Child("type")
		switch {
		case f.Type == nil:
			c.add(field.Required(tp, "an ICMP type number (0-255) or name is required"))
		case f.Type.Type == intstr.Int:
			if f.Type.IntVal < 0 || f.Type.IntVal > 255 {
				c.add(field.Invalid(tp, f.Type.IntVal, "must be an ICMP type number 0-255 or a type name"))
			}
		default:
			s := f.Type.StrVal
			switch {
			case icmpNumberRe.MatchString(s):
			case s != "" && strings.Trim(s, "0123456789") == "":
				c.add(field.Invalid(tp, s, "must be an ICMP type number 0-255 (without leading zeros) or a type name"))
			case s == "ExtendedEchoReply":
				// The CRD pattern spells this name "ExtendedEcho Reply" (a space from a line
				// break in the kubebuilder marker), so the API server rejects the real name.
				code := "43"
				if family == "IPv6" {
					code = "161"
				}
				c.add(field.Invalid(tp, s, "the cilium.io/v2 schema's ICMP type pattern does not accept ExtendedEchoReply (it is misspelt there); use the number "+code))
			case slices.Contains(names, s):
			case slices.Contains(other, s):
				c.add(field.Invalid(tp, s, fmt.Sprintf("ICMP type %s not found in %s: it is an %s type, set family: %s", s, family, otherFamily, otherFamily)))
			default:
				c.add(field.Invalid(tp, s, fmt.Sprintf("ICMP type %s not found in %s: must be a number 0-255 or a type name such as EchoRequest", s, family)))
			}
		}
	}
}

var authModes = []string{"disabled", "required", "test-always-fail"}

func (c *policyChecker) authentication(a *Authentication, p *field.Path) {
	if a == nil {
		return
	}
	switch {
	case a.Mode == "":
		c.add(field.Required(p.Child("mode"), "one of disabled, required, test-always-fail"))
	case !slices.Contains(authModes, a.Mode):
		c.add(field.NotSupported(p.Child("mode"), a.Mode, authModes))
	}
}
