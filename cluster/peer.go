package cluster

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/netward/netward/identity"
)

// PeerKind says what a flow endpoint is.
type PeerKind string

// Peer kinds.
const (
	PeerPod        PeerKind = "pod"
	PeerHost       PeerKind = "host"
	PeerRemoteNode PeerKind = "remote-node"
	PeerWorld      PeerKind = "world"
)

// Peer is one end of a flow, resolved.
type Peer struct {
	Kind     PeerKind
	Endpoint *Endpoint // for pods
	Node     string    // for host and remote-node peers
	Addr     netip.Addr
	Identity *identity.Identity
	// Spec is what the user wrote.
	Spec string
}

// String describes the peer for people.
func (p Peer) String() string {
	switch p.Kind {
	case PeerPod:
		return p.Endpoint.Key()
	case PeerHost:
		if p.Node != "" {
			return "host (node " + p.Node + ")"
		}
		return "host"
	case PeerRemoteNode:
		return "node " + p.Node + " (remote-node)"
	}
	return p.Addr.String() + " (world)"
}

// ResolvePeer resolves a flow endpoint: "namespace/pod", "host" (the node of the pod at the
// other end), "node:NAME" (that node: the host if it is the other pod's node, else a remote
// node), or an IP address (a pod, a node, or else the world).
func (c *Cluster) ResolvePeer(spec string, other *Endpoint) (Peer, error) {
	switch {
	case spec == "host":
		if other == nil {
			return Peer{}, fmt.Errorf("%q: host is the node of the pod at the other end, so the other end must be a pod", spec)
		}
		return c.nodePeer(spec, other.Node, other)
	case strings.HasPrefix(spec, "node:"):
		name := strings.TrimPrefix(spec, "node:")
		if _, ok := c.Nodes[name]; !ok {
			return Peer{}, fmt.Errorf("%q: no node %q in the input (nodes: %s)", spec, name, strings.Join(c.NodeNames(), ", "))
		}
		return c.nodePeer(spec, name, other)
	case strings.Contains(spec, "/") && !strings.Contains(spec, ":") && !looksLikeCIDR(spec):
		ep, ok := c.byName[spec]
		if !ok {
			return Peer{}, fmt.Errorf("%q: no pod %s in the input", spec, spec)
		}
		return Peer{Kind: PeerPod, Endpoint: ep, Identity: ep.Identity, Spec: spec}, nil
	}
	ip, err := netip.ParseAddr(spec)
	if err != nil {
		return Peer{}, fmt.Errorf("%q is not namespace/pod, host, node:NAME or an IP address", spec)
	}
	if ep, ok := c.byIP[ip]; ok {
		return Peer{Kind: PeerPod, Endpoint: ep, Identity: ep.Identity, Addr: ip, Spec: spec}, nil
	}
	if n, ok := c.nodeByIP[ip]; ok {
		p, err := c.nodePeer(spec, n.Name, other)
		p.Addr = ip
		return p, err
	}
	return Peer{Kind: PeerWorld, Addr: ip, Identity: c.Engine.WorldIdentity(ip, c.reserved[identity.World]), Spec: spec}, nil
}

func looksLikeCIDR(s string) bool {
	_, err := netip.ParsePrefix(s)
	return err == nil
}

func (c *Cluster) nodePeer(spec, name string, other *Endpoint) (Peer, error) {
	n := c.Nodes[name]
	if other != nil && other.Node == name {
		id := c.reserved[identity.Host]
		if n != nil {
			id = n.Host
		}
		return Peer{Kind: PeerHost, Node: name, Identity: id, Spec: spec}, nil
	}
	id := c.reserved[identity.RemoteNode]
	if n != nil {
		id = n.Remote
	}
	return Peer{Kind: PeerRemoteNode, Node: name, Identity: id, Spec: spec}, nil
}
