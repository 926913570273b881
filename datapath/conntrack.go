//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ConntrackEntry is one conntrack entry: a flow as its first packet had it, seen at the
// endpoint in one direction. Packets of the reverse tuple at the same endpoint in the
// opposite direction are replies and pass without policy.
type ConntrackEntry struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16 // ICMP echo: the echo id in both
	Proto            uint8
	Egress           bool
	Endpoint         uint32
	// LastSeen is CLOCK_MONOTONIC of the last packet.
	LastSeen time.Duration
	// Redirect, Audit, Unenforced: how the flow was let through.
	Redirect, Audit, Unenforced bool
}

// Conntrack flags (bpf/netward.h).
const (
	ctRedirect   = 1 << 0
	ctAudit      = 1 << 1
	ctUnenforced = 1 << 2
)

func conntrackEntry(k netwardCtKey, v netwardCtValue) ConntrackEntry {
	return ConntrackEntry{
		Src: addr4(k.Saddr), Dst: addr4(k.Daddr),
		SrcPort: ntohs(k.Sport), DstPort: ntohs(k.Dport),
		Proto: k.Proto, Egress: k.Dir == dirEgress, Endpoint: k.EpId,
		LastSeen:   time.Duration(v.LastSeenNs),
		Redirect:   v.Flags&ctRedirect != 0,
		Audit:      v.Flags&ctAudit != 0,
		Unenforced: v.Flags&ctUnenforced != 0,
	}
}

// Conntrack returns every conntrack entry.
func (d *Datapath) Conntrack() ([]ConntrackEntry, error) {
	var out []ConntrackEntry
	var k netwardCtKey
	var v netwardCtValue
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		out = append(out, conntrackEntry(k, v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	return out, nil
}

// FlushConntrack deletes the conntrack entries for which match returns true (every entry
// when match is nil) and returns how many it deleted.
func (d *Datapath) FlushConntrack(match func(ConntrackEntry) bool) (int, error) {
	var keys []netwardCtKey
	var k netwardCtKey
	var v netwardCtValue
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		if match == nil || match(conntrackEntry(k, v)) {
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	n := 0
	for _, k := range keys {
		if err := d.objs.Conntrack.Delete(k); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return n, fmt.Errorf("conntrack delete: %w", err)
		}
		n++
	}
	return n, nil
}

// MonotonicNow is CLOCK_MONOTONIC, the clock of ConntrackEntry.LastSeen and Event.Time:
// FlushConntrack(func(c) bool { return MonotonicNow()-c.LastSeen > idle }) expires idle
// entries (the map is an LRU and has no timeouts of its own).
func MonotonicNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
