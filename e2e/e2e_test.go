//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/netward/netward/cluster"
)

// Agent is what the end-to-end test needs of a running node agent (agent_test.go).
type Agent interface {
	// Settle waits until the agent enforces the manifest directory as written after since:
	// its last load is later, valid, and every endpoint enforces it.
	Settle(t testing.TB, since time.Time)
}

// TestEndToEnd is the judged test: an agent, three namespaces of pods attached by the real
// plugin, policies of all three kinds from a directory, then real TCP, UDP, SCTP and ICMP for
// every ordered pair of pods, the host and the world, on every port of the policies; every
// outcome must be what netward trace says. Then the policies change (one of each kind, and a
// NetworkPolicy is deleted) and the same check runs again.
func TestEndToEnd(t *testing.T) {
	h := New(t, Config{})
	h.SetCluster("testdata/cluster")
	h.SetPolicies("testdata/policies-1")
	ag := startAgent(t, h)
	written := h.AddPods() // writes the pods' addresses into the manifests
	ag.Settle(t, written)
	h.CheckPods() // CHECK and STATUS against the real agent

	ports := testdataPorts(t)
	flows := h.Flows(ports)
	c1 := h.Cluster()
	t.Logf("%d places, ports %v: %d flows per round", len(h.Places()), ports, len(flows))
	start := time.Now()
	r1 := h.Run(c1, flows, 128)
	t.Logf("round 1 probed in %v", time.Since(start).Round(time.Millisecond))
	Report(t, "policies-1", r1)

	changedAt := time.Now()
	h.SetPolicies("testdata/policies-2")
	ag.Settle(t, changedAt)
	c2 := h.Cluster()
	changed := changedFlows(t, c1, c2, flows)
	t.Logf("the change flips %d flows", len(changed))
	if len(changed) == 0 {
		t.Fatal("policies-2 changes no verdict: the second round would prove nothing")
	}
	// Settle says the agent applied the change; the flipped flows show the datapath did.
	if bad := h.WaitFor(c2, changed, 20*time.Second); len(bad) > 0 {
		Report(t, "policies-2 (flows the change flips, after 20 s)", bad)
	}
	start = time.Now()
	r2 := h.Run(c2, flows, 128)
	t.Logf("round 2 probed in %v", time.Since(start).Round(time.Millisecond))
	Report(t, "policies-2", r2)
}

// changedFlows are the flows whose trace verdict differs between c1 and c2.
func changedFlows(t testing.TB, c1, c2 *cluster.Cluster, flows []Flow) []Flow {
	t.Helper()
	e1, err := Expect(c1, flows)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := Expect(c2, flows)
	if err != nil {
		t.Fatal(err)
	}
	var out []Flow
	for i, f := range flows {
		if e1[i].Allowed != e2[i].Allowed {
			out = append(out, f)
		}
	}
	return out
}
