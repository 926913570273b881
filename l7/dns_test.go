package l7

import (
	"strings"
	"testing"
)

// Semantics doc §1.3 (toFQDNs row) and §1.4 (rules.dns): matchName is one name, matchPattern
// has "*" within a label, "**." for one or more leading labels, and "*" alone for all.
func TestDNSPattern(t *testing.T) {
	cases := []struct {
		name, pattern string
		match         []string
		noMatch       []string
	}{
		{name: "api.example.com", match: []string{"api.example.com", "API.Example.COM.", "api.example.com."},
			noMatch: []string{"x.api.example.com", "example.com", "api.example.co", "apiXexample.com"}},
		{name: "Example.COM.", match: []string{"example.com"}, noMatch: []string{"www.example.com"}},
		{pattern: "*", match: []string{"example.com", "a.b.c.d", ".", "under_score.io", "x"},
			noMatch: []string{"a..b", "sp ace.com", "a*b.com"}},
		{pattern: "**", match: []string{"example.com", "."}},
		{pattern: "*.", match: []string{"a.b"}},
		{pattern: "*.example.com", match: []string{"a.example.com", "A-1_b.example.com"},
			noMatch: []string{"example.com", "a.b.example.com", "aexample.com", "a.example.com.evil.io"}},
		{pattern: "*example.com", match: []string{"example.com", "myexample.com"},
			noMatch: []string{"a.example.com"}},
		{pattern: "**.example.com", match: []string{"a.example.com", "a.b.example.com", "x.y.z.example.com."},
			noMatch: []string{"example.com", "aexample.com", ".example.com"}},
		{pattern: "***.example.com", match: []string{"a.b.example.com"}, noMatch: []string{"example.com"}},
		{pattern: "api-*.example.com", match: []string{"api-.example.com", "api-v2.example.com"},
			noMatch: []string{"api.example.com", "api-v2.x.example.com"}},
		{pattern: "a**b.example.com", match: []string{"ab.example.com", "axxb.example.com"},
			noMatch: []string{"a.b.example.com"}},
		{pattern: "sub.**.example.com", match: []string{"sub.a.example.com", "sub..example.com"},
			noMatch: []string{"sub.a.b.example.com"}}, // "**" not leading: one label's characters
		{pattern: "EXAMPLE.com", match: []string{"example.COM."}, noMatch: []string{"a.example.com"}},
	}
	for _, c := range cases {
		p, err := CompileDNSRule(c.name, c.pattern)
		if err != nil {
			t.Fatalf("%q/%q: %v", c.name, c.pattern, err)
		}
		for _, n := range c.match {
			if !p.Matches(n) {
				t.Errorf("%s does not match %q, want a match", p, n)
			}
		}
		for _, n := range c.noMatch {
			if p.Matches(n) {
				t.Errorf("%s matches %q, want no match", p, n)
			}
		}
	}
}

func TestCompileDNSRuleErrors(t *testing.T) {
	for _, c := range []struct{ name, pattern, want string }{
		{"", "", "required"},
		{"a.com", "*.a.com", "only one"},
		{"a b.com", "", "matchName"},
		{"a*.com", "", "matchName"},
		{"", "a[b].com", "matchPattern"},
		{"", "a+.com", "matchPattern"},
	} {
		_, err := CompileDNSRule(c.name, c.pattern)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CompileDNSRule(%q, %q) = %v, want an error containing %q", c.name, c.pattern, err, c.want)
		}
	}
}

func FuzzDNSPattern(f *testing.F) {
	f.Add("*.example.com", "a.example.com")
	f.Add("**.example.com", "a.b.example.com")
	f.Add("*", "x")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		p, err := CompileDNSRule("", pattern)
		if err != nil {
			return
		}
		m := p.Matches(name)
		// Case and the trailing dot never change the verdict.
		if p.Matches(strings.ToUpper(name)) != m || p.Matches(NormalizeDNSName(name)) != m {
			t.Fatalf("%s: %q matches %v, its normalized or upper-case form differently", p, name, m)
		}
		// A pattern without stars matches exactly its own name.
		if !strings.Contains(pattern, "*") && m != (NormalizeDNSName(name) == NormalizeDNSName(pattern)) {
			t.Fatalf("%s: %q matches %v", p, name, m)
		}
	})
}
