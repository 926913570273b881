package agent

import (
	"math/rand/v2"
	"testing"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// randomMap builds a policy map with the shapes the compiler emits: L3-only keys, protocol
// keys, port prefixes, for a few identities and the wildcard, with random verdicts and
// precedences (deny, redirect, allow in two tiers).
func randomMap(r *rand.Rand, ids []identity.ID, n int) *policy.MapState {
	precs := []policy.Precedence{
		0xFFFFFF<<8 | 255, 0xFFFFFF<<8 | 153, 0xFFFFFF<<8 | 1, // normal tier: deny, redirect, allow
		0xFFFFFE<<8 | 1, // default tier allow
	}
	protos := []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoICMP, policy.ProtoSCTP}
	var entries []policy.KeyEntry
	seen := map[policy.Key]bool{}
	for i := 0; i < n; i++ {
		k := policy.Key{Egress: r.IntN(2) == 0}
		if r.IntN(3) > 0 {
			k.Identity = ids[r.IntN(len(ids))]
		}
		switch r.IntN(4) {
		case 0: // any protocol
		case 1:
			k.Proto, k.PrefixLen = protos[r.IntN(len(protos))], 8
		default:
			bits := 1 + r.IntN(16)
			k.Proto, k.PrefixLen = protos[r.IntN(len(protos))], uint8(8+bits)
			port := uint16(r.IntN(4) * 16)
			if r.IntN(2) == 0 {
				port = uint16(r.IntN(65536))
			}
			k.Port = port &^ (uint16(1<<(16-bits)) - 1)
			if bits == 16 {
				k.Port = port
			}
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		p := precs[r.IntN(len(precs))]
		e := policy.MapEntry{Precedence: p, Verdict: policy.Allow}
		switch {
		case p.IsDeny():
			e.Verdict = policy.Deny
		case p.IsRedirect():
			e.Verdict, e.Parser = policy.Redirect, policy.ParserHTTP
		}
		entries = append(entries, policy.KeyEntry{Key: k, Entry: e})
	}
	return policy.NewMapState(entries)
}

func TestIntersectEqualsAnd(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ids := []identity.ID{1, 2, 300, 301, 302}
	probeIDs := append([]identity.ID{0, 999}, ids...) // 999: an identity neither map names
	for iter := 0; iter < 400; iter++ {
		old := randomMap(r, ids, 1+r.IntN(14))
		nw := randomMap(r, ids, 1+r.IntN(14))
		for _, egress := range []bool{false, true} {
			entries, narrows, widens, err := intersect(old, nw, egress, maxPolicyEntries)
			if err != nil {
				t.Fatal(err)
			}
			tm := policy.NewMapState(entries)
			var sawNarrow, sawWiden bool
			// Probe the boundaries of every key of both maps and random points.
			var points []uint32
			for _, m := range []*policy.MapState{old, nw} {
				for _, ke := range m.Entries() {
					p := keyPfx(ke.Key)
					span := uint32(1)<<(24-p.l) - 1
					points = append(points, p.v, p.v+span, (p.v+span+1)&0xFFFFFF, (p.v-1)&0xFFFFFF)
				}
			}
			for i := 0; i < 50; i++ {
				points = append(points, uint32(r.IntN(1<<24)))
			}
			for _, id := range probeIDs {
				for _, pt := range points {
					dOld, dNew := decide(old, id, egress, pt), decide(nw, id, egress, pt)
					want := and(dOld, dNew)
					got := decide(tm, id, egress, pt)
					if !got.same(want) {
						t.Fatalf("iter %d egress %v id %d proto %d port %d: transitional %v, want %v (old %v new %v)\nold:\n%s\nnew:\n%s\nT:\n%s",
							iter, egress, id, pt>>16, uint16(pt), got.class, want.class, dOld.class, dNew.class, old, nw, tm)
					}
					sawNarrow = sawNarrow || !want.same(dOld)
					sawWiden = sawWiden || !want.same(dNew)
				}
			}
			if sawNarrow && !narrows {
				t.Fatalf("iter %d: a probe narrows but intersect says it does not", iter)
			}
			if sawWiden && !widens {
				t.Fatalf("iter %d: a probe widens but intersect says it does not", iter)
			}
		}
	}
}

func TestIntersectTooLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	old := randomMap(r, []identity.ID{300, 301}, 10)
	if _, _, _, err := intersect(old, old, false, 1); err != errTooLarge {
		t.Fatalf("want errTooLarge, got %v", err)
	}
}

func TestIntersectIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 50; i++ {
		m := randomMap(r, []identity.ID{300, 301}, 10)
		_, narrows, widens, err := intersect(m, m, i%2 == 0, maxPolicyEntries)
		if err != nil || narrows || widens {
			t.Fatalf("identical maps: narrows %v widens %v err %v", narrows, widens, err)
		}
	}
}

func TestAllocatorStable(t *testing.T) {
	a := newAllocator(nil)
	x := a.get("pod:k8s:app=x", scopePod, 0)
	y := a.get("pod:k8s:app=y", scopePod, 0)
	if x == y || x < identity.MinCluster || x > 65535 {
		t.Fatalf("ids %d %d", x, y)
	}
	if a.get("pod:k8s:app=x", scopePod, 0) != x {
		t.Fatal("not stable")
	}
	// Without saved state, the same keys get the same numbers (hash), whatever the order.
	b := newAllocator(nil)
	if b.get("pod:k8s:app=y", scopePod, 0) != y || b.get("pod:k8s:app=x", scopePod, 0) != x {
		t.Fatal("not deterministic")
	}
	// Saved numbers win over the hash.
	c := newAllocator(map[string]identity.ID{"pod:k8s:app=x": 4242})
	if c.get("pod:k8s:app=x", scopePod, 0) != 4242 {
		t.Fatal("saved number not kept")
	}
	// A collision probes.
	d := newAllocator(map[string]identity.ID{"pod:other": x})
	if got := d.get("pod:k8s:app=x", scopePod, 0); got == x || got == 0 {
		t.Fatalf("collision not resolved: %d", got)
	}
	cidr := a.get("cidr:10.0.0.0/8", scopeCIDR, 0)
	if cidr&identity.LocalScope == 0 {
		t.Fatalf("cidr identity %d outside the local scope", cidr)
	}
	// The preferred (deterministic) number wins over the hash when free, not over a saved
	// number, and a taken one falls back to the hash.
	e := newAllocator(map[string]identity.ID{"pod:k8s:app=x": 4242})
	if got := e.get("pod:k8s:app=z", scopePod, 5000); got != 5000 {
		t.Fatalf("preferred number not taken: %d", got)
	}
	if got := e.get("pod:k8s:app=x", scopePod, 5001); got != 4242 {
		t.Fatalf("saved number replaced by the preferred one: %d", got)
	}
	if got := e.get("pod:k8s:app=w", scopePod, 4242); got == 4242 || got == 0 {
		t.Fatalf("preferred number held by another key was given out again: %d", got)
	}
	if got := e.get("cidr:10.0.0.0/8", scopeCIDR, 5002); got == 5002 {
		t.Fatal("a preferred number outside the scope was taken")
	}
	a.retain(map[string]bool{"pod:k8s:app=x": true})
	if _, ok := a.key(y); ok {
		t.Fatal("y not released")
	}
	if k, _ := a.key(x); k != "pod:k8s:app=x" {
		t.Fatal("x released")
	}
}
