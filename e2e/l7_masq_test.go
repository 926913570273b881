//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/netward/netward/cni/cnitest"
)

// masquerade makes the node masquerade what its pods send out of the uplink, as most
// clusters do for traffic leaving the pod network (nft table ip nwe2e_nat: postrouting,
// oifname <uplink> ip saddr <pod CIDR> masquerade).
func masquerade(t *testing.T, h *Harness) {
	t.Helper()
	err := cnitest.InNetns(h.NodeNetnsPath(), func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "nwe2e_nat"})
		ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: tb, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		ifname := make([]byte, unix.IFNAMSIZ)
		copy(ifname, h.Prefix+"up")
		subnet := h.Config.Subnet.Masked()
		mask := make([]byte, 4)
		for i := range subnet.Bits() {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: subnet.Addr().AsSlice()},
			&expr.Counter{},
			&expr.Masq{},
		}})
		return c.Flush()
	})
	if err != nil {
		t.Fatalf("masquerade in the node's namespace: %v", err)
	}
}

// TestL7EgressMasquerade: on a node that masquerades its pods' traffic to the outside, an
// egress-proxied HTTP connection to the world still works. The proxy's upstream connection
// leaves from the pod's address and is masqueraded to the node's; its replies come back to
// the node's address, are matched to the proxy's transparent socket (the nft socket lookup
// follows the connection's NAT) and de-masqueraded before routing delivers them to it. Every
// outcome equals trace, and the world sees the node's address.
func TestL7EgressMasquerade(t *testing.T) {
	h := New(t, Config{})
	h.SetCluster("testdata/l7/cluster")
	h.SetPolicies("testdata/l7/policies-1")
	masquerade(t, h)
	ag := startAgent(t, h)
	written := h.AddPods()
	ag.Settle(t, written)

	places := map[string]Place{}
	for _, p := range h.Places() {
		places[p.Name] = p
	}
	world := places[h.Config.World.String()]
	HTTPServe(t, world, 80)
	c := h.Cluster()
	from := places["shop/client"]
	sess := NewHTTPSession(from, world, 80, false, 1500*time.Millisecond)
	defer sess.Close()
	counts := map[string]int{}
	for _, r := range []l7Request{get("/w1"), get("/x"), get("/w2"), get("/w3")} {
		call := sess.Do(r.method, r.path)
		tr, err := TraceHTTP(c, from, world, 80, r.method, r.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := ExpectHTTP(tr)
		counts[call.Outcome]++
		if call.Outcome != want {
			t.Errorf("%s -> world:80 GET %s: %s (%v %q), trace says %s (%s)", from.Name, r.path, call.Outcome, call.Err, call.Body, want, tr.Reason)
			continue
		}
		if want == HTTPOK && !strings.Contains(call.Body, " from "+h.Config.NodeIP.String()+":") {
			t.Errorf("GET %s: the world saw %q, want the node's address %s (masqueraded)", r.path, call.Body, h.Config.NodeIP)
		}
	}
	// The world saw the node's address because the node masqueraded the proxy's upstream
	// connection (from the pod's address: TestL7EndToEnd shows the world sees it there).
	if n := masqueraded(t, h); n == 0 {
		t.Errorf("the masquerade rule matched no packet")
	}
	if counts[HTTPOK] == 0 || counts[HTTPDenied] == 0 || sess.Conns() != 1 {
		t.Errorf("outcomes %v on %d connections: want 200 and 403 on one kept-alive connection", counts, sess.Conns())
	}
	t.Logf("egress proxy through a masquerading node: outcomes %v", counts)
}

// masqueraded is the number of packets the masquerade rule matched (connections: NAT rules
// see the first packet of each).
func masqueraded(t *testing.T, h *Harness) uint64 {
	t.Helper()
	var n uint64
	err := cnitest.InNetns(h.NodeNetnsPath(), func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "nwe2e_nat"}
		rules, err := c.GetRules(tb, &nftables.Chain{Name: "postrouting", Table: tb})
		if err != nil {
			return err
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					n += ctr.Packets
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
