package policy

import (
	"fmt"
	"strings"

	"github.com/netward/netward/l7"
	"github.com/netward/netward/labels"
)

// Verdict of an entry or a map entry.
type Verdict uint8

// Verdicts. Redirect is an allow that sends the connection to the L7 proxy.
const (
	Allow Verdict = iota + 1
	Deny
	Redirect
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Redirect:
		return "redirect"
	}
	return "none"
}

// Tier orders rules before verdicts (Cilium v1.20 tiers). Every user policy of the three
// kinds is in TierNormal; TierDefault holds the rules Cilium synthesises (default allow for
// directions without default deny, allow-localhost).
type Tier uint8

// Tiers.
const (
	TierNormal  Tier = 0
	TierDefault Tier = 1
)

// Origin names the policy rule behind an entry: what the user wrote, precisely enough to
// find it again.
type Origin struct {
	Kind      string // NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, or "" for synthetic rules
	Namespace string
	Name      string
	// Path is the rule's field path inside the object, e.g. "spec.ingress[0]",
	// "specs[1].egressDeny[2]", "spec.ingress[0].from[1]", or for synthetic rules a reason.
	Path string
	// Log is the rule's log.value, copied into flow events.
	Log string
}

func (o *Origin) String() string {
	if o.Kind == "" {
		return o.Path
	}
	ref := o.Name
	if o.Namespace != "" {
		ref = o.Namespace + "/" + o.Name
	}
	return fmt.Sprintf("%s %s %s", o.Kind, ref, o.Path)
}

// Resource is "Kind namespace/name" of the origin's object.
func (o *Origin) Resource() string {
	if o.Namespace != "" {
		return o.Kind + " " + o.Namespace + "/" + o.Name
	}
	return o.Kind + " " + o.Name
}

// Synthetic origins.
var (
	originAllowLocalhost = &Origin{Path: "allow-localhost: the local node may reach its pods (Kubernetes mode)"}
	originDefaultAllowIn = &Origin{Path: "default allow: only rules with enableDefaultDeny.ingress=false select this endpoint"}
	originDefaultAllowEg = &Origin{Path: "default allow: only rules with enableDefaultDeny.egress=false select this endpoint"}
)

// Protocol numbers.
const (
	ProtoAny    uint8 = 0
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// ProtoName renders a protocol number.
func ProtoName(p uint8) string {
	switch p {
	case ProtoAny:
		return "ANY"
	case ProtoICMP:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoICMPv6:
		return "ICMPv6"
	case ProtoSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto-%d", p)
}

// ParseProto parses TCP, UDP, SCTP, ICMP, ICMPv6 or ANY (case-insensitive).
func ParseProto(s string) (uint8, bool) {
	switch strings.ToUpper(s) {
	case "TCP":
		return ProtoTCP, true
	case "UDP":
		return ProtoUDP, true
	case "SCTP":
		return ProtoSCTP, true
	case "ICMP":
		return ProtoICMP, true
	case "ICMPV6":
		return ProtoICMPv6, true
	case "ANY", "":
		return ProtoAny, true
	}
	return 0, false
}

// L7Parser names the proxy a redirect goes to.
type L7Parser uint8

// Parsers, in Cilium's listener priority order.
const (
	ParserNone L7Parser = iota
	ParserHTTP
	ParserTLS
	ParserDNS
	ParserCRD
)

func (p L7Parser) String() string {
	return [...]string{"none", "http", "tls", "dns", "crd"}[p]
}

// listenerPriority is Cilium's default listener priority per parser (lower wins).
func (p L7Parser) listenerPriority() uint8 {
	switch p {
	case ParserHTTP:
		return 101
	case ParserTLS:
		return 116
	case ParserDNS:
		return 121
	case ParserCRD:
		return 126
	}
	return 0
}

// PortProto is one port of a port rule. Proto ANY is expanded to TCP, UDP and SCTP when
// compiled. Port 0 means every port. Name, when set, is a named port resolved at compile time.
type PortProto struct {
	Port    uint16
	EndPort uint16
	Name    string
	Proto   uint8
}

// PortRule is one toPorts or icmps element.
type PortRule struct {
	Ports []PortProto
	// HTTP rules; nil when the rule has none. An HTTP rule list on a non-TCP port is ignored,
	// as in Cilium.
	HTTP []*l7.HTTPRule
	// DNS rules (egress DNS proxy).
	DNS []DNSRule
	// TLS is set when the rule intercepts or inspects TLS (serverNames, terminatingTLS,
	// originatingTLS): the connection is redirected to the proxy.
	TLS bool
	// Listener is a CiliumEnvoyConfig listener reference.
	Listener string
}

// DNSRule is a DNS allow-list entry: as written, and compiled (NewDNSRule) once, when the
// policy is translated, so that compiling endpoint policies matches names without compiling
// patterns again. A DNSRule without its Pattern matches no name.
type DNSRule struct {
	MatchName    string
	MatchPattern string
	Pattern      l7.DNSPattern
}

// NewDNSRule compiles a DNS rule; exactly one of matchName and matchPattern is set.
func NewDNSRule(matchName, matchPattern string) (DNSRule, error) {
	p, err := l7.CompileDNSRule(matchName, matchPattern)
	if err != nil {
		return DNSRule{}, err
	}
	return DNSRule{MatchName: matchName, MatchPattern: matchPattern, Pattern: p}, nil
}

// Entry is Cilium's normal form of one policy element (semantics doc §2.1).
type Entry struct {
	Subject     Subject
	Ingress     bool
	Deny        bool
	DefaultDeny bool
	// L3 peers: nil selects nothing; empty non-nil is the wildcard (every identity).
	L3 []PeerSelector
	// L4 ports; empty means "all ports and protocols" when L3 is not empty.
	L4 []PortRule
	// Auth is the authentication mode the rule requires ("" when the rule says nothing).
	Auth   string
	Origin *Origin
}

// Subject selects the endpoints an entry applies to.
type Subject struct {
	Selector labels.Selector
}
