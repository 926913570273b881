package api

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// CiliumNetworkPolicy is cilium.io/v2 CiliumNetworkPolicy (namespaced).
type CiliumNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              *Rule            `json:"spec,omitempty"`
	Specs             []Rule           `json:"specs,omitempty"`
	Status            *json.RawMessage `json:"status,omitempty"`
}

// CiliumClusterwideNetworkPolicy is cilium.io/v2 CiliumClusterwideNetworkPolicy; same shape,
// cluster-scoped, and the only kind that may use nodeSelector.
type CiliumClusterwideNetworkPolicy = CiliumNetworkPolicy

// Rule is one policy rule (Cilium's api.Rule).
type Rule struct {
	EndpointSelector  *metav1.LabelSelector `json:"endpointSelector,omitempty"`
	NodeSelector      *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	Ingress           []IngressRule         `json:"ingress,omitempty"`
	IngressDeny       []IngressDenyRule     `json:"ingressDeny,omitempty"`
	Egress            []EgressRule          `json:"egress,omitempty"`
	EgressDeny        []EgressDenyRule      `json:"egressDeny,omitempty"`
	Labels            []RuleLabel           `json:"labels,omitempty"`
	EnableDefaultDeny DefaultDenyConfig     `json:"enableDefaultDeny,omitzero"`
	Description       string                `json:"description,omitempty"`
	Log               *LogConfig            `json:"log,omitempty"`
}

// RuleLabel is free metadata attached to a rule.
type RuleLabel struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Source string `json:"source,omitempty"`
}

// DefaultDenyConfig switches default deny per direction; nil means "on when the rule has
// rules in that direction".
type DefaultDenyConfig struct {
	Ingress *bool `json:"ingress,omitempty"`
	Egress  *bool `json:"egress,omitempty"`
}

// LogConfig is copied into flow events of traffic this rule matched.
type LogConfig struct {
	Value string `json:"value,omitempty"`
}

// PeerSelectors are the peer fields shared by ingress and ingressDeny elements. A nil slice
// means "not given"; an empty non-nil slice means "selects nothing" (semantics §5.1).
type IngressPeers struct {
	FromEndpoints []*metav1.LabelSelector `json:"fromEndpoints,omitempty"`
	FromRequires  []*metav1.LabelSelector `json:"fromRequires,omitempty"`
	FromCIDR      []string                `json:"fromCIDR,omitempty"`
	FromCIDRSet   []CIDRRule              `json:"fromCIDRSet,omitempty"`
	FromEntities  []string                `json:"fromEntities,omitempty"`
	FromGroups    []map[string]any        `json:"fromGroups,omitempty"`
	FromNodes     []*metav1.LabelSelector `json:"fromNodes,omitempty"`
}

// IngressRule is an element of ingress.
type IngressRule struct {
	IngressPeers   `json:",inline"`
	ToPorts        []PortRule      `json:"toPorts,omitempty"`
	ICMPs          []ICMPRule      `json:"icmps,omitempty"`
	Authentication *Authentication `json:"authentication,omitempty"`
}

// IngressDenyRule is an element of ingressDeny.
type IngressDenyRule struct {
	IngressPeers `json:",inline"`
	ToPorts      []PortDenyRule `json:"toPorts,omitempty"`
	ICMPs        []ICMPRule     `json:"icmps,omitempty"`
}

// EgressPeers are the peer fields shared by egress and egressDeny elements.
type EgressPeers struct {
	ToEndpoints []*metav1.LabelSelector `json:"toEndpoints,omitempty"`
	ToRequires  []*metav1.LabelSelector `json:"toRequires,omitempty"`
	ToCIDR      []string                `json:"toCIDR,omitempty"`
	ToCIDRSet   []CIDRRule              `json:"toCIDRSet,omitempty"`
	ToEntities  []string                `json:"toEntities,omitempty"`
	ToServices  []map[string]any        `json:"toServices,omitempty"`
	ToGroups    []map[string]any        `json:"toGroups,omitempty"`
	ToNodes     []*metav1.LabelSelector `json:"toNodes,omitempty"`
}

// EgressRule is an element of egress.
type EgressRule struct {
	EgressPeers    `json:",inline"`
	ToFQDNs        []FQDNSelector  `json:"toFQDNs,omitempty"`
	ToPorts        []PortRule      `json:"toPorts,omitempty"`
	ICMPs          []ICMPRule      `json:"icmps,omitempty"`
	Authentication *Authentication `json:"authentication,omitempty"`
}

// EgressDenyRule is an element of egressDeny.
type EgressDenyRule struct {
	EgressPeers `json:",inline"`
	ToPorts     []PortDenyRule `json:"toPorts,omitempty"`
	ICMPs       []ICMPRule     `json:"icmps,omitempty"`
}

// CIDRRule is a prefix (or CIDR group) with exceptions.
type CIDRRule struct {
	CIDR              string                `json:"cidr,omitempty"`
	CIDRGroupRef      string                `json:"cidrGroupRef,omitempty"`
	CIDRGroupSelector *metav1.LabelSelector `json:"cidrGroupSelector,omitempty"`
	ExceptCIDRs       []string              `json:"except,omitempty"`
}

// FQDNSelector selects IPs learned from DNS answers.
type FQDNSelector struct {
	MatchName    string `json:"matchName,omitempty"`
	MatchPattern string `json:"matchPattern,omitempty"`
}

// Authentication asks for mutual authentication of the peers.
type Authentication struct {
	Mode string `json:"mode"`
}

// PortRule is an element of toPorts in allow rules.
type PortRule struct {
	Ports          []PortProtocol `json:"ports,omitempty"`
	TerminatingTLS *TLSContext    `json:"terminatingTLS,omitempty"`
	OriginatingTLS *TLSContext    `json:"originatingTLS,omitempty"`
	ServerNames    []string       `json:"serverNames,omitempty"`
	Listener       *Listener      `json:"listener,omitempty"`
	Rules          *L7Rules       `json:"rules,omitempty"`
}

// PortDenyRule is an element of toPorts in deny rules: ports only.
type PortDenyRule struct {
	Ports []PortProtocol `json:"ports,omitempty"`
}

// PortProtocol is a port (number or IANA service name), optional range end, and protocol.
type PortProtocol struct {
	Port     string `json:"port,omitempty"`
	EndPort  int32  `json:"endPort,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// TLSContext references TLS secrets for interception.
type TLSContext struct {
	Secret      *Secret `json:"secret,omitempty"`
	TrustedCA   string  `json:"trustedCA,omitempty"`
	Certificate string  `json:"certificate,omitempty"`
	PrivateKey  string  `json:"privateKey,omitempty"`
}

// Secret names a Kubernetes secret.
type Secret struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// Listener redirects to a CiliumEnvoyConfig listener.
type Listener struct {
	EnvoyConfig struct {
		Kind string `json:"kind,omitempty"`
		Name string `json:"name"`
	} `json:"envoyConfig"`
	Name     string `json:"name"`
	Priority int    `json:"priority,omitempty"`
}

// L7Rules holds the L7 rules of a port rule. Cilium v1.20 knows HTTP and DNS only; the removed
// kafka and l7proto/l7 fields are decoded so that they can be rejected with a clear error.
type L7Rules struct {
	HTTP    []PortRuleHTTP   `json:"http,omitempty"`
	DNS     []PortRuleDNS    `json:"dns,omitempty"`
	Kafka   []map[string]any `json:"kafka,omitempty"`
	L7Proto string           `json:"l7proto,omitempty"`
	L7      []map[string]any `json:"l7,omitempty"`
}

// PortRuleHTTP is one HTTP rule; its fields are ANDed, rules are ORed.
type PortRuleHTTP struct {
	Path          string        `json:"path,omitempty"`
	Method        string        `json:"method,omitempty"`
	Host          string        `json:"host,omitempty"`
	Headers       []string      `json:"headers,omitempty"`
	HeaderMatches []HeaderMatch `json:"headerMatches,omitempty"`
}

// HeaderMatch requires a header value, with an action on mismatch.
type HeaderMatch struct {
	Mismatch string  `json:"mismatch,omitempty"`
	Name     string  `json:"name"`
	Secret   *Secret `json:"secret,omitempty"`
	Value    string  `json:"value,omitempty"`
}

// PortRuleDNS allows DNS lookups of matching names.
type PortRuleDNS struct {
	MatchName    string `json:"matchName,omitempty"`
	MatchPattern string `json:"matchPattern,omitempty"`
}

// ICMPRule lists ICMP types.
type ICMPRule struct {
	Fields []ICMPField `json:"fields"`
}

// ICMPField is one ICMP type (number or CamelCase name) of a family.
type ICMPField struct {
	Family string              `json:"family,omitempty"`
	Type   *intstr.IntOrString `json:"type"`
}
