//go:build linux

package datapath

import (
	"testing"

	"github.com/netward/netward/policy"
)

// TestCookiesSurviveRestart: two jars (an agent before and after a restart) that meet the
// same rule sets in different orders give them the same cookies.
func TestCookiesSurviveRestart(t *testing.T) {
	a := &policy.Origin{Kind: "NetworkPolicy", Namespace: "x", Name: "a", Path: "spec.ingress[0]"}
	b := &policy.Origin{Kind: "CiliumNetworkPolicy", Namespace: "x", Name: "b", Path: "spec.egress[1]"}
	ea := &policy.MapEntry{Origins: []*policy.Origin{a}}
	eb := &policy.MapEntry{Origins: []*policy.Origin{b}}
	eab := &policy.MapEntry{Origins: []*policy.Origin{a, b}}
	j1, j2 := NewCookieJar(), NewCookieJar()
	c1 := []uint32{j1.Cookie(ea), j1.Cookie(eb), j1.Cookie(eab)}
	c2 := []uint32{j2.Cookie(eab), j2.Cookie(eb), j2.Cookie(ea)}
	if c1[0] != c2[2] || c1[1] != c2[1] || c1[2] != c2[0] {
		t.Fatalf("cookies differ across jars: %v vs %v", c1, c2)
	}
	if c1[0] == c1[1] || c1[0] == c1[2] || c1[0] == 0 {
		t.Fatalf("cookies must be distinct and non-zero: %v", c1)
	}
	if got := j2.Origins(c1[0]); len(got) != 1 || got[0].String() != a.String() {
		t.Errorf("restarted jar explains %d as %v", c1[0], got)
	}
	if j2.Origins(12345) != nil || j2.Origins(0) != nil || j1.Cookie(&policy.MapEntry{}) != 0 {
		t.Error("unknown cookies and empty origin sets explain nothing")
	}
}
