package report_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
	"github.com/netward/netward/report"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	shopOnce   sync.Once
	shopMatrix *analysis.Matrix
	shopErr    error
)

// shop is the matrix of the bundled example, computed once.
func shop(t testing.TB) *analysis.Matrix {
	t.Helper()
	shopOnce.Do(func() {
		objs, errs := api.Load([]string{"../examples/shop"}, nil)
		if len(errs) > 0 {
			shopErr = errs[0]
			return
		}
		c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
		if err != nil {
			shopErr = err
			return
		}
		shopMatrix, shopErr = analysis.BuildMatrix(context.Background(), c, analysis.MatrixOptions{})
	})
	if shopErr != nil {
		t.Fatal(shopErr)
	}
	return shopMatrix
}

func render(t testing.TB, m *analysis.Matrix, f report.Format, opts report.Options) string {
	t.Helper()
	var b bytes.Buffer
	if err := report.Write(&b, m, f, opts); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./report -update rewrites it): %s", path, firstDiff(string(want), got))
	}
}

// firstDiff describes the first line where got differs from want.
func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g || i >= len(wl) || i >= len(gl) {
			return fmt.Sprintf("line %d:\n  want %q\n  got  %q", i+1, w, g)
		}
	}
	return "same lines"
}

var extensions = map[report.Format]string{
	report.FormatTable: "txt", report.FormatJSON: "json", report.FormatCSV: "csv",
	report.FormatMarkdown: "md", report.FormatDOT: "dot", report.FormatHTML: "html",
}

// TestGolden renders the shop example in every format, whole and filtered.
func TestGolden(t *testing.T) {
	full := shop(t)
	focused, err := report.Focus(full, "shop/api", report.Both)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    *analysis.Matrix
		opts report.Options
	}{
		{"shop", full, report.Options{Title: "shop example"}},
		{"shop-focus-api", focused, report.Options{Title: "shop example", Filters: "focus shop/api"}},
	} {
		for _, f := range report.Formats {
			t.Run(tc.name+"/"+string(f), func(t *testing.T) {
				golden(t, tc.name+"."+extensions[f], render(t, tc.m, f, tc.opts))
			})
		}
	}
}

func connections(m *analysis.Matrix) map[string]string {
	out := map[string]string{}
	for _, c := range m.Connections {
		out[c.From.Label()+" -> "+c.To.Label()] = report.Summary(c.Ports)
	}
	return out
}

func TestTableContent(t *testing.T) {
	out := render(t, shop(t), report.FormatTable, report.Options{})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "FROM") || !strings.Contains(lines[0], "TO") || !strings.Contains(lines[0], "PORTS") {
		t.Fatalf("header %q", lines[0])
	}
	col := strings.Index(lines[0], "PORTS")
	found := false
	for _, l := range lines[1:] {
		if len(l) < col {
			t.Errorf("short row %q", l)
			continue
		}
		if strings.HasPrefix(l, "monitoring/prometheus ") && strings.Contains(l, " shop/api ") {
			found = true
			if got := l[col:]; !strings.HasPrefix(got, "TCP 8080 [HTTP any request]") {
				t.Errorf("prometheus -> api ports column %q", got)
			}
		}
	}
	if !found {
		t.Errorf("no monitoring/prometheus -> shop/api row in\n%s", out)
	}
}

func TestJSONSchema(t *testing.T) {
	var doc struct {
		Schema string `json:"schema"`
		Groups []struct {
			ID, Kind, Namespace, Name, Label, Prefix string
			Identity                                 uint32
			Pods, Except                             []string
		} `json:"groups"`
		Connections []struct {
			From, To, Summary string
			Ports             []struct {
				Protocol string
				From, To uint16
				Proxied  bool
				HTTP     []string
				Summary  string
			}
		} `json:"connections"`
	}
	out := render(t, shop(t), report.FormatJSON, report.Options{})
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != report.Schema || len(doc.Groups) == 0 || len(doc.Connections) == 0 {
		t.Fatalf("document %+v", doc)
	}
	ids := map[string]bool{}
	for _, g := range doc.Groups {
		ids[g.ID] = true
		if g.Pods == nil || g.Except == nil {
			t.Errorf("group %s: null list", g.ID)
		}
	}
	var webAPI bool
	for _, c := range doc.Connections {
		if !ids[c.From] || !ids[c.To] {
			t.Errorf("connection %s -> %s names an unknown group", c.From, c.To)
		}
		if c.From == "pod:shop/web" && c.To == "pod:shop/api" {
			webAPI = true
			p := c.Ports[0]
			if len(c.Ports) != 1 || p.Protocol != "TCP" || p.From != 8080 || p.To != 8080 || !p.Proxied || len(p.HTTP) != 2 || c.Summary != p.Summary {
				t.Errorf("web -> api: %+v", c)
			}
		}
	}
	if !webAPI {
		t.Error("no pod:shop/web -> pod:shop/api connection")
	}
	if !strings.Contains(out, `"http":[]`) || strings.Contains(out, `"http":null`) {
		t.Error("empty HTTP lists should be [] not omitted")
	}
}

func TestCSV(t *testing.T) {
	out := render(t, shop(t), report.FormatCSV, report.Options{})
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "from,to,protocol,port_from,port_to,proxied,http,summary" {
		t.Fatalf("header %v", recs[0])
	}
	rows := 0
	for _, c := range shop(t).Connections {
		rows += len(c.Ports)
	}
	if len(recs)-1 != rows {
		t.Errorf("%d rows, want one per port range (%d)", len(recs)-1, rows)
	}
	for _, r := range recs[1:] {
		if r[0] == "shop/web" && r[1] == "shop/api" && (r[2] != "TCP" || r[3] != "8080" || r[4] != "8080" || r[5] != "true" || !strings.Contains(r[6], " | ")) {
			t.Errorf("web -> api row %v", r)
		}
	}
}

func TestMarkdownEscapesPipes(t *testing.T) {
	out := render(t, shop(t), report.FormatMarkdown, report.Options{})
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "| `shop/web` | `shop/api` |") {
			continue
		}
		// three cells: the pipe between the HTTP rules is escaped
		if n := strings.Count(l, "|") - strings.Count(l, `\|`); n != 4 {
			t.Errorf("row has %d cell separators: %q", n, l)
		}
		return
	}
	t.Errorf("no web -> api row in\n%s", out)
}

func TestDOT(t *testing.T) {
	m := shop(t)
	out := render(t, m, report.FormatDOT, report.Options{})
	for _, g := range m.Groups {
		if !strings.Contains(out, "  \""+g.ID+"\" [label=") && !strings.Contains(out, "    \""+g.ID+"\" [label=") {
			t.Errorf("no node for %s", g.ID)
		}
	}
	if !strings.Contains(out, `"pod:shop/web" -> "pod:shop/api" [label="TCP 8080 [HTTP GET /catalog(/.*)? | POST /cart header[X-Session]]", style=dashed`) {
		t.Errorf("no dashed web -> api edge:\n%s", out)
	}
	if strings.Count(out, "subgraph cluster_") != 4 {
		t.Errorf("want a cluster per namespace:\n%s", out)
	}
	if strings.Count(out, "{") != strings.Count(out, "}") {
		t.Error("unbalanced braces")
	}
}

func TestFocusAndDirection(t *testing.T) {
	m := shop(t)
	both, err := report.Focus(m, "shop/api", report.Both)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := report.Focus(m, "shop/api", report.Ingress)
	out, _ := report.Focus(m, "shop/api", report.Egress)
	if len(in.Connections)+len(out.Connections) != len(both.Connections)+countSelf(both, "pod:shop/api") {
		t.Errorf("ingress %d + egress %d != both %d", len(in.Connections), len(out.Connections), len(both.Connections))
	}
	for _, c := range in.Connections {
		if c.To.ID != "pod:shop/api" {
			t.Errorf("ingress focus kept %s -> %s", c.From.ID, c.To.ID)
		}
	}
	for _, c := range out.Connections {
		if c.From.ID != "pod:shop/api" {
			t.Errorf("egress focus kept %s -> %s", c.From.ID, c.To.ID)
		}
	}
	conns := connections(in)
	if conns["monitoring/prometheus -> shop/api"] == "" || conns["shop/web -> shop/api"] == "" {
		t.Errorf("ingress of shop/api: %v", conns)
	}
	if conns := connections(out); conns["shop/api -> shop/db"] != "TCP 5432" || conns["shop/api -> payments/payments"] != "TCP 8443" {
		t.Errorf("egress of shop/api: %v", conns)
	}
	// a pod name focuses its workload; the groups are the focus and its peers
	byPod, err := report.Focus(m, "shop/api-5c6b7-fghij", report.Both)
	if err != nil || len(byPod.Connections) != len(both.Connections) {
		t.Errorf("focus by pod: %v, %d connections", err, len(byPod.Connections))
	}
	for _, g := range both.Groups {
		if g.ID == "pod:monitoring/prometheus" {
			continue
		}
		if g.ID == "pod:kube-system/coredns" || g.ID == "pod:shop/web" || g.ID == "pod:shop/api" {
			continue
		}
		if _, ok := connections(both)[g.Label()+" -> shop/api"]; ok {
			continue
		}
		if _, ok := connections(both)["shop/api -> "+g.Label()]; ok {
			continue
		}
		t.Errorf("focused matrix keeps unrelated group %s", g.ID)
	}
	if _, err := report.Focus(m, "shop/nope", report.Both); err == nil || !strings.Contains(err.Error(), "shop/api") {
		t.Errorf("unknown focus: %v", err)
	}
	if w, err := report.Focus(m, "world", report.Egress); err != nil || len(w.Connections) == 0 {
		t.Errorf("focus on world: %v", err)
	}
}

func countSelf(m *analysis.Matrix, id string) int {
	n := 0
	for _, c := range m.Connections {
		if c.From.ID == id && c.To.ID == id {
			n++
		}
	}
	return n
}

func TestPortFilter(t *testing.T) {
	m := report.Port(shop(t), policy.ProtoTCP, 8080)
	if len(m.Groups) != len(shop(t).Groups) {
		t.Error("port filter dropped groups")
	}
	conns := connections(m)
	if conns["shop/web -> shop/api"] == "" || conns["monitoring/prometheus -> shop/api"] != "TCP 8080 [HTTP any request]" {
		t.Errorf("8080/TCP: %v", conns)
	}
	for k, v := range conns {
		if strings.Contains(v, "9090") || strings.Contains(v, "UDP") {
			t.Errorf("%s: kept ranges without 8080/TCP: %s", k, v)
		}
	}
	if _, ok := conns["shop/api -> shop/db"]; ok {
		t.Error("kept api -> db")
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]report.Format{"": report.FormatTable, "markdown": report.FormatMarkdown, "HTML": report.FormatHTML, "dot": report.FormatDOT} {
		if f, err := report.ParseFormat(in); err != nil || f != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, f, err)
		}
	}
	if _, err := report.ParseFormat("yaml"); err == nil || !strings.Contains(err.Error(), "table, json, csv, md, dot, html") {
		t.Errorf("ParseFormat(yaml): %v", err)
	}
	if _, err := report.ParseDirection("sideways"); err == nil {
		t.Error("ParseDirection(sideways) succeeded")
	}
}
