//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"maps"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/netward/netward/policy"
)

// CookieFunc returns the cookie of a map entry: a number naming the rules behind it, copied
// into the events of the decisions the entry makes (see CookieJar). nil writes cookie 0.
type CookieFunc func(*policy.MapEntry) uint32

// ProxyPortFunc returns the proxy port of a redirect entry.
type ProxyPortFunc func(policy.Key, *policy.MapEntry) uint16

// DefaultProxyPort is the placeholder proxy port of redirect entries until the L7 proxy
// allocates listeners: 15000 + the parser (HTTP 15001, TLS 15002, DNS 15003, CRD 15004).
func DefaultProxyPort(_ policy.Key, e *policy.MapEntry) uint16 { return 15000 + uint16(e.Parser) }

// PolicyDelta counts the changes SetPolicy wrote.
type PolicyDelta struct {
	// Upserted and Deleted count the writes to the standby map.
	Upserted, Deleted int
	// Unchanged is set when the endpoint already had exactly this policy (nothing written).
	Unchanged bool
}

// epPolicy is an endpoint's pair of inner policy maps: the active one (in policy_maps) and
// a standby copy that holds the previous generation, plus what each contains.
type epPolicy struct {
	active, standby       *ebpf.Map
	activeSet, standbySet map[netwardPolicyKey]netwardPolicyEntry
	flippedAt             uint64 // d.flips when standby stopped being active
}

func (p *epPolicy) close() {
	if p.active != nil {
		p.active.Close()
	}
	if p.standby != nil {
		p.standby.Close()
	}
}

// SetPolicy makes entries the policy of endpoint epID.
//
// Update order. The programs see a policy through two lookups (peer identity, identity 0)
// in the same inner map, so writing the live map key by key can expose intermediate states
// that allow a flow neither the old nor the new policy allows. Example
// (TestInPlaceUpdateOrderIsUnsafe), flow X -> TCP/80: old = {X TCP/80 allow, any-peer TCP
// deny} and new = {X TCP deny, any-peer allow} both deny it; upserting first and deleting
// stale keys last passes through {X TCP/80 allow (stale), X TCP deny, any-peer allow},
// where the stale longer allow hides the new deny and the flow passes. Putting denies first
// fails as well once an allow of a higher tier outranks a deny of a lower one, and no
// simple per-key rule is safe for every pair of maps (the safe order depends on how keys
// of the two identities and of nested prefixes interact). So
// the live map is never written: each endpoint has two inner maps. SetPolicy applies the
// delta (upserts of new and changed keys, then deletes of stale ones) to the standby map,
// which holds the previous generation and which no program reads, then swaps it in with
// one atomic update of policy_maps. A packet fetches its inner map once, so it sees all of
// the old or all of the new policy: no flow is allowed that neither allows, and none is
// dropped that both allow (TestSetPolicyIsAtomic). The map that was active becomes the
// standby; it is written only after an RCU grace period (membarrier(MEMBARRIER_CMD_GLOBAL)
// is synchronize_rcu(); one wait covers every flip before it), so a program still reading
// it cannot see the next delta. Cost: the delta to the previous generation, one outer-map
// write, and at most one grace period per round of updates.
//
// entries are typically MapState.Entries(); cookie numbers each entry's rule origins for
// events (CookieJar.Cookie; nil writes 0). A failure leaves the active policy in place.
func (d *Datapath) SetPolicy(epID uint32, entries []policy.KeyEntry, cookie CookieFunc) (PolicyDelta, error) {
	want, err := d.bpfEntries(entries, cookie)
	if err != nil {
		return PolicyDelta{}, fmt.Errorf("endpoint %d: %w", epID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p, err := d.adopt(epID)
	if err != nil {
		return PolicyDelta{}, err
	}
	if p.active != nil && maps.Equal(p.activeSet, want) {
		return PolicyDelta{Unchanged: true}, nil
	}
	if p.standby != nil && p.flippedAt > d.synced {
		if err := d.waitGracePeriod(); err != nil {
			// Without a grace period the old map may still be read: start a new one.
			p.standby.Close()
			p.standby, p.standbySet = nil, nil
		}
	}
	if p.standby == nil {
		m, err := d.newInnerMap(epID)
		if err != nil {
			return PolicyDelta{}, err
		}
		p.standby, p.standbySet = m, map[netwardPolicyKey]netwardPolicyEntry{}
	}
	delta, err := applyDelta(p.standby, p.standbySet, want)
	if err != nil {
		// The standby map is in an unknown state: drop it, the next call starts afresh.
		p.standby.Close()
		p.standby, p.standbySet = nil, nil
		return delta, fmt.Errorf("endpoint %d: %w", epID, err)
	}
	if err := d.objs.PolicyMaps.Put(epID, p.standby); err != nil {
		return delta, fmt.Errorf("endpoint %d: activate policy map: %w", epID, err)
	}
	d.flips++
	p.active, p.standby = p.standby, p.active
	p.activeSet, p.standbySet = p.standbySet, p.activeSet
	p.flippedAt = d.flips
	// A syscall update of a map-in-map waits for an RCU grace period before it returns
	// (kernel/bpf/syscall.c maybe_wait_bpf_programs), so no program still reads the map
	// that just became the standby: it may be written at once.
	d.synced = d.flips
	return delta, nil
}

// SetMapState is SetPolicy(epID, m.Entries(), cookie).
func (d *Datapath) SetMapState(epID uint32, m *policy.MapState, cookie CookieFunc) (PolicyDelta, error) {
	return d.SetPolicy(epID, m.Entries(), cookie)
}

// DeletePolicy removes the policy map of an endpoint (its enforced directions then drop
// everything, as default deny).
func (d *Datapath) DeletePolicy(epID uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.policies[epID]; p != nil {
		p.close()
		delete(d.policies, epID)
	}
	if err := d.objs.PolicyMaps.Delete(epID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete policy map %d: %w", epID, err)
	}
	return nil
}

// PolicyEntries returns the active policy map of an endpoint as the kernel has it, and
// false when the endpoint has none.
func (d *Datapath) PolicyEntries(epID uint32) (map[policy.Key]PolicyValue, bool, error) {
	var inner *ebpf.Map
	if err := d.objs.PolicyMaps.Lookup(epID, &inner); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, false, nil
		}
		return nil, false, err
	}
	defer inner.Close()
	set, err := dumpInner(inner)
	if err != nil {
		return nil, true, err
	}
	out := make(map[policy.Key]PolicyValue, len(set))
	for bk, bv := range set {
		k, err := fromBPFKey(bk)
		if err != nil {
			return nil, true, err
		}
		out[k] = PolicyValue{Deny: bv.Deny != 0, ProxyPort: ntohs(bv.ProxyPort),
			PrefixLen: bv.KeyPrefixLen, Precedence: policy.Precedence(bv.Precedence), Cookie: bv.Cookie}
	}
	return out, true, nil
}

// PolicyValue is a policy map value as the kernel has it.
type PolicyValue struct {
	Deny       bool
	ProxyPort  uint16
	PrefixLen  uint8
	Precedence policy.Precedence
	Cookie     uint32
}

// bpfEntries converts a policy to BPF keys and values.
func (d *Datapath) bpfEntries(entries []policy.KeyEntry, cookie CookieFunc) (map[netwardPolicyKey]netwardPolicyEntry, error) {
	if len(entries) > int(d.inner.MaxEntries) {
		return nil, fmt.Errorf("policy has %d entries, the policy map holds %d", len(entries), d.inner.MaxEntries)
	}
	out := make(map[netwardPolicyKey]netwardPolicyEntry, len(entries))
	for i := range entries {
		k, e := entries[i].Key, &entries[i].Entry
		bk, err := bpfKey(k)
		if err != nil {
			return nil, err
		}
		if _, dup := out[bk]; dup {
			return nil, fmt.Errorf("policy keys collide on %v (port bits beyond the prefix?)", k)
		}
		v := netwardPolicyEntry{KeyPrefixLen: k.PrefixLen, Precedence: uint32(e.Precedence)}
		switch e.Verdict {
		case policy.Deny:
			v.Deny = 1
		case policy.Redirect:
			pp := d.ProxyPort(k, e)
			if pp == 0 {
				return nil, fmt.Errorf("redirect entry %v has no proxy port", k)
			}
			v.ProxyPort = htons(pp)
		case policy.Allow:
		default:
			return nil, fmt.Errorf("entry %v has verdict %v", k, e.Verdict)
		}
		if cookie != nil {
			v.Cookie = cookie(e)
		}
		out[bk] = v
	}
	return out, nil
}

// adopt returns the endpoint's maps, adopting the inner map a previous agent left in the
// pinned policy_maps.
func (d *Datapath) adopt(epID uint32) (*epPolicy, error) {
	if p := d.policies[epID]; p != nil {
		return p, nil
	}
	p := &epPolicy{}
	var inner *ebpf.Map
	err := d.objs.PolicyMaps.Lookup(epID, &inner)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
	case err != nil:
		return nil, fmt.Errorf("endpoint %d: policy map: %w", epID, err)
	default:
		set, err := dumpInner(inner)
		if err != nil {
			inner.Close()
			return nil, fmt.Errorf("endpoint %d: read policy map: %w", epID, err)
		}
		p.active, p.activeSet = inner, set
	}
	d.policies[epID] = p
	return p, nil
}

func (d *Datapath) newInnerMap(epID uint32) (*ebpf.Map, error) {
	spec := d.inner.Copy()
	spec.Name = fmt.Sprintf("nw_pol_%d", epID)
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("endpoint %d: create policy map: %w", epID, err)
	}
	return m, nil
}

// applyDelta makes m (whose contents are have) contain want: upserts first, deletes last.
func applyDelta(m *ebpf.Map, have, want map[netwardPolicyKey]netwardPolicyEntry) (PolicyDelta, error) {
	var delta PolicyDelta
	for k, v := range want {
		if old, ok := have[k]; ok && old == v {
			continue
		}
		if err := m.Put(k, v); err != nil {
			return delta, fmt.Errorf("policy map update %+v: %w", k, err)
		}
		have[k] = v
		delta.Upserted++
	}
	for k := range have {
		if _, ok := want[k]; ok {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return delta, fmt.Errorf("policy map delete %+v: %w", k, err)
		}
		delete(have, k)
		delta.Deleted++
	}
	return delta, nil
}

func dumpInner(m *ebpf.Map) (map[netwardPolicyKey]netwardPolicyEntry, error) {
	set := map[netwardPolicyKey]netwardPolicyEntry{}
	var k netwardPolicyKey
	var v netwardPolicyEntry
	it := m.Iterate()
	for it.Next(&k, &v) {
		set[k] = v
	}
	return set, it.Err()
}

// membarrierCmdGlobal is MEMBARRIER_CMD_GLOBAL (linux/membarrier.h; not in x/sys).
const membarrierCmdGlobal = 1

// waitGracePeriod waits until every program run that started before now has finished:
// membarrier(MEMBARRIER_CMD_GLOBAL) is synchronize_rcu(), and BPF programs run inside RCU
// read-side critical sections.
func (d *Datapath) waitGracePeriod() error {
	target := d.flips
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		return fmt.Errorf("membarrier: %w", errno)
	}
	d.synced = target
	return nil
}
