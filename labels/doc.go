// Package labels models Cilium's source-qualified labels and the selectors that match them.
//
// A label is source:key=value, where the source says where it came from: "k8s" for pod and
// namespace metadata, "reserved" for Cilium's built-in classes (host, world, remote-node, ...),
// "cidr" for prefixes, "gen" for generated labels such as named ports. Selectors written in
// policies may name a source ("k8s:app") or not ("app", stored as "any:app"); an "any" key
// matches a label of that key from every source.
//
// Identities are built only from identity-relevant labels: Kubernetes bookkeeping labels
// such as pod-template-hash are filtered out exactly as Cilium's default label filter does,
// which makes them invisible to selectors (semantics doc §2.9).
package labels
