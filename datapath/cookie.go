//go:build linux

package datapath

import (
	"hash/fnv"
	"strings"
	"sync"

	"github.com/netward/netward/policy"
)

// CookieJar numbers the rule-origin sets of map entries, so events can name the rules
// behind a decision: pass jar.Cookie to SetPolicy and jar.Origins(ev.Cookie) to explain an
// event. Cookie 0 is "no origins". A cookie is a hash of the origins' text, so an agent that
// restarts gives the same rules the same cookie and can explain events and pinned entries
// written by its predecessor; a cookie whose rules no longer exist explains nothing.
// Hash collisions are resolved by probing, in the order sets are first seen.
type CookieJar struct {
	mu      sync.Mutex
	ids     map[string]uint32
	origins map[uint32][]*policy.Origin
}

// NewCookieJar returns an empty jar.
func NewCookieJar() *CookieJar {
	return &CookieJar{ids: map[string]uint32{}, origins: map[uint32][]*policy.Origin{}}
}

// Cookie returns the number of the entry's origins (a CookieFunc).
func (j *CookieJar) Cookie(e *policy.MapEntry) uint32 {
	if len(e.Origins) == 0 {
		return 0
	}
	var b strings.Builder
	for _, o := range e.Origins {
		b.WriteString(o.String())
		b.WriteByte(0)
	}
	key := b.String()
	j.mu.Lock()
	defer j.mu.Unlock()
	if id, ok := j.ids[key]; ok {
		return id
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	id := h.Sum32()
	for id == 0 || j.origins[id] != nil {
		id++
	}
	j.ids[key] = id
	j.origins[id] = e.Origins
	return id
}

// Origins returns the origins of a cookie (nil for 0 or an unknown cookie).
func (j *CookieJar) Origins(cookie uint32) []*policy.Origin {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.origins[cookie]
}
