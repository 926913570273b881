package identity

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/netward/netward/labels"
)

// Identities are numbered deterministically from their labels, so that every agent, which
// sees the same Pods and Namespaces through its informers, gives the same labels the same
// number without talking to the others (docs/kubernetes.md, "Identities").
//
// Each label set has a home slot in Cilium's cluster-local range 256..65535: a SHA-256 of
// its sorted labels, modulo the range size. Collisions are resolved by linear probing in a
// canonical order: oldest claim first (the creationTimestamp of the oldest pod carrying the
// set), then by the sets' label strings. The numbering is therefore a function of the claims
// alone, whatever order they are read in, and a new label set never moves an existing one:
// it is the youngest, so it probes last and takes a free slot. A set can be renumbered only
// when a set that collided with it goes away, or when its own oldest pod goes away and it
// falls behind a younger set of its probe run.

// Bounds of the identities Allocate gives out (Cilium's cluster-local identity
// range without ClusterMesh: 16 bits, the first 256 reserved).
const (
	AllocFirst ID = MinCluster
	AllocLast  ID = 65535
)

const allocSlots = uint64(AllocLast-AllocFirst) + 1

// Home is the number a label set gets unless another set took it first.
func Home(set labels.Set) ID {
	h := sha256.New()
	for _, l := range set.Sorted() {
		h.Write([]byte(l.Source))
		h.Write([]byte{0})
		h.Write([]byte(l.Key))
		h.Write([]byte{0})
		h.Write([]byte(l.Value))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return AllocFirst + ID(binary.BigEndian.Uint64(sum[:8])%allocSlots)
}

// Claim is a label set and since when it exists: the oldest creationTimestamp of
// the pods that carry it (zero: unknown, which sorts first).
type Claim struct {
	Labels labels.Set
	Since  time.Time
}

// Allocate numbers every distinct label set (keyed by Set.String()). The result
// depends only on the claims, not on their order; a label set claimed several times counts
// with its oldest claim.
func Allocate(claims []Claim) (map[string]ID, error) {
	type entry struct {
		key   string
		home  ID
		since time.Time
	}
	byKey := map[string]*entry{}
	var all []*entry
	for _, c := range claims {
		k := c.Labels.String()
		if e, ok := byKey[k]; ok {
			if c.Since.Before(e.since) {
				e.since = c.Since
			}
			continue
		}
		e := &entry{key: k, home: Home(c.Labels), since: c.Since}
		byKey[k] = e
		all = append(all, e)
	}
	if uint64(len(all)) > allocSlots {
		return nil, fmt.Errorf("%d distinct identity label sets do not fit in the %d identities of %d..%d", len(all), allocSlots, AllocFirst, AllocLast)
	}
	slices.SortFunc(all, func(a, b *entry) int {
		return cmp.Or(a.since.Compare(b.since), cmp.Compare(a.key, b.key))
	})
	used := make(map[ID]bool, len(all))
	out := make(map[string]ID, len(all))
	for _, e := range all {
		id := e.home
		for used[id] {
			id++
			if id > AllocLast {
				id = AllocFirst
			}
		}
		used[id] = true
		out[e.key] = id
	}
	return out, nil
}
