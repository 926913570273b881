package main

import (
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/netward/netward/k8s"
)

func TestAgentCommandFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--node", "n1"}, "--policies DIR or --kubeconfig PATH is required"},
		{[]string{"agent", "--node", "n1", "--policies", t.TempDir(), "--kubeconfig", ""}, "not both"},
		{[]string{"agent", "--node", "n1", "--kubeconfig", "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"},
		{[]string{"agent", "--policies", t.TempDir()}, "--node NAME is required"},
		{[]string{"agent", "--policies", "/nonexistent/dir", "--node", "n1"}, "not a directory"},
		{[]string{"agent", "--policies", t.TempDir(), "--node", "n1", "--log-format", "xml"}, "--log-format"},
		{[]string{"agent", "--policies", t.TempDir(), "--node", "n1", "--cidr-match-mode", "bogus"}, "--cidr-match-mode"},
	} {
		_, errOut, code := run(t, "", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestAgentSocketResolution(t *testing.T) {
	if s, err := agentSocket("/x/y.sock", "n1"); err != nil || s != "/x/y.sock" {
		t.Errorf("explicit socket: %q %v", s, err)
	}
	if s, err := agentSocket("", "n1"); err != nil || s != "/run/netward/n1.sock" {
		t.Errorf("node socket: %q %v", s, err)
	}
}

// The DaemonSet of `netward install` runs the agent with arguments this command must accept
// and read as "watch the cluster" (here without a reachable cluster: the kubeconfig error).
func TestInstalledAgentArgs(t *testing.T) {
	objs, err := k8s.InstallObjects(k8s.InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, o := range objs {
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			for _, c := range ds.Spec.Template.Spec.Containers {
				if c.Name == "agent" {
					args = c.Args
				}
			}
		}
	}
	if len(args) == 0 || args[0] != "agent" {
		t.Fatalf("no agent container in the DaemonSet: %v", args)
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "$(NODE_NAME)", "node-1")
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, errOut, code := run(t, "", args...)
	if code != 2 || !strings.Contains(errOut, "kubeconfig") || strings.Contains(errOut, "--policies") {
		t.Errorf("%v: exit %d, stderr %q; want exit 2 with the kubeconfig error", args, code, errOut)
	}
}
