//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"sigs.k8s.io/yaml"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/cni"
	"github.com/netward/netward/cni/cnitest"
	"github.com/netward/netward/policy"
)

// Config is the node the harness builds. The defaults match testdata/cluster.
type Config struct {
	NodeName string       // node-1
	NodeIP   netip.Addr   // 192.168.50.1: the node's InternalIP, on its uplink
	LinkPeer netip.Addr   // 192.168.50.2: the outside router's end of the uplink
	World    netip.Addr   // 198.51.100.10: an outside address, behind the router
	Subnet   netip.Prefix // 10.244.1.0/24: the node's pod CIDR
}

func (c *Config) defaults() {
	if c.NodeName == "" {
		c.NodeName = "node-1"
	}
	if !c.NodeIP.IsValid() {
		c.NodeIP = netip.MustParseAddr("192.168.50.1")
	}
	if !c.LinkPeer.IsValid() {
		c.LinkPeer = netip.MustParseAddr("192.168.50.2")
	}
	if !c.World.IsValid() {
		c.World = netip.MustParseAddr("198.51.100.10")
	}
	if !c.Subnet.IsValid() {
		c.Subnet = netip.MustParsePrefix("10.244.1.0/24")
	}
}

// Pod is a pod the harness attached with the CNI plugin.
type Pod struct {
	Namespace, Name string
	ContainerID     string
	Netns           string // netns name
	IP              netip.Addr
	// Result is the plugin's ADD result (the runtime's prevResult for CHECK).
	Result []byte
}

// Key is "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Harness is one node of a cluster made of network namespaces:
//
//	world netns                     node netns                          pod netns (one per Pod)
//	  lo 198.51.100.10/32             <prefix>up 192.168.50.1/24          eth0 <pod IP>/32
//	  eth0 192.168.50.2/24 <--veth-->  198.51.100.0/24 via .2              (set up by netward-cni)
//	  default via 192.168.50.1        nw<11 hex> host veths, pod /32 routes
//
// Nothing is configured in the root netns. The world netns is the outside: a router with an
// address that is neither a pod nor a node.
type Harness struct {
	T      testing.TB
	Config Config
	Prefix string
	Dir    string

	// ManifestDir is what the agent and trace read: cluster/ and policies/.
	ManifestDir string
	PluginBin   string
	IPAMDir     string
	// AgentSocket is where the agent serves the endpoint API (the conflist's agentSocket).
	AgentSocket string
	NodeNetns   string // netns name
	WorldNetns  string // netns name
	Pods        []*Pod
	Prober      *Prober

	served map[string]map[[2]uint32]bool // place name -> served (proto, port)
}

var harnessSeq atomic.Int64

// New builds the node and world namespaces and the plugin binary. It skips (loudly) when not
// root.
func New(t testing.TB, cfg Config) *Harness {
	t.Helper()
	cnitest.RequireRoot(t)
	cfg.defaults()
	h := &Harness{
		T: t, Config: cfg, Dir: t.TempDir(),
		Prefix: fmt.Sprintf("nwe%d%02d", os.Getpid()%100000, harnessSeq.Add(1)%100),
		Prober: NewProber(), served: map[string]map[[2]uint32]bool{},
	}
	t.Cleanup(h.Prober.Close)
	h.ManifestDir = filepath.Join(h.Dir, "manifests")
	h.IPAMDir = filepath.Join(h.Dir, "ipam")
	h.AgentSocket = filepath.Join(h.Dir, "agent.sock")
	h.PluginBin = cnitest.BuildPlugin(t, filepath.Join(h.Dir, "bin"))
	for _, d := range []string{"cluster", "policies"} {
		if err := os.MkdirAll(filepath.Join(h.ManifestDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	h.NodeNetns, h.WorldNetns = h.Prefix+"node", h.Prefix+"world"
	cnitest.AddNetns(t, h.NodeNetns)
	cnitest.AddNetns(t, h.WorldNetns)
	up := h.Prefix + "up"
	ip := func(args ...string) { t.Helper(); cnitest.IP(t, args...) }
	ip("link", "add", up, "netns", h.NodeNetns, "type", "veth", "peer", "name", "eth0", "netns", h.WorldNetns)
	ip("-n", h.NodeNetns, "addr", "add", cfg.NodeIP.String()+"/24", "dev", up)
	ip("-n", h.NodeNetns, "link", "set", up, "up")
	ip("-n", h.WorldNetns, "addr", "add", cfg.LinkPeer.String()+"/24", "dev", "eth0")
	ip("-n", h.WorldNetns, "addr", "add", cfg.World.String()+"/32", "dev", "lo")
	ip("-n", h.WorldNetns, "link", "set", "eth0", "up")
	ip("-n", h.WorldNetns, "route", "add", "default", "via", cfg.NodeIP.String())
	ip("-n", h.NodeNetns, "route", "add", netip.PrefixFrom(cfg.World, 24).Masked().String(), "via", cfg.LinkPeer.String())
	if out, err := exec.Command("ip", "netns", "exec", h.NodeNetns, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward in the node netns: %v %s", err, out)
	}
	return h
}

// NodeNetnsPath is the node netns' path, for the agent's datapath.
func (h *Harness) NodeNetnsPath() string { return cnitest.NetnsPath(h.NodeNetns) }

// PluginConfig is the plugin's configuration, as a runtime passes it.
func (h *Harness) PluginConfig() []byte {
	return cnitest.PluginConfig("1.1.0", "netward", h.AgentSocket, h.Config.Subnet.String(), h.IPAMDir, nil)
}

// Conflist writes a conflist for this node (what deploy/10-netward.conflist is for a real
// node) and returns its path.
func (h *Harness) Conflist() string {
	b, _ := json.MarshalIndent(map[string]any{
		"cniVersion": "1.1.0", "name": "netward",
		"plugins": []any{map[string]any{"type": cni.PluginType, "agentSocket": h.AgentSocket, "subnet": h.Config.Subnet.String(), "ipamDataDir": h.IPAMDir, "mtu": 1500}},
	}, "", "  ")
	p := filepath.Join(h.Dir, "10-netward.conflist")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		h.T.Fatal(err)
	}
	return p
}

// copyDir copies the regular files of src into dst atomically file by file (write, rename)
// and removes files of dst that src does not have.
func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := writeAtomic(filepath.Join(dst, e.Name()), b); err != nil {
			return err
		}
		keep[e.Name()] = true
	}
	have, err := os.ReadDir(dst)
	if err != nil {
		return err
	}
	for _, e := range have {
		if !keep[e.Name()] {
			if err := os.Remove(filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// SetCluster installs the namespaces, nodes and pods of dir (testdata/cluster).
func (h *Harness) SetCluster(dir string) {
	h.T.Helper()
	if err := copyDir(dir, filepath.Join(h.ManifestDir, "cluster")); err != nil {
		h.T.Fatal(err)
	}
}

// SetPolicies replaces the policies with those of dir (each file atomically).
func (h *Harness) SetPolicies(dir string) {
	h.T.Helper()
	if err := copyDir(dir, filepath.Join(h.ManifestDir, "policies")); err != nil {
		h.T.Fatal(err)
	}
}

// Objects reads and validates the manifest directory.
func (h *Harness) Objects() (*api.Objects, error) {
	objs, errs := api.Load([]string{h.ManifestDir}, nil)
	verrs, _ := api.ValidateLenient(objs)
	errs = append(errs, verrs...)
	if len(errs) > 0 {
		var b strings.Builder
		for _, e := range errs {
			fmt.Fprintf(&b, "\n  %v", e)
		}
		return nil, fmt.Errorf("manifests in %s:%s", h.ManifestDir, b.String())
	}
	return objs, nil
}

// Cluster resolves the manifests as `netward trace` does with its default options.
func (h *Harness) Cluster() *cluster.Cluster {
	h.T.Helper()
	objs, err := h.Objects()
	if err != nil {
		h.T.Fatal(err)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: traceOptions()})
	if err != nil {
		h.T.Fatal(err)
	}
	if n, ok := c.Nodes[h.Config.NodeName]; !ok || !slices.Contains(n.IPs, h.Config.NodeIP) {
		h.T.Fatalf("the manifests must have Node %s with InternalIP %s (the node netns' address)", h.Config.NodeName, h.Config.NodeIP)
	}
	return c
}

// traceOptions are netward trace's default policy options (--cidr-match-mode "",
// --allow-localhost=true); the agent under test must run with the same.
func traceOptions() policy.Options {
	mode, _ := policy.ParseCIDRMatchMode("")
	return policy.Options{CIDRMatch: mode, AllowLocalhost: true}
}

// AddPods attaches every Pod of the manifests with the CNI plugin, exactly as a runtime
// does (ADD in the node netns, CNI_ARGS with the pod's namespace and name), then writes the
// allocated addresses into the Pod objects' status. The agent must be serving AgentSocket.
// The pods are detached (DEL) when the test ends. It returns when it began writing the
// manifests.
func (h *Harness) AddPods() time.Time {
	t := h.T
	t.Helper()
	objs, err := h.Objects()
	if err != nil {
		t.Fatal(err)
	}
	conf := h.PluginConfig()
	for i, o := range objs.Pods {
		p := &Pod{Namespace: o.Obj.Namespace, Name: o.Obj.Name, Netns: fmt.Sprintf("%sp%d", h.Prefix, i)}
		if p.Namespace == "" {
			p.Namespace = "default"
		}
		if o.Obj.Spec.NodeName != h.Config.NodeName {
			t.Fatalf("pod %s is on node %q: the harness has one node, %s", p.Key(), o.Obj.Spec.NodeName, h.Config.NodeName)
		}
		p.ContainerID = fmt.Sprintf("%s-%s-%s", h.Prefix, p.Namespace, p.Name)
		cnitest.AddNetns(t, p.Netns)
		inv := cnitest.Invocation{
			NodeNetns: h.NodeNetns, Plugin: h.PluginBin, Command: "ADD", ContainerID: p.ContainerID,
			Netns: cnitest.NetnsPath(p.Netns), IfName: "eth0", Config: conf,
			Args: fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s", p.Namespace, p.Name, p.ContainerID),
		}
		start := time.Now()
		r := inv.Run()
		if r.Err != nil {
			t.Fatalf("ADD of %s: %v", p.Key(), r.Err)
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
		t.Logf("pod %s: %s in netns %s (ADD %v)", p.Key(), p.IP, p.Netns, time.Since(start).Round(time.Millisecond))
		p.Result = r.Stdout
		h.Pods = append(h.Pods, p)
		t.Cleanup(func() {
			inv.Command = "DEL"
			if r := inv.Run(); r.Err != nil {
				t.Errorf("DEL of %s: %v", p.Key(), r.Err)
			}
		})
	}
	written := time.Now()
	h.writePodIPs()
	return written
}

// CheckPods runs the plugin's CHECK for every pod (with its ADD result as prevResult) and
// STATUS, as a runtime does: the attachments are intact and the agent has every endpoint.
func (h *Harness) CheckPods() {
	t := h.T
	t.Helper()
	for _, p := range h.Pods {
		var conf map[string]any
		json.Unmarshal(h.PluginConfig(), &conf)
		conf["prevResult"] = json.RawMessage(p.Result)
		b, _ := json.Marshal(conf)
		inv := cnitest.Invocation{NodeNetns: h.NodeNetns, Plugin: h.PluginBin, Command: "CHECK", ContainerID: p.ContainerID,
			Netns: cnitest.NetnsPath(p.Netns), IfName: "eth0", Config: b}
		if r := inv.Run(); r.Err != nil {
			t.Errorf("CHECK of %s: %v", p.Key(), r.Err)
		}
	}
	inv := cnitest.Invocation{NodeNetns: h.NodeNetns, Plugin: h.PluginBin, Command: "STATUS", Config: h.PluginConfig()}
	if r := inv.Run(); r.Err != nil {
		t.Errorf("STATUS: %v", r.Err)
	}
}

// writePodIPs sets status.podIP and status.podIPs of the attached pods in the manifests.
// Documents other than those Pods are left as they are.
func (h *Harness) writePodIPs() {
	t := h.T
	ips := map[string]netip.Addr{}
	for _, p := range h.Pods {
		ips[p.Key()] = p.IP
	}
	err := filepath.WalkDir(h.ManifestDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		docs := splitYAML(string(b))
		changed := false
		for i, doc := range docs {
			var m map[string]any
			if yaml.Unmarshal([]byte(doc), &m) != nil || m["kind"] != "Pod" {
				continue
			}
			meta, _ := m["metadata"].(map[string]any)
			ns, _ := meta["namespace"].(string)
			name, _ := meta["name"].(string)
			if ns == "" {
				ns = "default"
			}
			ip, ok := ips[ns+"/"+name]
			if !ok {
				continue
			}
			status, _ := m["status"].(map[string]any)
			if status == nil {
				status = map[string]any{}
			}
			status["podIP"] = ip.String()
			status["podIPs"] = []any{map[string]any{"ip": ip.String()}}
			m["status"] = status
			out, err := yaml.Marshal(m)
			if err != nil {
				return err
			}
			docs[i] = string(out)
			changed = true
		}
		if !changed {
			return nil
		}
		return writeAtomic(path, []byte(strings.Join(docs, "\n---\n")))
	})
	if err != nil {
		t.Fatalf("writing pod addresses into the manifests: %v", err)
	}
}

// splitYAML splits a multi-document YAML stream on "---" lines.
func splitYAML(s string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.TrimRight(line, " \t\r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	docs = append(docs, cur.String())
	return docs
}

// Places are the flow ends: every pod, the host (the node, at its InternalIP) and the world.
func (h *Harness) Places() []Place {
	var out []Place
	pods := slices.Clone(h.Pods)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Key() < pods[j].Key() })
	for _, p := range pods {
		out = append(out, Place{Name: p.Key(), Netns: cnitest.NetnsPath(p.Netns), Addr: p.IP})
	}
	out = append(out,
		Place{Name: "host", Netns: h.NodeNetnsPath(), Addr: h.Config.NodeIP},
		Place{Name: h.Config.World.String(), Netns: cnitest.NetnsPath(h.WorldNetns), Addr: h.Config.World})
	return out
}

// ControlPort is probed with every protocol in addition to the policies' ports: no policy
// names it.
const ControlPort = 7777

// PolicyPorts are the L4 ports the compiled policy maps of every endpoint name: exact ports,
// and both ends of port ranges, from entries of any protocol but ICMP. Named ports are
// resolved, because the maps are.
func PolicyPorts(c *cluster.Cluster) []uint16 {
	set := map[uint16]bool{ControlPort: true}
	for _, ep := range c.Endpoints {
		p := c.Policy(ep)
		if p.Map == nil {
			continue
		}
		for _, ke := range p.Map.Entries() {
			k := ke.Key
			if k.PrefixLen <= 8 || k.Proto == policy.ProtoICMP || k.Proto == policy.ProtoICMPv6 {
				continue
			}
			lo, hi := k.PortRange()
			set[lo], set[hi] = true, true
		}
	}
	out := make([]uint16, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Flow is one probe: from, to, protocol and port (ICMP: the echo request type, 8).
type Flow struct {
	From, To Place
	Proto    uint8
	Port     uint16
}

func (f Flow) String() string { return flowString(f.From, f.To, f.Proto, f.Port) }

// Flows are every ordered pair of places with a pod at one end at least, times every port
// with TCP, UDP and SCTP, plus an ICMP echo.
func (h *Harness) Flows(ports []uint16) []Flow {
	places := h.Places()
	isPod := func(p Place) bool { return strings.Contains(p.Name, "/") }
	var out []Flow
	for _, a := range places {
		for _, b := range places {
			if a.Name == b.Name || (!isPod(a) && !isPod(b)) {
				continue
			}
			for _, port := range ports {
				for _, proto := range []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP} {
					out = append(out, Flow{From: a, To: b, Proto: proto, Port: port})
				}
			}
			out = append(out, Flow{From: a, To: b, Proto: policy.ProtoICMP, Port: 8})
		}
	}
	return out
}

// Serve starts responders for every port of every flow's destination (once per place and
// port).
func (h *Harness) Serve(flows []Flow) {
	h.T.Helper()
	need := map[string]map[uint8][]uint16{}
	places := map[string]Place{}
	for _, f := range flows {
		if f.Proto == policy.ProtoICMP {
			continue
		}
		key := [2]uint32{uint32(f.Proto), uint32(f.Port)}
		if h.served[f.To.Name][key] {
			continue
		}
		if h.served[f.To.Name] == nil {
			h.served[f.To.Name] = map[[2]uint32]bool{}
		}
		h.served[f.To.Name][key] = true
		if need[f.To.Name] == nil {
			need[f.To.Name] = map[uint8][]uint16{}
		}
		need[f.To.Name][f.Proto] = append(need[f.To.Name][f.Proto], f.Port)
		places[f.To.Name] = f.To
	}
	for name, ports := range need {
		if err := h.Prober.Serve(places[name], ports); err != nil {
			h.T.Fatal(err)
		}
	}
}

// Result is a flow's verdict from trace and what the traffic did.
type Result struct {
	Flow     Flow
	Trace    *analysis.Result
	Observed Observation
	// Retried is set when a first probe saw no answer for a flow trace allows and a second
	// one got through (a lost packet, not a policy drop). A flow trace denies that got
	// through is never retried.
	Retried bool
}

// Match reports whether the traffic did what trace says.
func (r Result) Match() bool {
	want := Denied
	if r.Trace.Allowed {
		want = Allowed
	}
	return r.Observed.Outcome == want
}

// Expect traces every flow over c.
func Expect(c *cluster.Cluster, flows []Flow) ([]*analysis.Result, error) {
	out := make([]*analysis.Result, len(flows))
	for i, f := range flows {
		r, err := analysis.Trace(c, analysis.Flow{From: f.From.Name, To: f.To.Name, Proto: f.Proto, Port: f.Port})
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", f, err)
		}
		out[i] = r
	}
	return out, nil
}

// Run traces and probes every flow (concurrently, parallel probes at a time).
func (h *Harness) Run(c *cluster.Cluster, flows []Flow, parallel int) []Result {
	h.T.Helper()
	traces, err := Expect(c, flows)
	if err != nil {
		h.T.Fatal(err)
	}
	h.Serve(flows)
	out := make([]Result, len(flows))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(parallel, 1))
	for i, f := range flows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r := Result{Flow: f, Trace: traces[i], Observed: h.Prober.Probe(f.From, f.To, f.Proto, f.Port)}
			if r.Trace.Allowed && r.Observed.Outcome == Denied {
				r.Retried = true
				r.Observed = h.Prober.Probe(f.From, f.To, f.Proto, f.Port)
			}
			out[i] = r
		}()
	}
	wg.Wait()
	return out
}

// Report fails the test for every flow whose traffic differs from trace and logs a summary.
// It returns the number of mismatches.
func Report(t testing.TB, what string, results []Result) int {
	t.Helper()
	var bad []Result
	counts := map[string]int{}
	retried := 0
	for _, r := range results {
		counts[r.Trace.Verdict]++
		if r.Retried && r.Observed.Outcome == Allowed {
			retried++
		}
		if !r.Match() {
			bad = append(bad, r)
		}
	}
	t.Logf("%s: %d flows (trace: %d allow, %d deny), %d differ from trace, %d allowed flows needed a second probe",
		what, len(results), counts["allow"], counts["deny"], len(bad), retried)
	if len(bad) == 0 {
		return 0
	}
	var b bytes.Buffer
	for _, r := range bad {
		fmt.Fprintf(&b, "\n  %s: trace says %s, traffic %s", r.Flow, r.Trace.Verdict, r.Observed.Outcome)
		if r.Observed.Err != nil {
			fmt.Fprintf(&b, " (%v)", r.Observed.Err)
		}
		fmt.Fprintf(&b, "\n      trace: %s", r.Trace.Reason)
	}
	t.Errorf("%s: %d of %d flows differ from netward trace:%s", what, len(bad), len(results), b.String())
	return len(bad)
}

// WaitFor probes flows until each one's traffic matches its verdict in c, or timeout: how
// the harness knows the agent applied a change. It returns the flows still differing.
func (h *Harness) WaitFor(c *cluster.Cluster, flows []Flow, timeout time.Duration) []Result {
	h.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res := h.Run(c, flows, 16)
		var bad []Result
		for _, r := range res {
			if !r.Match() {
				bad = append(bad, r)
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			return bad
		}
		time.Sleep(200 * time.Millisecond)
	}
}
