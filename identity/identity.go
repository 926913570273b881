package identity

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/netward/netward/labels"
)

// ID is a numeric security identity.
type ID uint32

// Reserved identities.
const (
	Unknown       ID = 0 // also the wildcard identity in policy map keys
	Host          ID = 1
	World         ID = 2
	Unmanaged     ID = 3
	Health        ID = 4
	Init          ID = 5
	RemoteNode    ID = 6
	KubeAPIServer ID = 7
	Ingress       ID = 8

	// MinCluster is the first identity allocated for labels (pods).
	MinCluster ID = 256
	// LocalScope is the scope bit of CIDR identities.
	LocalScope ID = 1 << 24
	// RemoteNodeScope is the scope of per-node identities.
	RemoteNodeScope ID = 2 << 24
)

var reservedNames = map[ID]string{
	Host: "host", World: "world", Unmanaged: "unmanaged", Health: "health", Init: "init",
	RemoteNode: "remote-node", KubeAPIServer: "kube-apiserver", Ingress: "ingress",
}

// ReservedIDs lists the reserved identities that exist in every cluster.
func ReservedIDs() []ID {
	return []ID{Host, World, Unmanaged, Health, Init, RemoteNode, KubeAPIServer, Ingress}
}

// ReservedName is the entity name of a reserved identity ("" if id is not reserved).
func ReservedName(id ID) string { return reservedNames[id] }

func (id ID) String() string {
	if n, ok := reservedNames[id]; ok {
		return strconv.Itoa(int(id)) + " (" + n + ")"
	}
	return strconv.Itoa(int(id))
}

// Kind classifies identities for CIDR matching and for display.
type Kind uint8

// Identity kinds.
const (
	KindPod Kind = iota
	KindHost
	KindRemoteNode
	KindWorld // reserved:world and CIDR identities
	KindReserved
)

// NamedPort is a container port with a name.
type NamedPort struct {
	Port  uint16
	Proto uint8
}

// Identity is a numeric identity with the labels it stands for.
type Identity struct {
	ID     ID
	Kind   Kind
	Labels labels.Set
	// Prefixes are what CIDR selectors compare against: a CIDR identity's prefix; a pod's
	// longest policy prefix under cidr-match-mode "pods"; a node's addresses under "nodes".
	// Empty means CIDR selectors never select the identity (other than through reserved:world).
	Prefixes []netip.Prefix
	// NamedPorts are the pod's container port names (identities encode them, so every
	// endpoint of an identity has the same).
	NamedPorts map[string]NamedPort
	// Node names the node whose host or remote-node view this identity is, if any.
	Node string
}

func (i *Identity) String() string {
	return fmt.Sprintf("%d %s", i.ID, i.Labels)
}

// NamedPort resolves a port name for a protocol; 0 when the identity has no such port.
func (i *Identity) NamedPort(name string, proto uint8) uint16 {
	np, ok := i.NamedPorts[name]
	if !ok || np.Proto != proto {
		return 0
	}
	return np.Port
}

// ReservedLabels returns the label set of a reserved identity.
func ReservedLabels(id ID) labels.Set {
	return labels.NewSet(labels.Label{Source: labels.SourceReserved, Key: reservedNames[id]})
}

// CIDRLabels returns the labels of a CIDR identity.
func CIDRLabels(p netip.Prefix) labels.Set {
	return labels.NewSet(
		labels.Label{Source: labels.SourceReserved, Key: "world"},
		labels.Label{Source: labels.SourceCIDR, Key: p.String()},
	)
}

// SortByID sorts identities by numeric identity, then by node for per-node variants.
func SortByID(ids []*Identity) {
	slices.SortFunc(ids, func(a, b *Identity) int {
		if a.ID != b.ID {
			if a.ID < b.ID {
				return -1
			}
			return 1
		}
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
}
