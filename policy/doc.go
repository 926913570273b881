// Package policy resolves NetworkPolicy, CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy exactly as Cilium v1.20 does, and compiles them into
// per-endpoint policy maps with the shape of Cilium's BPF policy map.
//
// The pipeline has four stages:
//
//  1. Translate turns every ingress, ingressDeny, egress and egressDeny element (and every
//     NetworkPolicy peer) into an Entry, Cilium's internal normal form (semantics doc §2.1,
//     §3): a subject selector, a direction, allow or deny, default-deny, peer selectors (nil
//     selects nothing, empty is the wildcard) and port rules with their L7 rules.
//  2. The SelectorCache keeps, for every distinct selector, the identities it selects, and
//     updates them incrementally when identities come and go.
//  3. Compile resolves, for one subject identity, every entry that selects it into
//     contributions (peer identity, protocol, port range, precedence), then writes the
//     MapState: keys (peer identity or 0 for "any", direction, protocol, port prefix) and
//     entries (deny, allow, or redirect to the L7 proxy, with precedence and rule origins).
//  4. Lookup answers a verdict the way the datapath does (bpf/lib/policy.h): one
//     longest-prefix lookup for the peer's identity and one for the wildcard identity, then
//     the higher precedence wins, then the longer prefix, then the specific identity.
//
// The MapState is the only evaluator: trace, check and the analyses ask it, the eBPF datapath
// loads it, and the L7 proxy asks the EndpointPolicy's HTTP rules for each request. A
// deliberately naive reference evaluator lives in the tests as an oracle.
package policy
