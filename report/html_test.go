package report_test

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/report"
)

// TestHTMLSelfContained checks that the page references nothing outside itself and that its
// markup is a well-formed tree carrying the matrix as JSON.
func TestHTMLSelfContained(t *testing.T) {
	m := shop(t)
	for name, mm := range map[string]*analysis.Matrix{"full": m, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			page := render(t, mm, report.FormatHTML, report.Options{Title: `<script>alert("x")</script> & co`})
			for _, bad := range []string{"http://", "https://", "src=", "@import", `="//`, "<script>alert"} {
				if strings.Contains(strings.ToLower(page), bad) {
					t.Errorf("page contains %q", bad)
				}
			}
			if strings.Contains(page, "url(") {
				for _, u := range regexp.MustCompile(`url\([^)]*\)`).FindAllString(page, -1) {
					if !strings.HasPrefix(u, "url(#") && !strings.HasPrefix(u, "url('#") {
						t.Errorf("page references %s", u)
					}
				}
			}
			doc, err := parseHTML(page)
			if err != nil {
				t.Fatalf("page does not parse: %v", err)
			}
			for _, n := range doc.all(func(n *node) bool {
				return n.attrs["href"] != "" || n.attrs["action"] != "" || n.attrs["xlink:href"] != ""
			}) {
				for _, a := range []string{"href", "action", "xlink:href"} {
					if v := n.attrs[a]; v != "" && !strings.HasPrefix(v, "#") && !strings.HasPrefix(v, "data:") {
						t.Errorf("<%s %s=%q> points outside the page", n.tag, a, v)
					}
				}
			}
			if len(doc.all(sel("html"))) != 1 || len(doc.all(sel("head"))) != 1 || len(doc.all(sel("body"))) != 1 {
				t.Error("want one html, head and body element")
			}
			csp := doc.first(sel("meta", "http-equiv", "Content-Security-Policy"))
			if csp == nil || !strings.HasPrefix(csp.attrs["content"], "default-src 'none'") {
				t.Error("no Content-Security-Policy forbidding fetches")
			}
			if got := doc.first(sel("title")).textContent(); got != `<script>alert("x")</script> & co` {
				t.Errorf("title %q", got)
			}
			scripts := doc.all(sel("script"))
			if len(scripts) != 2 || scripts[0].attrs["type"] != "application/json" || scripts[0].attrs["id"] != "netward-data" {
				t.Fatalf("want the data script and the page script, got %d scripts", len(scripts))
			}
			var embedded report.Document
			if err := json.Unmarshal([]byte(scripts[0].textContent()), &embedded); err != nil {
				t.Fatal(err)
			}
			if want := report.NewDocument(mm); !reflect.DeepEqual(&embedded, want) {
				t.Error("embedded data differs from the JSON document")
			}
			for _, id := range []string{"matrix", "graph", "filters", "details", "connections"} {
				if doc.first(sel("", "id", id)) == nil {
					t.Errorf("no #%s element", id)
				}
			}
		})
	}
}

func TestParseHTMLRejectsBrokenMarkup(t *testing.T) {
	for _, bad := range []string{"<div><span></div></span>", "<div>", "<p class=\"x>", "<!-- x", "<script>x"} {
		if _, err := parseHTML(bad); err == nil {
			t.Errorf("parseHTML(%q) succeeded", bad)
		}
	}
	doc, err := parseHTML(`<!DOCTYPE html><p a="1 &amp; 2">x &lt; y<br>z</p><script>if (a<b) {}</script>`)
	if err != nil {
		t.Fatal(err)
	}
	if p := doc.first(sel("p")); p.attrs["a"] != "1 & 2" || p.textContent() != "x < yz" {
		t.Errorf("parsed %+v %q", p.attrs, p.textContent())
	}
}
