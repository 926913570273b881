package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// `netward install` with the default flags prints deploy/kubernetes/netward.yaml.
func TestInstallPrintsCommittedDeployment(t *testing.T) {
	out, errOut, code := run(t, "", "install")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	want, err := os.ReadFile("../../deploy/kubernetes/netward.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Error("netward install differs from deploy/kubernetes/netward.yaml (run `go generate ./k8s`)")
	}
	out, _, code = run(t, "", "install", "--crds")
	if code != 0 || strings.Count(out, "kind: CustomResourceDefinition") != 2 || strings.Contains(out, "DaemonSet") {
		t.Errorf("--crds: code %d", code)
	}
}

func TestInstallOptions(t *testing.T) {
	out, errOut, code := run(t, "", "install", "-o", "json", "-n", "kube-system", "--image", "registry.local/netward:dev", "--image-pull-policy", "Never")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	var list struct {
		Items []map[string]any
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 8 {
		t.Fatalf("%d items", len(list.Items))
	}
	for _, want := range []string{`"namespace": "kube-system"`, `"image": "registry.local/netward:dev"`, `"imagePullPolicy": "Never"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s", want)
		}
	}
	for _, bad := range [][]string{{"install", "-o", "xml"}, {"install", "--image-pull-policy", "Sometimes"}, {"install", "--crds", "-o", "json"}} {
		if _, _, code := run(t, "", bad...); code != 2 {
			t.Errorf("%v: code %d, want 2", bad, code)
		}
	}
}

// The init container's job: the plugin binary and the rendered configuration, from the
// Node's pod CIDR.
func TestInstallCNI(t *testing.T) {
	dir := t.TempDir()
	plugin := writeFile(t, dir, "netward-cni", "#!/bin/sh\n")
	tmpl := writeFile(t, dir, "tmpl.conflist", `{"cniVersion":"1.1.0","name":"netward","plugins":[{"type":"netward-cni","agentSocket":"/run/netward/${NODE_NAME}.sock","subnet":"${POD_CIDR}"}]}`)
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.3.0/24"}}})
	o := &installCNI{node: "n1", template: tmpl, confDir: filepath.Join(dir, "net.d"), binDir: filepath.Join(dir, "bin"), plugin: plugin, client: client, wait: time.Second}
	if err := o.run(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "net.d", "10-netward.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), `"agentSocket":"/run/netward/n1.sock","subnet":"10.244.3.0/24"`) {
		t.Errorf("configuration %s", conf)
	}
	st, err := os.Stat(filepath.Join(dir, "bin", "netward-cni"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("plugin: %v %v", st, err)
	}
	// A node without a pod CIDR is an error once --wait is over.
	o.node, o.wait = "n2", 0
	client.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}}, metav1.CreateOptions{})
	if err := o.run(context.Background(), io.Discard); err == nil || !strings.Contains(err.Error(), "no pod CIDR") {
		t.Errorf("node without pod CIDR: %v", err)
	}
	// --pod-cidr skips the API.
	o.podCIDR, o.client = "10.244.9.0/24", nil
	if err := o.run(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, _, code := run(t, "", "install", "cni"); code != 2 {
		t.Errorf("install cni without --node: code %d", code)
	}
}
