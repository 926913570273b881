//go:build !linux

package proxy

import (
	"context"
	"errors"
	"net"
)

// waitReadable is a no-op here: the head read that follows waits, with the deadline.
func waitReadable(c net.Conn) error { return nil }

// peerAlive cannot look ahead here: a kept upstream connection is assumed alive.
func peerAlive(c net.Conn) bool { return true }

// ListenTransparent needs Linux (IP_TRANSPARENT).
func ListenTransparent(ctx context.Context, network, address string) (net.Listener, error) {
	return nil, errors.New("transparent listeners need Linux")
}
