package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/netward/netward/k8s"
)

func newInstallCommand() *cobra.Command {
	var opts k8s.InstallOptions
	var output, pullPolicy string
	var crdsOnly bool
	cmd := &cobra.Command{
		Use:   "install [-o yaml|json]",
		Short: "Print the Kubernetes deployment: CRDs, RBAC, CNI configuration and the agent DaemonSet",
		Long: `Print everything netward needs on a cluster, for kubectl apply -f -:

  - the cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy CRDs, generated
    from netward's own types (structural schemas, status subresource, Age and Valid columns);
  - a Namespace, the agent's ServiceAccount, ClusterRole and ClusterRoleBinding (read Pods,
    Namespaces, Nodes, NetworkPolicies and the Cilium policies; patch the policies' status);
  - a ConfigMap with the CNI configuration list (type netward-cni), which the DaemonSet's
    init container ("netward install cni") installs on every node with the node's pod CIDR;
  - the agent DaemonSet (host network, privileged, /sys/fs/bpf, /run/netward,
    /var/lib/netward, /opt/cni/bin and /etc/cni/net.d from the host).

The output with the default flags is deploy/kubernetes/netward.yaml. See docs/kubernetes.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.ImagePullPolicy = corev1.PullPolicy(pullPolicy)
			switch opts.ImagePullPolicy {
			case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
			default:
				return &exitError{2, fmt.Errorf("--image-pull-policy %q: want Always, IfNotPresent or Never", pullPolicy)}
			}
			out := cmd.OutOrStdout()
			if crdsOnly {
				if output != "yaml" {
					return &exitError{2, errors.New("--crds prints YAML only")}
				}
				crds, err := k8s.EmbeddedCRDs()
				if err != nil {
					return err
				}
				for _, f := range k8s.CRDFiles {
					if _, err := out.Write(crds[f]); err != nil {
						return err
					}
				}
				return nil
			}
			var b []byte
			var err error
			switch output {
			case "yaml":
				b, err = k8s.InstallYAML(opts)
			case "json":
				b, err = k8s.InstallJSON(opts)
			default:
				return &exitError{2, fmt.Errorf("-o %q: want yaml or json", output)}
			}
			if err != nil {
				return err
			}
			_, err = out.Write(b)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "yaml", "output format: yaml or json (a v1 List)")
	f.StringVarP(&opts.Namespace, "namespace", "n", k8s.DefaultInstallNamespace, "namespace of the agent")
	f.StringVar(&opts.Image, "image", k8s.DefaultImage, "agent image (with /usr/local/bin/netward and /usr/local/bin/netward-cni)")
	f.StringVar(&pullPolicy, "image-pull-policy", string(corev1.PullIfNotPresent), "image pull policy: Always, IfNotPresent or Never")
	f.StringVar(&opts.ClusterName, "cluster-name", "", "cluster name passed to the agents (io.cilium.k8s.policy.cluster)")
	f.BoolVar(&crdsOnly, "crds", false, "print the two CRDs only")
	cmd.AddCommand(newInstallCNICommand())
	return cmd
}

// installCNI are the flags of `netward install cni`.
type installCNI struct {
	node, template, confDir, binDir, plugin string
	kubeconfig, podCIDR                     string
	wait                                    time.Duration
	// client is used instead of building one from kubeconfig (tests).
	client kubernetes.Interface
}

func newInstallCNICommand() *cobra.Command {
	var o installCNI
	cmd := &cobra.Command{
		Use:   "cni --node NAME",
		Short: "Install netward-cni and its configuration on this node (the DaemonSet's init container)",
		Long: `Copy the netward-cni binary into the CNI bin directory and write the CNI configuration
list into the CNI configuration directory, after replacing ${NODE_NAME} and ${POD_CIDR} in
the template with the node's name and its IPv4 pod CIDR (Node spec.podCIDRs, read from the
API server; --pod-cidr skips that). Both files are replaced atomically. Waits up to --wait
for the node to get a pod CIDR.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.node == "" {
				return &exitError{2, errors.New("--node NAME is required")}
			}
			return o.run(cmd.Context(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.node, "node", "", "this node's name")
	f.StringVar(&o.template, "template", "/etc/netward/cni/"+k8s.CNIConfFile, "CNI configuration template (\"\": the built-in one)")
	f.StringVar(&o.confDir, "conf-dir", "/etc/cni/net.d", "CNI configuration directory")
	f.StringVar(&o.binDir, "bin-dir", "/opt/cni/bin", "CNI bin directory")
	f.StringVar(&o.plugin, "plugin", "/usr/local/bin/netward-cni", "the netward-cni binary to install (\"\": none)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig (default: in-cluster)")
	f.StringVar(&o.podCIDR, "pod-cidr", "", "the node's pod CIDR (default: read from the Node)")
	f.DurationVar(&o.wait, "wait", 2*time.Minute, "how long to wait for the node's pod CIDR")
	return cmd
}

func (o *installCNI) run(ctx context.Context, log io.Writer) error {
	tmpl := k8s.CNIConfTemplate
	if o.template != "" {
		b, err := os.ReadFile(o.template)
		if err != nil {
			return &exitError{2, err}
		}
		tmpl = string(b)
	}
	cidrs := []string{o.podCIDR}
	if o.podCIDR == "" {
		var err error
		if cidrs, err = o.nodePodCIDRs(ctx, log); err != nil {
			return &exitError{1, err}
		}
	}
	conf, err := k8s.RenderCNIConf(tmpl, o.node, cidrs)
	if err != nil {
		return &exitError{1, err}
	}
	if o.plugin != "" {
		bin, err := os.ReadFile(o.plugin)
		if err != nil {
			return &exitError{1, err}
		}
		if err := writeAtomic(filepath.Join(o.binDir, filepath.Base(o.plugin)), bin, 0o755); err != nil {
			return &exitError{1, err}
		}
	}
	dst := filepath.Join(o.confDir, k8s.CNIConfFile)
	if err := writeAtomic(dst, conf, 0o644); err != nil {
		return &exitError{1, err}
	}
	fmt.Fprintf(log, "installed %s for node %s\n", dst, o.node)
	return nil
}

func (o *installCNI) nodePodCIDRs(ctx context.Context, log io.Writer) ([]string, error) {
	client := o.client
	if client == nil {
		cfg, _, err := k8s.RESTConfig(o.kubeconfig, "")
		if err != nil {
			return nil, err
		}
		if client, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(o.wait)
	for {
		n, err := client.CoreV1().Nodes().Get(ctx, o.node, metav1.GetOptions{})
		if err == nil {
			cidrs := n.Spec.PodCIDRs
			if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
				cidrs = []string{n.Spec.PodCIDR}
			}
			if len(cidrs) > 0 {
				return cidrs, nil
			}
			err = fmt.Errorf("node %s has no pod CIDR yet", o.node)
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		fmt.Fprintf(log, "waiting: %v\n", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// writeAtomic replaces path with data: a runtime never reads a half-written file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
