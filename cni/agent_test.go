//go:build linux

package cni_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netward/netward/cni"
	"github.com/netward/netward/cni/cnitest"
)

// The agent client against the fake agent; no root needed.
func TestAgentClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	fake := cnitest.StartFakeAgent(t, sock)
	a := cni.NewAgent(sock)
	ctx := context.Background()
	req := cni.EndpointRequest{ContainerID: "c1", Netns: "/var/run/netns/p", IfName: "eth0", HostIfName: "nwabc", PodNamespace: "ns", PodName: "p", IPs: []string{"10.244.1.2"}}
	body, err := a.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"pod":"ns/p"`) {
		t.Errorf("answer %s", body)
	}
	if got := fake.Registrations(); len(got) != 1 || got[0].HostIfName != "nwabc" || got[0].IPs[0] != "10.244.1.2" {
		t.Errorf("registrations %+v", got)
	}
	if ok, err := a.Registered(ctx, "c1"); err != nil || !ok {
		t.Errorf("registered: %v %v", ok, err)
	}
	if ok, err := a.Registered(ctx, "c2"); err != nil || ok {
		t.Errorf("c2 registered: %v %v", ok, err)
	}
	if err := a.Healthy(ctx); err != nil {
		t.Error(err)
	}
	if err := a.Deregister(ctx, "c1"); err != nil {
		t.Error(err)
	}
	if err := a.Deregister(ctx, "c1"); err != nil {
		t.Errorf("deregister of an unknown endpoint (404) should succeed: %v", err)
	}

	fake.FailRegistrations(http.StatusInternalServerError)
	_, err = a.Register(ctx, req)
	var ae *cni.AgentError
	if !errors.As(err, &ae) || ae.Status != 500 || cni.IsUnreachable(err) {
		t.Errorf("register against a failing agent: %v", err)
	}
	fake.SetHealthy(false)
	if err := a.Healthy(ctx); err == nil {
		t.Error("unhealthy agent reported healthy")
	}

	fake.Close()
	if _, err := a.Register(ctx, req); !cni.IsUnreachable(err) {
		t.Errorf("agent gone: %v, want unreachable", err)
	}
	if err := a.Healthy(ctx); !cni.IsUnreachable(err) {
		t.Errorf("agent gone: %v", err)
	}
}
