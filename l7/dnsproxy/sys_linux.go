package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenTransparentUDP listens for TPROXY-redirected datagrams on addr ("ip:port", udp4):
// the socket has IP_TRANSPARENT, so it receives datagrams to addresses that are not local,
// and IP_RECVORIGDSTADDR, so every datagram carries its original destination, which
// ServeUDP reads. It needs CAP_NET_ADMIN.
func ListenTransparentUDP(ctx context.Context, addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1); err != nil {
				serr = os.NewSyscallError("setsockopt IP_TRANSPARENT", err)
				return
			}
			if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1); err != nil {
				serr = os.NewSyscallError("setsockopt IP_RECVORIGDSTADDR", err)
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// origDst reads IP_ORIGDSTADDR (a sockaddr_in) or IPV6_ORIGDSTADDR (a sockaddr_in6) from a
// datagram's control messages; the zero AddrPort when there is none.
func origDst(oob []byte) netip.AddrPort {
	if len(oob) == 0 {
		return netip.AddrPort{}
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR && len(m.Data) >= 8:
			port := uint16(m.Data[2])<<8 | uint16(m.Data[3])
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Data[4:8])), port)
		case m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_ORIGDSTADDR && len(m.Data) >= 24:
			port := uint16(m.Data[2])<<8 | uint16(m.Data[3])
			a := netip.AddrFrom16([16]byte(m.Data[8:24]))
			return netip.AddrPortFrom(a.Unmap(), port)
		}
	}
	return netip.AddrPort{}
}

// readDatagram reads one datagram into a buffer of its exact size: it peeks at the size
// (MSG_PEEK|MSG_TRUNC gives a datagram's real length), so a query waiting for its answer
// holds no buffer. It honours c's read deadline.
func readDatagram(c net.Conn) ([]byte, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return readDatagramBuffered(c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return readDatagramBuffered(c)
	}
	var (
		b    []byte
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, e := unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
			switch e {
			case nil:
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			default:
				rerr = os.NewSyscallError("recvfrom", e)
				return true
			}
			b = make([]byte, n)
			for {
				m, _, e := unix.Recvfrom(int(fd), b, unix.MSG_DONTWAIT)
				if e == unix.EINTR {
					continue
				}
				if e != nil {
					rerr = os.NewSyscallError("recvfrom", e)
					b = nil
					return true
				}
				b = b[:m]
				return true
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return b, rerr
}

// TransparentReplier returns a Config.ReplyUDP for TPROXY: it sends b to `to` from `from`,
// the original destination, through a socket made for this one answer (IP_TRANSPARENT,
// SO_REUSEADDR, SO_MARK mark unless 0), bound to `from` and connected to `to`, and closed
// at once. It needs CAP_NET_ADMIN, and must run in the network namespace whose routes reach
// the client (the socket is made on each call).
//
// The socket is connected and short-lived on purpose: the node's "socket transparent" rule
// (datapath.InstallRedirect) delivers locally every datagram that some transparent socket
// would receive, and a socket kept bound to the DNS server's address without a peer would
// receive the datagrams every other client sends to that server, including clients that
// are not redirected at all.
func TransparentReplier(mark int) func(from, to netip.AddrPort, b []byte) error {
	return func(from, to netip.AddrPort, b []byte) error {
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
		network := "udp4"
		if from.Addr().Is6() {
			network = "udp6"
		}
		d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(from), Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if from.Addr().Is6() {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
				}
				if serr != nil {
					serr = os.NewSyscallError("setsockopt IP_TRANSPARENT", serr)
					return
				}
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
					serr = os.NewSyscallError("setsockopt SO_REUSEADDR", serr)
					return
				}
				if mark != 0 {
					if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark); serr != nil {
						serr = os.NewSyscallError("setsockopt SO_MARK", serr)
					}
				}
			})
			return errors.Join(err, serr)
		}}
		c, err := d.Dial(network, to.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(b)
		return err
	}
}
