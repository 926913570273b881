//go:build linux

package datapath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/netward/netward/identity"
)

// DefaultPinDir is where Load pins the maps when given "".
const DefaultPinDir = "/sys/fs/bpf/netward"

// bpffsRoot is where Load mounts bpffs when the pin directory is not on one.
const bpffsRoot = "/sys/fs/bpf"

// Datapath is the loaded netward datapath: the programs and the pinned maps. Its methods
// are safe for concurrent use.
type Datapath struct {
	pinDir string
	objs   netwardObjects
	inner  *ebpf.MapSpec // template of the per-endpoint policy maps

	// ProxyPort returns the proxy port of a redirect entry (it must not be 0). The default,
	// DefaultProxyPort, is a placeholder until the L7 proxy allocates listeners. Set it
	// before the first SetPolicy.
	ProxyPort ProxyPortFunc

	mu       sync.Mutex
	policies map[uint32]*epPolicy
	links    map[string][]link.Link // attached by this Datapath, by interface
	flips    uint64                 // policy map flips so far
	synced   uint64                 // flips known to be past an RCU grace period
}

// Load loads the programs and the maps. Maps already pinned under pinDir (DefaultPinDir
// when "") are adopted, so that an agent restart keeps the endpoints, the policies, the
// ipcache and conntrack; missing ones are created and pinned. bpffs is mounted on
// /sys/fs/bpf when the pin directory is not on a bpffs.
//
// A pinned map whose layout differs from this build's (an upgrade that changed
// bpf/netward.h) fails with an error wrapping ebpf.ErrMapIncompatible; remove the pins to
// start afresh.
func Load(pinDir string) (*Datapath, error) {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	pinDir = filepath.Clean(pinDir)
	if err := ensureBPFFS(pinDir); err != nil {
		return nil, err
	}
	spec, err := loadNetward()
	if err != nil {
		return nil, err
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinByName
	}
	d := &Datapath{
		pinDir:    pinDir,
		ProxyPort: DefaultProxyPort,
		policies:  map[uint32]*epPolicy{},
		links:     map[string][]link.Link{},
	}
	d.inner = spec.Maps[netwardMapPolicyMaps].InnerMap.Copy()
	d.inner.Pinning = ebpf.PinNone
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}
	if err := spec.LoadAndAssign(&d.objs, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load netward datapath: %+v", ve)
		}
		return nil, fmt.Errorf("load netward datapath (pins in %s): %w", pinDir, err)
	}
	return d, nil
}

// PinDir is the directory of the pinned maps and links.
func (d *Datapath) PinDir() string { return d.pinDir }

// Close releases this process's handles (maps, programs, links). Pinned maps and links
// stay, and so does enforcement on every attached interface.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.policies {
		p.close()
	}
	d.policies = map[uint32]*epPolicy{}
	for _, ls := range d.links {
		for _, l := range ls {
			l.Close() // pinned: stays attached
		}
	}
	d.links = map[string][]link.Link{}
	return d.objs.Close()
}

// Unpin removes the pinned maps (the pinned links are removed by each Attach's detach). The
// maps live on while this Datapath or an attached program uses them.
func (d *Datapath) Unpin() error {
	var errs []error
	for _, m := range []*ebpf.Map{d.objs.Endpoints, d.objs.Ipcache, d.objs.PolicyMaps,
		d.objs.Conntrack, d.objs.Fragments, d.objs.Metrics, d.objs.Events} {
		if err := m.Unpin(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ensureBPFFS makes dir exist on a bpffs, mounting bpffs on /sys/fs/bpf when needed.
func ensureBPFFS(dir string) error {
	existing := dir
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	var st unix.Statfs_t
	if err := unix.Statfs(existing, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", existing, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		if dir != bpffsRoot && !strings.HasPrefix(dir, bpffsRoot+"/") {
			return fmt.Errorf("pin directory %s is not on a bpffs (mount one, or use a directory under %s)", dir, bpffsRoot)
		}
		if err := os.MkdirAll(bpffsRoot, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("bpffs", bpffsRoot, "bpf", 0, ""); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", bpffsRoot, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	return nil
}

// SetEndpoint creates or updates the endpoint of the host-side veth ifindex (in the node's
// network namespace). Set its policy first: the programs drop the traffic of an enforced
// direction until the policy map exists, and drop everything of an interface they are
// attached to that has no endpoint.
func (d *Datapath) SetEndpoint(ifindex uint32, ep Endpoint) error {
	v := netwardEndpoint{Id: ep.ID, Identity: uint32(ep.Identity), Flags: uint32(ep.Flags)}
	if err := d.objs.Endpoints.Put(ifindex, v); err != nil {
		return fmt.Errorf("set endpoint %d (ifindex %d): %w", ep.ID, ifindex, err)
	}
	return nil
}

// GetEndpoint returns the endpoint of an ifindex.
func (d *Datapath) GetEndpoint(ifindex uint32) (Endpoint, bool, error) {
	var v netwardEndpoint
	if err := d.objs.Endpoints.Lookup(ifindex, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Endpoint{}, false, nil
		}
		return Endpoint{}, false, err
	}
	return Endpoint{ID: v.Id, Identity: identity.ID(v.Identity), Flags: EndpointFlags(v.Flags)}, true, nil
}

// DeleteEndpoint removes the endpoint of ifindex, its policy map and its conntrack entries.
// Detach the interface first: attached programs drop the traffic of an interface without
// endpoint.
func (d *Datapath) DeleteEndpoint(ifindex uint32) error {
	ep, ok, err := d.GetEndpoint(ifindex)
	if err != nil || !ok {
		return err
	}
	if err := d.objs.Endpoints.Delete(ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete endpoint %d: %w", ep.ID, err)
	}
	if err := d.DeletePolicy(ep.ID); err != nil {
		return err
	}
	_, err = d.FlushConntrack(func(c ConntrackEntry) bool { return c.Endpoint == ep.ID })
	return err
}

// UpsertIPCache maps an IPv4 prefix to the identity of its addresses (longest prefix wins;
// addresses the ipcache does not cover are identity.World).
func (d *Datapath) UpsertIPCache(p netip.Prefix, id identity.ID) error {
	k, err := ipcacheKey(p)
	if err != nil {
		return err
	}
	if err := d.objs.Ipcache.Put(k, netwardIpcacheValue{Identity: uint32(id)}); err != nil {
		return fmt.Errorf("ipcache %s: %w", p, err)
	}
	return nil
}

// DeleteIPCache removes a prefix from the ipcache. A missing prefix is not an error.
func (d *Datapath) DeleteIPCache(p netip.Prefix) error {
	k, err := ipcacheKey(p)
	if err != nil {
		return err
	}
	if err := d.objs.Ipcache.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ipcache %s: %w", p, err)
	}
	return nil
}

func ipcacheKey(p netip.Prefix) (netwardIpcacheKey, error) {
	if !p.IsValid() || !p.Addr().Unmap().Is4() {
		return netwardIpcacheKey{}, fmt.Errorf("ipcache prefix %s: only IPv4 is supported", p)
	}
	bits := p.Bits()
	if p.Addr().Is4In6() {
		bits -= 96
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), bits).Masked()
	return netwardIpcacheKey{Prefixlen: uint32(p.Bits()), Ip: ip4(p.Addr())}, nil
}

// Metrics returns the packet and byte counters per reason (Reason.String() names), summed
// over CPUs. They count since the metrics map was created (pinned: across agent restarts).
func (d *Datapath) Metrics() (map[string]Counter, error) {
	out := make(map[string]Counter, numReasons)
	for r := Reason(0); r < numReasons; r++ {
		var per []netwardMetricValue
		if err := d.objs.Metrics.Lookup(uint32(r), &per); err != nil {
			return nil, fmt.Errorf("metrics %s: %w", r, err)
		}
		var c Counter
		for _, v := range per {
			c.Packets += v.Packets
			c.Bytes += v.Bytes
		}
		out[r.String()] = c
	}
	return out, nil
}

// ReadEvents calls fn for every verdict event until ctx ends (then it returns nil). Run one
// reader at a time: readers of the ring buffer share its consumer position.
func (d *Datapath) ReadEvents(ctx context.Context, fn func(Event)) error {
	rd, err := ringbuf.NewReader(d.objs.Events)
	if err != nil {
		return fmt.Errorf("events reader: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	defer rd.Close()
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read events: %w", err)
		}
		ev, err := decodeEvent(rec.RawSample)
		if err != nil {
			return err
		}
		fn(ev)
	}
}
