package main

import (
	"strings"
	"testing"
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
