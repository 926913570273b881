// Package synth generates deterministic synthetic clusters for benchmarks and tests.
//
// Generate(Config) returns namespaces, nodes, pods and policies of all three kinds
// (NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy) that look like a real
// multi-team cluster:
//
//   - namespaces kube-system (with two kube-dns pods), monitoring (prometheus) and application
//     namespaces named team-env, labelled team and env;
//   - pods grouped into workloads: Deployment-like pods (app, tier, version, pod-template-hash,
//     app.kubernetes.io/* labels, some mid-rollout with two versions) and StatefulSet-like pods
//     (statefulset.kubernetes.io/pod-name); one to three named container ports (http, grpc,
//     metrics, postgres, ...); service accounts; spread over nodes; pod IPs in 10.0.0.0/8
//     (a /20 per node), node IPs in 172.18.0.0/16;
//   - policies: a default-deny NetworkPolicy per namespace, same-app and tier-to-tier allows,
//     cross-namespace peers through namespaceSelector and through the CNP keys
//     k8s:io.kubernetes.pod.namespace and io.cilium.k8s.namespace.labels.*, named ports, port
//     ranges (endPort), CIDR egress with except, entities (world, cluster, host, remote-node),
//     ingressDeny/egressDeny, HTTP rules, ICMP, toFQDNs with DNS rules, a cluster-wide DNS
//     baseline to kube-dns, and enableDefaultDeny false on a few rules.
//
// The same Config (Seed included) always yields the same objects and the same YAML bytes:
// the generator draws from one seeded PCG stream and never ranges over maps.
package synth
