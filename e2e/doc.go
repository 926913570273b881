// Package e2e is netward's end-to-end test: a node made of network namespaces, pods attached
// by the real CNI plugin binary, the real agent enforcing the policies of a manifest
// directory with the eBPF datapath, and real TCP, UDP, SCTP and ICMP traffic for every
// ordered pair of pods, the host and the world, compared flow by flow with `netward trace`
// (analysis.Trace over the same manifests).
//
// It runs in plain `go test ./...` as root (network namespaces, veths, BPF) and skips with a
// message otherwise. Nothing is configured in the root network namespace.
//
// # Topology (Harness)
//
//	world netns                     node netns                          pod netns (one per Pod)
//	  lo 198.51.100.10/32             <prefix>up 192.168.50.1/24          eth0 <pod IP>/32
//	  eth0 192.168.50.2/24 <--veth-->  198.51.100.0/24 via .2              default via 169.254.1.1
//	  default via 192.168.50.1        nw<11 hex> host veths, <pod IP>/32 routes
//
// The node's address 192.168.50.1 is its InternalIP in testdata/cluster ("host" in trace);
// 198.51.100.10 is neither a pod nor a node, so it is the world. The agent runs in the test
// process and attaches its programs in the node netns by path.
//
// # Manifests
//
// testdata/cluster has the Namespaces, the Node and the Pods, without addresses; policies-1
// and policies-2 are the two rounds of policies (NetworkPolicy, CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy). The harness copies them into ManifestDir, which the agent
// watches: cluster/ and policies/. Harness.AddPods runs the plugin's ADD for every Pod with
// CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME (the registration carries the address), then
// writes the allocated addresses into the Pods' status, so trace and the agent read the same
// objects.
//
// # Probes (Prober)
//
// Every destination runs responders bound to its address: a TCP listener and a UDP socket
// that echo, and an SCTP responder; ICMP echo is the kernel's. A probe is allowed when the
// answer comes back, denied when nothing comes back within Prober.Timeout (the datapath
// drops silently), and an error otherwise (refused, unreachable: a harness problem). The
// kernel has no SCTP stack (CONFIG_IP_SCTP is off), so SCTP probes are the first two packets
// of a real association (INIT, INIT-ACK, with ports, verification tags and CRC32c) over raw
// sockets. A flow trace allows whose first probe got no answer is probed once more (a lost
// packet); a flow trace denies is never retried.
//
// # Flows
//
// Flows are every ordered pair of places with a pod at one end, times every port of the
// compiled policy maps (PolicyPorts: exact ports and range ends) plus ControlPort, each with
// TCP, UDP and SCTP, plus an ICMP echo request (trace's 0/ICMP).
//
// # L7 and more nodes
//
// l7_test.go sends HTTP requests (HTTPSession) and DNS lookups (LookupUDP, DNSTCPSession)
// through the agent's proxies and compares each outcome with trace given the request or
// the name; l7_masq_test.go does it through a masquerading node. multinode.go builds three
// nodes on a fabric fed by a real kube-apiserver, with an L7 phase across nodes
// (multinode_l7_test.go).
package e2e
