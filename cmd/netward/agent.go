package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/netward/netward/agent"
	"github.com/netward/netward/k8s"
	"github.com/netward/netward/policy"
)

func newAgentCommand() *cobra.Command {
	var cfg agent.Config
	var logFormat, logLevel, cidrMatchMode, kubeconfig, kubeContext string
	cmd := &cobra.Command{
		Use:   "agent (--policies DIR | --kubeconfig PATH) --node NAME",
		Short: "Run the node agent: enforce the policies of DIR or of a cluster with the eBPF datapath",
		Long: `Run the node agent of one node. It reads Namespaces, Pods, Nodes, NetworkPolicies,
CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies from DIR (re-read on change; an
invalid set is rejected as a whole and the last valid one keeps enforcing), keeps the
endpoints the CNI plugin registers on its API socket, and programs the eBPF datapath on
their host veths. Maps and programs are pinned: when the agent stops, enforcement keeps the
last state, and a new agent adopts it.

With --kubeconfig (set, even to "", which inside a pod means the service account) the
objects come from the cluster through client-go informers instead: every pod and node of
the cluster fills the ipcache, an invalid policy is left out while the others enforce, and
the agent writes status.nodes.<NAME> (ok, error, enforcing, localPolicyRevision) into each
CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy.

--node-netns NS serves a node whose network is the named network namespace (or a path), so
several nodes and their pods can live on one machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromCluster := cmd.Flags().Changed("kubeconfig") || kubeContext != ""
			switch {
			case fromCluster && cfg.PoliciesDir != "":
				return &exitError{2, fmt.Errorf("give --policies DIR or --kubeconfig, not both")}
			case !fromCluster && cfg.PoliciesDir == "":
				return &exitError{2, fmt.Errorf("--policies DIR or --kubeconfig PATH is required")}
			}
			if cfg.Node == "" {
				return &exitError{2, fmt.Errorf("--node NAME is required")}
			}
			mode, ok := policy.ParseCIDRMatchMode(cidrMatchMode)
			if !ok {
				return &exitError{2, fmt.Errorf("--cidr-match-mode %q: want \"\", nodes, pods or nodes,pods", cidrMatchMode)}
			}
			cfg.Policy.CIDRMatch = mode
			logger, err := newLogger(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return &exitError{2, err}
			}
			cfg.Logger = logger
			if fromCluster {
				rc, name, err := k8s.RESTConfig(kubeconfig, kubeContext)
				if err != nil {
					return &exitError{2, err}
				}
				cfg.Kubernetes, cfg.KubernetesName = rc, name
			} else {
				abs, err := filepath.Abs(cfg.PoliciesDir)
				if err != nil {
					return &exitError{2, err}
				}
				cfg.PoliciesDir = abs
				if st, err := os.Stat(abs); err != nil || !st.IsDir() {
					return &exitError{2, fmt.Errorf("--policies %s: not a directory", abs)}
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := agent.New(cfg)
			if err != nil {
				return &exitError{1, err}
			}
			if err := a.Run(ctx); err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.PoliciesDir, "policies", "", "directory of manifests (Namespaces, Pods, Nodes and policies), re-read on change")
	f.StringVar(&kubeconfig, "kubeconfig", "", `watch this cluster instead of a directory; set it, even to "", to select the cluster (empty: $KUBECONFIG, ~/.kube/config, else the in-cluster service account)`)
	f.Float32Var(&cfg.KubernetesQPS, "kube-api-qps", 50, "requests per second to the API server (status writes); with --kubeconfig")
	f.IntVar(&cfg.KubernetesBurst, "kube-api-burst", 100, "burst of requests to the API server; with --kubeconfig")
	f.StringVar(&kubeContext, "context", "", "kubeconfig context of the cluster to watch (implies --kubeconfig)")
	f.StringVar(&cfg.Node, "node", "", "name of the node this agent serves (its Node object gives the host addresses)")
	f.StringVar(&cfg.NodeNetns, "node-netns", "", "network namespace of the node (name under /var/run/netns, or a path); default: the agent's own")
	f.StringVar(&cfg.APISocket, "api-socket", "", "unix socket of the API (default /run/netward/<node>.sock)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", agent.DefaultMetricsAddr, `Prometheus endpoint address ("" to disable; /metrics is on the API socket too)`)
	f.StringVar(&cfg.PinDir, "pin-dir", "", "bpffs directory of the pinned maps and links (default /sys/fs/bpf/netward/<node>)")
	f.StringVar(&cfg.StateDir, "state-dir", "", "directory of the endpoint registry (default /var/lib/netward/<node>)")
	f.BoolVar(&cfg.Audit, "audit", false, "audit mode: compute and report verdicts, never drop")
	f.StringVar(&cidrMatchMode, "cidr-match-mode", "", `Cilium's policy-cidr-match-mode: "" (default), "nodes", "pods" or "nodes,pods"`)
	f.BoolVar(&cfg.Policy.AllowLocalhost, "allow-localhost", true, "the local node reaches its pods under ingress default deny (Cilium's allow-localhost in Kubernetes mode)")
	f.StringVar(&cfg.ClusterName, "cluster-name", "", "cluster name (io.cilium.k8s.policy.cluster); default \"default\"")
	f.DurationVar(&cfg.Debounce, "debounce", 0, "quiet time after a change in DIR before it is applied (default 10ms)")
	f.DurationVar(&cfg.PollInterval, "poll-interval", 0, "how often DIR is polled besides inotify (default 200ms)")
	f.IntVar(&cfg.ProxyBasePort, "proxy-base-port", agent.DefaultProxyBasePort, "first of the L7 proxy's 8 ports (127.0.0.1 in the node's namespace): HTTP ingress, HTTP egress, TLS (denied: no proxy), DNS ingress (denied) and egress (the DNS proxy), CRD (denied)")
	f.IntVar(&cfg.ProxyRouteTable, "proxy-route-table", 2004, "routing table of the proxy's local route (ip rule fwmark 0x0A00/0xFF00 lookup TABLE)")
	f.IntVar(&cfg.ProxyRulePriority, "proxy-rule-priority", 9, "priority of the proxy's fwmark ip rule")
	f.IntVar(&cfg.ProxyMaxConns, "proxy-max-conns", 20000, "open client connections per proxy direction (beyond: 503)")
	f.DurationVar(&cfg.ProxyReadHeaderTimeout, "proxy-read-header-timeout", 10*time.Second, "time a client has to send a request head")
	f.DurationVar(&cfg.ProxyIdleTimeout, "proxy-idle-timeout", 120*time.Second, "how long a kept-alive proxied connection may wait for its next request")
	f.DurationVar(&cfg.ProxyDialTimeout, "proxy-dial-timeout", 5*time.Second, "time the proxy has to connect to the original destination")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func newLogger(w interface{ Write([]byte) (int, error) }, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// agentSocket resolves the API socket of the client commands: --api-socket, else the
// --node's default socket, else the only socket in /run/netward.
func agentSocket(socket, node string) (string, error) {
	switch {
	case socket != "":
		return socket, nil
	case node != "":
		return agent.DefaultSocket(node), nil
	}
	matches, _ := filepath.Glob(filepath.Join(agent.DefaultSocketDir, "*.sock"))
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", fmt.Errorf("no agent socket in %s: give --node NAME or --api-socket PATH", agent.DefaultSocketDir)
	}
	return "", fmt.Errorf("several agents (%s): give --node NAME or --api-socket PATH", strings.Join(matches, ", "))
}
