// Package api holds the wire types netward reads and the code that decodes and validates them.
//
// Kubernetes objects (Namespace, Pod, Node, NetworkPolicy) use the upstream k8s.io/api types.
// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy use netward's own Go types whose JSON
// shape is Cilium's cilium.io/v2 schema, so manifests written for Cilium load unchanged.
//
// Load reads files, directories and stdin (YAML, multi-document, or JSON, including kind: List)
// and remembers where every object came from, so that Validate can report each problem with
// the file, the document index, the object and the field path (field.ErrorList), the way the
// Kubernetes API server would.
package api
