package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// HostVethName is the node-side veth name of a container's interface: "nw" and the first 11
// hex digits of sha256(containerID + ifName), 13 characters.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + ifName))
	return "nw" + hex.EncodeToString(sum[:])[:11]
}

// IPAM is a host-local style allocator for one network's subnet: one file per allocated
// address holding the owner, serialised by flock(2) on a lock file.
type IPAM struct {
	dir    string
	subnet netip.Prefix
}

const (
	ipamLockFile = "lock"
	ipamLastFile = "last_reserved_ip"
)

// ErrExhausted is returned when a subnet has no free address.
var ErrExhausted = errors.New("no free address")

// OpenIPAM opens (creating it) the allocation directory dataDir/network for subnet.
func OpenIPAM(dataDir, network string, subnet netip.Prefix) (*IPAM, error) {
	if !networkName.MatchString(network) {
		return nil, fmt.Errorf("ipam: bad network name %q", network)
	}
	if !subnet.IsValid() || !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return nil, fmt.Errorf("ipam: subnet %s: want an IPv4 prefix of /30 or shorter", subnet)
	}
	dir := filepath.Join(dataDir, network)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	return &IPAM{dir: dir, subnet: subnet.Masked()}, nil
}

// Dir is the allocation directory.
func (m *IPAM) Dir() string { return m.dir }

// lock takes the exclusive lock; flock locks belong to the open file description, so this
// serialises goroutines of one process as well as processes.
func (m *IPAM) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(m.dir, ipamLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ipam: lock: %w", err)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

func owner(containerID, ifName string) string { return containerID + "\n" + ifName + "\n" }

// allocations reads every allocation: address -> owner file content.
func (m *IPAM) allocations() (map[netip.Addr]string, error) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	out := map[netip.Addr]string{}
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ipam: %w", err)
		}
		out[ip] = string(b)
	}
	return out, nil
}

// usable reports whether ip may be handed out: inside the subnet, not the network address,
// not the first address (the node-side gateway by convention, as host-local), not broadcast.
func (m *IPAM) usable(ip netip.Addr) bool {
	if !m.subnet.Contains(ip) {
		return false
	}
	first := m.subnet.Addr()
	return ip != first && ip != first.Next() && ip != lastAddr(m.subnet)
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Allocate returns the address of containerID's ifName, allocating the next free one
// (round-robin after the last one handed out) if it has none yet.
func (m *IPAM) Allocate(containerID, ifName string) (netip.Addr, error) {
	if containerID == "" || ifName == "" {
		return netip.Addr{}, errors.New("ipam: container ID and interface name are required")
	}
	unlock, err := m.lock()
	if err != nil {
		return netip.Addr{}, err
	}
	defer unlock()
	allocs, err := m.allocations()
	if err != nil {
		return netip.Addr{}, err
	}
	want := owner(containerID, ifName)
	for ip, o := range allocs {
		if o == want && m.usable(ip) {
			return ip, nil
		}
	}
	start := m.subnet.Addr().Next()
	if b, err := os.ReadFile(filepath.Join(m.dir, ipamLastFile)); err == nil {
		if last, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && m.subnet.Contains(last) {
			start = last
		}
	}
	size := 1 << (32 - m.subnet.Bits())
	ip := start
	for range size {
		ip = ip.Next()
		if !m.subnet.Contains(ip) {
			ip = m.subnet.Addr()
		}
		if !m.usable(ip) {
			continue
		}
		if _, taken := allocs[ip]; taken {
			continue
		}
		f, err := os.OpenFile(filepath.Join(m.dir, ip.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Addr{}, fmt.Errorf("ipam: %w", err)
		}
		_, werr := f.WriteString(want)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(f.Name())
			return netip.Addr{}, fmt.Errorf("ipam: %w", werr)
		}
		if err := os.WriteFile(filepath.Join(m.dir, ipamLastFile), []byte(ip.String()), 0o644); err != nil {
			os.Remove(f.Name())
			return netip.Addr{}, fmt.Errorf("ipam: %w", err)
		}
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("ipam: %w in %s (%d allocated)", ErrExhausted, m.subnet, len(allocs))
}

// Lookup returns the address allocated to containerID's ifName, if any.
func (m *IPAM) Lookup(containerID, ifName string) (netip.Addr, bool, error) {
	unlock, err := m.lock()
	if err != nil {
		return netip.Addr{}, false, err
	}
	defer unlock()
	allocs, err := m.allocations()
	if err != nil {
		return netip.Addr{}, false, err
	}
	want := owner(containerID, ifName)
	for ip, o := range allocs {
		if o == want {
			return ip, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// Release frees the addresses of containerID's ifName and returns them; releasing nothing
// is not an error.
func (m *IPAM) Release(containerID, ifName string) ([]netip.Addr, error) {
	want := owner(containerID, ifName)
	return m.releaseIf(func(o string) bool { return o == want })
}

// GC frees every allocation whose owner keep rejects and returns the freed addresses.
func (m *IPAM) GC(keep func(containerID, ifName string) bool) ([]netip.Addr, error) {
	return m.releaseIf(func(o string) bool {
		id, rest, _ := strings.Cut(o, "\n")
		ifName, _, _ := strings.Cut(rest, "\n")
		return !keep(id, ifName)
	})
}

func (m *IPAM) releaseIf(match func(owner string) bool) ([]netip.Addr, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	allocs, err := m.allocations()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for ip, o := range allocs {
		if !match(o) {
			continue
		}
		if err := os.Remove(filepath.Join(m.dir, ip.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return out, fmt.Errorf("ipam: %w", err)
		}
		out = append(out, ip)
	}
	return out, nil
}

// Allocated lists every allocation: address -> (containerID, ifName).
func (m *IPAM) Allocated() (map[netip.Addr][2]string, error) {
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	allocs, err := m.allocations()
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr][2]string{}
	for ip, o := range allocs {
		id, rest, _ := strings.Cut(o, "\n")
		ifName, _, _ := strings.Cut(rest, "\n")
		out[ip] = [2]string{id, ifName}
	}
	return out, nil
}
