// Package identity gives every peer netward reasons about a numeric security identity, the
// way Cilium does: pods with the same identity-relevant labels share one identity; the host,
// remote nodes, the world and the other reserved classes have fixed numbers; every prefix a
// policy names gets a local-scope CIDR identity so that the datapath can tell those addresses
// apart. The IPCache maps addresses to identities by longest prefix, as Cilium's ipcache does.
//
// Numbers follow Cilium (semantics doc §2.8): 1 host, 2 world, 3 unmanaged, 4 health, 5 init,
// 6 remote-node, 7 kube-apiserver, 8 ingress; pod identities from 256; CIDR identities in the
// local scope (1<<24 + n); per-node identities in the remote-node scope (2<<24 + n) when CIDR
// policies may select nodes.
package identity
