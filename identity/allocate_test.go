package identity

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/netward/netward/labels"
)

func labelSet(app string, ns string) labels.Set {
	return labels.NewSet(
		labels.Label{Source: labels.SourceK8s, Key: "app", Value: app},
		labels.Label{Source: labels.SourceK8s, Key: labels.KeyNamespace, Value: ns},
		labels.Label{Source: labels.SourceK8s, Key: labels.KeyCluster, Value: "default"},
	)
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func claim(s labels.Set, sec int) Claim {
	return Claim{Labels: s, Since: epoch.Add(time.Duration(sec) * time.Second)}
}

// The numbering depends on the claims only: every order, with repetitions (a label set
// carried by several pods), gives the same numbers, all distinct and in range.
func TestAllocateDeterministic(t *testing.T) {
	var claims []Claim
	for i := range 3000 {
		claims = append(claims, claim(labelSet(fmt.Sprintf("app-%d", i), fmt.Sprintf("ns-%d", i%7)), i%50))
	}
	want, err := Allocate(claims)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[ID]string{}
	collided := 0
	for _, c := range claims {
		id := want[c.Labels.String()]
		if id < AllocFirst || id > AllocLast {
			t.Fatalf("%s: %d out of range", c.Labels, id)
		}
		if other, dup := seen[id]; dup {
			t.Fatalf("%d given to %s and %s", id, other, c.Labels)
		}
		seen[id] = c.Labels.String()
		if id != Home(c.Labels) {
			collided++
		}
	}
	if collided == 0 {
		t.Fatal("3000 sets in 65280 slots and no collision: the test does not exercise probing")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := append([]Claim(nil), claims...)
		// More pods with the same labels, created later.
		for _, c := range claims[:100] {
			shuffled = append(shuffled, Claim{Labels: c.Labels, Since: c.Since.Add(time.Hour)})
		}
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := Allocate(shuffled)
		if err != nil {
			t.Fatal(err)
		}
		for k, id := range want {
			if got[k] != id {
				t.Fatalf("%s: %d in one order, %d in another", k, id, got[k])
			}
		}
	}
	t.Logf("3000 label sets, %d not at their home slot", collided)
}

// collidingSets finds n label sets with the same home slot (below the last slot).
func collidingSets(t *testing.T, n int) []labels.Set {
	byHome := map[ID][]labels.Set{}
	for i := 0; i < 10_000_000; i++ {
		s := labelSet(fmt.Sprintf("c-%d", i), "x")
		h := Home(s)
		if h > AllocLast-10 {
			continue
		}
		byHome[h] = append(byHome[h], s)
		if len(byHome[h]) == n {
			return byHome[h]
		}
	}
	t.Skip("no colliding sets found")
	return nil
}

// Colliding sets: the oldest keeps the home slot, the next takes the next slot; at equal
// age the label strings decide. A newer set never moves an older one.
func TestAllocateCollision(t *testing.T) {
	sets := collidingSets(t, 2)
	a, b := sets[0], sets[1]
	home := Home(a)
	ids, err := Allocate([]Claim{claim(a, 5), claim(b, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if ids[b.String()] != home || ids[a.String()] != home+1 {
		t.Fatalf("home %d: older %s got %d, newer %s got %d", home, b, ids[b.String()], a, ids[a.String()])
	}
	// Same age: the smaller label string first.
	first, second := a, b
	if first.String() > second.String() {
		first, second = second, first
	}
	ids, _ = Allocate([]Claim{claim(second, 3), claim(first, 3)})
	if ids[first.String()] != home || ids[second.String()] != home+1 {
		t.Fatalf("same age: %v", ids)
	}

	// A set whose home is the slot an older set probed into does not move it.
	older := []Claim{claim(a, 1), claim(b, 2)} // a at home, b at home+1
	var c labels.Set
	for i := 0; ; i++ {
		c = labelSet(fmt.Sprintf("n-%d", i), "y")
		if Home(c) == home+1 {
			break
		}
		if i > 50_000_000 {
			t.Skip("no set found with the wanted home")
		}
	}
	before, _ := Allocate(older)
	after, _ := Allocate(append(older, claim(c, 10)))
	if before[a.String()] != after[a.String()] || before[b.String()] != after[b.String()] || after[c.String()] != home+2 {
		t.Errorf("the new set %s (home %d) moved older ones: %v -> %v", c, home+1, before, after)
	}
}

// The last slot wraps around to the first.
func TestAllocateWraps(t *testing.T) {
	var last []Claim
	for i := 0; len(last) < 2; i++ {
		s := labelSet(fmt.Sprintf("w-%d", i), "z")
		if Home(s) == AllocLast {
			last = append(last, claim(s, len(last)))
		}
		if i > 50_000_000 {
			t.Skip("no two sets with the last home slot found")
		}
	}
	ids, err := Allocate(last)
	if err != nil {
		t.Fatal(err)
	}
	if ids[last[0].Labels.String()] != AllocLast || ids[last[1].Labels.String()] != AllocFirst {
		t.Errorf("ids %v, want %d then %d", ids, AllocLast, AllocFirst)
	}
}
