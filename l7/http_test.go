package l7

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func req(method, path string, hdr ...string) *Request {
	r := &Request{Method: method, Path: path, Header: http.Header{}}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
		if hdr[i] == "Host" {
			r.Host = hdr[i+1]
		}
	}
	return r
}

// TestHTTPRuleMatching pins the per-request semantics Cilium hands to Envoy (§1.4 rules.http).
func TestHTTPRuleMatching(t *testing.T) {
	cases := []struct {
		name    string
		method  string
		path    string
		host    string
		headers []string
		matches []HeaderMatch
		req     *Request
		want    bool
	}{
		{"method regex is anchored", "GET", "", "", nil, nil, req("GETX", "/"), false},
		{"method alternation", "GET|HEAD", "", "", nil, nil, req("HEAD", "/"), true},
		{"path regex is anchored at both ends", "", "/public", "", nil, nil, req("GET", "/public/x"), false},
		{"path regex with wildcard", "", "/public/.*", "", nil, nil, req("GET", "/public/x"), true},
		{"path includes the query", "", "/a", "", nil, nil, req("GET", "/a?x=1"), false},
		{"host regex", "", "", "api\\.example\\.com", nil, nil, req("GET", "/", "Host", "api.example.com"), true},
		{"host required when set", "", "", "api\\.example\\.com", nil, nil, req("GET", "/"), false},
		{"header presence", "", "", "", []string{"X-Token"}, nil, req("GET", "/", "X-Token", "anything"), true},
		{"header presence missing", "", "", "", []string{"X-Token"}, nil, req("GET", "/"), false},
		{"header 'Name: value' exact", "", "", "", []string{"X-Token: abc"}, nil, req("GET", "/", "X-Token", "abc"), true},
		{"header 'Name: value' mismatch", "", "", "", []string{"X-Token: abc"}, nil, req("GET", "/", "X-Token", "abcd"), false},
		{"header 'Name value' without colon", "", "", "", []string{"X-Token abc"}, nil, req("GET", "/", "X-Token", "abc"), true},
		{"header names are case-insensitive", "", "", "", []string{"x-token: abc"}, nil, req("GET", "/", "X-TOKEN", "abc"), true},
		{"headerMatch without mismatch action requires the value", "", "", "", nil, []HeaderMatch{{Name: "X-Env", Value: "prod"}}, req("GET", "/", "X-Env", "dev"), false},
		{"headerMatch value matches", "", "", "", nil, []HeaderMatch{{Name: "X-Env", Value: "prod"}}, req("GET", "/", "X-Env", "prod"), true},
		{"headerMatch LOG never fails", "", "", "", nil, []HeaderMatch{{Name: "X-Env", Value: "prod", Mismatch: MismatchLog}}, req("GET", "/"), true},
		{"headerMatch REPLACE never fails", "", "", "", nil, []HeaderMatch{{Name: "X-Env", Value: "prod", Mismatch: MismatchReplace}}, req("GET", "/", "X-Env", "dev"), true},
		{"headerMatch from a secret needs presence", "", "", "", nil, []HeaderMatch{{Name: "X-Key", FromSecret: true}}, req("GET", "/"), false},
		{"all fields are ANDed", "GET", "/a", "", []string{"X-A"}, nil, req("GET", "/a"), false},
		{"empty rule admits everything", "", "", "", nil, nil, req("PATCH", "/anything"), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewHTTPRule(c.method, c.path, c.host, c.headers, c.matches)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Matches(c.req); got != c.want {
				t.Errorf("rule %s on %s %s: got %v, want %v", r, c.req.Method, c.req.Path, got, c.want)
			}
		})
	}
}

func TestHTTPRuleInvalidRegex(t *testing.T) {
	if _, err := NewHTTPRule("(", "", "", nil, nil); err == nil {
		t.Fatal("want an error for an invalid method regex")
	}
}

func TestHTTPRuleWildcard(t *testing.T) {
	r, _ := NewHTTPRule("", "", "", nil, nil)
	if !r.IsWildcard() || r.String() != "any request" {
		t.Errorf("empty rule: wildcard=%v string=%q", r.IsWildcard(), r.String())
	}
	r, _ = NewHTTPRule("GET", "", "", nil, []HeaderMatch{{Name: "X", Mismatch: MismatchLog}})
	if r.IsWildcard() {
		t.Error("a rule with a method is not a wildcard")
	}
}

// FuzzHTTPRule checks that compiling and matching arbitrary rules and requests never panics
// and that an empty rule admits every request.
func FuzzHTTPRule(f *testing.F) {
	f.Add("GET", "/a.*", "", "X-A: b", "GET", "/a/b", "X-A", "b")
	f.Add("", "", "h.*", "", "POST", "/", "Host", "h1")
	f.Fuzz(func(t *testing.T, m, p, h, hdr, rm, rp, hk, hv string) {
		var hs []string
		if hdr != "" {
			hs = []string{hdr}
		}
		r, err := NewHTTPRule(m, p, h, hs, nil)
		if err != nil {
			return
		}
		rq := &Request{Method: rm, Path: rp, Header: http.Header{}}
		if hk != "" {
			rq.Header.Add(hk, hv)
		}
		_ = r.Matches(rq)
		empty, _ := NewHTTPRule("", "", "", nil, nil)
		if !empty.Matches(rq) {
			t.Fatal("the empty rule must admit every request")
		}
	})
}

// TestApplyHeaderActions pins the mismatch actions as Cilium's Envoy filter carries them
// out (cilium/proxy network_policy.cc, HeaderMatch::allowed).
func TestApplyHeaderActions(t *testing.T) {
	cases := []struct {
		name  string
		match HeaderMatch
		hdr   []string // request headers, name/value pairs
		want  http.Header
		ops   []string
	}{
		{"matching value: nothing", HeaderMatch{Name: "X-A", Value: "v", Mismatch: MismatchReplace}, []string{"X-A", "v"}, http.Header{"X-A": {"v"}}, nil},
		{"presence satisfied: nothing", HeaderMatch{Name: "X-A", Mismatch: MismatchAdd}, []string{"X-A", "any"}, http.Header{"X-A": {"any"}}, nil},
		{"LOG reports only", HeaderMatch{Name: "X-A", Value: "v", Mismatch: MismatchLog}, []string{"X-A", "w"}, http.Header{"X-A": {"w"}}, []string{"LOG X-A=v (was w)"}},
		{"LOG of a missing header", HeaderMatch{Name: "X-A", Value: "v", Mismatch: MismatchLog}, nil, http.Header{}, []string{"LOG X-A=v"}},
		{"ADD appends", HeaderMatch{Name: "X-A", Value: "v", Mismatch: MismatchAdd}, []string{"X-A", "w"}, http.Header{"X-A": {"w", "v"}}, []string{"ADD X-A=v (was w)"}},
		{"ADD to a missing header", HeaderMatch{Name: "x-a", Value: "v", Mismatch: MismatchAdd}, nil, http.Header{"X-A": {"v"}}, []string{"ADD x-a=v"}},
		{"DELETE a wrong value", HeaderMatch{Name: "X-A", Value: "v", Mismatch: MismatchDelete}, []string{"X-A", "w", "X-A", "u"}, http.Header{}, []string{"DELETE X-A (was w,u)"}},
		{"DELETE with the header missing: nothing", HeaderMatch{Name: "X-A", Value: "v", Mismatch: MismatchDelete}, nil, http.Header{}, nil},
		{"DELETE of a failed presence check: nothing", HeaderMatch{Name: "X-A", Mismatch: MismatchDelete}, nil, http.Header{}, nil},
		{"REPLACE sets one value", HeaderMatch{Name: "X-A", Value: "v", Mismatch: MismatchReplace}, []string{"X-A", "w", "X-A", "u"}, http.Header{"X-A": {"v"}}, []string{"REPLACE X-A=v (was w,u)"}},
		{"values are joined with a comma", HeaderMatch{Name: "X-A", Value: "a,b", Mismatch: MismatchReplace}, []string{"X-A", "a", "X-A", "b"}, http.Header{"X-A": {"a", "b"}}, nil},
		{"from a secret: skipped", HeaderMatch{Name: "X-A", FromSecret: true, Mismatch: MismatchReplace}, nil, http.Header{}, nil},
		{"no action: not an op", HeaderMatch{Name: "X-A", Value: "v"}, nil, http.Header{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewHTTPRule("", "", "", nil, []HeaderMatch{c.match})
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			for i := 0; i+1 < len(c.hdr); i += 2 {
				h.Add(c.hdr[i], c.hdr[i+1])
			}
			ops := r.ApplyHeaderActions(h)
			var got []string
			for _, op := range ops {
				got = append(got, op.String())
			}
			if strings.Join(got, "|") != strings.Join(c.ops, "|") {
				t.Errorf("ops %q, want %q", got, c.ops)
			}
			if !reflect.DeepEqual(h, c.want) {
				t.Errorf("headers %v, want %v", h, c.want)
			}
			// Replaying the ops on the original request gives the same headers.
			h2 := http.Header{}
			for i := 0; i+1 < len(c.hdr); i += 2 {
				h2.Add(c.hdr[i], c.hdr[i+1])
			}
			ApplyHeaderOps(h2, ops)
			if !reflect.DeepEqual(h2, c.want) {
				t.Errorf("replayed %v, want %v", h2, c.want)
			}
			if r.HasHeaderActions() != (c.match.Mismatch != MismatchFail && !c.match.FromSecret) {
				t.Errorf("HasHeaderActions %v", r.HasHeaderActions())
			}
		})
	}
}
