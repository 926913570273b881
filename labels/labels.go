package labels

import (
	"maps"
	"slices"
	"strings"
)

// Label sources used by netward, with the meaning Cilium gives them.
const (
	SourceAny       = "any"
	SourceK8s       = "k8s"
	SourceReserved  = "reserved"
	SourceCIDR      = "cidr"
	SourceGenerated = "gen"
)

// Well-known keys of identity labels (semantics doc §2.9).
const (
	KeyNamespace       = "io.kubernetes.pod.namespace"
	KeyNamespaceLabels = "io.cilium.k8s.namespace.labels"
	KeyServiceAccount  = "io.cilium.k8s.policy.serviceaccount"
	KeyCluster         = "io.cilium.k8s.policy.cluster"
	KeyNamedPorts      = "io.cilium.k8s.named-ports"
	CiliumLabelPrefix  = "io.cilium.k8s"
)

// Label is one source-qualified label.
type Label struct {
	Source string
	Key    string
	Value  string
}

// String renders the label as Cilium prints it: source:key=value.
func (l Label) String() string {
	s := l.Source + ":" + l.Key
	if l.Value != "" {
		s += "=" + l.Value
	}
	return s
}

// ParseKey splits a selector or label key into source and key. A key without a known-looking
// source prefix gets defaultSource; like Cilium, everything before the first ':' is the source.
func ParseKey(s, defaultSource string) (source, key string) {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return defaultSource, s
}

// Set is an identity's label set, keyed by source-qualified key ("k8s:app").
// It is treated as immutable once built.
type Set struct {
	m map[string]Label
	// byKey holds the values of each key across sources, for "any:" selector keys.
	byKey map[string][]string
}

// NewSet builds a set from labels; a later label with the same source and key wins.
func NewSet(ls ...Label) Set {
	m := make(map[string]Label, len(ls))
	for _, l := range ls {
		m[l.Source+":"+l.Key] = l
	}
	byKey := make(map[string][]string, len(m))
	for _, l := range m {
		byKey[l.Key] = append(byKey[l.Key], l.Value)
	}
	return Set{m: m, byKey: byKey}
}

// Len is the number of labels.
func (s Set) Len() int { return len(s.m) }

// Has reports whether the set holds source:key (any value).
func (s Set) Has(source, key string) bool {
	_, ok := s.m[source+":"+key]
	return ok
}

// Get returns the value of source:key.
func (s Set) Get(source, key string) (string, bool) {
	l, ok := s.m[source+":"+key]
	return l.Value, ok
}

// lookup finds a label by key for a selector source; "any" matches every source. When several
// sources carry the key, every value is returned.
func (s Set) lookup(source, key string) []string {
	if source != SourceAny {
		if l, ok := s.m[source+":"+key]; ok {
			return []string{l.Value}
		}
		return nil
	}
	return s.byKey[key]
}

// Sorted returns the labels in a stable order (by source-qualified key).
func (s Set) Sorted() []Label {
	keys := slices.Sorted(maps.Keys(s.m))
	out := make([]Label, len(keys))
	for i, k := range keys {
		out[i] = s.m[k]
	}
	return out
}

// String is a canonical rendering, usable as a map key for identity allocation.
func (s Set) String() string {
	var b strings.Builder
	for i, l := range s.Sorted() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.String())
	}
	return b.String()
}
