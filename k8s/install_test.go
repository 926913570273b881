package k8s

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/netward/netward/cni"
)

// installDocs splits the install YAML into its documents, by kind.
func installDocs(t *testing.T, y []byte) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(y)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var h struct{ Kind string }
		if err := yaml.Unmarshal(doc, &h); err != nil {
			t.Fatal(err)
		}
		if h.Kind == "" {
			continue
		}
		out[h.Kind] = append(out[h.Kind], doc)
	}
	return out
}

func strictInto(t *testing.T, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
}

func TestInstallManifests(t *testing.T) {
	y, err := InstallYAML(InstallOptions{Namespace: "kube-system", Image: "example.com/netward:v1", ClusterName: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	docs := installDocs(t, y)
	var kinds []string
	for k, d := range docs {
		for range d {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	if want := []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "CustomResourceDefinition", "DaemonSet", "Namespace", "ServiceAccount"}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	for _, d := range docs["CustomResourceDefinition"] {
		var crd apiextv1.CustomResourceDefinition
		strictInto(t, d, &crd)
	}

	// RBAC: read everything the Source watches, patch the policies' status.
	var role rbacv1.ClusterRole
	strictInto(t, docs["ClusterRole"][0], &role)
	allows := func(group, resource, verb string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, gr := range [][2]string{{"", "pods"}, {"", "namespaces"}, {"", "nodes"}, {"networking.k8s.io", "networkpolicies"},
		{"cilium.io", "ciliumnetworkpolicies"}, {"cilium.io", "ciliumclusterwidenetworkpolicies"}} {
		for _, v := range []string{"get", "list", "watch"} {
			if !allows(gr[0], gr[1], v) {
				t.Errorf("ClusterRole does not allow %s %s/%s", v, gr[0], gr[1])
			}
		}
	}
	for _, r := range []string{"ciliumnetworkpolicies/status", "ciliumclusterwidenetworkpolicies/status"} {
		if !allows("cilium.io", r, "patch") || !allows("cilium.io", r, "update") {
			t.Errorf("ClusterRole does not allow patching %s", r)
		}
		if allows("cilium.io", strings.TrimSuffix(r, "/status"), "patch") {
			t.Errorf("ClusterRole allows changing the policies themselves")
		}
	}
	var binding rbacv1.ClusterRoleBinding
	strictInto(t, docs["ClusterRoleBinding"][0], &binding)
	if binding.Subjects[0].Namespace != "kube-system" || binding.Subjects[0].Name != AgentName || binding.RoleRef.Name != role.Name {
		t.Errorf("binding %+v", binding)
	}

	// The agent DaemonSet.
	var ds appsv1.DaemonSet
	strictInto(t, docs["DaemonSet"][0], &ds)
	spec := ds.Spec.Template.Spec
	if ds.Namespace != "kube-system" || !spec.HostNetwork || spec.ServiceAccountName != AgentName {
		t.Errorf("daemonset %s/%s hostNetwork=%v sa=%s", ds.Namespace, ds.Name, spec.HostNetwork, spec.ServiceAccountName)
	}
	agent := spec.Containers[0]
	if agent.SecurityContext == nil || agent.SecurityContext.Privileged == nil || !*agent.SecurityContext.Privileged {
		t.Error("agent is not privileged")
	}
	if agent.Image != "example.com/netward:v1" {
		t.Errorf("image %s", agent.Image)
	}
	if got := strings.Join(append(agent.Command, agent.Args...), " "); got != "/usr/local/bin/netward agent --kubeconfig= --node=$(NODE_NAME) --cluster-name=prod" {
		t.Errorf("agent command %q", got)
	}
	if len(agent.Env) != 1 || agent.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("agent env %+v", agent.Env)
	}
	mounts := map[string]string{}
	for _, m := range agent.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, p := range []string{"/sys/fs/bpf", "/run/netward", "/var/lib/netward", "/opt/cni/bin", "/etc/cni/net.d"} {
		if hostPaths[mounts[p]] != p {
			t.Errorf("%s is not the host's %s (volume %q)", p, p, mounts[p])
		}
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Operator == corev1.TolerationOpExists && t.Key == "" }) {
		t.Error("the agent does not tolerate every taint")
	}
	initc := spec.InitContainers[0]
	if initc.Args[0] != "install" || initc.Args[1] != "cni" {
		t.Errorf("init container %v", initc.Args)
	}

	// The CNI configuration template renders into a configuration netward-cni accepts.
	var cm corev1.ConfigMap
	strictInto(t, docs["ConfigMap"][0], &cm)
	conf, err := RenderCNIConf(cm.Data[CNIConfFile], "node-7", []string{"fd00::/64", "10.244.7.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(conf, &list); err != nil {
		t.Fatal(err)
	}
	plugin := list.Plugins[0]
	plugin["cniVersion"], plugin["name"] = list.CNIVersion, list.Name
	b, _ := json.Marshal(plugin)
	nc, err := cni.ParseNetConf(b)
	if err != nil {
		t.Fatal(err)
	}
	if nc.AgentSocket != "/run/netward/node-7.sock" || nc.SubnetPrefix.String() != "10.244.7.0/24" || nc.Type != cni.PluginType {
		t.Errorf("rendered configuration %+v", nc)
	}
	if _, err := RenderCNIConf(CNIConfTemplate, "node-8", nil); err == nil || !strings.Contains(err.Error(), "pod CIDR") {
		t.Errorf("no pod CIDR: %v", err)
	}
}

func TestInstallJSON(t *testing.T) {
	j, err := InstallJSON(InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind  string
		Items []struct{ Kind string }
	}
	if err := json.Unmarshal(j, &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "List" || len(list.Items) != 8 || list.Items[0].Kind != "CustomResourceDefinition" || list.Items[7].Kind != "DaemonSet" {
		t.Errorf("list %+v", list)
	}
}
