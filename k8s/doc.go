// Package k8s connects netward to a running Kubernetes cluster through client-go: it reads
// the same objects the file inputs provide (Namespaces, Pods, Nodes, NetworkPolicies,
// CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies) so that every analysis can run on
// a live cluster, and decodes Cilium's custom resources with the same strict decoder as
// files, so validation errors read the same.
package k8s
