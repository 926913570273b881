package agent

import (
	"hash/fnv"
	"maps"

	"github.com/netward/netward/identity"
)

// Identity numbers key the BPF maps (the ipcache values, the policy map keys), so they must
// not change while the programmed state uses them: cluster.Build numbers identities afresh on
// every build, in an order that shifts when pods come and go. The allocator gives each label
// set the number it had before, and a new pod label set the number identity.Allocate gives
// it (deterministic from the labels and the pods' creation times, so every node of a cluster
// agrees, docs/kubernetes.md "Identities"), or when that number is still held by a label
// set that is gone, a number from a hash of its labels (linear probing on a collision). Numbers are released only after an
// apply succeeded completely (then nothing programmed refers to them), so a number never
// means two label sets while a map could hold it.

// identity scopes: [base, base+size).
type idScope struct {
	base identity.ID
	size uint32
}

var (
	// scopePod is Cilium's cluster-local range of label-based identities (cluster id 0).
	scopePod = idScope{identity.MinCluster, 65536 - uint32(identity.MinCluster)}
	// scopeCIDR is the local scope (CIDR identities).
	scopeCIDR = idScope{identity.LocalScope + 1, 1<<24 - 1}
	// scopeNode holds per-node remote-node identities (cidr-match-mode nodes).
	scopeNode = idScope{identity.RemoteNodeScope + 1, 1<<24 - 1}
)

// allocator assigns stable numbers to identity keys ("pod:<labels>", "cidr:<prefix>",
// "node:<name>").
type allocator struct {
	byKey map[string]identity.ID
	byID  map[identity.ID]string
}

func newAllocator(saved map[string]identity.ID) *allocator {
	a := &allocator{byKey: map[string]identity.ID{}, byID: map[identity.ID]string{}}
	for k, id := range saved {
		if other, dup := a.byID[id]; dup {
			// A corrupt state file: keep one deterministically.
			if other < k {
				continue
			}
			delete(a.byKey, other)
		}
		a.byKey[k] = id
		a.byID[id] = k
	}
	return a
}

// get returns the number of key, allocating one in scope if needed: preferred when it is
// in scope and free (the deterministic number every node computes for the same labels),
// else the first free one from a hash of key.
func (a *allocator) get(key string, s idScope, preferred identity.ID) identity.ID {
	if id, ok := a.byKey[key]; ok {
		return id
	}
	if _, used := a.byID[preferred]; !used && preferred >= s.base && uint64(preferred) < uint64(s.base)+uint64(s.size) {
		a.byKey[key] = preferred
		a.byID[preferred] = key
		return preferred
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	off := uint32(h.Sum64() % uint64(s.size))
	for i := uint32(0); i < s.size; i++ {
		id := s.base + identity.ID((off+i)%s.size)
		if _, used := a.byID[id]; !used {
			a.byKey[key] = id
			a.byID[id] = key
			return id
		}
	}
	// The scope is full (65280 pod label sets): there is no safe number.
	return 0
}

// retain releases every number whose key is not in keep.
func (a *allocator) retain(keep map[string]bool) {
	for k, id := range a.byKey {
		if !keep[k] {
			delete(a.byKey, k)
			delete(a.byID, id)
		}
	}
}

func (a *allocator) snapshot() map[string]identity.ID { return maps.Clone(a.byKey) }

// key returns the key an identity number stands for.
func (a *allocator) key(id identity.ID) (string, bool) {
	k, ok := a.byID[id]
	return k, ok
}
