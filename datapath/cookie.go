//go:build linux

package datapath

import (
	"strings"
	"sync"

	"github.com/netward/netward/policy"
)

// CookieJar numbers the rule-origin sets of map entries, so events can name the rules
// behind a decision: pass jar.Cookie to SetPolicy and jar.Origins(ev.Cookie) to explain an
// event. Cookie 0 is "no origins". Numbers are stable for the jar's lifetime (an agent
// restart renumbers; entries are rewritten with the new numbers on their next SetPolicy).
type CookieJar struct {
	mu      sync.Mutex
	ids     map[string]uint32
	origins [][]*policy.Origin
}

// NewCookieJar returns an empty jar.
func NewCookieJar() *CookieJar {
	return &CookieJar{ids: map[string]uint32{}, origins: [][]*policy.Origin{nil}}
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
	id := uint32(len(j.origins))
	j.ids[key] = id
	j.origins = append(j.origins, e.Origins)
	return id
}

// Origins returns the origins of a cookie (nil for 0 or an unknown cookie).
func (j *CookieJar) Origins(cookie uint32) []*policy.Origin {
	j.mu.Lock()
	defer j.mu.Unlock()
	if int(cookie) >= len(j.origins) {
		return nil
	}
	return j.origins[cookie]
}
