//go:build linux

package agent

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"sync"

	"github.com/netward/netward/datapath"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// fakeDatapath is an in-memory datapath that decides flows the way the BPF programs do
// (endpoint flags, ipcache longest prefix, policy map lookup), so tests can check every
// intermediate state of an update.
type fakeDatapath struct {
	mu       sync.Mutex
	eps      map[uint32]datapath.Endpoint // by ifindex
	pols     map[uint32]map[policy.Key]datapath.PolicyValue
	ipc      map[netip.Prefix]identity.ID
	attached map[string]int
	writes   int
	events   chan datapath.Event
	// afterWrite is called (without the lock) after every write.
	afterWrite func()
	failPolicy bool
}

func newFakeDatapath() *fakeDatapath {
	return &fakeDatapath{
		eps:      map[uint32]datapath.Endpoint{},
		pols:     map[uint32]map[policy.Key]datapath.PolicyValue{},
		ipc:      map[netip.Prefix]identity.ID{},
		attached: map[string]int{},
		events:   make(chan datapath.Event, 100),
	}
}

func (f *fakeDatapath) wrote() {
	f.mu.Lock()
	f.writes++
	hook := f.afterWrite
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func (f *fakeDatapath) SetEndpoint(ifindex uint32, ep datapath.Endpoint) error {
	f.mu.Lock()
	f.eps[ifindex] = ep
	f.mu.Unlock()
	f.wrote()
	return nil
}

func (f *fakeDatapath) GetEndpoint(ifindex uint32) (datapath.Endpoint, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ep, ok := f.eps[ifindex]
	return ep, ok, nil
}

func (f *fakeDatapath) DeleteEndpoint(ifindex uint32) error {
	f.mu.Lock()
	ep, ok := f.eps[ifindex]
	if ok {
		delete(f.eps, ifindex)
		delete(f.pols, ep.ID)
	}
	f.mu.Unlock()
	f.wrote()
	return nil
}

func (f *fakeDatapath) SetPolicy(epID uint32, entries []policy.KeyEntry, cookie datapath.CookieFunc) (datapath.PolicyDelta, error) {
	f.mu.Lock()
	if f.failPolicy {
		f.mu.Unlock()
		return datapath.PolicyDelta{}, fmt.Errorf("injected failure")
	}
	m := map[policy.Key]datapath.PolicyValue{}
	for i := range entries {
		e := &entries[i].Entry
		v := datapath.PolicyValue{Deny: e.Verdict == policy.Deny, PrefixLen: entries[i].Key.PrefixLen, Precedence: e.Precedence}
		if e.Verdict == policy.Redirect {
			v.ProxyPort = datapath.DefaultProxyPort(entries[i].Key, e)
		}
		if cookie != nil {
			v.Cookie = cookie(e)
		}
		m[entries[i].Key] = v
	}
	old := f.pols[epID]
	f.pols[epID] = m
	f.mu.Unlock()
	if maps.Equal(old, m) {
		return datapath.PolicyDelta{Unchanged: true}, nil
	}
	f.wrote()
	return datapath.PolicyDelta{Upserted: len(m)}, nil
}

func (f *fakeDatapath) PolicyEntries(epID uint32) (map[policy.Key]datapath.PolicyValue, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.pols[epID]
	return maps.Clone(m), ok, nil
}

func (f *fakeDatapath) DeletePolicy(epID uint32) error {
	f.mu.Lock()
	delete(f.pols, epID)
	f.mu.Unlock()
	f.wrote()
	return nil
}

func (f *fakeDatapath) UpsertIPCache(p netip.Prefix, id identity.ID) error {
	f.mu.Lock()
	f.ipc[p.Masked()] = id
	f.mu.Unlock()
	f.wrote()
	return nil
}

func (f *fakeDatapath) DeleteIPCache(p netip.Prefix) error {
	f.mu.Lock()
	delete(f.ipc, p.Masked())
	f.mu.Unlock()
	f.wrote()
	return nil
}

func (f *fakeDatapath) Attach(_, ifname string) (func() error, error) {
	f.mu.Lock()
	f.attached[ifname]++
	f.mu.Unlock()
	return func() error {
		f.mu.Lock()
		delete(f.attached, ifname)
		f.mu.Unlock()
		return nil
	}, nil
}

func (f *fakeDatapath) Metrics() (map[string]datapath.Counter, error) {
	return map[string]datapath.Counter{"forwarded-policy": {Packets: 3, Bytes: 300}, "dropped-default-deny": {Packets: 1, Bytes: 60}}, nil
}

func (f *fakeDatapath) ReadEvents(ctx context.Context, fn func(datapath.Event)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-f.events:
			fn(e)
		}
	}
}

func (f *fakeDatapath) Close() error { return nil }

// identityOf is the ipcache lookup (longest prefix; world when none).
func (f *fakeDatapath) identityOfLocked(a netip.Addr) identity.ID {
	best, id := -1, identity.World
	for p, pid := range f.ipc {
		if p.Contains(a) && p.Bits() > best {
			best, id = p.Bits(), pid
		}
	}
	return id
}

// decideLocked is one direction's verdict at an endpoint, as the programs decide it.
func (f *fakeDatapath) decideLocked(ifindex uint32, egress bool, peer netip.Addr, proto uint8, port uint16) bool {
	ep, ok := f.eps[ifindex]
	if !ok {
		return false
	}
	if ep.Flags&datapath.FlagPolicyError != 0 {
		return false
	}
	bit := datapath.FlagIngressEnforced
	if egress {
		bit = datapath.FlagEgressEnforced
	}
	if ep.Flags&bit == 0 {
		return true
	}
	pm, ok := f.pols[ep.ID]
	if !ok {
		return false
	}
	entries := make([]policy.KeyEntry, 0, len(pm))
	for k, v := range pm {
		e := policy.MapEntry{Verdict: policy.Allow, Precedence: v.Precedence}
		if v.Deny {
			e.Verdict = policy.Deny
		}
		entries = append(entries, policy.KeyEntry{Key: k, Entry: e})
	}
	_, e, found := policy.NewMapState(entries).Lookup(f.identityOfLocked(peer), egress, proto, port)
	return found && e.Verdict != policy.Deny
}

// fakeNetwork is the node network of the unit tests.
type fakeNetwork struct {
	mu    sync.Mutex
	links map[string]uint32
	addrs []netip.Addr
}

func (n *fakeNetwork) LinkIndex(name string) (uint32, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if i, ok := n.links[name]; ok {
		return i, nil
	}
	return 0, fmt.Errorf("%s: %w", name, ErrNoLink)
}

func (n *fakeNetwork) Addrs() ([]netip.Addr, error) { return n.addrs, nil }

func (n *fakeNetwork) RemoveLinkPins(string) error { return nil }
