//go:build linux

package datapath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// TestRealTraffic enforces policy on real connections: a "node" network namespace routes
// between two pod namespaces over veth pairs (feasibility.md 1a, with a node netns instead
// of the root one); the programs sit on the node-side veths. Nothing outside the three
// namespaces is touched.
func TestRealTraffic(t *testing.T) {
	requireBPF(t)
	for _, tool := range []string{"ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: %s not installed (apt-get install iproute2)", tool)
		}
	}
	topo := newTopology(t)
	const idA, idB identity.ID = 1000, 1001
	const epA, epB = 100, 101

	pinDir := filepath.Join(bpffsRoot, fmt.Sprintf("netward-test-netns-%d", time.Now().UnixNano()))
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	d, err := Load(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close()
		}
	})

	for addr, id := range map[netip.Addr]identity.ID{topo.addrA: idA, topo.addrB: idB, gatewayAddr: identity.Host} {
		if err := d.UpsertIPCache(netip.PrefixFrom(addr, 32), id); err != nil {
			t.Fatal(err)
		}
	}
	// B: ingress enforced, TCP 8080 from A's identity only. A: nothing enforced.
	ingressFromA := func(port uint16) policy.KeyEntry { return allow(tcpKey(idA, false, port)) }
	jar := NewCookieJar()
	if _, err := d.SetPolicy(epB, []policy.KeyEntry{ingressFromA(8080)}, jar.Cookie); err != nil {
		t.Fatal(err)
	}
	if err := d.SetEndpoint(topo.ifindexA, Endpoint{ID: epA, Identity: idA}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetEndpoint(topo.ifindexB, Endpoint{ID: epB, Identity: idB, Flags: FlagIngressEnforced}); err != nil {
		t.Fatal(err)
	}
	for _, ifname := range []string{topo.hostA, topo.hostB} {
		if _, err := d.Attach(topo.nsPath(topo.node), ifname); err != nil {
			t.Fatal(err)
		}
	}
	for _, ifname := range []string{topo.hostA, topo.hostB} {
		for _, prog := range []string{"from_pod", "to_pod"} {
			if _, err := os.Stat(filepath.Join(pinDir, "links", ifname, prog)); err != nil {
				t.Errorf("link not pinned: %v", err)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var evMu sync.Mutex
	var events []Event
	readerDone := make(chan error, 1)
	go func() {
		readerDone <- d.ReadEvents(ctx, func(e Event) {
			evMu.Lock()
			events = append(events, e)
			evMu.Unlock()
		})
	}()

	topo.serve(t, 8080, 9090)
	topo.expect(t, map[uint16]bool{8080: true, 9090: false}, "allow 8080")

	// A delta: 9090 in, 8080 out, effective on the next connection.
	delta, err := d.SetPolicy(epB, []policy.KeyEntry{ingressFromA(9090)}, jar.Cookie)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy delta %+v", delta)
	topo.expect(t, map[uint16]bool{8080: false, 9090: true}, "allow 9090 instead")

	cancel()
	if err := <-readerDone; err != nil {
		t.Errorf("ReadEvents: %v", err)
	}
	evMu.Lock()
	var sawDrop, sawAllow bool
	for _, e := range events {
		if e.Endpoint != epB || e.Egress || e.Src != topo.addrA || e.Dst != topo.addrB || e.PeerIdentity != idA {
			continue
		}
		switch {
		case e.DstPort == 9090 && e.Reason == ReasonDroppedDefaultDeny:
			sawDrop = true
		case e.DstPort == 8080 && e.Reason == ReasonForwardedPolicy:
			sawAllow = true
			if o := jar.Origins(e.Cookie); len(o) != 1 {
				t.Errorf("allow event cookie %d: origins %v", e.Cookie, o)
			}
		}
	}
	if !sawDrop || !sawAllow {
		t.Errorf("events (drop of 9090 %v, allow of 8080 %v): %v", sawDrop, sawAllow, events)
	}
	evMu.Unlock()
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("metrics %v", m)
	if m["forwarded-reply"].Packets == 0 || m["dropped-default-deny"].Packets == 0 || m["forwarded-unenforced"].Packets == 0 {
		t.Errorf("metrics %v", m)
	}

	// The agent goes away: the pinned links keep enforcing the pinned maps.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	topo.expect(t, map[uint16]bool{8080: false, 9090: true}, "loader closed")

	// A new agent adopts maps and links, updates the policy, and sees it enforced.
	d2, err := Load(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	detach := map[string]func() error{}
	for _, ifname := range []string{topo.hostA, topo.hostB} {
		before := pinnedLinkID(t, filepath.Join(pinDir, "links", ifname, "from_pod"))
		det, err := d2.Attach(topo.nsPath(topo.node), ifname)
		if err != nil {
			t.Fatal(err)
		}
		detach[ifname] = det
		if after := pinnedLinkID(t, filepath.Join(pinDir, "links", ifname, "from_pod")); after != before {
			t.Errorf("%s: the new agent replaced link %d by %d instead of adopting it", ifname, before, after)
		}
	}
	if _, err := d2.SetPolicy(epB, []policy.KeyEntry{ingressFromA(8080), ingressFromA(9090)}, jar.Cookie); err != nil {
		t.Fatal(err)
	}
	topo.expect(t, map[uint16]bool{8080: true, 9090: true}, "new agent allows both")
	if _, err := d2.SetPolicy(epB, nil, jar.Cookie); err != nil {
		t.Fatal(err)
	}
	topo.expect(t, map[uint16]bool{8080: false, 9090: false}, "new agent allows nothing")

	// Detach removes the programs (and the pins): traffic flows unenforced.
	for _, ifname := range []string{topo.hostA, topo.hostB} {
		if err := detach[ifname](); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(pinDir, "links", ifname)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("links of %s still pinned: %v", ifname, err)
		}
	}
	topo.expect(t, map[uint16]bool{8080: true, 9090: true}, "detached")
	if err := d2.Unpin(); err != nil {
		t.Error(err)
	}
}

func pinnedLinkID(t testing.TB, pin string) link.ID {
	t.Helper()
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatalf("pinned link: %v", err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

var topoSeq atomic.Int64

var gatewayAddr = netip.MustParseAddr("169.254.1.1")

// topology is a node netns with two pod netns behind veth pairs.
type topology struct {
	node, podA, podB   string // netns names
	hostA, hostB       string // node-side veths
	addrA, addrB       netip.Addr
	ifindexA, ifindexB uint32
}

func (tp *topology) nsPath(name string) string { return "/var/run/netns/" + name }

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// nsSysctl sets one sysctl in a named network namespace.
func nsSysctl(t testing.TB, ns, kv string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", kv).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s in %s: %v %s", kv, ns, err, out)
	}
}

func newTopology(t testing.TB) *topology {
	t.Helper()
	id := fmt.Sprintf("%d%03d", os.Getpid()%100000, topoSeq.Add(1)%1000)
	tp := &topology{
		node: "nwt" + id + "n", podA: "nwt" + id + "a", podB: "nwt" + id + "b",
		hostA: "nw" + id + "a", hostB: "nw" + id + "b",
		addrA: netip.MustParseAddr("10.200.0.10"), addrB: netip.MustParseAddr("10.200.0.11"),
	}
	for _, ns := range []string{tp.node, tp.podA, tp.podB} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	nsSysctl(t, tp.node, "net.ipv4.ip_forward=1")
	for _, p := range []struct {
		pod, host string
		addr      netip.Addr
		ifindex   *uint32
	}{{tp.podA, tp.hostA, tp.addrA, &tp.ifindexA}, {tp.podB, tp.hostB, tp.addrB, &tp.ifindexB}} {
		ipCmd(t, "link", "add", p.host, "netns", tp.node, "type", "veth", "peer", "name", "eth0", "netns", p.pod)
		ipCmd(t, "-n", tp.node, "link", "set", p.host, "up")
		ipCmd(t, "-n", tp.node, "addr", "add", gatewayAddr.String()+"/32", "dev", p.host)
		ipCmd(t, "-n", tp.node, "route", "add", p.addr.String()+"/32", "dev", p.host)
		ipCmd(t, "-n", p.pod, "link", "set", "eth0", "up")
		ipCmd(t, "-n", p.pod, "addr", "add", p.addr.String()+"/32", "dev", "eth0")
		ipCmd(t, "-n", p.pod, "route", "add", gatewayAddr.String(), "dev", "eth0", "scope", "link")
		ipCmd(t, "-n", p.pod, "route", "add", "default", "via", gatewayAddr.String(), "dev", "eth0")
		err := inNetns(tp.nsPath(tp.node), func() error {
			l, err := netlink.LinkByName(p.host)
			if err != nil {
				return err
			}
			*p.ifindex = uint32(l.Attrs().Index)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return tp
}

// serve listens on the ports in pod B; each connection gets "hello <port>\n".
func (tp *topology) serve(t *testing.T, ports ...uint16) {
	t.Helper()
	for _, port := range ports {
		var ln net.Listener
		err := inNetns(tp.nsPath(tp.podB), func() error {
			var err error
			ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", tp.addrB, port))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "hello %d\n", port)
				c.Close()
			}
		}()
	}
}

// connect dials pod B from pod A and reads the greeting.
func (tp *topology) connect(port uint16) error {
	var c net.Conn
	err := inNetns(tp.nsPath(tp.podA), func() error {
		var err error
		c, err = net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", tp.addrB, port), 700*time.Millisecond)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("hello %d\n", port); string(b) != want {
		return fmt.Errorf("read %q, want %q", b, want)
	}
	return nil
}

func (tp *topology) expect(t *testing.T, want map[uint16]bool, what string) {
	t.Helper()
	for port, ok := range want {
		err := tp.connect(port)
		switch {
		case ok && err != nil:
			t.Errorf("%s: port %d should connect: %v", what, port, err)
		case !ok && err == nil:
			t.Errorf("%s: port %d connected, should be blocked", what, port)
		case !ok && !isTimeout(err):
			t.Errorf("%s: port %d failed with %v, want a timeout (dropped SYN)", what, port, err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestRealTrafficClsact runs the fallback for kernels without tcx: clsact bpf filters.
func TestRealTrafficClsact(t *testing.T) {
	requireBPF(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIPPED: ip not installed (apt-get install iproute2)")
	}
	topo := newTopology(t)
	d := newTestDatapath(t)
	const idA identity.ID = 1000
	for addr, id := range map[netip.Addr]identity.ID{topo.addrA: idA, topo.addrB: 1001} {
		if err := d.UpsertIPCache(netip.PrefixFrom(addr, 32), id); err != nil {
			t.Fatal(err)
		}
	}
	// This time A's egress is enforced: TCP 8080 to B only.
	if _, err := d.SetPolicy(100, []policy.KeyEntry{allow(tcpKey(1001, true, 8080))}, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.SetEndpoint(topo.ifindexA, Endpoint{ID: 100, Identity: idA, Flags: FlagEgressEnforced}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetEndpoint(topo.ifindexB, Endpoint{ID: 101, Identity: 1001}); err != nil {
		t.Fatal(err)
	}
	var detach []func() error
	for _, ifname := range []string{topo.hostA, topo.hostB} {
		det, err := d.attachClsact(topo.nsPath(topo.node), ifname)
		if err != nil {
			t.Fatal(err)
		}
		detach = append(detach, det)
	}
	topo.serve(t, 8080, 9090)
	topo.expect(t, map[uint16]bool{8080: true, 9090: false}, "clsact: egress allow 8080")
	for _, det := range detach {
		if err := det(); err != nil {
			t.Fatal(err)
		}
	}
	topo.expect(t, map[uint16]bool{8080: true, 9090: true}, "clsact detached")
}
