//go:build linux

package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	current "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/netward/netward/agent"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/cni/cnitest"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/k8s"
	"github.com/netward/netward/k8s/kubetest"
	"github.com/netward/netward/policy"
)

// MultiNodeConfig is the cluster NewMultiNode builds.
type MultiNodeConfig struct {
	// Nodes is the number of nodes (default 3, at most 9): node-1 … node-N.
	Nodes int
	// AgentArgs are added to every agent's command line (e.g. --log-level debug), after
	// those of $NETWARD_E2E_AGENT_ARGS (space-separated; for debugging, or to check that the
	// tests fail against a broken agent, e.g. --audit).
	AgentArgs []string
	// PodCIDRBits is the size of every node's pod CIDR (default 24: 10.245.i.0/24; 22 gives
	// 10.245.4i.0/22, room for 1,022 pods a node).
	PodCIDRBits int
	// Overlay is "" for native routing (pod CIDRs routed via the nodes' fabric addresses,
	// feasibility 1b) or "vxlan": every node has vxlan0 (VNI 42, UDP 8472, head-end
	// replication to the other nodes) with 10.246.0.i/24, and the other nodes' pod CIDRs are
	// routed through it (feasibility 1c).
	Overlay string
}

// MultiNode is a cluster of network-namespace nodes driven by a real kube-apiserver:
//
//	fabric netns: bridge br0 ── veth ── node-i netns (eth0 192.168.100.i/24, pod CIDR 10.245.i.0/24,
//	                                      routes 10.245.j.0/24 via 192.168.100.j, ip_forward=1,
//	                                      host veths of its pods, netward agent i's datapath)
//	               └── veth ── world netns (eth0 192.168.100.200/24, routes to every pod CIDR)
//
// Native routing (feasibility 1b; or a VXLAN overlay, MultiNodeConfig.Overlay): pod
// addresses travel unchanged between nodes, so every node's datapath sees the real source
// and destination. Nothing is configured in the root
// netns. etcd + kube-apiserver run on loopback (kubetest); every node's agent is a `netward
// agent --kubeconfig` subprocess with its own socket, state and pin directories, and pods are
// network namespaces attached by the real CNI plugin to their node's agent, with Pod objects
// in the API whose status a kubelet emulation fills in (podIP, phase Running).
type MultiNode struct {
	T      testing.TB
	Prefix string
	Dir    string

	API  *kubetest.Env
	Kube kubernetes.Interface
	Dyn  dynamic.Interface
	// Clients are what k8s.List reads with.
	Clients *k8s.Clients

	FabricNetns string
	WorldNetns  string
	World       netip.Addr
	Nodes       []*MNode
	Pods        []*MNPod

	PluginBin  string
	NetwardBin string
	// H carries the prober and the responders (Harness.Run, Harness.WaitFor work on it).
	H *Harness

	cfg MultiNodeConfig
}

// MNode is one node: its network namespace, its agent and the agent's directories.
type MNode struct {
	Name   string
	Index  int // 1-based
	IP     netip.Addr
	Subnet netip.Prefix
	Netns  string // netns name

	Socket, IPAMDir, StateDir, PinDir string
	Client                            *agent.Client
	Agent                             *AgentProc
	// Removed is set by RemoveNode: the node's Node object and pods are gone.
	Removed bool
}

// MNPod is a pod attached with the CNI plugin on a node.
type MNPod struct {
	Pod
	Node     *MNode
	Labels   map[string]string
	inv      cnitest.Invocation
	attached bool
}

var multiNodeSeq atomic.Int64

// Fabric addresses.
var (
	fabricNet  = netip.MustParsePrefix("192.168.100.0/24")
	worldAddr  = netip.MustParseAddr("192.168.100.200")
	podNetBase = [2]byte{10, 245}
)

// NodeIP is node i's fabric address, 192.168.100.i.
func NodeIP(i int) netip.Addr {
	b := fabricNet.Addr().As4()
	b[3] = byte(i)
	return netip.AddrFrom4(b)
}

// OverlayIP is node i's address on the VXLAN overlay, 10.246.0.i.
func OverlayIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 246, 0, byte(i)}) }

// VXLANPackets are the packets node n sent and received on vxlan0.
func (m *MultiNode) VXLANPackets(n *MNode) (tx, rx uint64, err error) {
	out, err := exec.Command("ip", "-n", n.Netns, "-s", "-j", "link", "show", "vxlan0").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("ip -s link show vxlan0 in %s: %w", n.Netns, err)
	}
	var links []struct {
		Stats64 struct {
			RX, TX struct {
				Packets uint64 `json:"packets"`
			}
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, 0, fmt.Errorf("ip -s -j link show vxlan0: %v: %s", err, out)
	}
	return links[0].Stats64.TX.Packets, links[0].Stats64.RX.Packets, nil
}

// NodeSubnet is node i's pod CIDR: 10.245.i.0/24, or with bits < 24 the i-th prefix of that
// size in 10.245.0.0/16 (bits 22: 10.245.4i.0/22).
func NodeSubnet(i, bits int) netip.Prefix {
	if bits == 0 {
		bits = 24
	}
	third := i << (24 - bits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{podNetBase[0], podNetBase[1], byte(third), 0}), bits)
}

// NewMultiNode builds the fabric, the nodes and the world, starts etcd and kube-apiserver,
// installs the CRDs and creates the Node objects. It skips (loudly) when not root, without
// BTF, or when NETWARD_KUBE_APISERVER is unset. Agents are started by StartAgents.
func NewMultiNode(t testing.TB, cfg MultiNodeConfig) *MultiNode {
	t.Helper()
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 1 || cfg.Nodes > 9 {
		t.Fatalf("MultiNodeConfig.Nodes %d: want 1..9", cfg.Nodes)
	}
	if cfg.Overlay != "" && cfg.Overlay != "vxlan" {
		t.Fatalf("MultiNodeConfig.Overlay %q: want \"\" or vxlan", cfg.Overlay)
	}
	if cfg.PodCIDRBits != 0 && (cfg.PodCIDRBits < 20 || cfg.PodCIDRBits > 24) {
		t.Fatalf("MultiNodeConfig.PodCIDRBits %d: want 20..24", cfg.PodCIDRBits)
	}
	cnitest.RequireRoot(t)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		msg := "SKIPPED: no BTF (/sys/kernel/btf/vmlinux): the datapath cannot load"
		fmt.Fprintln(os.Stderr, "=== "+t.Name()+": "+msg)
		t.Skip(msg)
	}
	bin := kubetest.BinDir(t) // skips loudly without NETWARD_KUBE_APISERVER
	m := &MultiNode{
		T: t, Dir: t.TempDir(), cfg: cfg, World: worldAddr,
		Prefix: fmt.Sprintf("nwm%d%02d", os.Getpid()%100000, multiNodeSeq.Add(1)%100),
		H:      &Harness{T: t, Prober: NewProber(), served: map[string]map[[2]uint32]bool{}},
	}
	t.Cleanup(m.H.Prober.Close)

	// Binaries: the CNI plugin and netward itself (the agents are subprocesses).
	binDir := filepath.Join(m.Dir, "bin")
	m.PluginBin = cnitest.BuildPlugin(t, binDir)
	m.NetwardBin = filepath.Join(binDir, "netward")
	start := time.Now()
	if out, err := exec.Command("go", "build", "-o", m.NetwardBin, "github.com/netward/netward/cmd/netward").CombinedOutput(); err != nil {
		t.Fatalf("building netward: %v\n%s", err, out)
	}
	t.Logf("built netward and netward-cni in %v", time.Since(start).Round(time.Millisecond))

	m.buildTopology()

	start = time.Now()
	m.API = kubetest.Start(t, bin)
	var err error
	m.Clients, err = k8s.NewClients(m.API.Config, "multinode")
	if err != nil {
		t.Fatal(err)
	}
	m.Kube, m.Dyn = m.Clients.Kube, m.Clients.Dynamic
	InstallCRDs(t, m.API.Config)
	t.Logf("etcd + kube-apiserver up, CRDs installed in %v (%s)", time.Since(start).Round(time.Millisecond), m.API.Kubeconfig)
	for _, n := range m.Nodes {
		m.CreateNodeObject(n)
	}
	return m
}

func (m *MultiNode) buildTopology() {
	t := m.T
	ip := func(args ...string) { t.Helper(); cnitest.IP(t, args...) }
	sysctl := func(netns, kv string) {
		t.Helper()
		if out, err := exec.Command("ip", "netns", "exec", netns, "sysctl", "-qw", kv).CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s in %s: %v %s", kv, netns, err, out)
		}
	}
	m.FabricNetns = m.Prefix + "fab"
	cnitest.AddNetns(t, m.FabricNetns)
	ip("-n", m.FabricNetns, "link", "add", "br0", "type", "bridge")
	ip("-n", m.FabricNetns, "link", "set", "br0", "up")
	var links []string
	t.Cleanup(func() {
		// netns deletion is asynchronous: delete the fabric links explicitly.
		for _, l := range links {
			exec.Command("ip", "-n", m.FabricNetns, "link", "del", l).Run()
		}
	})
	attach := func(netns, fabLink string, addr netip.Addr) {
		t.Helper()
		ip("link", "add", fabLink, "netns", m.FabricNetns, "type", "veth", "peer", "name", "eth0", "netns", netns)
		links = append(links, fabLink)
		ip("-n", m.FabricNetns, "link", "set", fabLink, "master", "br0")
		ip("-n", m.FabricNetns, "link", "set", fabLink, "up")
		ip("-n", netns, "addr", "add", netip.PrefixFrom(addr, fabricNet.Bits()).String(), "dev", "eth0")
		ip("-n", netns, "link", "set", "eth0", "up")
	}
	for i := 1; i <= m.cfg.Nodes; i++ {
		n := &MNode{
			Name: fmt.Sprintf("node-%d", i), Index: i, IP: NodeIP(i), Subnet: NodeSubnet(i, m.cfg.PodCIDRBits),
			Netns: fmt.Sprintf("%sn%d", m.Prefix, i),
		}
		dir := filepath.Join(m.Dir, n.Name)
		n.Socket = filepath.Join(dir, "agent.sock")
		n.IPAMDir = filepath.Join(dir, "ipam")
		n.StateDir = filepath.Join(dir, "state")
		n.PinDir = filepath.Join("/sys/fs/bpf", fmt.Sprintf("netward-e2e-%s-%s", m.Prefix, n.Name))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		n.Client = agent.NewClient(n.Socket)
		cnitest.AddNetns(t, n.Netns)
		attach(n.Netns, fmt.Sprintf("%sf%d", m.Prefix, i), n.IP)
		sysctl(n.Netns, "net.ipv4.ip_forward=1")
		m.Nodes = append(m.Nodes, n)
	}
	for _, n := range m.Nodes {
		if m.cfg.Overlay == "vxlan" {
			ip("-n", n.Netns, "link", "add", "vxlan0", "type", "vxlan", "id", "42", "dstport", "8472",
				"local", n.IP.String(), "dev", "eth0", "nolearning")
			ip("-n", n.Netns, "addr", "add", OverlayIP(n.Index).String()+"/24", "dev", "vxlan0")
			ip("-n", n.Netns, "link", "set", "vxlan0", "up")
		}
		for _, o := range m.Nodes {
			if o == n {
				continue
			}
			if m.cfg.Overlay == "vxlan" {
				if out, err := exec.Command("bridge", "-n", n.Netns, "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan0", "dst", o.IP.String()).CombinedOutput(); err != nil {
					t.Fatalf("bridge fdb append in %s: %v %s", n.Netns, err, out)
				}
				ip("-n", n.Netns, "route", "add", o.Subnet.String(), "via", OverlayIP(o.Index).String(), "dev", "vxlan0")
				continue
			}
			ip("-n", n.Netns, "route", "add", o.Subnet.String(), "via", o.IP.String())
		}
	}
	m.WorldNetns = m.Prefix + "w"
	cnitest.AddNetns(t, m.WorldNetns)
	attach(m.WorldNetns, m.Prefix+"fw", m.World)
	for _, n := range m.Nodes {
		ip("-n", m.WorldNetns, "route", "add", n.Subnet.String(), "via", n.IP.String())
	}
}

// InstallCRDs creates netward's cilium.io/v2 CRDs (the embedded, generated ones) and waits
// until they are established.
func InstallCRDs(t testing.TB, cfg *rest.Config) {
	t.Helper()
	ext, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := k8s.EmbeddedCRDs()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, f := range k8s.CRDFiles {
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(crds[f], &crd); err != nil {
			t.Fatal(err)
		}
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crd, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("creating %s: %v", crd.Name, err)
		}
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s not established: %v", crd.Name, err)
		}
	}
}

// CreateNodeObject creates the Node object of n as a kubelet registers it: InternalIP = its
// fabric address, spec.podCIDR = its pod CIDR.
func (m *MultiNode) CreateNodeObject(n *MNode) {
	t := m.T
	t.Helper()
	ctx := context.Background()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux"}},
		Spec:       corev1.NodeSpec{PodCIDR: n.Subnet.String(), PodCIDRs: []string{n.Subnet.String()}},
	}
	created, err := m.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Node %s: %v", n.Name, err)
	}
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP.String()}, {Type: corev1.NodeHostName, Address: n.Name}}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := m.Kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("Node %s status: %v", n.Name, err)
	}
}

// AgentArgs is the command line of n's agent.
func (m *MultiNode) AgentArgs(n *MNode) []string {
	return append([]string{"agent",
		"--kubeconfig", m.API.Kubeconfig, "--node", n.Name, "--node-netns", n.Netns,
		"--api-socket", n.Socket, "--state-dir", n.StateDir, "--pin-dir", n.PinDir,
		// No TCP metrics listener: /metrics is on the socket, and agents would fight over the port.
		"--metrics-addr", "",
		// netward trace's defaults (traceOptions), spelled out.
		"--cidr-match-mode", "", "--allow-localhost=true",
	}, append(strings.Fields(os.Getenv("NETWARD_E2E_AGENT_ARGS")), m.cfg.AgentArgs...)...)
}

// StartAgents starts every node's agent and waits until each answers /healthz.
func (m *MultiNode) StartAgents() {
	t := m.T
	t.Helper()
	for _, n := range m.Nodes {
		os.RemoveAll(n.PinDir)
		pin := n.PinDir
		t.Cleanup(func() { os.RemoveAll(pin) }) // after the agent's stop (cleanups run LIFO)
		n.Agent = &AgentProc{Bin: m.NetwardBin, Args: m.AgentArgs(n), Dir: filepath.Dir(n.Socket), Name: n.Name, Client: n.Client}
		ag := n.Agent
		t.Cleanup(func() {
			if err := ag.Stop(); err != nil {
				t.Errorf("%s: %v", ag.Name, err)
			}
			if t.Failed() {
				t.Log(ag.LogTail(120))
			}
		})
		if err := ag.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range m.Nodes {
		if err := n.Agent.WaitHealthy(30 * time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", n.Name, err, n.Agent.LogTail(60))
		}
	}
}

// Node returns the node of that name.
func (m *MultiNode) Node(name string) *MNode {
	for _, n := range m.Nodes {
		if n.Name == name {
			return n
		}
	}
	m.T.Fatalf("no node %s", name)
	return nil
}

// CreateNamespace creates a Namespace with labels.
func (m *MultiNode) CreateNamespace(name string, labels map[string]string) {
	m.T.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := m.Kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		m.T.Fatalf("namespace %s: %v", name, err)
	}
}

// PodSpec describes a pod of the test cluster.
type PodSpec struct {
	Namespace, Name, Node string
	Labels                map[string]string
	Ports                 []corev1.ContainerPort
}

// PodObject is the Pod object of a spec, as a controller would create it (already
// scheduled: spec.nodeName is set, no scheduler runs).
func PodObject(s PodSpec) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      s.Node,
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "c", Image: "registry.local/netward-e2e:probe", Ports: s.Ports}},
		},
	}
}

// AddPod creates the Pod object, attaches a network namespace with the CNI plugin on the
// pod's node (ADD in the node netns, as a runtime does; the agent must run) and then writes
// the pod's address and phase Running into its status through the status subresource, as
// the kubelet does.
func (m *MultiNode) AddPod(s PodSpec) *MNPod {
	t := m.T
	t.Helper()
	ctx := context.Background()
	n := m.Node(s.Node)
	if _, err := m.Kube.CoreV1().Pods(s.Namespace).Create(ctx, PodObject(s), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Pod %s/%s: %v", s.Namespace, s.Name, err)
	}
	p := &MNPod{Node: n, Labels: s.Labels, Pod: Pod{Namespace: s.Namespace, Name: s.Name, Netns: fmt.Sprintf("%sp%d", m.Prefix, len(m.Pods))}}
	p.ContainerID = fmt.Sprintf("%s-%s-%s", m.Prefix, p.Namespace, p.Name)
	cnitest.AddNetns(t, p.Netns)
	p.inv = cnitest.Invocation{
		NodeNetns: n.Netns, Plugin: m.PluginBin, Command: "ADD", ContainerID: p.ContainerID,
		Netns: cnitest.NetnsPath(p.Netns), IfName: "eth0",
		Config: cnitest.PluginConfig("1.1.0", "netward", n.Socket, n.Subnet.String(), n.IPAMDir, nil),
		Args:   fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s", p.Namespace, p.Name, p.ContainerID),
	}
	r := p.inv.Run()
	if r.Err != nil {
		t.Fatalf("ADD of %s on %s: %v\n%s", p.Key(), n.Name, r.Err, n.Agent.LogTail(40))
	}
	res, err := current.NewResult(r.Stdout)
	if err != nil {
		t.Fatalf("ADD of %s: result %s: %v", p.Key(), r.Stdout, err)
	}
	cur := res.(*current.Result)
	if len(cur.IPs) != 1 {
		t.Fatalf("ADD of %s: result %s", p.Key(), r.Stdout)
	}
	p.IP, _ = netip.AddrFromSlice(cur.IPs[0].Address.IP.To4())
	if !n.Subnet.Contains(p.IP) {
		t.Fatalf("ADD of %s on %s: address %s outside the node's pod CIDR %s", p.Key(), n.Name, p.IP, n.Subnet)
	}
	p.Result = r.Stdout
	p.attached = true
	m.Pods = append(m.Pods, p)
	t.Cleanup(func() {
		if err := m.DetachPod(p); err != nil {
			t.Errorf("%v", err)
		}
	})
	if err := m.SetPodRunning(ctx, s.Namespace, s.Name, n, p.IP); err != nil {
		t.Fatal(err)
	}
	return p
}

// DetachPod runs the plugin's DEL for p (on its node; the node's agent should run).
func (m *MultiNode) DetachPod(p *MNPod) error {
	if !p.attached {
		return nil
	}
	inv := p.inv
	inv.Command = "DEL"
	if r := inv.Run(); r.Err != nil {
		return fmt.Errorf("DEL of %s on %s: %v", p.Key(), p.Node.Name, r.Err)
	}
	p.attached = false
	return nil
}

// SetPodRunning is the kubelet's status update after the sandbox is up: phase Running, the
// pod's address, the node's address, Ready.
func (m *MultiNode) SetPodRunning(ctx context.Context, ns, name string, n *MNode, ip netip.Addr) error {
	now := metav1.Now().UTC().Format(time.RFC3339)
	patch := map[string]any{"status": map[string]any{
		"phase": "Running", "podIP": ip.String(), "podIPs": []any{map[string]any{"ip": ip.String()}},
		"hostIP": n.IP.String(), "hostIPs": []any{map[string]any{"ip": n.IP.String()}},
		"startTime":  now,
		"conditions": []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": now}},
	}}
	b, _ := json.Marshal(patch)
	if _, err := m.Kube.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("status of Pod %s/%s (kubelet emulation): %w", ns, name, err)
	}
	return nil
}

// Apply is `kubectl apply --server-side` of one or more YAML documents (any kind, through
// the dynamic client; field validation Strict, as kubectl does).
func (m *MultiNode) Apply(ctx context.Context, manifests string) error {
	for _, doc := range splitYAML(manifests) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvr, namespaced, err := resourceOf(obj.GetAPIVersion(), obj.GetKind())
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = m.Dyn.Resource(gvr)
		if namespaced {
			ri = m.Dyn.Resource(gvr).Namespace(obj.GetNamespace())
		}
		if _, err := ri.Apply(ctx, obj.GetName(), &obj, metav1.ApplyOptions{FieldManager: "netward-e2e", Force: true}); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return nil
}

func resourceOf(apiVersion, kind string) (schema.GroupVersionResource, bool, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionResource{}, false, err
	}
	switch kind {
	case "NetworkPolicy":
		return gv.WithResource("networkpolicies"), true, nil
	case api.KindCNP:
		return k8s.CNPResource, true, nil
	case api.KindCCNP:
		return k8s.CCNPResource, false, nil
	case "Namespace":
		return gv.WithResource("namespaces"), false, nil
	case "Pod":
		return gv.WithResource("pods"), true, nil
	}
	return schema.GroupVersionResource{}, false, fmt.Errorf("apply: kind %s not handled", kind)
}

// SetPodLabels replaces a pod's labels (`kubectl label --overwrite`, as a merge patch).
func (m *MultiNode) SetPodLabels(ctx context.Context, ns, name string, labels map[string]string) error {
	cur, err := m.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	set := map[string]any{}
	for k := range cur.Labels {
		set[k] = nil
	}
	for k, v := range labels {
		set[k] = v
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": set}})
	if _, err := m.Kube.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		return err
	}
	for _, p := range m.Pods {
		if p.Namespace == ns && p.Name == name {
			p.Labels = labels
		}
	}
	return nil
}

// Objects reads the cluster back from the API (k8s.List) and validates it as every agent
// does: policies that fail validation are returned apart and left out of the objects (the
// agents enforce the others and report the error in the policy's status). Any other
// problem fails the test.
func (m *MultiNode) Objects(ctx context.Context) (*api.Objects, []*api.ObjectError) {
	t := m.T
	t.Helper()
	objs, err := k8s.List(ctx, m.Clients)
	if err != nil {
		t.Fatalf("k8s.List: %v", err)
	}
	var invalid []*api.ObjectError
	bad := map[string]bool{}
	for _, err := range api.Validate(objs) {
		var oe *api.ObjectError
		if !errors.As(err, &oe) || (oe.Kind != api.KindCNP && oe.Kind != api.KindCCNP && oe.Kind != "NetworkPolicy") {
			t.Fatalf("the cluster read back from the API is invalid: %v", err)
		}
		invalid = append(invalid, oe)
		bad[oe.Kind+"/"+oe.Namespace+"/"+oe.Name] = true
	}
	keep := func(kind, ns, name string) bool { return !bad[kind+"/"+ns+"/"+name] }
	objs.CNPs = slices.DeleteFunc(objs.CNPs, func(o api.Object[api.CiliumNetworkPolicy]) bool {
		return !keep(api.KindCNP, o.Obj.Namespace, o.Obj.Name)
	})
	objs.CCNPs = slices.DeleteFunc(objs.CCNPs, func(o api.Object[api.CiliumClusterwideNetworkPolicy]) bool {
		return !keep(api.KindCCNP, "", o.Obj.Name)
	})
	objs.NetworkPolicies = slices.DeleteFunc(objs.NetworkPolicies, func(o api.Object[networkingv1.NetworkPolicy]) bool {
		return !keep("NetworkPolicy", o.Obj.Namespace, o.Obj.Name)
	})
	return objs, invalid
}

// Cluster resolves the cluster read back from the API as netward trace does (its default
// options), without the invalid policies (see Objects).
func (m *MultiNode) Cluster(ctx context.Context) *cluster.Cluster {
	m.T.Helper()
	objs, _ := m.Objects(ctx)
	c, err := cluster.Build(objs, cluster.Options{Policy: traceOptions()})
	if err != nil {
		m.T.Fatalf("cluster.Build of the API's objects: %v", err)
	}
	return c
}

// Places are the attached pods (sorted), the nodes ("node:NAME" at their fabric address:
// the host for their own pods, a remote node for the others) and the world.
func (m *MultiNode) Places() []Place {
	var out []Place
	pods := slices.Clone(m.Pods)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Key() < pods[j].Key() })
	for _, p := range pods {
		if p.attached && !p.Node.Removed {
			out = append(out, p.Place())
		}
	}
	for _, n := range m.Nodes {
		if !n.Removed {
			out = append(out, n.Place())
		}
	}
	return append(out, Place{Name: m.World.String(), Netns: cnitest.NetnsPath(m.WorldNetns), Addr: m.World})
}

// Place is the node as a flow end, for trace "node:NAME".
func (n *MNode) Place() Place {
	return Place{Name: "node:" + n.Name, Netns: cnitest.NetnsPath(n.Netns), Addr: n.IP}
}

// Place is the pod as a flow end.
func (p *MNPod) Place() Place {
	return Place{Name: p.Key(), Netns: cnitest.NetnsPath(p.Netns), Addr: p.IP}
}

// AllFlows are every ordered pair of places with an endpoint at one end (isEndpoint), times
// every port with each of protos, plus an ICMP echo when withICMP.
func AllFlows(places []Place, isEndpoint func(Place) bool, ports []uint16, protos []uint8, withICMP bool) []Flow {
	var out []Flow
	for _, a := range places {
		for _, b := range places {
			if a.Name == b.Name || (!isEndpoint(a) && !isEndpoint(b)) {
				continue
			}
			for _, port := range ports {
				for _, proto := range protos {
					out = append(out, Flow{From: a, To: b, Proto: proto, Port: port})
				}
			}
			if withICMP {
				out = append(out, Flow{From: a, To: b, Proto: policy.ProtoICMP, Port: 8})
			}
		}
	}
	return out
}

// IsPodPlace says whether a place is a pod ("ns/name").
func IsPodPlace(p Place) bool { return strings.Contains(p.Name, "/") }

// Revisions are the agents' policy revisions (GET /v1/status) of the nodes whose agent runs.
func (m *MultiNode) Revisions(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, n := range m.Nodes {
		if n.Removed || n.Agent == nil || !n.Agent.Running() {
			continue
		}
		st, err := n.Client.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		out[n.Name] = st.PolicyRevision
	}
	return out, nil
}

// AgentsSettled says what is still missing ("" when nothing) for every running agent: it is
// healthy, enforces its current state, its revision is above since[node] (when given), and
// it has exactly the attached pods of its node as endpoints, each enforcing, each known.
func (m *MultiNode) AgentsSettled(ctx context.Context, since map[string]uint64) string {
	for _, n := range m.Nodes {
		if n.Removed || n.Agent == nil || !n.Agent.Running() {
			continue
		}
		if _, ok, err := n.Client.Health(ctx); err != nil || !ok {
			return fmt.Sprintf("%s: not healthy (%v)", n.Name, err)
		}
		st, err := n.Client.Status(ctx)
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Name, err)
		}
		if st.Enforcing != "current" {
			return fmt.Sprintf("%s: enforcing %q", n.Name, st.Enforcing)
		}
		if r, ok := since[n.Name]; ok && st.PolicyRevision <= r {
			return fmt.Sprintf("%s: revision %d, waiting for > %d", n.Name, st.PolicyRevision, r)
		}
		eps, err := n.Client.Endpoints(ctx)
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Name, err)
		}
		want := map[string]bool{}
		for _, p := range m.Pods {
			if p.Node == n && p.attached {
				want[p.Key()] = true
			}
		}
		if len(eps) != len(want) {
			return fmt.Sprintf("%s: %d endpoints, %d pods attached", n.Name, len(eps), len(want))
		}
		for _, e := range eps {
			if !want[e.Pod] || e.State != "enforcing" || !e.KnownPod {
				return fmt.Sprintf("%s: endpoint %s: state %s, known pod %v, %s", n.Name, e.Pod, e.State, e.KnownPod, e.Error)
			}
		}
	}
	return ""
}

// WaitAgents waits until AgentsSettled says nothing is missing.
func (m *MultiNode) WaitAgents(ctx context.Context, since map[string]uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		last := m.AgentsSettled(ctx, since)
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agents not settled after %v: %s", timeout, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// LiveNodes are the names of the nodes that are not removed and whose agent runs.
func (m *MultiNode) LiveNodes() []string {
	var out []string
	for _, n := range m.Nodes {
		if !n.Removed && n.Agent != nil && n.Agent.Running() {
			out = append(out, n.Name)
		}
	}
	return out
}

// PolicyStatuses reads the status of every CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy, keyed "Kind ns/name" (k8s.PolicyRef.String()).
func (m *MultiNode) PolicyStatuses(ctx context.Context) (map[string]k8s.PolicyStatus, error) {
	out := map[string]k8s.PolicyStatus{}
	for _, kind := range []string{api.KindCNP, api.KindCCNP} {
		gvr := k8s.CNPResource
		if kind == api.KindCCNP {
			gvr = k8s.CCNPResource
		}
		list, err := m.Dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, it := range list.Items {
			st, err := k8s.ReadPolicyStatus(it.Object)
			if err != nil {
				return nil, fmt.Errorf("%s %s/%s: %w", kind, it.GetNamespace(), it.GetName(), err)
			}
			out[k8s.PolicyRef{Kind: kind, Namespace: it.GetNamespace(), Name: it.GetName()}.String()] = st
		}
	}
	return out, nil
}

// StatusProblem says what is wrong with the status of the Cilium policies ("" when
// nothing), given the invalid policies (from Objects) and the live nodes:
//   - a valid policy has condition Valid=True and, for every live node, ok, enforcing and
//     no error; when changedSince names it, the node's localPolicyRevision is above
//     changedSince[node] (the node realized the new version);
//   - an invalid policy has Valid=False with exactly the validation error (k8s.StatusMessage
//     of the error the test computes itself) and, for every live node, not ok and an error.
func (m *MultiNode) StatusProblem(ctx context.Context, invalid []*api.ObjectError, nodes []string, changed map[string]bool, since map[string]uint64) string {
	sts, err := m.PolicyStatuses(ctx)
	if err != nil {
		return err.Error()
	}
	inv := map[string]*api.ObjectError{}
	for _, oe := range invalid {
		inv[k8s.PolicyRef{Kind: oe.Kind, Namespace: oe.Namespace, Name: oe.Name}.String()] = oe
	}
	refs := make([]string, 0, len(sts))
	for r := range sts {
		refs = append(refs, r)
	}
	slices.Sort(refs)
	for _, ref := range refs {
		st := sts[ref]
		var valid *k8s.PolicyCondition
		for i := range st.Conditions {
			if st.Conditions[i].Type == k8s.ConditionValid {
				valid = &st.Conditions[i]
			}
		}
		if oe, ok := inv[ref]; ok {
			want := k8s.StatusMessage(oe)
			if valid == nil || valid.Status != corev1.ConditionFalse || valid.Message != want {
				return fmt.Sprintf("%s (invalid): condition Valid %+v, want False with %q", ref, valid, want)
			}
			for _, n := range nodes {
				e, ok := st.Nodes[n]
				if !ok || e.OK || e.Error == "" || e.Enforcing {
					return fmt.Sprintf("%s (invalid): status.nodes.%s = %+v (present %v), want not ok with an error", ref, n, e, ok)
				}
			}
			continue
		}
		if valid == nil || valid.Status != corev1.ConditionTrue {
			return fmt.Sprintf("%s: condition Valid %+v, want True", ref, valid)
		}
		for _, n := range nodes {
			e, ok := st.Nodes[n]
			if !ok || !e.OK || !e.Enforcing || e.Error != "" {
				return fmt.Sprintf("%s: status.nodes.%s = %+v (present %v), want ok and enforcing", ref, n, e, ok)
			}
			if changed[ref] && e.Revision <= since[n] {
				return fmt.Sprintf("%s: status.nodes.%s.localPolicyRevision %d, waiting for > %d (the new version)", ref, n, e.Revision, since[n])
			}
		}
	}
	for ref := range inv {
		if _, ok := sts[ref]; !ok && strings.HasPrefix(ref, "Cilium") {
			return fmt.Sprintf("%s: not in the API", ref)
		}
	}
	return ""
}

// WaitStatus waits until StatusProblem says nothing.
func (m *MultiNode) WaitStatus(ctx context.Context, invalid []*api.ObjectError, changed map[string]bool, since map[string]uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		last := m.StatusProblem(ctx, invalid, m.LiveNodes(), changed, since)
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("policy status not as expected after %v: %s", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// IPCacheIdentity looks addr up in a node's pinned ipcache map the way the datapath does
// (longest prefix match); ok is false when no prefix covers it (the datapath then uses
// identity.World).
func (n *MNode) IPCacheIdentity(addr netip.Addr) (identity.ID, bool, error) {
	mp, err := ebpf.LoadPinnedMap(filepath.Join(n.PinDir, "ipcache"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, false, err
	}
	defer mp.Close()
	b := addr.As4()
	key := struct {
		Prefixlen uint32
		IP        uint32
	}{32, binary.NativeEndian.Uint32(b[:])}
	var val struct{ Identity, Flags uint32 }
	if err := mp.Lookup(&key, &val); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return identity.World, false, nil
		}
		return 0, false, err
	}
	return identity.ID(val.Identity), true, nil
}

// IPCacheHasHost says whether a node's pinned ipcache has an entry for exactly addr/32.
func (n *MNode) IPCacheHasHost(addr netip.Addr) (bool, error) {
	mp, err := ebpf.LoadPinnedMap(filepath.Join(n.PinDir, "ipcache"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return false, err
	}
	defer mp.Close()
	b := addr.As4()
	want := binary.NativeEndian.Uint32(b[:])
	var key struct {
		Prefixlen uint32
		IP        uint32
	}
	var val struct{ Identity, Flags uint32 }
	it := mp.Iterate()
	for it.Next(&key, &val) {
		if key.Prefixlen == 32 && key.IP == want {
			return true, nil
		}
	}
	return false, it.Err()
}

// AgentProc runs `netward agent` as a child process, logging to files in Dir.
type AgentProc struct {
	Bin    string
	Args   []string
	Dir    string
	Name   string
	Client *agent.Client

	mu   sync.Mutex
	runs int
	cmd  *exec.Cmd
	done chan struct{}
	Logs []string
}

// Start starts a new process. It gets SIGKILL when the thread that forked it dies
// (Pdeathsig), so the fork happens on a thread locked for as long as the process runs: if
// the test binary dies, so does the agent. The thread is unlocked, never ended, afterwards.
func (p *AgentProc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs++
	logPath := filepath.Join(p.Dir, fmt.Sprintf("agent-%d.log", p.runs))
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	p.Logs = append(p.Logs, logPath)
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Locked while the agent runs, so that the thread that forked it lives as long.
		// Unlocked, not ended, when it has exited: this thread may be the one that forked
		// etcd and kube-apiserver (kubetest forks them with Pdeathsig on whatever thread the
		// test runs on, and this goroutine often starts on that thread); a locked goroutine
		// that returns ends its thread, which would SIGKILL them.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		defer f.Close()
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("starting the agent of %s: %w", p.Name, err)
			return
		}
		started <- nil
		cmd.Wait()
	}()
	if err := <-started; err != nil {
		return err
	}
	p.cmd, p.done = cmd, done
	return nil
}

// Running says whether the process runs.
func (p *AgentProc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// WaitHealthy waits until /healthz answers 200 on the socket.
func (p *AgentProc) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		if !p.Running() {
			return fmt.Errorf("agent of %s exited: %v", p.Name, p.cmd.ProcessState)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		body, ok, err := p.Client.Health(ctx)
		cancel()
		if ok {
			return nil
		}
		last = fmt.Sprintf("%q %v", body, err)
		if time.Now().After(deadline) {
			return fmt.Errorf("agent of %s not healthy after %v: %s", p.Name, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the process id of the current (or last) run.
func (p *AgentProc) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits until the process is gone, killed by that signal.
func (p *AgentProc) Kill() error {
	if !p.Running() {
		return fmt.Errorf("agent of %s is not running: %v", p.Name, p.cmd.ProcessState)
	}
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 the agent of %s: %w", p.Name, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("agent of %s still running 10 s after SIGKILL", p.Name)
	}
	if ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return fmt.Errorf("agent of %s: %v, want killed by SIGKILL", p.Name, p.cmd.ProcessState)
	}
	return nil
}

// Stop ends a running agent with SIGTERM, SIGKILL after 10 s; an exit status other than 0
// is an error.
func (p *AgentProc) Stop() error {
	if !p.Running() {
		return nil
	}
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			return fmt.Errorf("agent of %s stopped with SIGTERM: %v", p.Name, p.cmd.ProcessState)
		}
		return nil
	case <-time.After(10 * time.Second):
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("agent of %s ignored SIGTERM for 10 s; killed", p.Name)
	}
}

// LogTail returns the last n lines of every run's log.
func (p *AgentProc) LogTail(n int) string {
	var b strings.Builder
	for _, path := range p.Logs {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", path, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s, %s (last %d lines):\n%s\n", p.Name, path, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}
