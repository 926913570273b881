package proxy

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
)

// waitReadable blocks until c has data (or its end) to read, without reading it and
// without a buffer, honouring c's read deadline.
func waitReadable(c net.Conn) error {
	sc, ok := underlying(c).(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var (
		buf  [1]byte
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		for {
			_, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			rerr = e
			return true
		}
	})
	if err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	return nil
}

// peerAlive reports whether an idle connection is still open and silent: the peer neither
// closed it nor sent anything.
func peerAlive(c net.Conn) bool {
	sc, ok := underlying(c).(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		for {
			_, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if e == syscall.EINTR {
				continue
			}
			alive = e == syscall.EAGAIN
			return true
		}
	})
	return err == nil && alive
}

// ListenTransparent listens for TPROXY-redirected connections: the socket has
// IP_TRANSPARENT (IPV6_TRANSPARENT for IPv6), so it accepts connections to addresses that
// are not local, and every accepted connection's LocalAddr is the original destination.
// It needs CAP_NET_ADMIN. TCP keep-alive probes are off: the proxy's timeouts bound idle
// connections.
func ListenTransparent(ctx context.Context, network, address string) (net.Listener, error) {
	lc := net.ListenConfig{
		KeepAlive: -1,
		Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if strings.HasSuffix(network, "6") {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, ipv6Transparent, 1)
					return
				}
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT, 1)
			})
			if err != nil {
				return err
			}
			if serr != nil {
				return os.NewSyscallError("setsockopt IP_TRANSPARENT", serr)
			}
			return nil
		},
	}
	return lc.Listen(ctx, network, address)
}

// ipv6Transparent is IPV6_TRANSPARENT (linux/in6.h), which package syscall lacks.
const ipv6Transparent = 75
