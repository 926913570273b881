package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func newIPAM(t *testing.T, subnet string) *IPAM {
	t.Helper()
	m, err := OpenIPAM(t.TempDir(), "netward", netip.MustParsePrefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIPAMAllocateRelease(t *testing.T) {
	m := newIPAM(t, "10.244.1.0/24")
	a, err := m.Allocate("c1", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if a != netip.MustParseAddr("10.244.1.2") {
		t.Errorf("first address %s, want 10.244.1.2 (.0 network, .1 gateway)", a)
	}
	b, err := m.Allocate("c2", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if b != netip.MustParseAddr("10.244.1.3") {
		t.Errorf("second address %s", b)
	}
	// The allocation file holds the owner.
	content, err := os.ReadFile(filepath.Join(m.Dir(), "10.244.1.2"))
	if err != nil || string(content) != "c1\neth0\n" {
		t.Errorf("allocation file: %q %v", content, err)
	}
	// Idempotent: the same attachment gets the same address; another ifname a new one.
	if again, err := m.Allocate("c1", "eth0"); err != nil || again != a {
		t.Errorf("re-ADD: %s %v, want %s", again, err, a)
	}
	if other, err := m.Allocate("c1", "eth1"); err != nil || other == a || other == b {
		t.Errorf("second interface: %s %v", other, err)
	}
	if ip, ok, err := m.Lookup("c2", "eth0"); err != nil || !ok || ip != b {
		t.Errorf("lookup: %s %v %v", ip, ok, err)
	}
	rel, err := m.Release("c1", "eth0")
	if err != nil || len(rel) != 1 || rel[0] != a {
		t.Errorf("release: %v %v", rel, err)
	}
	if _, ok, _ := m.Lookup("c1", "eth0"); ok {
		t.Error("still allocated after release")
	}
	// Releasing twice, or something never allocated, is fine.
	if rel, err := m.Release("c1", "eth0"); err != nil || len(rel) != 0 {
		t.Errorf("release twice: %v %v", rel, err)
	}
	// Round robin: the released address is not handed out again at once.
	if next, err := m.Allocate("c3", "eth0"); err != nil || next == a {
		t.Errorf("next after release: %s %v", next, err)
	}
	all, err := m.Allocated()
	if err != nil || len(all) != 3 || all[b] != [2]string{"c2", "eth0"} {
		t.Errorf("allocated: %v %v", all, err)
	}
}

func TestIPAMExhaustionAndWrap(t *testing.T) {
	m := newIPAM(t, "10.9.0.0/29") // .0 network, .1 gateway, .7 broadcast: .2-.6 usable
	var got []netip.Addr
	for i := range 5 {
		ip, err := m.Allocate(fmt.Sprintf("c%d", i), "eth0")
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		got = append(got, ip)
	}
	if got[0] != netip.MustParseAddr("10.9.0.2") || got[4] != netip.MustParseAddr("10.9.0.6") {
		t.Errorf("allocated %v", got)
	}
	_, err := m.Allocate("c5", "eth0")
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("sixth allocation: %v, want ErrExhausted", err)
	}
	// Free one in the middle: the next allocation wraps around to it.
	if _, err := m.Release("c2", "eth0"); err != nil {
		t.Fatal(err)
	}
	if ip, err := m.Allocate("c5", "eth0"); err != nil || ip != got[2] {
		t.Errorf("after release: %s %v, want %s", ip, err, got[2])
	}
	// The smallest subnet has one address.
	s := newIPAM(t, "10.9.1.0/30")
	if ip, err := s.Allocate("a", "eth0"); err != nil || ip != netip.MustParseAddr("10.9.1.2") {
		t.Errorf("/30: %s %v", ip, err)
	}
	if _, err := s.Allocate("b", "eth0"); !errors.Is(err, ErrExhausted) {
		t.Errorf("/30 second: %v", err)
	}
}

func TestIPAMConcurrent(t *testing.T) {
	dir := t.TempDir()
	subnet := netip.MustParsePrefix("10.10.0.0/24")
	const n = 200
	var wg sync.WaitGroup
	addrs := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate IPAM values, like separate plugin processes sharing the directory.
			m, err := OpenIPAM(dir, "netward", subnet)
			if err == nil {
				addrs[i], err = m.Allocate(fmt.Sprintf("container-%d", i), "eth0")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, a := range addrs {
		if errs[i] != nil {
			t.Fatalf("allocation %d: %v", i, errs[i])
		}
		if j, dup := seen[a]; dup {
			t.Fatalf("%s handed out twice (%d and %d)", a, j, i)
		}
		seen[a] = i
	}
	// Concurrent release of half while the other half re-allocates idempotently.
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, _ := OpenIPAM(dir, "netward", subnet)
			id := fmt.Sprintf("container-%d", i)
			if i%2 == 0 {
				_, errs[i] = m.Release(id, "eth0")
				return
			}
			var ip netip.Addr
			ip, errs[i] = m.Allocate(id, "eth0")
			if errs[i] == nil && ip != addrs[i] {
				errs[i] = fmt.Errorf("re-allocation gave %s, had %s", ip, addrs[i])
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%d: %v", i, err)
		}
	}
	m, _ := OpenIPAM(dir, "netward", subnet)
	if all, _ := m.Allocated(); len(all) != n/2 {
		t.Errorf("%d allocations left, want %d", len(all), n/2)
	}
}

func TestIPAMGC(t *testing.T) {
	m := newIPAM(t, "10.244.2.0/24")
	for _, id := range []string{"a", "b", "c"} {
		if _, err := m.Allocate(id, "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	freed, err := m.GC(func(id, ifName string) bool { return id == "b" && ifName == "eth0" })
	if err != nil || len(freed) != 2 {
		t.Fatalf("gc: %v %v", freed, err)
	}
	all, _ := m.Allocated()
	if len(all) != 1 {
		t.Errorf("left %v", all)
	}
	for _, owner := range all {
		if owner != [2]string{"b", "eth0"} {
			t.Errorf("kept %v", owner)
		}
	}
}

func TestOpenIPAMErrors(t *testing.T) {
	for _, tc := range []struct {
		name, subnet string
	}{{"../x", "10.0.0.0/24"}, {"n", "10.0.0.0/31"}, {"n", "fd00::/64"}} {
		if _, err := OpenIPAM(t.TempDir(), tc.name, netip.MustParsePrefix(tc.subnet)); err == nil {
			t.Errorf("%s %s: no error", tc.name, tc.subnet)
		}
	}
	if _, err := newIPAM(t, "10.0.0.0/24").Allocate("", "eth0"); err == nil {
		t.Error("empty container ID allocated")
	}
}
