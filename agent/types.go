package agent

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/netward/netward/policy"
)

// Config configures an agent. Zero values take the defaults of DefaultConfig's comments.
type Config struct {
	// Node is the name of the node the agent serves (required): the Node object of that
	// name in the policy directory gives the node's addresses (the host identity), and pods
	// registered with this agent are on it.
	Node string
	// PoliciesDir holds the manifests (Namespaces, Pods, Nodes, NetworkPolicies,
	// CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies), read recursively and re-read
	// on change.
	PoliciesDir string
	// Kubernetes, when set, replaces PoliciesDir: the agent watches the cluster's objects
	// with client-go informers and writes how it enforces each CiliumNetworkPolicy and
	// CiliumClusterwideNetworkPolicy into the policy's status.nodes.<Node>.
	Kubernetes *rest.Config
	// KubernetesName names the cluster in logs and object sources (default: its host).
	KubernetesName string
	// KubernetesQPS and KubernetesBurst bound the agent's requests to the API server
	// (defaults 50 and 100; client-go's own, 5 and 10, make the first status of a hundred
	// policies take half a minute).
	KubernetesQPS   float32
	KubernetesBurst int
	// NodeNetns is the network namespace of the node, where the host-side veths live: a name
	// under /var/run/netns or a path. "" is the agent's own.
	NodeNetns string
	// APISocket is the unix socket of the API (default /run/netward/<node>.sock).
	APISocket string
	// MetricsAddr is the TCP address of the Prometheus endpoint ("" disables it; the API
	// socket serves /metrics as well). A failure to listen is logged, not fatal.
	MetricsAddr string
	// PinDir is the bpffs directory of the datapath's pins (default /sys/fs/bpf/netward/<node>).
	PinDir string
	// StateDir holds the endpoint registry (default /var/lib/netward/<node>).
	StateDir string
	// Audit computes and reports verdicts but never drops.
	Audit bool
	// Policy are Cilium's agent options that change how policy resolves.
	Policy policy.Options
	// ClusterName is the cluster's name (labels io.cilium.k8s.policy.cluster); "default".
	ClusterName string
	// Debounce is how long the source waits after the last change before re-reading
	// (default 10ms; files still open for writing are waited for, up to 2s).
	Debounce time.Duration
	// PollInterval is how often the source compares file sizes and times, besides inotify
	// (default 200ms).
	PollInterval time.Duration
	// ResyncInterval is how often the agent recomputes its state without a change, to
	// follow the node's own addresses (default 30s).
	ResyncInterval time.Duration
	// ProxyBasePort is the first of the L7 proxy's 8 ports in the node's namespace (default
	// 15100): HTTP ingress, HTTP egress, then ingress and egress of TLS, DNS and CRD, whose
	// redirects are denied (netward has no proxy for them). Listeners bind 127.0.0.1.
	ProxyBasePort int
	// ProxyRouteTable is the routing table of the proxy's "local 0.0.0.0/0 dev lo" route
	// (default 2004, Cilium's), ProxyRulePriority the priority of its fwmark rule (default 9).
	ProxyRouteTable   int
	ProxyRulePriority int
	// ProxyMaxConns bounds the proxy's open client connections per direction (default
	// 20000; beyond, 503).
	ProxyMaxConns int
	// ProxyReadHeaderTimeout, ProxyIdleTimeout and ProxyDialTimeout are the proxy's request
	// head, keep-alive idle and upstream connect timeouts (defaults 10s, 120s, 5s).
	ProxyReadHeaderTimeout time.Duration
	ProxyIdleTimeout       time.Duration
	ProxyDialTimeout       time.Duration
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMetricsAddr = "127.0.0.1:9962"
	DefaultSocketDir   = "/run/netward"
	DefaultStateRoot   = "/var/lib/netward"
	DefaultPinRoot     = "/sys/fs/bpf/netward"
	// DefaultProxyBasePort is the first L7 proxy port (agent.Config.ProxyBasePort).
	DefaultProxyBasePort = 15100
)

// DefaultSocket is the API socket of a node's agent.
func DefaultSocket(node string) string { return filepath.Join(DefaultSocketDir, node+".sock") }

func (c *Config) setDefaults() error {
	if c.Node == "" {
		return fmt.Errorf("agent: the node name is required (--node)")
	}
	if strings.ContainsAny(c.Node, "/\x00") || c.Node == "." || c.Node == ".." {
		return fmt.Errorf("agent: invalid node name %q", c.Node)
	}
	if c.PoliciesDir == "" && c.Kubernetes == nil {
		return fmt.Errorf("agent: a policy directory (--policies) or a cluster (--kubeconfig) is required")
	}
	if c.PoliciesDir != "" && c.Kubernetes != nil {
		return fmt.Errorf("agent: give a policy directory (--policies) or a cluster (--kubeconfig), not both")
	}
	if c.Kubernetes != nil && c.KubernetesName == "" {
		c.KubernetesName = c.Kubernetes.Host
	}
	if c.KubernetesQPS <= 0 {
		c.KubernetesQPS = 50
	}
	if c.KubernetesBurst <= 0 {
		c.KubernetesBurst = 100
	}
	if c.APISocket == "" {
		c.APISocket = DefaultSocket(c.Node)
	}
	if c.PinDir == "" {
		c.PinDir = filepath.Join(DefaultPinRoot, c.Node)
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(DefaultStateRoot, c.Node)
	}
	if c.ClusterName == "" {
		c.ClusterName = policy.DefaultCluster
	}
	if c.Debounce <= 0 {
		c.Debounce = 10 * time.Millisecond
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.ResyncInterval <= 0 {
		c.ResyncInterval = 30 * time.Second
	}
	if c.ProxyBasePort == 0 {
		c.ProxyBasePort = DefaultProxyBasePort
	}
	if c.ProxyBasePort < 1 || c.ProxyBasePort > 65535-7 {
		return fmt.Errorf("agent: proxy base port %d: the 8 proxy ports must be in 1-65535", c.ProxyBasePort)
	}
	if c.ProxyRouteTable == 0 {
		c.ProxyRouteTable = 2004
	}
	if c.ProxyRulePriority == 0 {
		c.ProxyRulePriority = 9
	}
	if c.ProxyMaxConns == 0 {
		c.ProxyMaxConns = 20000
	}
	if c.ProxyReadHeaderTimeout <= 0 {
		c.ProxyReadHeaderTimeout = 10 * time.Second
	}
	if c.ProxyIdleTimeout <= 0 {
		c.ProxyIdleTimeout = 120 * time.Second
	}
	if c.ProxyDialTimeout <= 0 {
		c.ProxyDialTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// nodeNetnsPath turns a netns name into its path.
func nodeNetnsPath(ns string) string {
	if ns == "" || strings.Contains(ns, "/") {
		return ns
	}
	return filepath.Join("/var/run/netns", ns)
}

// EndpointRequest is the body of POST /v1/endpoints (sent by the CNI plugin).
type EndpointRequest struct {
	ContainerID  string   `json:"containerID"`
	Netns        string   `json:"netns"`
	IfName       string   `json:"ifName"`
	HostIfName   string   `json:"hostIfName"`
	PodNamespace string   `json:"podNamespace"`
	PodName      string   `json:"podName"`
	IPs          []string `json:"ips"`
}

// EndpointResponse answers a registration.
type EndpointResponse struct {
	ID       uint32 `json:"id"`
	Identity uint32 `json:"identity"`
	Pod      string `json:"pod"`
}

// Endpoint is an endpoint as GET /v1/endpoints shows it.
type Endpoint struct {
	ID                 uint32   `json:"id"`
	ContainerID        string   `json:"containerID"`
	Pod                string   `json:"pod"`
	Namespace          string   `json:"namespace"`
	Name               string   `json:"name"`
	IPs                []string `json:"ips"`
	Identity           uint32   `json:"identity"`
	Labels             []string `json:"labels"`
	HostIfName         string   `json:"hostIfName"`
	Netns              string   `json:"netns"`
	PolicyRevision     uint64   `json:"policyRevision"`
	IngressEnforced    bool     `json:"ingressEnforced"`
	EgressEnforced     bool     `json:"egressEnforced"`
	IngressDefaultDeny bool     `json:"ingressDefaultDeny"`
	EgressDefaultDeny  bool     `json:"egressDefaultDeny"`
	MapEntries         int      `json:"mapEntries"`
	Audit              bool     `json:"audit,omitempty"`
	// KnownPod is false when no Pod object of that name is in the policy directory (the
	// endpoint has no pod labels).
	KnownPod bool `json:"knownPod"`
	// State is "enforcing" (the current policy), "restored" (the pinned state of a previous
	// agent, kept until a valid policy set is loaded) or "error".
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Map is the programmed policy map (GET /v1/endpoints/{id}).
	Map []MapEntry `json:"map,omitempty"`
}

// MapEntry is one policy map entry of an endpoint.
type MapEntry struct {
	Key        string   `json:"key"`
	Verdict    string   `json:"verdict"`
	Precedence uint32   `json:"precedence"`
	Origins    []string `json:"origins"`
}

// Status is GET /v1/status.
type Status struct {
	Node        string `json:"node"`
	PoliciesDir string `json:"policiesDir,omitempty"`
	// Kubernetes names the cluster the objects come from (instead of PoliciesDir).
	Kubernetes string `json:"kubernetes,omitempty"`
	// InvalidPolicies (Kubernetes source) are the policies left out because they do not
	// validate; every other policy enforces. Their status says the same.
	InvalidPolicies []ObjectIssue `json:"invalidPolicies,omitempty"`
	// StatusPending (Kubernetes source) counts the policies whose status.nodes entry for
	// this node is not written yet (being written, or retried after an error).
	StatusPending  int    `json:"statusPending,omitempty"`
	PolicyRevision uint64 `json:"policyRevision"`
	// Enforcing says what the datapath enforces: "current" (the directory as it is),
	// "last-good" (the directory is invalid; the last valid set stays), "restored" (no valid
	// set loaded since start; the pinned state of the previous agent stays) or "none".
	Enforcing      string       `json:"enforcing"`
	Endpoints      int          `json:"endpoints"`
	Audit          bool         `json:"audit"`
	DatapathLoaded bool         `json:"datapathLoaded"`
	LastLoad       *time.Time   `json:"lastLoad,omitempty"`
	LastGoodLoad   *time.Time   `json:"lastGoodLoad,omitempty"`
	LastError      *PolicyError `json:"lastError,omitempty"`
	Warnings       []string     `json:"warnings,omitempty"`
	Identities     int          `json:"identities"`
	IPCacheEntries int          `json:"ipcacheEntries"`
	MetricsError   string       `json:"metricsError,omitempty"`
	// Proxy is the L7 proxies' state; nil when they do not run (no eBPF datapath).
	Proxy *ProxyStatus `json:"proxy,omitempty"`
}

// ProxyStatus is what the agent's L7 proxies hold now (the verdicts are counted in the
// metric netward_l7_requests_total and reported on /v1/events).
type ProxyStatus struct {
	HTTPIngressPort uint16 `json:"httpIngressPort"`
	HTTPEgressPort  uint16 `json:"httpEgressPort"`
	DNSPort         uint16 `json:"dnsPort"`
	// HTTPOpenConnections are the client connections open on both HTTP proxies;
	// HTTPRefusedConnections counts those refused beyond --proxy-max-conns since start.
	HTTPOpenConnections    int64 `json:"httpOpenConnections"`
	HTTPRefusedConnections int64 `json:"httpRefusedConnections"`
	// DNSInFlight are the UDP lookups being judged or forwarded; DNSTCPConnections the open
	// TCP client connections; DNSDropped counts lookups and connections dropped beyond the
	// limits since start.
	DNSInFlight       int64 `json:"dnsInFlight"`
	DNSTCPConnections int64 `json:"dnsTcpConnections"`
	DNSDropped        int64 `json:"dnsDropped"`
}

// PolicyError is a rejected load of the policy directory: nothing of it was applied.
type PolicyError struct {
	Time    time.Time     `json:"time"`
	Message string        `json:"message"`
	Errors  []ObjectIssue `json:"errors"`
}

// ObjectIssue is one problem, located as precisely as known.
type ObjectIssue struct {
	File     string `json:"file,omitempty"`
	Document int    `json:"document,omitempty"`
	Item     int    `json:"item,omitempty"`
	Object   string `json:"object,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
}

func (o ObjectIssue) String() string {
	var parts []string
	if o.File != "" {
		loc := o.File
		if o.Document > 0 {
			loc += fmt.Sprintf(" (document %d", o.Document)
			if o.Item > 0 {
				loc += fmt.Sprintf(", item %d", o.Item)
			}
			loc += ")"
		}
		parts = append(parts, loc)
	}
	if o.Object != "" {
		parts = append(parts, o.Object)
	}
	if o.Field != "" {
		parts = append(parts, o.Field)
	}
	parts = append(parts, o.Message)
	return strings.Join(parts, ": ")
}

// Event is one verdict of the datapath (GET /v1/events).
type Event struct {
	Time        time.Time `json:"time"`
	Node        string    `json:"node"`
	Source      Peer      `json:"source"`
	Destination Peer      `json:"destination"`
	Proto       string    `json:"proto"`
	// Port is the destination port, or the ICMP type for ICMP.
	Port      uint16 `json:"port"`
	SrcPort   uint16 `json:"srcPort,omitempty"`
	Direction string `json:"direction"` // of the endpoint's policy that decided: ingress or egress
	// Endpoint is the local pod whose policy decided.
	Endpoint string `json:"endpoint"`
	// Verdict is forwarded, dropped, redirected or audit (would have been dropped).
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	// Origins are the rules behind the deciding map entry; for a default deny, the rules
	// that select the endpoint ("default deny: selected by ..."). For an L7 event, the rules
	// that admitted the request, or, when it was denied, those consulted.
	Origins []string `json:"origins"`

	// L7 events (one per request or lookup a proxy judged; Verdict forwarded, dropped or
	// error, Reason l7-allowed, l7-denied or l7-error). L7Protocol is "http", "dns", or the
	// parser of a redirect netward has no proxy for (denied, fail closed).
	L7Protocol  string `json:"l7Protocol,omitempty"`
	HTTPVersion string `json:"httpVersion,omitempty"` // HTTP/1.0, HTTP/1.1, HTTP/2.0
	HTTPMethod  string `json:"httpMethod,omitempty"`
	HTTPPath    string `json:"httpPath,omitempty"` // as sent, query included
	HTTPHost    string `json:"httpHost,omitempty"`
	// HTTPVerdict is the proxy's: allowed, denied (answered 403) or error (malformed, or
	// the destination unreachable).
	HTTPVerdict string `json:"httpVerdict,omitempty"`
	// HTTPStatus is the status the proxy answered itself (403, 400, 502, ...), 0 when the
	// request was forwarded.
	HTTPStatus    int      `json:"httpStatus,omitempty"`
	HTTPHeaderOps []string `json:"httpHeaderOps,omitempty"`
	// DNS lookups the DNS proxy judged (L7Protocol "dns"): the question, the proxy's
	// verdict (allowed, denied: answered REFUSED, error) and the answer's rcode (NoError,
	// NXDomain, Refused, ServFail, ...), empty when the client got no answer.
	DNSName    string `json:"dnsName,omitempty"`
	DNSType    string `json:"dnsType,omitempty"`
	DNSVerdict string `json:"dnsVerdict,omitempty"`
	DNSRcode   string `json:"dnsRcode,omitempty"`
	L7Reason   string `json:"l7Reason,omitempty"`
}

// Peer is one side of an event.
type Peer struct {
	// Pod is namespace/name when the address is a pod's.
	Pod      string `json:"pod,omitempty"`
	IP       string `json:"ip"`
	Identity uint32 `json:"identity"`
	// Kind is pod, host, remote-node, world or cidr.
	Kind string `json:"kind,omitempty"`
	// Node names the node for host and remote-node peers.
	Node string `json:"node,omitempty"`
}

// Name is how people see the peer.
func (p Peer) Name() string {
	switch {
	case p.Pod != "":
		return p.Pod
	case p.Kind == "host" || p.Kind == "remote-node":
		if p.Node != "" {
			return p.Kind + "(" + p.Node + ")"
		}
		return p.Kind
	}
	return p.IP
}

// apiError is the body of every non-2xx answer.
type apiError struct {
	Error string `json:"error"`
}
