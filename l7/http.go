package l7

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// MismatchAction is what a headerMatch does when the header does not have the value.
type MismatchAction string

// Mismatch actions (Cilium's headerMatches.mismatch).
const (
	MismatchFail    MismatchAction = ""
	MismatchLog     MismatchAction = "LOG"
	MismatchAdd     MismatchAction = "ADD"
	MismatchDelete  MismatchAction = "DELETE"
	MismatchReplace MismatchAction = "REPLACE"
)

// HeaderMatch is a compiled headerMatches entry.
type HeaderMatch struct {
	Name     string
	Value    string // "" means presence only
	Mismatch MismatchAction
	// FromSecret is set when the value comes from a Kubernetes secret, which netward cannot
	// read offline: like Cilium's oracle view, the header must then be present.
	FromSecret bool
}

// headerCond is one header condition: presence, or an exact value.
type headerCond struct {
	name    string
	value   string
	present bool // presence only
}

// HTTPRule is one compiled HTTP rule.
type HTTPRule struct {
	Method, Path, Host string // the regular expressions as written
	Headers            []string
	HeaderMatches      []HeaderMatch

	method, path, host *regexp.Regexp
	conds              []headerCond
}

// NewHTTPRule compiles a rule; the regular expressions are anchored at both ends.
func NewHTTPRule(method, path, host string, headers []string, matches []HeaderMatch) (*HTTPRule, error) {
	r := &HTTPRule{Method: method, Path: path, Host: host, Headers: headers, HeaderMatches: matches}
	var err error
	if r.method, err = anchored(method); err != nil {
		return nil, fmt.Errorf("method: %w", err)
	}
	if r.path, err = anchored(path); err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	if r.host, err = anchored(host); err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	for _, h := range headers {
		// Cilium splits "Name value" at the first space and trims a trailing ':' from the
		// name; a header string without a space is a presence check of that whole string.
		name, value, ok := strings.Cut(h, " ")
		if ok {
			r.conds = append(r.conds, headerCond{name: strings.TrimRight(name, ":"), value: value})
		} else {
			r.conds = append(r.conds, headerCond{name: h, present: true})
		}
	}
	for _, m := range matches {
		if m.Mismatch != MismatchFail {
			continue // LOG/ADD/DELETE/REPLACE never fail the rule
		}
		if m.Value != "" && !m.FromSecret {
			r.conds = append(r.conds, headerCond{name: m.Name, value: m.Value})
		} else {
			r.conds = append(r.conds, headerCond{name: m.Name, present: true})
		}
	}
	return r, nil
}

func anchored(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	return regexp.Compile("^(?:" + expr + ")$")
}

// IsWildcard reports whether the rule admits every request.
func (r *HTTPRule) IsWildcard() bool {
	return r.method == nil && r.path == nil && r.host == nil && len(r.conds) == 0
}

// String renders the rule compactly, e.g. "GET /public.* host=api.example.com".
func (r *HTTPRule) String() string {
	var parts []string
	if r.Method != "" {
		parts = append(parts, r.Method)
	}
	if r.Path != "" {
		parts = append(parts, r.Path)
	}
	if r.Host != "" {
		parts = append(parts, "host="+r.Host)
	}
	for _, h := range r.Headers {
		parts = append(parts, "header["+h+"]")
	}
	for _, m := range r.HeaderMatches {
		s := "headerMatch[" + m.Name
		if m.Value != "" {
			s += "=" + m.Value
		}
		if m.Mismatch != "" {
			s += " on-mismatch=" + string(m.Mismatch)
		}
		parts = append(parts, s+"]")
	}
	if len(parts) == 0 {
		return "any request"
	}
	return strings.Join(parts, " ")
}

// Request is what the matcher looks at.
type Request struct {
	Method string
	Path   string // the request target as sent, query included
	Host   string // the Host header (or :authority)
	Header http.Header
}

// Matches reports whether the request satisfies every condition of the rule.
func (r *HTTPRule) Matches(req *Request) bool {
	if r.method != nil && !r.method.MatchString(req.Method) {
		return false
	}
	if r.path != nil && !r.path.MatchString(req.Path) {
		return false
	}
	if r.host != nil {
		host := req.Host
		if host == "" {
			host = req.Header.Get("Host")
		}
		if host == "" || !r.host.MatchString(host) {
			return false
		}
	}
	for _, c := range r.conds {
		vals, ok := req.Header[http.CanonicalHeaderKey(c.name)]
		if !ok || len(vals) == 0 {
			return false
		}
		if !c.present && !contains(vals, c.value) {
			return false
		}
	}
	return true
}

func contains(vals []string, v string) bool {
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

// HeaderOp is what one headerMatches entry with a mismatch action did to a request that its
// rule admitted, as Cilium's Envoy filter does it (cilium/proxy network_policy.cc,
// HeaderMatch::allowed): the proxy applies ADD, DELETE and REPLACE to the forwarded request
// and reports every op, LOG included, in the request's event.
type HeaderOp struct {
	Action MismatchAction // LOG, ADD, DELETE or REPLACE
	Name   string
	// Value is the value the rule expects: logged as missing (LOG), appended (ADD) or set
	// (REPLACE). Empty for DELETE.
	Value string
	// Rejected is the value the request carried when it differed (all values joined with
	// ","); empty when the header was missing.
	Rejected string
}

func (o HeaderOp) String() string {
	s := string(o.Action) + " " + o.Name
	if o.Value != "" {
		s += "=" + o.Value
	}
	if o.Rejected != "" {
		s += " (was " + o.Rejected + ")"
	}
	return s
}

// HasHeaderActions reports whether some headerMatches entry of the rule has a mismatch
// action (LOG, ADD, DELETE, REPLACE), i.e. whether admitting a request has side effects.
func (r *HTTPRule) HasHeaderActions() bool {
	for _, m := range r.HeaderMatches {
		if m.Mismatch != MismatchFail && !m.FromSecret {
			return true
		}
	}
	return false
}

// ApplyHeaderActions carries out, in order and in place on h, the rule's headerMatches
// entries that have a mismatch action, the way Cilium's Envoy filter does for every rule that
// admitted the request, and returns what was done. A header matches when its values joined
// with "," equal the expected value, or, when no value is expected, when it is present; a
// matching header is left alone. On a mismatch LOG only reports; ADD appends the expected
// value; DELETE removes the header when it is present with another value (nothing for a
// presence check or a missing header); REPLACE sets the expected value. Entries whose value
// comes from a secret are skipped: the value is not known here.
func (r *HTTPRule) ApplyHeaderActions(h http.Header) []HeaderOp {
	var ops []HeaderOp
	for _, m := range r.HeaderMatches {
		if m.Mismatch == MismatchFail || m.FromSecret {
			continue
		}
		key := http.CanonicalHeaderKey(m.Name)
		vals, present := h[key]
		present = present && len(vals) > 0
		got := strings.Join(vals, ",")
		if m.Value == "" && present || m.Value != "" && present && got == m.Value {
			continue
		}
		op := HeaderOp{Action: m.Mismatch, Name: m.Name, Value: m.Value}
		if present {
			op.Rejected = got
		}
		switch m.Mismatch {
		case MismatchLog, MismatchAdd, MismatchReplace:
		case MismatchDelete:
			if m.Value == "" || !present {
				continue
			}
			op.Value = ""
		default:
			continue // unknown action: validation rejects it, never act on it
		}
		ApplyHeaderOps(h, []HeaderOp{op})
		ops = append(ops, op)
	}
	return ops
}

// ApplyHeaderOps replays ops on h: ADD appends the value, DELETE removes the header, REPLACE
// sets the value; LOG changes nothing.
func ApplyHeaderOps(h http.Header, ops []HeaderOp) {
	for _, op := range ops {
		key := http.CanonicalHeaderKey(op.Name)
		switch op.Action {
		case MismatchAdd:
			h[key] = append(h[key], op.Value)
		case MismatchDelete:
			delete(h, key)
		case MismatchReplace:
			h[key] = []string{op.Value}
		}
	}
}
