package analysis

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/netward/netward/cluster"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/policy"
)

// Flow is a connection attempt to decide.
type Flow struct {
	From, To string
	Proto    uint8
	// Port is the destination port, or the ICMP type for ICMP.
	Port uint16
	// HTTP is the request, when the flow is an HTTP request.
	HTTP *l7.Request
	// DNS is the question name, when the flow is a DNS lookup (UDP or TCP).
	DNS string
}

// Side is one endpoint's verdict on the flow: the source's egress or the destination's
// ingress.
type Side struct {
	Direction string `json:"direction"` // "egress" or "ingress"
	Endpoint  string `json:"endpoint"`
	Identity  uint32 `json:"identity"`
	Peer      string `json:"peer"`
	PeerID    uint32 `json:"peerIdentity"`
	Enforced  bool   `json:"enforced"`
	Allowed   bool   `json:"allowed"`
	// Entry is the map entry that decided, if one matched.
	Entry *EntryView `json:"entry,omitempty"`
	// SelectedBy are the rules selecting the endpoint in this direction.
	SelectedBy []string `json:"selectedBy,omitempty"`
	// HTTP is the proxy's decision when the entry redirects and the flow is a request.
	HTTP *HTTPView `json:"http,omitempty"`
	// DNS is the DNS proxy's decision when the entry redirects and the flow is a lookup.
	DNS    *DNSView `json:"dns,omitempty"`
	Reason string   `json:"reason"`
	// Enforcement says where netward's own datapath decides otherwise than Cilium's, whose
	// semantics Allowed follows: a redirect to a proxy netward does not have (TLS,
	// Kafka/CRD, DNS at ingress) is denied by the agent (fail closed), where Cilium's proxy
	// would judge it.
	Enforcement string `json:"enforcement,omitempty"`
}

// EntryView is a map entry as shown to people and in JSON.
type EntryView struct {
	Key        string   `json:"key"`
	Verdict    string   `json:"verdict"`
	Precedence uint32   `json:"precedence"`
	Origins    []string `json:"origins"`
}

// HTTPView is the L7 decision.
type HTTPView struct {
	Allowed bool     `json:"allowed"`
	Matched []string `json:"matched,omitempty"` // rules that admitted the request
	Rules   []string `json:"rules,omitempty"`   // every rule considered
}

// DNSView is the DNS proxy's decision on a lookup.
type DNSView struct {
	Name    string   `json:"name"`
	Allowed bool     `json:"allowed"`
	Matched []string `json:"matched,omitempty"` // rules that admitted the name
	Rules   []string `json:"rules,omitempty"`   // every rule considered
}

// NetwardProxies reports whether netward's agent has a proxy for redirects of parser in
// that direction: HTTP both ways, DNS on egress (where DNS rules apply). It denies the
// others (fail closed).
func NetwardProxies(parser policy.L7Parser, egress bool) bool {
	return parser == policy.ParserHTTP || parser == policy.ParserDNS && egress
}

// Result is a flow's verdict with its explanation.
type Result struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Port    string `json:"port"`
	Allowed bool   `json:"allowed"`
	Verdict string `json:"verdict"`
	Egress  *Side  `json:"egress,omitempty"`
	Ingress *Side  `json:"ingress,omitempty"`
	Reason  string `json:"reason"`
}

// PortString renders port/proto as the check file format does.
func PortString(proto uint8, port uint16) string {
	if proto == policy.ProtoICMP && port == 8 {
		return "0/ICMP"
	}
	return fmt.Sprintf("%d/%s", port, policy.ProtoName(proto))
}

// Trace decides a flow and explains the decision.
func Trace(c *cluster.Cluster, f Flow) (*Result, error) {
	// Pods first (by name or address): "host" and "node:NAME" depend on the pod at the other end.
	podOf := func(spec string) *cluster.Endpoint {
		if e, ok := c.Endpoint(spec); ok {
			return e
		}
		if ip, err := netip.ParseAddr(spec); err == nil {
			if e, ok := c.EndpointByIP(ip); ok {
				return e
			}
		}
		return nil
	}
	fromEP, toEP := podOf(f.From), podOf(f.To)
	src, err := c.ResolvePeer(f.From, toEP)
	if err != nil {
		return nil, fmt.Errorf("from %w", err)
	}
	dst, err := c.ResolvePeer(f.To, fromEP)
	if err != nil {
		return nil, fmt.Errorf("to %w", err)
	}
	if src.Endpoint == nil && dst.Endpoint == nil {
		return nil, fmt.Errorf("neither %q nor %q is a pod: netward decides flows from or to pods", f.From, f.To)
	}
	r := &Result{From: f.From, To: f.To, Port: PortString(f.Proto, f.Port), Allowed: true}
	var reasons []string
	if src.Endpoint != nil {
		r.Egress = side(c, src.Endpoint, dst, true, f)
		r.Allowed = r.Allowed && r.Egress.Allowed
		reasons = append(reasons, "egress of "+src.Endpoint.Key()+": "+r.Egress.Reason)
	}
	if dst.Endpoint != nil {
		r.Ingress = side(c, dst.Endpoint, src, false, f)
		r.Allowed = r.Allowed && r.Ingress.Allowed
		reasons = append(reasons, "ingress of "+dst.Endpoint.Key()+": "+r.Ingress.Reason)
	}
	r.Verdict = "deny"
	if r.Allowed {
		r.Verdict = "allow"
	}
	r.Reason = strings.Join(reasons, "; ")
	return r, nil
}

func side(c *cluster.Cluster, ep *cluster.Endpoint, peer cluster.Peer, egress bool, f Flow) *Side {
	p := c.Policy(ep)
	dp := p.Direction(egress)
	s := &Side{Direction: "ingress", Endpoint: ep.Key(), Identity: uint32(ep.Identity.ID), Peer: peer.String(), PeerID: uint32(peer.Identity.ID), Enforced: dp.Enforced}
	if egress {
		s.Direction = "egress"
	}
	for _, o := range dp.Rules {
		s.SelectedBy = append(s.SelectedBy, o.String())
	}
	d := p.Lookup(egress, peer.Identity.ID, f.Proto, f.Port)
	s.Allowed = d.Allowed
	switch {
	case !d.Enforced:
		s.Reason = "no policy selects " + ep.Key() + " for " + s.Direction + ": all " + s.Direction + " traffic is allowed"
		return s
	case d.Err != nil:
		s.Reason = "denied: " + d.Err.Error()
		return s
	case !d.Found:
		s.Reason = "default deny: selected by " + strings.Join(s.SelectedBy, ", ") + "; no rule allows this"
		return s
	}
	s.Entry = &EntryView{Key: d.Key.String(), Verdict: d.Entry.String(), Precedence: uint32(d.Entry.Precedence)}
	for _, o := range d.Entry.Origins {
		s.Entry.Origins = append(s.Entry.Origins, o.String())
	}
	origins := strings.Join(s.Entry.Origins, ", ")
	switch d.Entry.Verdict {
	case policy.Deny:
		s.Reason = "denied by " + origins
		return s
	case policy.Allow:
		s.Reason = "allowed by " + origins
	case policy.Redirect:
		s.Reason = "allowed and redirected to the " + d.Entry.Parser.String() + " proxy by " + origins
		if !NetwardProxies(d.Entry.Parser, egress) {
			s.Enforcement = "netward's agent has no " + d.Entry.Parser.String() +
				" proxy: it denies this flow (fail closed) where Cilium's proxy would judge it"
		}
	}
	if d.Entry.Verdict == policy.Redirect && d.Entry.Parser == policy.ParserDNS && f.DNS != "" {
		name := l7.NormalizeDNSName(f.DNS)
		ok, matches := p.AllowsDNS(egress, peer.Identity, f.Proto, f.Port, name)
		dv := &DNSView{Name: name, Allowed: ok}
		for _, r := range p.DNSRules(egress, peer.Identity, f.Proto, f.Port) {
			if r.DNS == nil {
				dv.Rules = append(dv.Rules, r.Origin.String()+": any name")
				continue
			}
			for _, d := range r.DNS {
				dv.Rules = append(dv.Rules, r.Origin.String()+": "+d.String())
			}
		}
		for _, m := range matches {
			if m.DNS == nil {
				dv.Matched = append(dv.Matched, m.Origin.String()+" (no DNS rules: every name passes)")
			} else {
				dv.Matched = append(dv.Matched, m.Origin.String()+": "+m.DNS.String())
			}
		}
		s.DNS = dv
		s.Allowed = ok
		if ok {
			s.Reason += "; DNS lookup of " + name + " admitted by " + strings.Join(dv.Matched, ", ")
		} else {
			s.Reason += "; DNS lookup of " + name + " matches no DNS rule (answered REFUSED)"
		}
		return s
	}
	if d.Entry.Verdict == policy.Redirect && f.HTTP != nil {
		ok, matches := p.AllowsHTTP(egress, peer.Identity, f.Port, f.HTTP)
		hv := &HTTPView{Allowed: ok}
		for _, r := range p.HTTPRules(egress, peer.Identity, f.Port) {
			if r.HTTP == nil {
				hv.Rules = append(hv.Rules, r.Origin.String()+": any request")
				continue
			}
			for _, h := range r.HTTP {
				hv.Rules = append(hv.Rules, r.Origin.String()+": "+h.String())
			}
		}
		for _, m := range matches {
			if m.Rule == nil {
				hv.Matched = append(hv.Matched, m.Origin.String()+" (no HTTP rules: every request passes)")
			} else {
				hv.Matched = append(hv.Matched, m.Origin.String()+": "+m.Rule.String())
			}
		}
		s.HTTP = hv
		s.Allowed = ok
		if ok {
			s.Reason += "; HTTP " + f.HTTP.Method + " " + f.HTTP.Path + " admitted by " + strings.Join(hv.Matched, ", ")
		} else {
			s.Reason += "; HTTP " + f.HTTP.Method + " " + f.HTTP.Path + " matches no HTTP rule (403 Forbidden)"
		}
	}
	return s
}

// NewRequest builds an HTTP request for a flow from method, path and "Name:value" headers.
func NewRequest(method, path string, headers []string) (*l7.Request, error) {
	req := &l7.Request{Method: method, Path: path, Header: http.Header{}}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("header %q: want Name:value", h)
		}
		value = strings.TrimSpace(value)
		req.Header.Add(name, value)
		if strings.EqualFold(name, "host") {
			req.Host = value
		}
	}
	return req, nil
}
