//go:build !linux

package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

var errNotLinux = errors.New("dnsproxy: transparent sockets need Linux")

// ListenTransparentUDP needs Linux (IP_TRANSPARENT, IP_RECVORIGDSTADDR).
func ListenTransparentUDP(ctx context.Context, addr string) (*net.UDPConn, error) {
	return nil, errNotLinux
}

// TransparentReplier needs Linux (IP_TRANSPARENT): the function it returns always fails.
func TransparentReplier(mark int) func(from, to netip.AddrPort, b []byte) error {
	return func(from, to netip.AddrPort, b []byte) error { return errNotLinux }
}

// origDst: no IP_ORIGDSTADDR here.
func origDst(oob []byte) netip.AddrPort { return netip.AddrPort{} }

// readDatagram reads a datagram through a pooled buffer.
func readDatagram(c net.Conn) ([]byte, error) { return readDatagramBuffered(c) }
