package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/netward/netward/api"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/labels"
	"github.com/netward/netward/policy"
)

// Namespace is a namespace and its labels.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Node is a cluster node. Host is the identity the node has as seen from its own pods,
// Remote the one it has as seen from pods of other nodes.
type Node struct {
	Name   string
	Labels map[string]string
	IPs    []netip.Addr
	Host   *identity.Identity
	Remote *identity.Identity
}

// Endpoint is a pod managed by netward.
type Endpoint struct {
	Namespace      string
	Name           string
	Node           string
	IPs            []netip.Addr
	ServiceAccount string
	Labels         map[string]string
	Identity       *identity.Identity
	// Workload names the controller of the pod (Deployment, StatefulSet, DaemonSet, Job, or
	// the app label), so that replicas show as one row.
	Workload string
	Source   api.Source
}

// Key is "namespace/name".
func (e *Endpoint) Key() string { return e.Namespace + "/" + e.Name }

// Options configure how the cluster resolves.
type Options struct {
	Policy  policy.Options
	Cluster string // cluster name; "default" when empty
}

// Cluster is the resolved state.
type Cluster struct {
	Options    Options
	Engine     *policy.Engine
	Namespaces map[string]*Namespace
	Nodes      map[string]*Node
	// Endpoints sorted by namespace/name.
	Endpoints []*Endpoint
	// Notes are informational messages (skipped objects, defaults applied).
	Notes []string

	byName     map[string]*Endpoint
	byIP       map[netip.Addr]*Endpoint
	nodeByIP   map[netip.Addr]*Node
	reserved   map[identity.ID]*identity.Identity
	byLabels   map[string]*identity.Identity
	nextID     identity.ID
	nextRemote identity.ID
	filter     *labels.Filter
}

// ReservedIdentity returns a reserved identity (host and remote-node are the generic ones).
func (c *Cluster) ReservedIdentity(id identity.ID) *identity.Identity { return c.reserved[id] }

// Build resolves objects into a cluster. Policies must have been validated; a policy the
// translator cannot read is an error naming it.
func Build(objs *api.Objects, opts Options) (*Cluster, error) {
	if opts.Cluster == "" {
		opts.Cluster = policy.DefaultCluster
	}
	c := &Cluster{
		Options:    opts,
		Engine:     policy.NewEngine(opts.Policy),
		Namespaces: map[string]*Namespace{},
		Nodes:      map[string]*Node{},
		Notes:      slices.Clone(objs.Notes),
		byName:     map[string]*Endpoint{},
		byIP:       map[netip.Addr]*Endpoint{},
		nodeByIP:   map[netip.Addr]*Node{},
		reserved:   map[identity.ID]*identity.Identity{},
		byLabels:   map[string]*identity.Identity{},
		nextID:     identity.MinCluster,
		nextRemote: identity.RemoteNodeScope,
		filter:     labels.DefaultFilter(),
	}
	for _, id := range identity.ReservedIDs() {
		kind := identity.KindReserved
		switch id {
		case identity.Host:
			kind = identity.KindHost
		case identity.RemoteNode:
			kind = identity.KindRemoteNode
		case identity.World:
			kind = identity.KindWorld
		}
		ident := &identity.Identity{ID: id, Kind: kind, Labels: identity.ReservedLabels(id)}
		c.reserved[id] = ident
		if id == identity.Host && opts.Policy.CIDRMatch.Nodes {
			continue // each node has its own host identity, carrying its addresses
		}
		c.Engine.UpsertIdentity(ident)
	}
	// Policies first: under cidr-match-mode "pods" a pod's identity depends on the prefixes
	// policies name.
	if err := c.loadPolicies(objs); err != nil {
		return nil, err
	}
	for _, o := range objs.Namespaces {
		lbls := map[string]string{}
		for k, v := range o.Obj.Labels {
			lbls[k] = v
		}
		// The API server labels every namespace with its name.
		if _, ok := lbls["kubernetes.io/metadata.name"]; !ok {
			lbls["kubernetes.io/metadata.name"] = o.Obj.Name
		}
		c.Namespaces[o.Obj.Name] = &Namespace{Name: o.Obj.Name, Labels: lbls}
	}
	for _, o := range objs.Nodes {
		n := &Node{Name: o.Obj.Name, Labels: o.Obj.Labels}
		for _, a := range o.Obj.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				n.IPs = append(n.IPs, ip)
			}
		}
		c.addNode(n)
	}
	pods := slices.Clone(objs.Pods)
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i].Obj, pods[j].Obj
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	for _, o := range pods {
		if err := c.addPod(o); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) loadPolicies(objs *api.Objects) error {
	tr := policy.Translator{Cluster: c.Options.Cluster}
	noteServices := func(src api.Source, ref string, rules []api.Rule) {
		for _, r := range rules {
			for i, eg := range r.Egress {
				if len(eg.ToServices) > 0 {
					c.Notes = append(c.Notes, fmt.Sprintf("%s: %s egress[%d].toServices: netward reads no Service objects, so (as in Cilium while no matching Service exists) the rule names no peers and allows every peer on its ports", src, ref, i))
				}
			}
		}
	}
	for _, list := range [][]api.Object[api.CiliumNetworkPolicy]{objs.CNPs, objs.CCNPs} {
		for _, o := range list {
			rules := o.Obj.Specs
			if o.Obj.Spec != nil {
				rules = append([]api.Rule{*o.Obj.Spec}, rules...)
			}
			noteServices(o.Source, o.Obj.Kind+" "+o.Obj.Name, rules)
		}
	}
	for _, o := range objs.CNPs {
		entries, err := tr.CNP(api.KindCNP, o.Obj)
		if err != nil {
			return fmt.Errorf("%s: %s %s/%s: %w", o.Source, api.KindCNP, nsOrDefault(o.Obj.Namespace), o.Obj.Name, err)
		}
		c.Engine.ReplaceResource(ResourceKey(api.KindCNP, nsOrDefault(o.Obj.Namespace), o.Obj.Name), entries)
	}
	for _, o := range objs.CCNPs {
		entries, err := tr.CNP(api.KindCCNP, o.Obj)
		if err != nil {
			return fmt.Errorf("%s: %s %s: %w", o.Source, api.KindCCNP, o.Obj.Name, err)
		}
		c.Engine.ReplaceResource(ResourceKey(api.KindCCNP, "", o.Obj.Name), entries)
	}
	for _, o := range objs.NetworkPolicies {
		entries, err := tr.NetworkPolicy(o.Obj)
		if err != nil {
			return fmt.Errorf("%s: %s %s/%s: %w", o.Source, api.KindNetworkPolicy, nsOrDefault(o.Obj.Namespace), o.Obj.Name, err)
		}
		c.Engine.ReplaceResource(ResourceKey(api.KindNetworkPolicy, nsOrDefault(o.Obj.Namespace), o.Obj.Name), entries)
	}
	return nil
}

// ResourceKey names a policy object in the engine.
func ResourceKey(kind, ns, name string) string {
	if ns == "" {
		return kind + "/" + name
	}
	return kind + "/" + ns + "/" + name
}

func nsOrDefault(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// addNode registers a node and its host and remote identities. Without cidr-match-mode
// "nodes" every node is the reserved host (from its own pods) or remote-node identity;
// with it, each node gets identities that carry its addresses so CIDR rules can match them.
func (c *Cluster) addNode(n *Node) {
	if old, ok := c.Nodes[n.Name]; ok {
		for _, ip := range old.IPs {
			delete(c.nodeByIP, ip)
		}
	}
	if c.Options.Policy.CIDRMatch.Nodes {
		var pfx []netip.Prefix
		for _, ip := range n.IPs {
			pfx = append(pfx, netip.PrefixFrom(ip, ip.BitLen()))
		}
		n.Host = &identity.Identity{ID: identity.Host, Kind: identity.KindHost, Labels: identity.ReservedLabels(identity.Host), Prefixes: pfx, Node: n.Name}
		n.Remote = &identity.Identity{ID: c.nextRemote, Kind: identity.KindRemoteNode, Labels: identity.ReservedLabels(identity.RemoteNode), Prefixes: pfx, Node: n.Name}
		c.nextRemote++
		c.Engine.UpsertIdentity(n.Host)
		c.Engine.UpsertIdentity(n.Remote)
	} else {
		n.Host = c.reserved[identity.Host]
		n.Remote = c.reserved[identity.RemoteNode]
	}
	c.Nodes[n.Name] = n
	for _, ip := range n.IPs {
		c.nodeByIP[ip] = n
	}
}

func (c *Cluster) addPod(o api.Object[corev1.Pod]) error {
	p := o.Obj
	ns := nsOrDefault(p.Namespace)
	ep := &Endpoint{Namespace: ns, Name: p.Name, Node: p.Spec.NodeName, Labels: p.Labels, Source: o.Source, Workload: workloadName(p)}
	ep.ServiceAccount = p.Spec.ServiceAccountName
	if ep.ServiceAccount == "" {
		ep.ServiceAccount = p.Spec.DeprecatedServiceAccount
	}
	if ep.ServiceAccount == "" {
		ep.ServiceAccount = "default" // the API server's default
	}
	seen := map[netip.Addr]bool{}
	addIP := func(s string) {
		if ip, err := netip.ParseAddr(s); err == nil && !seen[ip] {
			seen[ip] = true
			ep.IPs = append(ep.IPs, ip)
		}
	}
	switch {
	case p.Spec.HostNetwork:
		// Its addresses are the node's: traffic from them is the host's (Cilium manages no
		// endpoint for it), so they must not become this pod's identity.
		c.Notes = append(c.Notes, fmt.Sprintf("%s: Pod %s uses the host network: its traffic is the node's (host identity), not the pod's", o.Source, ep.Key()))
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		// A finished pod's address may already be another pod's.
	default:
		addIP(p.Status.PodIP)
		for _, pip := range p.Status.PodIPs {
			addIP(pip.IP)
		}
	}
	if _, dup := c.byName[ep.Key()]; dup {
		return fmt.Errorf("%s: Pod %s is defined twice", o.Source, ep.Key())
	}
	if ep.Node != "" {
		if _, ok := c.Nodes[ep.Node]; !ok {
			// A pod may name a node the input does not describe: it still has a host.
			c.addNode(&Node{Name: ep.Node})
		}
	}
	namedPorts := map[string]identity.NamedPort{}
	for _, ctr := range p.Spec.Containers {
		for _, cp := range ctr.Ports {
			if cp.Name == "" {
				continue
			}
			proto, ok := policy.ParseProto(string(cp.Protocol))
			if !ok || proto == policy.ProtoAny {
				proto = policy.ProtoTCP
			}
			namedPorts[strings.ToLower(cp.Name)] = identity.NamedPort{Port: uint16(cp.ContainerPort), Proto: proto}
		}
	}
	ep.Identity = c.podIdentity(ns, ep, namedPorts)
	c.Endpoints = append(c.Endpoints, ep)
	c.byName[ep.Key()] = ep
	for _, ip := range ep.IPs {
		c.byIP[ip] = ep
	}
	return nil
}

// podIdentity computes the identity labels of a pod and allocates (or reuses) its identity.
func (c *Cluster) podIdentity(ns string, ep *Endpoint, namedPorts map[string]identity.NamedPort) *identity.Identity {
	var ls []labels.Label
	for k, v := range ep.Labels {
		if strings.HasPrefix(k, labels.CiliumLabelPrefix) {
			continue // Cilium strips io.cilium.k8s* pod labels
		}
		ls = append(ls, labels.Label{Source: labels.SourceK8s, Key: k, Value: v})
	}
	nsLabels := map[string]string{"kubernetes.io/metadata.name": ns}
	if n, ok := c.Namespaces[ns]; ok {
		nsLabels = n.Labels
	}
	for k, v := range nsLabels {
		ls = append(ls, labels.Label{Source: labels.SourceK8s, Key: labels.KeyNamespaceLabels + "." + k, Value: v})
	}
	ls = append(ls,
		labels.Label{Source: labels.SourceK8s, Key: labels.KeyNamespace, Value: ns},
		labels.Label{Source: labels.SourceK8s, Key: labels.KeyServiceAccount, Value: ep.ServiceAccount},
		labels.Label{Source: labels.SourceK8s, Key: labels.KeyCluster, Value: c.Options.Cluster},
	)
	var rel []labels.Label
	for _, l := range ls {
		if c.filter.Relevant(l) {
			rel = append(rel, l)
		}
	}
	if len(namedPorts) > 0 {
		names := make([]string, 0, len(namedPorts))
		for n := range namedPorts {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, n := range names {
			np := namedPorts[n]
			parts[i] = n + "." + policy.ProtoName(np.Proto) + "." + strconv.Itoa(int(np.Port))
		}
		rel = append(rel, labels.Label{Source: labels.SourceGenerated, Key: labels.KeyNamedPorts, Value: strings.Join(parts, "_")})
	}
	var prefixes []netip.Prefix
	if c.Options.Policy.CIDRMatch.Pods && len(ep.IPs) > 0 {
		// Cilium labels the pod with the longest policy prefix containing its address, or
		// the all-addresses prefix, so CIDR rules can select it.
		ip := ep.IPs[0]
		pfx, ok := c.Engine.LongestPrefix(ip)
		if !ok {
			pfx = netip.PrefixFrom(ip, 0).Masked()
		}
		prefixes = []netip.Prefix{pfx}
		rel = append(rel, labels.Label{Source: labels.SourceCIDR, Key: pfx.String()})
	}
	set := labels.NewSet(rel...)
	if id, ok := c.byLabels[set.String()]; ok {
		return id
	}
	id := &identity.Identity{ID: c.nextID, Kind: identity.KindPod, Labels: set, NamedPorts: namedPorts, Prefixes: prefixes}
	c.nextID++
	c.byLabels[set.String()] = id
	c.Engine.UpsertIdentity(id)
	return id
}

// Endpoint returns the pod "namespace/name".
func (c *Cluster) Endpoint(key string) (*Endpoint, bool) {
	e, ok := c.byName[key]
	return e, ok
}

// EndpointByIP returns the pod with an address.
func (c *Cluster) EndpointByIP(ip netip.Addr) (*Endpoint, bool) {
	e, ok := c.byIP[ip]
	return e, ok
}

// NodeByIP returns the node with an address.
func (c *Cluster) NodeByIP(ip netip.Addr) (*Node, bool) {
	n, ok := c.nodeByIP[ip]
	return n, ok
}

// NodeNames returns the node names, sorted.
func (c *Cluster) NodeNames() []string {
	out := make([]string, 0, len(c.Nodes))
	for n := range c.Nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Policy returns the compiled policy of an endpoint.
func (c *Cluster) Policy(ep *Endpoint) *policy.EndpointPolicy {
	return c.Engine.Policy(ep.Identity, ep.Node)
}

// workloadName finds the workload a pod belongs to: its controller (a ReplicaSet's
// Deployment, a StatefulSet, DaemonSet or Job), else its app label, else its name.
func workloadName(p *corev1.Pod) string {
	for _, ref := range p.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		if ref.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" {
				return strings.TrimSuffix(ref.Name, "-"+h)
			}
		}
		return ref.Name
	}
	for _, k := range []string{"app.kubernetes.io/name", "app", "k8s-app", "name"} {
		if v := p.Labels[k]; v != "" {
			return v
		}
	}
	return p.Name
}
