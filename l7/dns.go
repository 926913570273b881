package l7

import (
	"fmt"
	"regexp"
	"strings"
)

// dnsChars is one character a DNS name pattern's wildcard may stand for (Cilium's
// matchpattern: letters, digits, '-' and '_'; never a dot).
const dnsChars = "[-a-zA-Z0-9_]"

// DNSPattern is a compiled DNS rule (rules.dns) or toFQDNs selector: a matchName, which
// matches one name exactly, or a matchPattern (semantics doc §1.3, toFQDNs row):
//
//   - "*" (any number of stars, optionally with a trailing dot) matches every name;
//   - "**." at the start (two or more stars, then a dot) stands for one or more whole labels,
//     so "**.example.com" matches "a.example.com" and "a.b.example.com", not "example.com";
//   - elsewhere "*" stands for zero or more characters of one label: "*.example.com"
//     matches "a.example.com" only, "*example.com" also "example.com" and "myexample.com".
//
// Names and patterns compare case-insensitively and fully qualified (a trailing dot is
// implied).
type DNSPattern struct {
	// Source is the rule as written: "matchName: ..." or "matchPattern: ...".
	Source string
	exact  string         // matchName, normalized
	re     *regexp.Regexp // matchPattern
}

// NormalizeDNSName is name lower-cased and fully qualified ("Example.COM" -> "example.com.").
func NormalizeDNSName(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// CompileDNSRule compiles one DNS rule; exactly one of matchName and matchPattern must be set.
func CompileDNSRule(matchName, matchPattern string) (DNSPattern, error) {
	switch {
	case matchName != "" && matchPattern != "":
		return DNSPattern{}, fmt.Errorf("only one of matchName or matchPattern is allowed")
	case matchName != "":
		if strings.ContainsFunc(matchName, func(r rune) bool { return !isDNSNameChar(r) }) {
			return DNSPattern{}, fmt.Errorf("matchName %q: only letters, digits, '-', '_' and '.' are allowed", matchName)
		}
		return DNSPattern{Source: "matchName: " + matchName, exact: NormalizeDNSName(matchName)}, nil
	case matchPattern != "":
		if strings.ContainsFunc(matchPattern, func(r rune) bool { return r != '*' && !isDNSNameChar(r) }) {
			return DNSPattern{}, fmt.Errorf("matchPattern %q: only letters, digits, '-', '_', '.' and '*' are allowed", matchPattern)
		}
		re, err := regexp.Compile(dnsPatternRegexp(matchPattern))
		if err != nil {
			return DNSPattern{}, fmt.Errorf("matchPattern %q: %w", matchPattern, err)
		}
		return DNSPattern{Source: "matchPattern: " + matchPattern, re: re}, nil
	}
	return DNSPattern{}, fmt.Errorf("one of matchName or matchPattern is required")
}

func isDNSNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}

// dnsPatternRegexp is the anchored regular expression of a matchPattern.
func dnsPatternRegexp(pattern string) string {
	p := strings.ToLower(strings.TrimSpace(pattern))
	if strings.Trim(strings.TrimSuffix(p, "."), "*") == "" && strings.Contains(p, "*") {
		// Only stars: every name (one or more labels), and the root.
		return `^(` + dnsChars + `+[.])+$|^[.]$`
	}
	p = NormalizeDNSName(p)
	var b strings.Builder
	b.WriteString("^")
	if stars := len(p) - len(strings.TrimLeft(p, "*")); stars >= 2 && p[stars] == '.' {
		b.WriteString(dnsChars + `+([.]` + dnsChars + `+)*[.]`)
		p = p[stars+1:]
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '.':
			b.WriteString("[.]")
		case '*':
			for i+1 < len(p) && p[i+1] == '*' {
				i++
			}
			b.WriteString(dnsChars + "*")
		default:
			b.WriteByte(p[i])
		}
	}
	b.WriteString("$")
	return b.String()
}

// Matches reports whether a query name (any case, with or without the trailing dot) is
// allowed by the rule.
func (p DNSPattern) Matches(name string) bool {
	name = NormalizeDNSName(name)
	if p.re != nil {
		return p.re.MatchString(name)
	}
	return p.exact != "" && name == p.exact
}

// String is the rule as written.
func (p DNSPattern) String() string { return p.Source }
