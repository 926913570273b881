package cluster

import (
	"strings"
	"testing"

	"github.com/netward/netward/api"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/labels"
	"github.com/netward/netward/policy"
)

func build(t *testing.T, yaml string, opts Options) *Cluster {
	t.Helper()
	objs, errs := api.LoadBytes("test.yaml", []byte(yaml))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := Build(objs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const pods = `apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.168.0.1}, {type: ExternalIP, address: 1.2.3.4}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: a-1
  namespace: x
  labels: {app: a, pod-template-hash: abc}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: a-abc, uid: u, controller: true}]
spec:
  nodeName: n1
  serviceAccountName: sa
  containers: [{name: c, ports: [{name: HTTP, containerPort: 8080}]}]
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: a-2, namespace: x, labels: {app: a, pod-template-hash: def}}
spec:
  nodeName: n1
  serviceAccountName: sa
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIPs: [{ip: 10.0.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: "y", labels: {app: b, io.cilium.k8s.policy.serviceaccount: forged}}
spec: {nodeName: n2}
`

// TestPodIdentityLabels checks the identity labels of §2.9: pod labels without the
// identity-irrelevant ones, namespace labels (with the API server's metadata.name label), the
// namespace, the service account (default "default"), the cluster and the named ports.
func TestPodIdentityLabels(t *testing.T) {
	c := build(t, pods, Options{Policy: policy.DefaultOptions()})
	a1, _ := c.Endpoint("x/a-1")
	a2, _ := c.Endpoint("x/a-2")
	b, _ := c.Endpoint("y/b")
	if a1.Identity != a2.Identity {
		t.Errorf("replicas differing only in pod-template-hash must share an identity: %s vs %s", a1.Identity.Labels, a2.Identity.Labels)
	}
	l := a1.Identity.Labels
	for _, want := range []labels.Label{
		{Source: "k8s", Key: "app", Value: "a"},
		{Source: "k8s", Key: "io.kubernetes.pod.namespace", Value: "x"},
		{Source: "k8s", Key: "io.cilium.k8s.namespace.labels.team", Value: "a"},
		{Source: "k8s", Key: "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", Value: "x"},
		{Source: "k8s", Key: "io.cilium.k8s.policy.serviceaccount", Value: "sa"},
		{Source: "k8s", Key: "io.cilium.k8s.policy.cluster", Value: "default"},
		{Source: "gen", Key: "io.cilium.k8s.named-ports", Value: "http.TCP.8080"},
	} {
		if v, ok := l.Get(want.Source, want.Key); !ok || v != want.Value {
			t.Errorf("label %s: got %q (present %v)", want, v, ok)
		}
	}
	if l.Has("k8s", "pod-template-hash") {
		t.Error("pod-template-hash must not be identity-relevant")
	}
	if v, _ := b.Identity.Labels.Get("k8s", "io.cilium.k8s.policy.serviceaccount"); v != "default" {
		t.Errorf("a pod's own io.cilium.k8s labels are stripped and the service account defaults to default: got %q", v)
	}
	if a1.Workload != "a" || a2.Workload != "a" {
		t.Errorf("workloads: %q %q", a1.Workload, a2.Workload)
	}
	if a1.Identity.ID < identity.MinCluster {
		t.Errorf("pod identity %d below %d", a1.Identity.ID, identity.MinCluster)
	}
	if a1.Identity.NamedPort("http", policy.ProtoTCP) != 8080 || a1.Identity.NamedPort("http", policy.ProtoUDP) != 0 {
		t.Error("named port http/TCP must resolve to 8080 and only for TCP")
	}
}

func TestResolvePeer(t *testing.T) {
	c := build(t, pods, Options{Policy: policy.DefaultOptions()})
	a1, _ := c.Endpoint("x/a-1")
	b, _ := c.Endpoint("y/b")
	cases := []struct {
		spec  string
		other *Endpoint
		kind  PeerKind
		id    identity.ID
		err   string
	}{
		{"x/a-1", nil, PeerPod, a1.Identity.ID, ""},
		{"10.0.0.2", nil, PeerPod, a1.Identity.ID, ""},
		{"host", a1, PeerHost, identity.Host, ""},
		{"node:n1", a1, PeerHost, identity.Host, ""},
		{"node:n1", b, PeerRemoteNode, identity.RemoteNode, ""},
		{"192.168.0.1", a1, PeerHost, identity.Host, ""},
		{"1.2.3.4", a1, PeerWorld, identity.World, ""}, // only InternalIP addresses are the node's
		{"host", nil, "", 0, "other end must be a pod"},
		{"node:n9", a1, "", 0, `no node "n9"`},
		{"x/nope", nil, "", 0, "no pod x/nope"},
		{"not-an-ip", nil, "", 0, "is not namespace/pod"},
	}
	for _, tc := range cases {
		p, err := c.ResolvePeer(tc.spec, tc.other)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || p.Kind != tc.kind || p.Identity.ID != tc.id {
			t.Errorf("%s: got %+v (%v), want kind %s identity %d", tc.spec, p, err, tc.kind, tc.id)
		}
	}
}

// TestNodesModeIdentities: under cidr-match-mode nodes each node has its own host and
// remote-node identities carrying its addresses (§2.7).
func TestNodesModeIdentities(t *testing.T) {
	c := build(t, pods, Options{Policy: policy.Options{CIDRMatch: policy.CIDRMatchMode{Nodes: true}, AllowLocalhost: true}})
	n := c.Nodes["n1"]
	if n.Host.ID != identity.Host || n.Remote.ID < identity.RemoteNodeScope || len(n.Host.Prefixes) != 1 || n.Host.Prefixes[0].String() != "192.168.0.1/32" {
		t.Errorf("node identities: host %+v remote %+v", n.Host, n.Remote)
	}
	b, _ := c.Endpoint("y/b")
	p, err := c.ResolvePeer("node:n1", b)
	if err != nil || p.Identity != n.Remote {
		t.Errorf("node:n1 from a pod on n2 must be n1's remote identity: %+v %v", p, err)
	}
}

func TestToServicesNote(t *testing.T) {
	c := build(t, pods+`---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: svc, namespace: x}
spec:
  endpointSelector: {}
  egress:
  - toServices: [{k8sService: {serviceName: db, namespace: x}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
`, Options{Policy: policy.DefaultOptions()})
	found := false
	for _, n := range c.Notes {
		if strings.Contains(n, "egress[0].toServices") && strings.Contains(n, "allows every peer") {
			found = true
		}
	}
	if !found {
		t.Errorf("notes: %v", c.Notes)
	}
}
