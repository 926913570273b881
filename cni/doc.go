// Package cni is netward's CNI plugin: it connects a pod's network namespace to the node
// with a veth pair, gives it an address from the node's pod CIDR and registers the endpoint
// with the node agent, which attaches the datapath before the pod may send anything.
//
// The binary is cmd/netward-cni (skel.PluginMainFuncs over Add, Del, Check, Status and GC);
// a container runtime (containerd, CRI-O, cnitool, libcni) executes it with the CNI
// environment (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH) and
// the network configuration on stdin. deploy/10-netward.conflist is a sample configuration.
//
// # Network configuration (type "netward-cni")
//
//	{"cniVersion": "1.1.0", "name": "netward", "type": "netward-cni",
//	 "agentSocket": "/run/netward/node-1.sock",   // required: the agent's unix socket
//	 "subnet": "10.244.1.0/24",                    // required: this node's pod CIDR (IPv4)
//	 "ipamDataDir": "/var/lib/netward/ipam",       // default
//	 "mtu": 1500}                                  // default
//
// STATUS (and GC) need cniVersion 1.1.0 in the configuration, as the CNI spec says; ADD, DEL
// and CHECK work with any version the library supports (results are converted).
//
// # What ADD builds
//
// The plugin runs in the node's network namespace (runtimes execute it there) and builds:
//
//	node netns                                   pod netns (CNI_NETNS)
//	  nw<11 hex>  (host veth, up)     <-- veth -->  eth0 (CNI_IFNAME, up)
//	  route  <pod IP>/32 dev nw<11 hex> scope link  address <pod IP>/32
//	  neigh  <pod IP> lladdr <eth0 MAC> permanent   route 169.254.1.1 dev eth0 scope link
//	  net.ipv4.ip_forward = 1                       route default via 169.254.1.1 dev eth0
//	                                                neigh 169.254.1.1 lladdr <host veth MAC> permanent
//
// The gateway 169.254.1.1 is not configured anywhere: as in Cilium, it only names the next
// hop, and the permanent neighbour entries make the link work without ARP or proxy ARP, so
// the datapath sees only IP. The host veth name is "nw" + the first 11 hex digits of
// sha256(containerID + ifname) (HostVethName): deterministic, so DEL and CHECK find it
// without state, and at most 13 characters (IFNAMSIZ is 16).
//
// Addresses come from a host-local style allocator (IPAM): one file per allocated address
// under ipamDataDir/<network name>/<ip> holding "<containerID>\n<ifname>\n", a last-reserved
// file for round-robin allocation, and a lock file taken with flock(2) around every change,
// so concurrent ADDs on a node never hand out the same address. The network address, the
// subnet's first address (kept for a node-side gateway, as host-local does) and the
// broadcast address are never allocated. ADD for a container ID and ifname that already has
// an address gets the same address again.
//
// After the veth, the addresses and the routes exist, ADD registers the endpoint with the
// agent and waits for the reply: the agent answers once it has attached the datapath to the
// host veth and the pod's policy is enforced. If anything fails, ADD undoes everything it
// did (veth, address, registration) and returns a CNI error.
//
// # Agent API (client side; the agent serves it on agentSocket)
//
//	POST   /v1/endpoints                {"containerID","netns","ifName","hostIfName",
//	                                     "podNamespace","podName","ips":["10.244.1.5"]}
//	                                    -> 200 {"id","identity","pod"}; anything else fails ADD
//	DELETE /v1/endpoints/{containerID}  -> 200, or 404 (already gone: DEL is idempotent)
//	GET    /v1/endpoints                -> 200 with a JSON array of endpoints, or an object
//	                                       {"endpoints": [...]}; each has "containerID" (CHECK)
//	GET    /healthz                     -> 200 when ready (STATUS)
//
// EndpointRequest is the registration body. podNamespace and podName come from CNI_ARGS
// (K8S_POD_NAMESPACE, K8S_POD_NAME, as kubelet's runtimes and libcni send them; unknown
// arguments such as IgnoreUnknown or K8S_POD_INFRA_CONTAINER_ID are ignored); the agent takes
// the pod's labels, service account and named ports from that Pod object.
//
// # DEL, CHECK, STATUS, GC
//
// DEL deregisters the endpoint (404 is success; an unreachable agent is tolerated, it
// reconciles on start), deletes the host veth if it exists (which removes the pod end and the
// routes) and releases the address. Every piece may already be gone; DEL twice succeeds.
// If the agent answers DELETE with an error, DEL still cleans up locally and then fails, so
// the runtime retries it.
//
// CHECK verifies both veth ends (up, peers of each other), the pod address, the pod's two
// routes, the host route, the IPAM allocation (and prevResult's addresses when given) and the
// agent's registration.
//
// STATUS fails with code 50 and "agent not ready" when GET /healthz does not answer 200.
//
// GC releases every address whose container ID and ifname are not in
// cni.dev/valid-attachments.
package cni
