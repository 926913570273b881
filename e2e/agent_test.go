//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/netward/netward/agent"
)

// realAgent is the netward agent, in the test process, serving the harness's node.
type realAgent struct {
	a      *agent.Agent
	client *agent.Client
	h      *Harness
}

// startAgent starts the real agent for the harness's node: policies from ManifestDir, its
// datapath attached in the node netns, pins in a directory of its own.
func startAgent(t *testing.T, h *Harness) Agent {
	t.Helper()
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("SKIPPED: no BTF (/sys/kernel/btf/vmlinux): the datapath cannot load")
	}
	pinDir := filepath.Join("/sys/fs/bpf", "netward-e2e-"+h.Prefix)
	logw := io.Writer(io.Discard)
	if testing.Verbose() {
		logw = os.Stderr
	}
	cfg := agent.Config{
		Node:        h.Config.NodeName,
		PoliciesDir: h.ManifestDir,
		NodeNetns:   h.NodeNetnsPath(),
		APISocket:   h.AgentSocket,
		PinDir:      pinDir,
		StateDir:    filepath.Join(h.Dir, "agent-state"),
		Logger:      slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo})),
		// The options trace resolves with (Harness.Cluster: netward trace's defaults).
		Policy: traceOptions(),
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	if err := a.Start(context.Background()); err != nil {
		a.Close()
		t.Fatalf("agent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("agent close: %v", err)
		}
	})
	ra := &realAgent{a: a, client: agent.NewClient(h.AgentSocket), h: h}
	ra.Settle(t, time.Time{})
	return ra
}

func (r *realAgent) Settle(t testing.TB, since time.Time) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		last = r.settled(ctx, since)
		if last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the agent did not settle in 30 s: %s", last)
}

// settled says what is still missing ("" when nothing).
func (r *realAgent) settled(ctx context.Context, since time.Time) string {
	if _, ok, err := r.client.Health(ctx); err != nil || !ok {
		return fmt.Sprintf("not healthy (%v)", err)
	}
	st, err := r.client.Status(ctx)
	if err != nil {
		return err.Error()
	}
	if st.LastError != nil && !st.LastError.Time.Before(since) {
		return "the manifests were rejected: " + st.LastError.Message
	}
	if st.LastLoad == nil || st.LastLoad.Before(since) {
		return "no load since the change"
	}
	if st.Enforcing != "current" {
		return "enforcing " + st.Enforcing
	}
	eps, err := r.client.Endpoints(ctx)
	if err != nil {
		return err.Error()
	}
	if len(eps) != len(r.h.Pods) {
		return fmt.Sprintf("%d endpoints, %d pods", len(eps), len(r.h.Pods))
	}
	for _, e := range eps {
		if e.State != "enforcing" || !e.KnownPod {
			return fmt.Sprintf("endpoint %s: state %s, known pod %v, %s", e.Pod, e.State, e.KnownPod, e.Error)
		}
	}
	return ""
}
