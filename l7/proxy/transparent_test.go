//go:build linux

package proxy

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// TestListenTransparent: the listener has IP_TRANSPARENT and serves the proxy (it needs
// CAP_NET_ADMIN; the TPROXY redirect itself is the datapath's, see docs/l7-proxy.md).
func TestListenTransparent(t *testing.T) {
	ln, err := ListenTransparent(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no transparent listener here (needs CAP_NET_ADMIN): %v", err)
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	rc.Control(func(fd uintptr) { v, err = syscall.GetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT) })
	if err != nil || v != 1 {
		t.Fatalf("IP_TRANSPARENT = %d, %v", v, err)
	}
	b := newBackend(t)
	p, err := New(Config{Decider: allowAll(), Dial: func(ctx context.Context, n, a string) (net.Conn, error) {
		if ci, ok := ConnFromContext(ctx); !ok || ci.Dst.String() != a {
			t.Errorf("dial %s, connection %+v", a, ci)
		}
		return net.Dial(n, b.addr)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go p.Serve(ln) // LocalAddr of the accepted connection is the destination, as with TPROXY
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &client{t: t, c: nc, br: newReader(nc)}
	c.send(get("/x"))
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
