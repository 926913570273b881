package synth_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/internal/synth"
	"github.com/netward/netward/policy"
)

func configs() []synth.Config {
	return []synth.Config{
		synth.Sized(100, 50),
		synth.Sized(1000, 300),
		{Seed: 7, Namespaces: 3, Pods: 3, Policies: 3, Nodes: 1},
		{Seed: 42, Namespaces: 12, Pods: 400, Policies: 120, Nodes: 5, Mix: synth.Mix{KNP: 1, CNP: 1, CCNP: 1}},
	}
}

func TestDeterministic(t *testing.T) {
	for _, cfg := range configs() {
		a, err := synth.Marshal(synth.Generate(cfg))
		if err != nil {
			t.Fatal(err)
		}
		b, err := synth.Marshal(synth.Generate(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%+v: two runs with the same seed differ", cfg)
		}
		cfg.Seed++
		c, err := synth.Marshal(synth.Generate(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, c) {
			t.Errorf("%+v: a different seed gives the same cluster", cfg)
		}
	}
}

func TestCounts(t *testing.T) {
	for _, cfg := range configs() {
		objs := synth.Generate(cfg)
		knp, cnp, ccnp := cfg.KindCounts()
		got := []int{len(objs.Namespaces), len(objs.Pods), len(objs.Nodes), len(objs.NetworkPolicies) + len(objs.CNPs) + len(objs.CCNPs),
			len(objs.NetworkPolicies), len(objs.CNPs), len(objs.CCNPs)}
		want := []int{cfg.Namespaces, cfg.Pods, cfg.Nodes, cfg.Policies, knp, cnp, ccnp}
		for i, name := range []string{"namespaces", "pods", "nodes", "policies", "NetworkPolicies", "CiliumNetworkPolicies", "CiliumClusterwideNetworkPolicies"} {
			if got[i] != want[i] {
				t.Errorf("%+v: %d %s, want %d", cfg, got[i], name, want[i])
			}
		}
		if cfg.Policies >= 3 && (knp == 0 || cnp == 0 || ccnp == 0) {
			t.Errorf("%+v: a policy kind is missing: %d/%d/%d", cfg, knp, cnp, ccnp)
		}
	}
}

func TestDefaultMix(t *testing.T) {
	knp, cnp, ccnp := synth.Sized(10000, 1000).KindCounts()
	if knp != 400 || cnp != 450 || ccnp != 150 {
		t.Errorf("1000 policies split %d/%d/%d, want 400/450/150", knp, cnp, ccnp)
	}
}

// TestContent checks that the features the generator promises appear in a mid-sized cluster.
func TestContent(t *testing.T) {
	cfg := synth.Sized(1000, 300)
	data, err := synth.Marshal(synth.Generate(cfg))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{
		"kind: NetworkPolicy", "kind: CiliumNetworkPolicy", "kind: CiliumClusterwideNetworkPolicy",
		"pod-template-hash:", "statefulset.kubernetes.io/pod-name:", "serviceAccountName:", "name: metrics",
		"namespaceSelector:", "k8s:io.kubernetes.pod.namespace:", "io.cilium.k8s.namespace.labels.",
		"endPort:", "except:", "toEntities:", "- world", "- cluster", "- host", "ingressDeny:", "egressDeny:",
		"http:", "dns:", "toFQDNs:", "icmps:", "enableDefaultDeny:", "ipBlock:", "matchExpressions:", "specs:",
		"k8s-app: kube-dns",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in the generated cluster", want)
		}
	}
}

func TestLoadsValidatesAndBuilds(t *testing.T) {
	for _, cfg := range configs() {
		objs := synth.Generate(cfg)
		if errs := api.Validate(objs); len(errs) > 0 {
			for i, err := range errs {
				if i == 10 {
					t.Errorf("... and %d more", len(errs)-10)
					break
				}
				t.Errorf("%+v: %v", cfg, err)
			}
			continue
		}
		// The YAML decodes (strictly, for policies) into the same objects.
		data, err := synth.Marshal(objs)
		if err != nil {
			t.Fatal(err)
		}
		loaded, errs := api.LoadBytes("synth.yaml", data)
		if len(errs) > 0 {
			t.Fatalf("%+v: loading the YAML: %v", cfg, errs)
		}
		if errs := api.Validate(loaded); len(errs) > 0 {
			t.Errorf("%+v: the loaded YAML does not validate: %v", cfg, errs[0])
		}
		again, err := synth.Marshal(loaded)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, again) {
			t.Errorf("%+v: YAML does not round-trip through api.LoadBytes", cfg)
		}
		for i, o := range loaded.Pods {
			if o.Source.Doc != objs.Pods[i].Source.Doc {
				t.Fatalf("pod %d is document %d of the YAML, Source says %d", i, o.Source.Doc, objs.Pods[i].Source.Doc)
			}
		}

		c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
		if err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		if len(c.Endpoints) != cfg.Pods {
			t.Errorf("%+v: %d endpoints, want %d", cfg, len(c.Endpoints), cfg.Pods)
		}
		ips := map[netip.Addr]bool{}
		for _, ep := range c.Endpoints {
			if len(ep.IPs) != 1 || !netip.MustParsePrefix("10.0.0.0/8").Contains(ep.IPs[0]) {
				t.Fatalf("%s has addresses %v, want one in 10.0.0.0/8", ep.Key(), ep.IPs)
			}
			if ips[ep.IPs[0]] {
				t.Fatalf("%s: address %s is used twice", ep.Key(), ep.IPs[0])
			}
			ips[ep.IPs[0]] = true
			if p := c.Policy(ep); p.Err != nil {
				t.Errorf("%s: %v", ep.Key(), p.Err)
			}
		}
	}
}

func TestWriteDir(t *testing.T) {
	cfg := synth.Sized(100, 50)
	objs := synth.Generate(cfg)
	dir := t.TempDir()
	if err := synth.WriteDir(dir, objs); err != nil {
		t.Fatal(err)
	}
	loaded, errs := api.Load([]string{dir}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(loaded.Pods) != cfg.Pods || len(loaded.NetworkPolicies)+len(loaded.CNPs)+len(loaded.CCNPs) != cfg.Policies {
		t.Errorf("loaded %d pods and %d policies, want %d and %d", len(loaded.Pods),
			len(loaded.NetworkPolicies)+len(loaded.CNPs)+len(loaded.CCNPs), cfg.Pods, cfg.Policies)
	}
}

func TestCheck(t *testing.T) {
	for _, cfg := range []synth.Config{
		{Namespaces: 2, Pods: 10, Nodes: 1},
		{Namespaces: 3, Pods: 2, Nodes: 1},
		{Namespaces: 3, Pods: 10, Nodes: 0},
		{Namespaces: 3, Pods: 10, Nodes: 1, Policies: -1},
	} {
		if cfg.Check() == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
