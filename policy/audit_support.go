package policy

import (
	"github.com/netward/netward/identity"
	"github.com/netward/netward/l7"
)

// AllowFilter is one allow rule's contribution to a compiled endpoint policy, as the map
// and the proxy see it: which peers, which protocol and port range, which L7 rules. Audits
// use it to name the allow rules a deny overrides, which the map itself no longer records
// (a deny entry keeps only the deny rules among its origins).
type AllowFilter struct {
	Origin *Origin
	// Proto is ProtoAny for an L3-only rule (every protocol and port).
	Proto  uint8
	Lo, Hi uint16
	Parser L7Parser
	// HTTP rules; nil admits every request.
	HTTP []*l7.HTTPRule
	// Wildcard is set when the rule selects every peer (its map keys use identity 0).
	Wildcard bool
	// Peers are the identities the rule selects, as seen from the endpoint's node (nil for
	// a wildcard).
	Peers []*identity.Identity
}

// AllowFilters returns every allow rule contribution of one direction, in compile order
// (synthetic rules included; their Origin has an empty Kind).
func (p *EndpointPolicy) AllowFilters(egress bool) []AllowFilter {
	var out []AllowFilter
	for _, f := range p.l7[dirIndex(egress)] {
		af := AllowFilter{Origin: f.origin, Proto: f.proto, Lo: f.lo, Hi: f.hi, Parser: f.parser, HTTP: f.http}
		switch {
		case f.peer != nil:
			af.Peers = []*identity.Identity{f.peer}
		case f.sel.Selector.IsWildcard():
			af.Wildcard = true
		default:
			for _, id := range f.sel.Selections() {
				if visible(id, p.Node) {
					af.Peers = append(af.Peers, id)
				}
			}
		}
		out = append(out, af)
	}
	return out
}

// Visible reports whether a peer identity exists from the point of view of node: a
// per-node host identity only on its own node, a per-node remote-node identity only on the
// others.
func Visible(peer *identity.Identity, node string) bool { return visible(peer, node) }
