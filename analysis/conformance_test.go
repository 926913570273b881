package analysis_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
)

// TestConformance runs every case of testdata/conformance: suite folders of case folders
// with cluster.yaml, policies.yaml and expect.tsv, in the format of the cilium-oracle tool
// (../shared/tools/cilium-oracle), whose verdicts were produced by Cilium v1.20.2's own
// engine. A suite folder may hold a cidr-match-mode file. Every flow must agree.
func TestConformance(t *testing.T) {
	root := filepath.Join("..", "testdata", "conformance")
	suites, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, s := range suites {
		if !s.IsDir() {
			continue
		}
		mode := policy.CIDRMatchMode{}
		if b, err := os.ReadFile(filepath.Join(root, s.Name(), "cidr-match-mode")); err == nil {
			m, ok := policy.ParseCIDRMatchMode(strings.TrimSpace(string(b)))
			if !ok {
				t.Fatalf("%s: bad cidr-match-mode %q", s.Name(), b)
			}
			mode = m
		}
		cases, _ := filepath.Glob(filepath.Join(root, s.Name(), "[0-9]*"))
		for _, dir := range cases {
			t.Run(s.Name()+"/"+filepath.Base(dir), func(t *testing.T) {
				total += runCase(t, dir, mode)
			})
		}
	}
	if total == 0 {
		t.Fatal("no conformance flows found")
	}
	t.Logf("%d conformance flows", total)
}

func runCase(t *testing.T, dir string, mode policy.CIDRMatchMode) int {
	t.Helper()
	objs, errs := api.Load([]string{filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "policies.yaml")}, nil)
	if len(errs) > 0 {
		t.Fatalf("load: %v", errs)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: policy.Options{CIDRMatch: mode, AllowLocalhost: true}})
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(filepath.Join(dir, "expect.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	exps, perrs := analysis.ParseExpectations(fh)
	if len(perrs) > 0 {
		t.Fatalf("expect.tsv: %v", perrs)
	}
	rep, cerrs := analysis.Check(c, exps)
	if len(cerrs) > 0 {
		t.Fatalf("check: %v", cerrs)
	}
	for _, f := range rep.Flows {
		if !f.Pass {
			t.Errorf("line %d: %s -> %s %s %s: Cilium says %s, netward says %s: %s", f.Line, f.From, f.To, f.Port, f.HTTP, f.Expected, f.Actual, f.Reason)
		}
	}
	return len(rep.Flows)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
