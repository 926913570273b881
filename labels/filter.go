package labels

import (
	"regexp"
	"strings"
)

// identityFilter reproduces Cilium's default label-prefix configuration: a label is
// identity-relevant unless an "ignore" pattern matches its key at the start, and an
// "include" pattern matching a longer stretch of the key overrides the ignore.
type labelPattern struct {
	source string // "" = any source
	re     *regexp.Regexp
	ignore bool
}

func mustPattern(expr string) labelPattern {
	p := labelPattern{}
	if src, rest, ok := strings.Cut(expr, ":"); ok {
		p.source, expr = src, rest
	}
	if strings.HasPrefix(expr, "!") {
		p.ignore, expr = true, expr[1:]
	}
	p.re = regexp.MustCompile(expr)
	return p
}

func (p labelPattern) match(l Label) (bool, int) {
	if p.source != "" && p.source != l.Source {
		return false, 0
	}
	loc := p.re.FindStringIndex(l.Key)
	if loc == nil || loc[0] != 0 {
		return false, 0
	}
	return true, loc[1]
}

// defaultPatterns is Cilium v1.20's default label prefix list (pkg/labelsfilter).
func defaultPatterns() []labelPattern {
	q := regexp.QuoteMeta
	exprs := []string{
		"reserved:.*",
		q(KeyNamespace),
		q(KeyNamespaceLabels),
		q("app.kubernetes.io"),
		q(KeyCluster),
		q(KeyServiceAccount),
		`!io\.kubernetes`,
		`!kubernetes\.io`,
		"!" + q("statefulset.kubernetes.io/pod-name"),
		"!" + q("apps.kubernetes.io/pod-index"),
		"!" + q("batch.kubernetes.io/job-completion-index"),
		"!" + q("batch.kubernetes.io/controller-uid"),
		`!.*beta\.kubernetes\.io`,
		`!k8s\.io`,
		`!pod-template-generation`,
		`!pod-template-hash`,
		`!controller-revision-hash`,
		`!controller-uid`,
		`!annotation.*`,
		`!etcd_node`,
		`!topology\.kubernetes\.io`,
	}
	ps := make([]labelPattern, len(exprs))
	for i, e := range exprs {
		ps[i] = mustPattern(e)
	}
	return ps
}

// Filter decides which labels are identity-relevant. The zero value is not usable; use
// DefaultFilter.
type Filter struct {
	patterns []labelPattern
}

// DefaultFilter returns Cilium's default identity-relevant label filter.
func DefaultFilter() *Filter { return &Filter{patterns: defaultPatterns()} }

// Relevant reports whether l takes part in identities (and so can be selected).
func (f *Filter) Relevant(l Label) bool {
	included, ignored := 0, 0
	for _, p := range f.patterns {
		ok, n := p.match(l)
		if !ok {
			continue
		}
		if p.ignore {
			if ignored == 0 || n < ignored {
				ignored = n
			}
		} else if n > included {
			included = n
		}
	}
	return ignored == 0 || included > ignored
}
