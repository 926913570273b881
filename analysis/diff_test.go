package analysis_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
)

func build(t *testing.T, yamls ...string) *cluster.Cluster {
	t.Helper()
	objs, errs := api.LoadBytes("test.yaml", []byte(strings.Join(yamls, "\n---\n")))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if errs := api.Validate(objs); len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDiffOfASetWithItselfIsEmpty runs diff on the example and on conformance cases.
func TestDiffOfASetWithItselfIsEmpty(t *testing.T) {
	d, err := analysis.DiffClusters(context.Background(), shop(t), shop(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Changes) != 0 || d.Widening {
		t.Fatalf("self diff of the example: %+v", d.Changes)
	}
	cases, _ := filepath.Glob("../testdata/conformance/*/0[0-4]*")
	if len(cases) == 0 {
		t.Fatal("no conformance cases")
	}
	for _, dir := range cases {
		load := func() *cluster.Cluster {
			objs, errs := api.Load([]string{filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "policies.yaml")}, nil)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		d, err := analysis.DiffClusters(context.Background(), load(), load())
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Changes) != 0 {
			t.Errorf("%s: self diff not empty: %+v", dir, d.Changes[0])
		}
	}
}

const diffCluster = `apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}`

const denyAll = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}}`

const allowA80 = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 80}]`

const httpOnly = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b-http, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: a}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET}]}`

func findChange(d *analysis.Diff, from, to string) *analysis.ConnectionChange {
	for i := range d.Changes {
		if d.Changes[i].From == from && d.Changes[i].To == to {
			return &d.Changes[i]
		}
	}
	return nil
}

func TestDiffAddedConnectionIsWidening(t *testing.T) {
	d, err := analysis.DiffClusters(context.Background(), build(t, diffCluster, denyAll), build(t, diffCluster, denyAll, allowA80))
	if err != nil {
		t.Fatal(err)
	}
	c := findChange(d, "x/a", "x/b")
	if c == nil || c.Kind != analysis.Added || !d.Widening || len(d.Changes) != 1 {
		t.Fatalf("changes: %+v", d.Changes)
	}
	pc := c.Changes[0]
	if pc.Was != "TCP 80 denied" || pc.Now != "TCP 80" || !pc.Widening || len(pc.Rules) != 1 || pc.Rules[0] != "NetworkPolicy x/b-from-a spec.ingress[0].from[0]" {
		t.Errorf("port change: %+v", pc)
	}
}

func TestDiffRemovedConnectionIsNotWidening(t *testing.T) {
	d, err := analysis.DiffClusters(context.Background(), build(t, diffCluster, denyAll, allowA80), build(t, diffCluster, denyAll))
	if err != nil {
		t.Fatal(err)
	}
	c := findChange(d, "x/a", "x/b")
	if c == nil || c.Kind != analysis.Removed || d.Widening {
		t.Fatalf("changes: %+v widening %v", d.Changes, d.Widening)
	}
	if !strings.Contains(c.Changes[0].Reason, "default deny") {
		t.Errorf("a removed range is explained by the head's default deny: %q", c.Changes[0].Reason)
	}
}

// TestDiffL7Loosening: adding a NetworkPolicy port allow next to a CNP HTTP rule removes
// the HTTP restriction (§2.5): a widening although the set of open ports is unchanged.
func TestDiffL7Loosening(t *testing.T) {
	d, err := analysis.DiffClusters(context.Background(), build(t, diffCluster, denyAll, httpOnly), build(t, diffCluster, denyAll, httpOnly, allowA80))
	if err != nil {
		t.Fatal(err)
	}
	c := findChange(d, "x/a", "x/b")
	if c == nil || c.Kind != analysis.Changed || !d.Widening {
		t.Fatalf("changes: %+v", d.Changes)
	}
	pc := c.Changes[0]
	if pc.Was != "TCP 80 [HTTP GET]" || pc.Now != "TCP 80 [HTTP any request]" || !pc.Widening {
		t.Errorf("port change: %+v", pc)
	}
	// and narrowing back is not a widening
	d, _ = analysis.DiffClusters(context.Background(), build(t, diffCluster, denyAll, httpOnly, allowA80), build(t, diffCluster, denyAll, httpOnly))
	if d.Widening || len(d.Changes) != 1 {
		t.Errorf("narrowing: widening=%v changes=%+v", d.Widening, d.Changes)
	}
}
