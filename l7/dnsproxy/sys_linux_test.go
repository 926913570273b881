//go:build linux

package dnsproxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// TestOrigDstControlMessage: the original destination is IP_ORIGDSTADDR when the datagram
// carries it. The listener is on 0.0.0.0 (its LocalAddr says nothing) with
// IP_RECVORIGDSTADDR, which needs no privilege; TPROXY sets the same control message.
func TestOrigDstControlMessage(t *testing.T) {
	up := newUpstream(t)
	d := &fakeDecider{allowAll: true}
	events := make(chan Event, 10)
	p, err := New(Config{Decider: d, DialUpstream: up.dialer(), Events: func(e Event) { events <- e }})
	if err != nil {
		t.Fatal(err)
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1) })
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.ServeUDP(pc.(*net.UDPConn)) }()
	defer func() {
		p.Close()
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("ServeUDP: %v", err)
		}
	}()
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(pc.LocalAddr().(*net.UDPAddr).Port))
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(want))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := unpack(t, exchangeUDP(t, c, query(t, 3, "a.example.", dnsmessage.TypeA, true))); m.ID != 3 || len(m.Answers) != 1 {
		t.Fatalf("answer %+v", m)
	}
	e := <-events
	if e.Dst != want || e.Src != addrPort(c.LocalAddr()) || e.Verdict != VerdictAllowed {
		t.Fatalf("event %v, want Dst %v", e, want)
	}
	if f := d.seen(); len(f) != 1 || f[0].Dst != want {
		t.Fatalf("flows %+v", f)
	}
}

// TestReadDatagramExactSize: an upstream answer is read into a buffer of its own size.
func TestReadDatagramExactSize(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{0, 1, 512, 4096, 65507} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		if _, err := srv.WriteToUDPAddrPort(msg, addrPort(c.LocalAddr())); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := readDatagram(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, msg) || cap(b) != n {
			t.Fatalf("read %d bytes (cap %d), want %d", len(b), cap(b), n)
		}
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := readDatagram(c); !isTimeout(err) {
		t.Fatalf("read without a datagram: %v, want a timeout", err)
	}
}

// TestListenTransparentUDP: the socket has IP_TRANSPARENT and IP_RECVORIGDSTADDR and serves
// the proxy (it needs CAP_NET_ADMIN; the TPROXY rule itself is the datapath's).
func TestListenTransparentUDP(t *testing.T) {
	pc, err := ListenTransparentUDP(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Skipf("no transparent socket here (needs CAP_NET_ADMIN): %v", err)
	}
	rc, err := pc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []int{unix.IP_TRANSPARENT, unix.IP_RECVORIGDSTADDR} {
		var v int
		rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.SOL_IP, opt) })
		if err != nil || v != 1 {
			t.Fatalf("option %d = %d, %v", opt, v, err)
		}
	}
	up := newUpstream(t)
	events := make(chan Event, 10)
	p, err := New(Config{Decider: allowNames("a.example."), DialUpstream: up.dialer(), Events: func(e Event) { events <- e }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go p.ServeUDP(pc)
	c, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := unpack(t, exchangeUDP(t, c, query(t, 1, "a.example.", dnsmessage.TypeA, true))); m.RCode != dnsmessage.RCodeSuccess {
		t.Fatalf("answer %+v", m.Header)
	}
	if e := <-events; e.Dst != addrPort(pc.LocalAddr()) || e.Verdict != VerdictAllowed {
		t.Fatalf("event %v", e)
	}
}

// TestTransparentReplier: the answer leaves from the `from` address, on a socket with
// IP_TRANSPARENT and SO_MARK, kept per address and bounded (it needs CAP_NET_ADMIN).
func TestTransparentReplier(t *testing.T) {
	reply := TransparentReplier(0x2a0)
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	to := addrPort(client.LocalAddr())
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 53)})
	if err != nil {
		t.Skipf("no 127.0.0.53 here: %v", err)
	}
	from := addrPort(probe.LocalAddr())
	probe.Close()
	for i, msg := range []string{"answer", "second answer"} {
		if err := reply(from, to, []byte(msg)); err != nil {
			if errors.Is(err, unix.EPERM) {
				t.Skipf("no transparent socket here (needs CAP_NET_ADMIN): %v", err)
			}
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, src, err := client.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != msg || addrPort(net.UDPAddrFromAddrPort(src)) != from {
			t.Fatalf("reply %d: received %q from %v (%v), want %q from %v", i, buf[:n], src, err, msg, from)
		}
	}
	// No socket stays bound to the answering address: another client's datagram to it must
	// find no socket (a kept, unconnected one would receive it through the node's
	// "socket transparent" rule).
	other, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(from))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.Write([]byte("query"))
	other.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := other.Read(make([]byte, 10)); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("a datagram to the answering address: %v, want connection refused (no socket there)", err)
	}
}
