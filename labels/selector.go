package labels

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Operator is a requirement operator, as in Kubernetes label selectors.
type Operator string

// The operators Cilium endpoint selectors accept.
const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Requirement is one source-qualified condition of a selector.
type Requirement struct {
	Source   string
	Key      string
	Operator Operator
	Values   []string // sorted
}

func (r Requirement) String() string {
	k := r.Source + ":" + r.Key
	switch r.Operator {
	case OpExists:
		return k
	case OpDoesNotExist:
		return "!" + k
	case OpIn:
		if len(r.Values) == 1 {
			return k + "=" + r.Values[0]
		}
		return k + " in (" + strings.Join(r.Values, ",") + ")"
	default:
		return k + " notin (" + strings.Join(r.Values, ",") + ")"
	}
}

// Matches evaluates the requirement against a label set.
func (r Requirement) Matches(s Set) bool {
	vals := s.lookup(r.Source, r.Key)
	switch r.Operator {
	case OpExists:
		return len(vals) > 0
	case OpDoesNotExist:
		return len(vals) == 0
	case OpIn:
		for _, v := range vals {
			if slices.Contains(r.Values, v) {
				return true
			}
		}
		return false
	case OpNotIn:
		for _, v := range vals {
			if slices.Contains(r.Values, v) {
				return false
			}
		}
		return true
	}
	return false
}

// Selector is a conjunction of requirements; the empty selector selects everything.
// Values are immutable; build variants with With.
type Selector struct {
	reqs []Requirement // sorted by String()
	key  string
}

// NewSelector builds a canonical selector from requirements.
func NewSelector(reqs ...Requirement) Selector {
	rs := slices.Clone(reqs)
	for i := range rs {
		rs[i].Values = slices.Sorted(slices.Values(rs[i].Values))
		rs[i].Values = slices.Compact(rs[i].Values)
	}
	slices.SortFunc(rs, func(a, b Requirement) int { return strings.Compare(a.String(), b.String()) })
	rs = slices.CompactFunc(rs, func(a, b Requirement) bool { return a.String() == b.String() })
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return Selector{reqs: rs, key: "&{" + strings.Join(parts, ", ") + "}"}
}

// FromLabelSelector converts a Kubernetes label selector as written in a Cilium policy:
// keys may carry a source prefix; keys without one get defaultSource ("any" for Cilium
// endpoint selectors, "k8s" for Kubernetes NetworkPolicy selectors).
// A nil selector yields the empty selector.
func FromLabelSelector(ls *metav1.LabelSelector, defaultSource string) (Selector, error) {
	return fromLabelSelector(ls, func(k string) (string, string) { return ParseKey(k, defaultSource) })
}

// FromK8sLabelSelector converts a Kubernetes NetworkPolicy selector: every key gets source,
// whatever it contains (Kubernetes label keys cannot carry a source prefix).
func FromK8sLabelSelector(ls *metav1.LabelSelector, source string) (Selector, error) {
	return fromLabelSelector(ls, func(k string) (string, string) { return source, k })
}

func fromLabelSelector(ls *metav1.LabelSelector, split func(string) (string, string)) (Selector, error) {
	if ls == nil {
		return NewSelector(), nil
	}
	var reqs []Requirement
	for k, v := range ls.MatchLabels {
		src, key := split(k)
		reqs = append(reqs, Requirement{Source: src, Key: key, Operator: OpIn, Values: []string{v}})
	}
	for i, e := range ls.MatchExpressions {
		src, key := split(e.Key)
		op := Operator(e.Operator)
		switch op {
		case OpIn, OpNotIn:
			if len(e.Values) == 0 {
				return Selector{}, fmt.Errorf("matchExpressions[%d]: operator %s needs at least one value", i, op)
			}
		case OpExists, OpDoesNotExist:
			if len(e.Values) > 0 {
				return Selector{}, fmt.Errorf("matchExpressions[%d]: operator %s takes no values", i, op)
			}
		default:
			return Selector{}, fmt.Errorf("matchExpressions[%d]: unknown operator %q (want In, NotIn, Exists or DoesNotExist)", i, e.Operator)
		}
		reqs = append(reqs, Requirement{Source: src, Key: key, Operator: op, Values: slices.Clone(e.Values)})
	}
	return NewSelector(reqs...), nil
}

// With returns the selector with more requirements added.
func (s Selector) With(reqs ...Requirement) Selector {
	return NewSelector(append(slices.Clone(s.reqs), reqs...)...)
}

// Requirements returns the canonical requirement list (do not modify).
func (s Selector) Requirements() []Requirement { return s.reqs }

// IsWildcard reports whether the selector selects every label set.
func (s Selector) IsWildcard() bool { return len(s.reqs) == 0 }

// Key is the canonical string of the selector, equal for equal selectors.
func (s Selector) Key() string {
	if s.key == "" {
		return "&{}"
	}
	return s.key
}

func (s Selector) String() string { return s.Key() }

// Matches reports whether every requirement holds for the set.
func (s Selector) Matches(set Set) bool {
	for _, r := range s.reqs {
		if !r.Matches(set) {
			return false
		}
	}
	return true
}

// HasKey reports whether a requirement names source:key exactly.
func (s Selector) HasKey(source, key string) bool {
	for _, r := range s.reqs {
		if r.Source == source && r.Key == key {
			return true
		}
	}
	return false
}

// HasKeyPrefix reports whether a requirement's source-qualified key starts with prefix
// (for example "reserved:" or "any:io.cilium.k8s.namespace.labels").
func (s Selector) HasKeyPrefix(prefix string) bool {
	for _, r := range s.reqs {
		if strings.HasPrefix(r.Source+":"+r.Key, prefix) {
			return true
		}
	}
	return false
}

// InValues returns the values of an In requirement on source:key, if one exists.
func (s Selector) InValues(source, key string) ([]string, bool) {
	for _, r := range s.reqs {
		if r.Source == source && r.Key == key && r.Operator == OpIn {
			return r.Values, true
		}
	}
	return nil, false
}
