package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netward/netward/datapath"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// Datapath is what the agent uses of *datapath.Datapath; tests substitute a fake.
type Datapath interface {
	SetEndpoint(ifindex uint32, ep datapath.Endpoint) error
	GetEndpoint(ifindex uint32) (datapath.Endpoint, bool, error)
	DeleteEndpoint(ifindex uint32) error
	SetPolicy(epID uint32, entries []policy.KeyEntry, cookie datapath.CookieFunc) (datapath.PolicyDelta, error)
	PolicyEntries(epID uint32) (map[policy.Key]datapath.PolicyValue, bool, error)
	DeletePolicy(epID uint32) error
	UpsertIPCache(p netip.Prefix, id identity.ID) error
	DeleteIPCache(p netip.Prefix) error
	Attach(netnsPath, ifname string) (detach func() error, err error)
	Metrics() (map[string]datapath.Counter, error)
	ReadEvents(ctx context.Context, fn func(datapath.Event)) error
	Close() error
}

var _ Datapath = (*datapath.Datapath)(nil)

// NodeNetwork answers questions about the node's network namespace; tests substitute a fake.
type NodeNetwork interface {
	// LinkIndex returns the ifindex of an interface (ErrNoLink when there is none).
	LinkIndex(ifname string) (uint32, error)
	// Addrs returns the node's own IPv4 addresses (not loopback).
	Addrs() ([]netip.Addr, error)
	// RemoveLinkPins removes what a datapath pinned for an interface that is gone.
	RemoveLinkPins(ifname string) error
}

// ErrNoLink is returned by LinkIndex for a missing interface.
var ErrNoLink = errors.New("no such interface")

// netnsNetwork is the real NodeNetwork: netlink in the node's namespace (a netlink socket
// opened in that namespace, so no thread switches).
type netnsNetwork struct {
	path   string // "" for the agent's own namespace
	pinDir string
}

func (n *netnsNetwork) handle() (*netlink.Handle, error) {
	if n.path == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(n.path)
	if err != nil {
		return nil, fmt.Errorf("node netns %s: %w", n.path, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

func (n *netnsNetwork) LinkIndex(ifname string) (uint32, error) {
	h, err := n.handle()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return 0, fmt.Errorf("%s: %w", ifname, ErrNoLink)
		}
		return 0, fmt.Errorf("interface %s: %w", ifname, err)
	}
	return uint32(l.Attrs().Index), nil
}

func (n *netnsNetwork) Addrs() ([]netip.Addr, error) {
	h, err := n.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("node addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() && !ip.IsLoopback() {
			out = append(out, ip)
		}
	}
	return out, nil
}

// RemoveLinkPins removes <pinDir>/links/<ifname> (datapath.Attach's pins, documented in
// package datapath) for an interface that vanished while no agent ran.
func (n *netnsNetwork) RemoveLinkPins(ifname string) error {
	if ifname == "" || ifname == "." || ifname == ".." || filepath.Base(ifname) != ifname {
		return nil
	}
	return os.RemoveAll(filepath.Join(n.pinDir, "links", ifname))
}
