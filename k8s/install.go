package k8s

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	deploy "github.com/netward/netward/deploy/kubernetes"
)

// InstallOptions parameterize the deployment `netward install` prints.
type InstallOptions struct {
	// Namespace of the agent's DaemonSet, ServiceAccount and ConfigMap.
	Namespace string
	// Image has /usr/local/bin/netward and /usr/local/bin/netward-cni.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// ClusterName is passed to the agent (io.cilium.k8s.policy.cluster); "" leaves the
	// agent's default.
	ClusterName string
	// CRDs are the CRD files (default: the embedded deploy/kubernetes/crds).
	CRDs map[string][]byte
}

// Defaults of InstallOptions.
const (
	DefaultInstallNamespace = "netward-system"
	DefaultImage            = "ghcr.io/netward/netward:latest"
	// AgentName names the DaemonSet, ServiceAccount, ClusterRole and ClusterRoleBinding.
	AgentName = "netward-agent"
	// CNIConfigMapName holds the CNI configuration template.
	CNIConfigMapName = "netward-cni-config"
	// CNIConfFile is the configuration list's file name in the ConfigMap and on the node.
	CNIConfFile = "10-netward.conflist"
)

// CNIConfTemplate is the CNI configuration list the agent's init container installs on
// every node, after replacing ${NODE_NAME} and ${POD_CIDR} (the Node's spec.podCIDR): the
// plugin's agentSocket and subnet are per node.
const CNIConfTemplate = `{
  "cniVersion": "1.1.0",
  "cniVersions": ["1.0.0", "1.1.0"],
  "name": "netward",
  "plugins": [
    {
      "type": "netward-cni",
      "agentSocket": "/run/netward/${NODE_NAME}.sock",
      "subnet": "${POD_CIDR}",
      "ipamDataDir": "/var/lib/netward/ipam",
      "mtu": 1500
    }
  ]
}
`

// RenderCNIConf fills in the CNI configuration template for a node. podCIDRs are the
// Node's spec.podCIDRs (or spec.podCIDR): the first IPv4 one is used, as netward-cni
// allocates IPv4 only.
func RenderCNIConf(template, node string, podCIDRs []string) ([]byte, error) {
	if node == "" {
		return nil, fmt.Errorf("CNI configuration: no node name")
	}
	cidr := ""
	for _, c := range podCIDRs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
			cidr = p.Masked().String()
			break
		}
	}
	if cidr == "" {
		return nil, fmt.Errorf("node %s has no IPv4 pod CIDR (spec.podCIDRs %v): netward-cni needs one per node (kube-controller-manager --allocate-node-cidrs, or set it on the Node)", node, podCIDRs)
	}
	out := strings.NewReplacer("${NODE_NAME}", node, "${POD_CIDR}", cidr).Replace(template)
	if !json.Valid([]byte(out)) {
		return nil, fmt.Errorf("CNI configuration for node %s is not valid JSON", node)
	}
	return []byte(out), nil
}

func (o *InstallOptions) setDefaults() error {
	if o.Namespace == "" {
		o.Namespace = DefaultInstallNamespace
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.ImagePullPolicy == "" {
		o.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if o.CRDs == nil {
		crds, err := EmbeddedCRDs()
		if err != nil {
			return err
		}
		o.CRDs = crds
	}
	for _, f := range CRDFiles {
		if len(o.CRDs[f]) == 0 {
			return fmt.Errorf("install: CRD file %s missing", f)
		}
	}
	return nil
}

// EmbeddedCRDs returns the CRD files compiled into the binary.
func EmbeddedCRDs() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, f := range CRDFiles {
		b, err := fs.ReadFile(deploy.CRDs, "crds/"+f)
		if err != nil {
			return nil, err
		}
		out[f] = b
	}
	return out, nil
}

// InstallObjects returns the deployment besides the CRDs: Namespace, ServiceAccount,
// ClusterRole, ClusterRoleBinding, the CNI ConfigMap and the agent DaemonSet.
func InstallObjects(o InstallOptions) ([]any, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	labels := map[string]string{"app.kubernetes.io/name": "netward", "app.kubernetes.io/component": "agent"}
	meta := func(name string, namespaced bool) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: name, Labels: labels}
		if namespaced {
			m.Namespace = o.Namespace
		}
		return m
	}
	ns := &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Namespace, Labels: map[string]string{"app.kubernetes.io/name": "netward"}},
	}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta(AgentName, true),
	}
	read := []string{"get", "list", "watch"}
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta(AgentName, false),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "namespaces", "nodes"}, Verbs: read},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: read},
			{APIGroups: []string{CNPResource.Group}, Resources: []string{CNPResource.Resource, CCNPResource.Resource}, Verbs: read},
			{APIGroups: []string{CNPResource.Group}, Resources: []string{CNPResource.Resource + "/status", CCNPResource.Resource + "/status"}, Verbs: []string{"get", "update", "patch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta(AgentName, false),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: AgentName},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: AgentName, Namespace: o.Namespace}},
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(CNIConfigMapName, true),
		Data:       map[string]string{CNIConfFile: CNIConfTemplate},
	}

	privileged := true
	hostPath := func(name, path string, t corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &t}}}
	}
	bidirectional := corev1.MountPropagationBidirectional
	hostToContainer := corev1.MountPropagationHostToContainer
	nodeName := corev1.EnvVar{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "spec.nodeName"}}}
	cniMounts := []corev1.VolumeMount{
		{Name: "cni-bin", MountPath: "/opt/cni/bin"},
		{Name: "cni-conf", MountPath: "/etc/cni/net.d"},
	}
	agentArgs := []string{"agent", "--kubeconfig=", "--node=$(NODE_NAME)"}
	if o.ClusterName != "" {
		agentArgs = append(agentArgs, "--cluster-name="+o.ClusterName)
	}
	maxUnavailable := intstr.FromInt32(1)
	grace := int64(10)
	ds := &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: meta(AgentName, true),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &maxUnavailable},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: AgentName,
					HostNetwork:        true,
					DNSPolicy:          corev1.DNSClusterFirstWithHostNet,
					PriorityClassName:  "system-node-critical",
					// A CNI plugin's agent runs on every node, tainted or not.
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					TerminationGracePeriodSeconds: &grace,
					InitContainers: []corev1.Container{{
						Name:    "install-cni",
						Image:   o.Image,
						Command: []string{"/usr/local/bin/netward"},
						Args: []string{"install", "cni", "--node=$(NODE_NAME)",
							"--template=/etc/netward/cni/" + CNIConfFile,
							"--conf-dir=/etc/cni/net.d", "--bin-dir=/opt/cni/bin",
							"--plugin=/usr/local/bin/netward-cni"},
						ImagePullPolicy: o.ImagePullPolicy,
						Env:             []corev1.EnvVar{nodeName},
						VolumeMounts: append(cniMounts[:2:2],
							corev1.VolumeMount{Name: "cni-template", MountPath: "/etc/netward/cni", ReadOnly: true}),
					}},
					Containers: []corev1.Container{{
						Name:            "agent",
						Image:           o.Image,
						Command:         []string{"/usr/local/bin/netward"},
						Args:            agentArgs,
						ImagePullPolicy: o.ImagePullPolicy,
						Env:             []corev1.EnvVar{nodeName},
						SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU:    resource.MustParse("100m"),
							corev1.ResourceMemory: resource.MustParse("128Mi"),
						}},
						VolumeMounts: append([]corev1.VolumeMount{
							{Name: "bpffs", MountPath: "/sys/fs/bpf", MountPropagation: &bidirectional},
							{Name: "run", MountPath: "/run/netward"},
							{Name: "state", MountPath: "/var/lib/netward"},
							{Name: "netns", MountPath: "/var/run/netns", MountPropagation: &hostToContainer},
						}, cniMounts...),
					}},
					Volumes: []corev1.Volume{
						hostPath("bpffs", "/sys/fs/bpf", corev1.HostPathDirectoryOrCreate),
						hostPath("run", "/run/netward", corev1.HostPathDirectoryOrCreate),
						hostPath("state", "/var/lib/netward", corev1.HostPathDirectoryOrCreate),
						hostPath("netns", "/var/run/netns", corev1.HostPathDirectoryOrCreate),
						hostPath("cni-bin", "/opt/cni/bin", corev1.HostPathDirectoryOrCreate),
						hostPath("cni-conf", "/etc/cni/net.d", corev1.HostPathDirectoryOrCreate),
						{Name: "cni-template", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: CNIConfigMapName}}}},
					},
				},
			},
		},
	}
	return []any{ns, sa, role, binding, cm, ds}, nil
}

// InstallYAML renders the whole deployment as one YAML stream: the CRDs first (as
// generated), then InstallObjects.
func InstallYAML(o InstallOptions) ([]byte, error) {
	objs, err := InstallObjects(o)
	if err != nil {
		return nil, err
	}
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# netward: CiliumNetworkPolicy/CiliumClusterwideNetworkPolicy CRDs, RBAC, CNI configuration\n")
	b.WriteString("# and the node agent. Generated by `netward install`; see docs/kubernetes.md.\n")
	for _, f := range CRDFiles {
		b.WriteString("---\n")
		b.Write(stripHeader(o.CRDs[f]))
	}
	for _, obj := range objs {
		y, err := cleanYAML(obj, "status")
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}

// InstallJSON renders the whole deployment as a v1 List.
func InstallJSON(o InstallOptions) ([]byte, error) {
	y, err := InstallYAML(o)
	if err != nil {
		return nil, err
	}
	var items []json.RawMessage
	for _, doc := range strings.Split(string(y), "\n---\n") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(j)); s == "" || s == "null" {
			continue
		}
		items = append(items, j)
	}
	list := map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// stripHeader drops the comment lines and the document marker a CRD file starts with.
func stripHeader(b []byte) []byte {
	for {
		switch {
		case bytes.HasPrefix(b, []byte("#")):
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[i+1:]
				continue
			}
			return nil
		case bytes.HasPrefix(b, []byte("---\n")):
			b = b[4:]
			continue
		}
		return b
	}
}
