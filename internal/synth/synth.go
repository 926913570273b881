package synth

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netward/netward/api"
)

// Mix is the relative weight of each policy kind. The zero Mix means DefaultMix.
type Mix struct {
	KNP, CNP, CCNP float64
}

// DefaultMix is roughly 40% NetworkPolicy, 45% CiliumNetworkPolicy, 15%
// CiliumClusterwideNetworkPolicy.
func DefaultMix() Mix { return Mix{KNP: 0.40, CNP: 0.45, CCNP: 0.15} }

// Config says what to generate. Counts are exact: Generate returns exactly Namespaces
// namespaces (kube-system and monitoring among them), Pods pods (two kube-dns pods and one
// prometheus pod among them), Nodes nodes and Policies policy objects split by Mix.
type Config struct {
	Seed       uint64
	Namespaces int // at least 3: kube-system, monitoring and one application namespace
	Pods       int // at least 3: two kube-dns pods and prometheus
	Policies   int
	Nodes      int // 1 to 4096 (each node has a /20 of pod addresses)
	Mix        Mix
}

// Sized returns a config with the given pods and policies and a proportionate number of
// namespaces (about 50 pods each) and nodes (about 100 pods each), seed 1, default mix.
func Sized(pods, policies int) Config {
	return Config{
		Seed:       1,
		Namespaces: clamp(pods/50, 5, 1000),
		Pods:       pods,
		Policies:   policies,
		Nodes:      clamp(pods/100, 2, 1000),
	}
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }

// Check reports whether the config can be generated.
func (c Config) Check() error {
	switch {
	case c.Namespaces < 3:
		return fmt.Errorf("synth: Namespaces must be at least 3 (kube-system, monitoring, one application namespace), got %d", c.Namespaces)
	case c.Pods < 3:
		return fmt.Errorf("synth: Pods must be at least 3 (two kube-dns pods and prometheus), got %d", c.Pods)
	case c.Nodes < 1 || c.Nodes > maxNodes:
		return fmt.Errorf("synth: Nodes must be 1 to %d, got %d", maxNodes, c.Nodes)
	case c.Policies < 0:
		return fmt.Errorf("synth: Policies must not be negative, got %d", c.Policies)
	case c.Mix.KNP < 0 || c.Mix.CNP < 0 || c.Mix.CCNP < 0:
		return fmt.Errorf("synth: Mix weights must not be negative, got %+v", c.Mix)
	case c.Pods > c.Nodes*podsPerNode:
		return fmt.Errorf("synth: %d pods do not fit on %d nodes (%d addresses each)", c.Pods, c.Nodes, podsPerNode)
	}
	return nil
}

// KindCounts returns how many policies of each kind Generate makes: Policies split by Mix
// (largest remainder), with at least one of each kind with a positive weight when there are
// enough policies.
func (c Config) KindCounts() (knp, cnp, ccnp int) {
	m := c.Mix
	if m == (Mix{}) {
		m = DefaultMix()
	}
	n := apportion(c.Policies, []float64{m.KNP, m.CNP, m.CCNP})
	if c.Policies >= 3 {
		for i, w := range []float64{m.KNP, m.CNP, m.CCNP} {
			if w > 0 && n[i] == 0 {
				// take one from the largest
				j := 0
				for k := range n {
					if n[k] > n[j] {
						j = k
					}
				}
				n[j]--
				n[i]++
			}
		}
	}
	return n[0], n[1], n[2]
}

// apportion splits total by weights, exactly, by largest remainder (ties to the lower index).
func apportion(total int, weights []float64) []int {
	out := make([]int, len(weights))
	sum := 0.0
	for _, w := range weights {
		sum += w
	}
	if total <= 0 || sum <= 0 {
		return out
	}
	rem := make([]float64, len(weights))
	given := 0
	for i, w := range weights {
		q := float64(total) * w / sum
		out[i] = int(q)
		rem[i] = q - float64(out[i])
		given += out[i]
	}
	for ; given < total; given++ {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		out[best]++
		rem[best] = -1
	}
	return out
}

const (
	maxNodes    = 4096
	podsPerNode = 4094 // a /20 of pod addresses per node, minus network and gateway
	// SourceFile is the Source.File of generated objects; Source.Doc is the object's
	// document index in the output of Marshal.
	SourceFile = "synth"
)

// Generate returns a synthetic cluster. It panics when cfg.Check fails.
func Generate(cfg Config) *api.Objects {
	if err := cfg.Check(); err != nil {
		panic(err)
	}
	g := &gen{
		cfg:   cfg,
		r:     rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)),
		objs:  &api.Objects{},
		names: map[string]bool{},
		bases: map[string]bool{},
	}
	g.makeNodes()
	g.makeNamespaces()
	g.makePods()
	g.makePolicies()
	g.number()
	return g.objs
}

type gen struct {
	cfg   Config
	r     *rand.Rand
	objs  *api.Objects
	nodes []*nodeInfo
	// kubeSystem, monitoring, then apps.
	kubeSystem, monitoring *nsInfo
	apps                   []*nsInfo
	names                  map[string]bool // names given, per kind and namespace
	bases                  map[string]bool // base names claimed, per kind and namespace
	force                  bool            // claim accepts a base name already used
}

type nodeInfo struct {
	name string
	ip   netip.Addr
	idx  int
	used int
}

type nsInfo struct {
	name, team, env string
	workloads       []*workload
	denyAllEgress   bool
}

type portSpec struct {
	name  string
	port  int32
	proto corev1.Protocol
}

type appKind struct {
	name     string
	tier     string
	image    string
	ports    []portSpec
	stateful bool
}

type workload struct {
	ns    *nsInfo
	app   string
	kind  *appKind
	ports []portSpec
}

func tcp(name string, port int32) portSpec { return portSpec{name, port, corev1.ProtocolTCP} }

var appKinds = []appKind{
	{name: "api", tier: "backend", image: "registry.example.com/api:1.8", ports: []portSpec{tcp("http", 8080), tcp("grpc", 9000), tcp("metrics", 9090)}},
	{name: "web", tier: "frontend", image: "nginx:1.27", ports: []portSpec{tcp("http", 8080), tcp("metrics", 9090)}},
	{name: "gateway", tier: "frontend", image: "envoyproxy/envoy:v1.32", ports: []portSpec{tcp("https", 8443), tcp("http", 8080), tcp("admin", 9901)}},
	{name: "auth", tier: "backend", image: "registry.example.com/auth:2.1", ports: []portSpec{tcp("grpc", 9000), tcp("metrics", 9090)}},
	{name: "worker", tier: "backend", image: "registry.example.com/worker:3.0", ports: []portSpec{tcp("metrics", 9090)}},
	{name: "scheduler", tier: "backend", image: "registry.example.com/scheduler:1.2", ports: []portSpec{tcp("http", 8080), tcp("metrics", 9090)}},
	{name: "search", tier: "backend", image: "opensearchproject/opensearch:2.17", ports: []portSpec{tcp("http", 9200), tcp("transport", 9300)}, stateful: true},
	{name: "cache", tier: "data", image: "redis:7.4", ports: []portSpec{tcp("redis", 6379), tcp("metrics", 9121)}, stateful: true},
	{name: "db", tier: "data", image: "postgres:17", ports: []portSpec{tcp("postgres", 5432), tcp("metrics", 9187)}, stateful: true},
	{name: "queue", tier: "data", image: "rabbitmq:4.0", ports: []portSpec{tcp("amqp", 5672), tcp("metrics", 15692)}, stateful: true},
}

var (
	teams = []string{"payments", "checkout", "catalog", "search", "identity", "billing", "shipping",
		"inventory", "analytics", "messaging", "media", "ads", "support", "risk", "pricing", "reviews"}
	zones = []string{"zone-a", "zone-b", "zone-c"}
)

func (g *gen) pick(n int) int { return g.r.IntN(n) }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

// k8sID is the Kubernetes random suffix alphabet (no vowels, no confusable digits).
const k8sID = "bcdfghjklmnpqrstvwxz2456789"

func (g *gen) rid(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = k8sID[g.pick(len(k8sID))]
	}
	return string(b)
}

func (g *gen) makeNodes() {
	for i := range g.cfg.Nodes {
		k := uint32(i + 2)
		ip := netip.AddrFrom4([4]byte{172, 18, byte(k >> 8), byte(k)})
		n := &nodeInfo{name: fmt.Sprintf("worker-%03d", i+1), ip: ip, idx: i}
		g.nodes = append(g.nodes, n)
		lbls := map[string]string{
			"kubernetes.io/hostname":           n.name,
			"kubernetes.io/os":                 "linux",
			"kubernetes.io/arch":               "amd64",
			"topology.kubernetes.io/zone":      zones[i%len(zones)],
			"node.kubernetes.io/instance-type": []string{"m6i.2xlarge", "m6i.4xlarge", "c6i.4xlarge"}[g.pick(3)],
		}
		if i == 0 {
			lbls["node-role.kubernetes.io/control-plane"] = ""
		}
		g.objs.Nodes = append(g.objs.Nodes, api.Object[corev1.Node]{Obj: &corev1.Node{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: lbls},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: ip.String()},
				{Type: corev1.NodeHostName, Address: n.name},
			}},
		}})
	}
}

func (g *gen) addNamespace(ns *nsInfo, extra map[string]string) {
	lbls := map[string]string{"kubernetes.io/metadata.name": ns.name}
	if ns.team != "" {
		lbls["team"] = ns.team
	}
	if ns.env != "" {
		lbls["env"] = ns.env
	}
	for k, v := range extra {
		lbls[k] = v
	}
	g.objs.Namespaces = append(g.objs.Namespaces, api.Object[corev1.Namespace]{Obj: &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: ns.name, Labels: lbls},
	}})
}

func (g *gen) makeNamespaces() {
	g.kubeSystem = &nsInfo{name: "kube-system"}
	g.addNamespace(g.kubeSystem, nil)
	g.monitoring = &nsInfo{name: "monitoring", team: "platform", env: "prod"}
	g.addNamespace(g.monitoring, nil)
	seen := map[string]int{}
	for range g.cfg.Namespaces - 2 {
		team := teams[g.pick(len(teams))]
		env := "prod"
		switch x := g.r.Float64(); {
		case x < 0.3:
			env = "staging"
		case x < 0.5:
			env = "dev"
		}
		base := team + "-" + env
		seen[base]++
		name := base
		if seen[base] > 1 {
			name = fmt.Sprintf("%s-%d", base, seen[base])
		}
		ns := &nsInfo{name: name, team: team, env: env}
		var extra map[string]string
		if team == "payments" || team == "billing" {
			extra = map[string]string{"compliance": "pci"}
		}
		g.apps = append(g.apps, ns)
		g.addNamespace(ns, extra)
	}
}

func (g *gen) makePods() {
	// cluster DNS and monitoring
	hash := g.rid(10)
	dnsPorts := []portSpec{{"dns", 53, corev1.ProtocolUDP}, {"dns-tcp", 53, corev1.ProtocolTCP}, tcp("metrics", 9153)}
	for range 2 {
		g.addPod(g.kubeSystem.name, "coredns-"+hash+"-"+g.rid(5), map[string]string{"k8s-app": "kube-dns", "pod-template-hash": hash},
			"coredns", "coredns", "registry.k8s.io/coredns/coredns:v1.11.3", dnsPorts)
	}
	g.addPod(g.monitoring.name, "prometheus-0", map[string]string{
		"app": "prometheus", "app.kubernetes.io/name": "prometheus", "statefulset.kubernetes.io/pod-name": "prometheus-0",
		"apps.kubernetes.io/pod-index": "0", "controller-revision-hash": "prometheus-" + g.rid(10),
	}, "prometheus", "prometheus", "prom/prometheus:v3.0.1", []portSpec{tcp("web", 9090)})

	weights := make([]float64, len(g.apps))
	for i := range weights {
		weights[i] = 0.3 + 1.7*g.r.Float64()
	}
	quota := apportion(g.cfg.Pods-3, weights)
	for i, ns := range g.apps {
		g.fillNamespace(ns, quota[i])
	}
}

// fillNamespace creates workloads in ns until it has exactly n pods.
func (g *gen) fillNamespace(ns *nsInfo, n int) {
	order := g.r.Perm(len(appKinds))
	// every application namespace has an API, most have a web tier and a database
	for i, k := range order {
		if appKinds[k].name == "api" {
			order[0], order[i] = order[i], order[0]
		}
	}
	used := map[string]int{}
	for round := 0; n > 0; round++ {
		kind := &appKinds[order[round%len(order)]]
		used[kind.name]++
		app := kind.name
		if used[kind.name] > 1 {
			app = fmt.Sprintf("%s-%d", kind.name, used[kind.name])
		}
		np := 1 + g.pick(min(3, len(kind.ports)))
		w := &workload{ns: ns, app: app, kind: kind, ports: kind.ports[:np]}
		ns.workloads = append(ns.workloads, w)
		sa := app
		if g.chance(0.2) {
			sa = "default"
		}
		common := map[string]string{
			"app":                          app,
			"tier":                         kind.tier,
			"app.kubernetes.io/name":       app,
			"app.kubernetes.io/part-of":    ns.team,
			"app.kubernetes.io/managed-by": "helm",
		}
		version := 1 + g.pick(4)
		if kind.stateful {
			replicas := min(n, 1+g.pick(3))
			rev := app + "-" + g.rid(10)
			for i := range replicas {
				name := fmt.Sprintf("%s-%d", app, i)
				lbls := clone(common)
				lbls["version"] = "v" + strconv.Itoa(version)
				lbls["statefulset.kubernetes.io/pod-name"] = name
				lbls["apps.kubernetes.io/pod-index"] = strconv.Itoa(i)
				lbls["controller-revision-hash"] = rev
				g.addPod(ns.name, name, lbls, sa, kind.name, kind.image, w.ports)
			}
			n -= replicas
			continue
		}
		replicas := min(n, 1+g.pick(6))
		// A few deployments are mid-rollout: two ReplicaSets, two versions.
		sets := 1
		if replicas >= 2 && g.chance(0.15) {
			sets = 2
		}
		for s := range sets {
			hash := g.rid(10)
			count := replicas / sets
			if s == 0 {
				count += replicas % sets
			}
			for range count {
				lbls := clone(common)
				lbls["version"] = "v" + strconv.Itoa(version+s)
				lbls["pod-template-hash"] = hash
				g.addPod(ns.name, app+"-"+hash+"-"+g.rid(5), lbls, sa, kind.name, kind.image, w.ports)
			}
		}
		n -= replicas
	}
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+4)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (g *gen) addPod(ns, name string, lbls map[string]string, sa, container, image string, ports []portSpec) {
	n := g.nodes[g.pick(len(g.nodes))]
	for n.used >= podsPerNode {
		n = g.nodes[(n.idx+1)%len(g.nodes)]
	}
	n.used++
	ip := addrFromUint32(10<<24 | uint32(n.idx)<<12 | uint32(n.used+1))
	var cps []corev1.ContainerPort
	for _, p := range ports {
		cps = append(cps, corev1.ContainerPort{Name: p.name, ContainerPort: p.port, Protocol: p.proto})
	}
	g.objs.Pods = append(g.objs.Pods, api.Object[corev1.Pod]{Obj: &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbls},
		Spec: corev1.PodSpec{
			NodeName:           n.name,
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: container, Image: image, Ports: cps}},
		},
		Status: corev1.PodStatus{
			Phase:   corev1.PodRunning,
			HostIP:  n.ip.String(),
			HostIPs: []corev1.HostIP{{IP: n.ip.String()}},
			PodIP:   ip.String(),
			PodIPs:  []corev1.PodIP{{IP: ip.String()}},
		},
	}})
}

func addrFromUint32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// number sets every object's Source to its document index in Marshal's output.
func (g *gen) number() {
	doc := 0
	next := func() api.Source { doc++; return api.Source{File: SourceFile, Doc: doc} }
	for i := range g.objs.Namespaces {
		g.objs.Namespaces[i].Source = next()
	}
	for i := range g.objs.Nodes {
		g.objs.Nodes[i].Source = next()
	}
	for i := range g.objs.Pods {
		g.objs.Pods[i].Source = next()
	}
	for i := range g.objs.NetworkPolicies {
		g.objs.NetworkPolicies[i].Source = next()
	}
	for i := range g.objs.CNPs {
		g.objs.CNPs[i].Source = next()
	}
	for i := range g.objs.CCNPs {
		g.objs.CCNPs[i].Source = next()
	}
}
