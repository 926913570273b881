//go:build linux

package datapath

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/netward/netward/policy"
)

// The counterexample of SetPolicy's doc comment. Flow: peer 256 -> pod TCP/80, ingress.
//
//	old: {256 TCP/80 allow, any TCP deny}  -> denied (the deny has the higher precedence)
//	new: {256 TCP deny,     any allow}     -> denied (256's longest prefix is a deny)
var (
	orderOld = []policy.KeyEntry{
		allow(tcpKey(256, false, 80)),
		deny(policy.Key{Identity: 0, Proto: policy.ProtoTCP, PrefixLen: 8}),
	}
	orderNew = []policy.KeyEntry{
		deny(policy.Key{Identity: 256, Proto: policy.ProtoTCP, PrefixLen: 8}),
		allow(policy.Key{Identity: 0}),
	}
)

// TestInPlaceUpdateOrderIsUnsafe shows why SetPolicy never writes the live map: applying
// old -> new in place, upserts first and deletes last, passes through a state that allows
// the flow although neither policy does.
func TestInPlaceUpdateOrderIsUnsafe(t *testing.T) {
	d := newTestDatapath(t)
	jar := NewCookieJar()
	setupTopology(t, d, testEP, FlagIngressEnforced)
	flow := tcpFlow(1000, 80)
	for _, pol := range [][]policy.KeyEntry{orderOld, orderNew} {
		setPolicy(t, d, jar, pol...)
		expectRet(t, run(t, d, false, flow), tcActShot, "old/new policy")
	}
	setPolicy(t, d, jar, orderOld...)
	var live *ebpf.Map
	if err := d.objs.PolicyMaps.Lookup(uint32(testEP), &live); err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	put := func(ke policy.KeyEntry) {
		want, err := d.bpfEntries([]policy.KeyEntry{ke}, jar.Cookie)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if err := live.Put(k, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	del := func(k policy.Key) {
		bk, _ := bpfKey(k)
		if err := live.Delete(bk); err != nil {
			t.Fatal(err)
		}
	}
	allowed := false
	put(orderNew[0])
	put(orderNew[1])
	allowed = allowed || run(t, d, false, flow).ret == tcActOK
	del(orderOld[1].Key) // stale any-TCP deny
	allowed = allowed || run(t, d, false, flow).ret == tcActOK
	del(orderOld[0].Key) // stale 256 TCP/80 allow
	allowed = allowed || run(t, d, false, flow).ret == tcActOK
	if !allowed {
		t.Fatal("the in-place update never allowed the flow: the counterexample is wrong")
	}
	d.FlushConntrack(nil)
}

// TestSetPolicyIsAtomic flips between the two policies while another goroutine sends the
// flow through the program: no packet may pass, whatever the interleaving.
func TestSetPolicyIsAtomic(t *testing.T) {
	d := newTestDatapath(t)
	jar := NewCookieJar()
	setupTopology(t, d, testEP, FlagIngressEnforced)
	setPolicy(t, d, jar, orderOld...)
	before := mustMetrics(t, d)["forwarded-policy"].Packets
	if before != 0 {
		t.Fatal(before)
	}
	var stop atomic.Bool
	var passed, runs atomic.Int64
	var wg sync.WaitGroup
	frame := tcpFlow(1000, 80).frame()
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ret, err := d.objs.ToPod.Run(&ebpf.RunOptions{Data: frame, Repeat: 50})
				if err != nil {
					t.Error(err)
					return
				}
				runs.Add(1)
				if ret == tcActOK {
					passed.Add(1)
				}
			}
		}()
	}
	for runs.Load() == 0 {
		runtime.Gosched()
	}
	flips := 0
	for ; flips < 100 || (runs.Load() < 5000 && flips < 100000); flips++ {
		pol := orderOld
		i := flips
		if i%2 == 0 {
			pol = orderNew
		}
		if _, err := d.SetPolicy(testEP, pol, jar.Cookie); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	// The metrics count every repetition (the return code is the last one's).
	m := mustMetrics(t, d)
	t.Logf("%d test runs (x50) during %d policy flips: %v", runs.Load(), flips, m)
	if passed.Load() != 0 || m["forwarded-policy"].Packets != 0 {
		t.Errorf("%d runs (%d packets) passed a flow both policies deny", passed.Load(), m["forwarded-policy"].Packets)
	}
}
