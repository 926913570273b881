// Package cluster builds netward's view of a cluster from Kubernetes objects: namespaces,
// nodes, and pods as endpoints with their security identities, and the policy engine loaded
// with every policy. It also resolves the peers a user names in a flow ("ns/pod", an IP,
// "host", "node:NAME") to endpoints and identities, exactly as the datapath would see them.
//
// Identity labels of a pod follow Cilium (semantics doc §2.9): the pod's identity-relevant
// labels, its namespace labels as io.cilium.k8s.namespace.labels.*, the namespace, the
// service account, the cluster name, and its named ports.
package cluster
