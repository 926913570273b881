package policy_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/internal/synth"
	"github.com/netward/netward/policy"
)

// Benchmarks of the engine on synthetic clusters (internal/synth) of three sizes. Names are
// Benchmark<What>/pods=<N>/policies=<M>; scripts/bench.sh parses them into
// docs/performance.md. Run single-core:
//
//	go test -run '^$' -bench . -benchmem -count 1 -cpu 1 ./policy

type benchSize struct{ pods, policies int }

var benchSizes = []benchSize{{100, 50}, {1000, 300}, {10000, 1000}}

func (s benchSize) String() string { return fmt.Sprintf("pods=%d/policies=%d", s.pods, s.policies) }

func buildSynth(tb testing.TB, cfg synth.Config) (*cluster.Cluster, *api.Objects) {
	tb.Helper()
	objs := synth.Generate(cfg)
	c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
	if err != nil {
		tb.Fatal(err)
	}
	return c, objs
}

// compileAll compiles the policy of every endpoint and returns the sum of their map sizes
// (every endpoint has its own policy map in the datapath, even when it shares the compiled
// policy of its identity).
func compileAll(c *cluster.Cluster) int {
	n := 0
	for _, ep := range c.Endpoints {
		n += c.Policy(ep).Map.Len()
	}
	return n
}

// BenchmarkCompileCluster compiles the policy of every endpoint of the cluster from scratch
// (the engine compiles once per identity and node view; pods that share an identity share
// the result).
func BenchmarkCompileCluster(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.String(), func(b *testing.B) {
			c, _ := buildSynth(b, synth.Sized(s.pods, s.policies))
			compileAll(c) // warm the selector cache, as a running agent has it
			var entries, n int
			var compiles uint64
			cpu := startCPU()
			b.ReportAllocs()
			for b.Loop() {
				c.Engine.Invalidate()
				before := c.Engine.Compiles()
				entries = compileAll(c)
				compiles = c.Engine.Compiles() - before
				n++
			}
			cpu.report(b, n)
			b.ReportMetric(float64(entries), "entries/op")
			b.ReportMetric(float64(compiles), "compiles/op")
			b.ReportMetric(float64(len(c.Endpoints)), "endpoints")
		})
	}
}

// processCPU returns the CPU time (user and system) the process has used so far, with the
// 10 ms resolution of /proc/self/stat; ok is false where that file does not exist.
func processCPU() (cpu time.Duration, ok bool) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// Fields after "(comm)": state is field 3, utime field 14, stime field 15 (proc(5)).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const userHZ = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(ut+st) * time.Second / userHZ, true
}

// cpuMeter measures the CPU time of a benchmark loop. Unlike ns/op (wall time) it does not
// grow when other processes compete for the core, which makes runs on a busy machine
// comparable.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuMeter {
	t, ok := processCPU()
	return cpuMeter{t, ok}
}

// report adds the metric cpu-ns/op for n iterations (on Linux only).
func (m cpuMeter) report(b *testing.B, n int) {
	if t, ok := processCPU(); ok && m.ok && n > 0 {
		b.ReportMetric(float64(t-m.start)/float64(n), "cpu-ns/op")
	}
}

type lookupQuery struct {
	p      *policy.EndpointPolicy
	egress bool
	peer   identity.ID
	proto  uint8
	port   uint16
}

// BenchmarkLookup decides random flows (endpoint, direction, peer identity, protocol, port)
// on compiled policies: one op is one Lookup.
func BenchmarkLookup(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.String(), func(b *testing.B) {
			c, _ := buildSynth(b, synth.Sized(s.pods, s.policies))
			compileAll(c)
			qs := lookupQueries(c, 1<<16)
			allowed := 0
			i := 0
			cpu := startCPU()
			b.ReportAllocs()
			for b.Loop() {
				q := &qs[i&(len(qs)-1)]
				if q.p.Lookup(q.egress, q.peer, q.proto, q.port).Allowed {
					allowed++
				}
				i++
			}
			cpu.report(b, i)
			b.ReportMetric(100*float64(allowed)/float64(i), "%allowed")
		})
	}
}

func lookupQueries(c *cluster.Cluster, n int) []lookupQuery {
	r := rand.New(rand.NewPCG(1, 2))
	peers := c.Engine.SelectorCache().Universe()
	common := []uint16{53, 80, 443, 5432, 5672, 6379, 8080, 8443, 9000, 9090, 9200, 9300, 9901, 30050}
	qs := make([]lookupQuery, n)
	for i := range qs {
		ep := c.Endpoints[r.IntN(len(c.Endpoints))]
		q := lookupQuery{p: c.Policy(ep), egress: r.IntN(2) == 0, proto: policy.ProtoTCP}
		// Peers: mostly pods, some reserved and CIDR identities (the universe holds them all).
		q.peer = peers[r.IntN(len(peers))].ID
		switch x := r.IntN(100); {
		case x < 10:
			q.proto, q.port = policy.ProtoUDP, 53
		case x < 13:
			q.proto, q.port = policy.ProtoICMP, 8
		case x < 80:
			q.port = common[r.IntN(len(common))]
		default:
			q.port = uint16(1 + r.IntN(65535))
		}
		qs[i] = q
	}
	return qs
}

// changeTarget is a CNP to modify and how.
type changeTarget struct {
	obj *api.CiliumNetworkPolicy
	key string
}

func cnpTargets(objs *api.Objects) []changeTarget {
	var out []changeTarget
	for _, o := range objs.CNPs {
		out = append(out, changeTarget{obj: o.Obj, key: cluster.ResourceKey(api.KindCNP, o.Obj.Namespace, o.Obj.Name)})
	}
	return out
}

// modifiedCNP returns a copy of p with one more ingress rule in its first rule: a peer in its
// own namespace on a port that depends on variant. p is not changed.
func modifiedCNP(p *api.CiliumNetworkPolicy, variant int) *api.CiliumNetworkPolicy {
	cp := *p
	extra := api.IngressRule{
		IngressPeers: api.IngressPeers{FromEndpoints: []*metav1.LabelSelector{{MatchLabels: map[string]string{"app": "bench-client"}}}},
		ToPorts:      []api.PortRule{{Ports: []api.PortProtocol{{Port: fmt.Sprint(20000 + variant%1000), Protocol: "TCP"}}}},
	}
	if p.Spec != nil {
		r := *p.Spec
		r.Ingress = append(slices.Clone(r.Ingress), extra)
		cp.Spec = &r
		return &cp
	}
	cp.Specs = slices.Clone(p.Specs)
	cp.Specs[0].Ingress = append(slices.Clone(cp.Specs[0].Ingress), extra)
	return &cp
}

func replaceCNP(tb testing.TB, c *cluster.Cluster, t changeTarget, p *api.CiliumNetworkPolicy) []*policy.Entry {
	entries, err := policy.Translator{Cluster: c.Options.Cluster}.CNP(api.KindCNP, p)
	if err != nil {
		tb.Fatal(err)
	}
	c.Engine.ReplaceResource(t.key, entries)
	return entries
}

// BenchmarkPolicyChange replaces one CiliumNetworkPolicy (round robin over all of them, so
// over all namespaces) with a modified rule and recompiles what the change invalidated. One op
// is translate + ReplaceResource + asking every endpoint for its policy (recompiling the
// invalidated ones). recompiles/op is how many endpoint policies were compiled again.
func BenchmarkPolicyChange(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.String(), func(b *testing.B) {
			c, objs := buildSynth(b, synth.Sized(s.pods, s.policies))
			compileAll(c)
			targets := cnpTargets(objs)
			if len(targets) == 0 {
				b.Skip("no CiliumNetworkPolicy to change")
			}
			var recompiles uint64
			i := 0
			cpu := startCPU()
			b.ReportAllocs()
			for b.Loop() {
				t := targets[i%len(targets)]
				before := c.Engine.Compiles()
				replaceCNP(b, c, t, modifiedCNP(t.obj, i))
				for _, ep := range c.Endpoints {
					c.Policy(ep)
				}
				recompiles += c.Engine.Compiles() - before
				i++
			}
			cpu.report(b, i)
			b.ReportMetric(float64(recompiles)/float64(i), "recompiles/op")
			b.ReportMetric(float64(len(c.Endpoints)), "endpoints")
		})
	}
}

// TestPolicyChangeRecompilesOnlyWhatItTouches changes CNPs one at a time and checks that
// exactly the endpoints the old or new version selects (all in the CNP's namespace) get a
// new compiled policy, one compile per distinct identity, and that the result equals a full
// recompute.
func TestPolicyChangeRecompilesOnlyWhatItTouches(t *testing.T) {
	c, objs := buildSynth(t, synth.Sized(1000, 300))
	compileAll(c)
	targets := cnpTargets(objs)
	if len(targets) < 20 {
		t.Fatalf("only %d CNPs", len(targets))
	}
	touched := 0
	for i, tg := range targets[:40] {
		before := map[*cluster.Endpoint]*policy.EndpointPolicy{}
		for _, ep := range c.Endpoints {
			before[ep] = c.Policy(ep)
		}
		old := c.Engine.Entries(tg.key)
		compiles := c.Engine.Compiles()
		entries := replaceCNP(t, c, tg, modifiedCNP(tg.obj, i))
		ids := map[*identity.Identity]bool{}
		for _, ep := range c.Endpoints {
			recompiled := c.Policy(ep) != before[ep]
			selected := entriesSelect(old, ep.Identity) || entriesSelect(entries, ep.Identity)
			if recompiled != selected {
				t.Errorf("change of %s: %s recompiled=%v, but selected by the old or new rules=%v", tg.key, ep.Key(), recompiled, selected)
			}
			if recompiled {
				ids[ep.Identity] = true
				if ep.Namespace != tg.obj.Namespace {
					t.Errorf("change of %s recompiled %s, outside namespace %s", tg.key, ep.Key(), tg.obj.Namespace)
				}
			}
		}
		// Identities selected by the same entries share one compiled policy, so a change
		// compiles at most once per recompiled identity, and at least once if any.
		if got := c.Engine.Compiles() - compiles; got > uint64(len(ids)) || (len(ids) > 0 && got == 0) {
			t.Errorf("change of %s: %d compiles for %d distinct identities", tg.key, got, len(ids))
		}
		if len(ids) > 0 {
			touched++
		}
	}
	if touched == 0 {
		t.Fatal("no change selected any endpoint: the test checks nothing")
	}

	// Incremental == full recompute.
	type snap struct {
		in, eg policy.DirectionPolicy
		m      string
	}
	inc := map[*cluster.Endpoint]snap{}
	for _, ep := range c.Endpoints {
		p := c.Policy(ep)
		inc[ep] = snap{p.Ingress, p.Egress, p.Map.String()}
	}
	c.Engine.Invalidate()
	for _, ep := range c.Endpoints {
		p := c.Policy(ep)
		s := inc[ep]
		if p.Map.String() != s.m || p.Ingress.Enforced != s.in.Enforced || p.Ingress.DefaultDeny != s.in.DefaultDeny ||
			p.Egress.Enforced != s.eg.Enforced || p.Egress.DefaultDeny != s.eg.DefaultDeny {
			t.Errorf("%s: incrementally updated policy differs from a full recompute", ep.Key())
		}
	}
}

func entriesSelect(entries []*policy.Entry, id *identity.Identity) bool {
	for _, e := range entries {
		if e.Subject.Selector.Matches(id.Labels) {
			return true
		}
	}
	return false
}
