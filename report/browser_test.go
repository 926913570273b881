package report_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netward/netward/report"
)

// chromium finds Debian's headless-capable Chromium, or skips the test loudly.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("SKIPPED: chromium not installed: apt-get install -y chromium (the HTML matrix page is not tested in a browser)")
	return ""
}

// runChromium runs headless Chromium with the given extra arguments and returns stdout.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, tail(errb.String(), 20))
	}
	return out.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestHTMLInChromium renders the shop example's page, serves it on 127.0.0.1 and checks
// what headless Chromium shows after the page's script ran: the heat-map cells, the graph
// nodes, the namespace filter driven by the URL fragment, the details of a selection, a
// screenshot — and that the page fetched nothing.
func TestHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	m := shop(t)
	page := render(t, m, report.FormatHTML, report.Options{Title: "shop example"})

	var mu sync.Mutex
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.URL.Path != "/matrix.html" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}))
	defer srv.Close()
	url := srv.URL + "/matrix.html"

	dom := func(t *testing.T, fragment string) *node {
		t.Helper()
		out := runChromium(t, bin, "--dump-dom", url+fragment)
		doc, err := parseHTML(out)
		if err != nil {
			t.Fatalf("dumped DOM does not parse: %v\n%s", err, out)
		}
		body := doc.first(sel("body"))
		if body == nil {
			t.Fatalf("no body:\n%s", out)
		}
		if e := body.attrs["data-error"]; e != "" {
			t.Fatalf("script error: %s", e)
		}
		if body.attrs["data-ready"] != "true" {
			t.Fatalf("the page script did not finish:\n%s", out)
		}
		return doc
	}
	rowIDs := func(doc *node) []string {
		var ids []string
		for _, tr := range doc.first(sel("table", "id", "matrix")).all(sel("tr", "data-group", "*")) {
			ids = append(ids, tr.attrs["data-group"])
		}
		return ids
	}
	nodeIDs := func(doc *node) []string {
		var ids []string
		for _, g := range doc.first(sel("svg", "id", "graph")).all(sel("g", "class", "node")) {
			ids = append(ids, g.attrs["data-id"])
		}
		return ids
	}
	var groupIDs []string
	for _, g := range m.Groups {
		groupIDs = append(groupIDs, g.ID)
	}

	t.Run("matrix and graph", func(t *testing.T) {
		doc := dom(t, "")
		matrix := doc.first(sel("table", "id", "matrix"))
		if got := rowIDs(doc); !slices.Equal(got, groupIDs) {
			t.Errorf("matrix rows %v, want a row per group %v", got, groupIDs)
		}
		if cols := matrix.all(sel("th", "class", "col")); len(cols) != len(m.Groups) {
			t.Errorf("%d matrix columns, want %d", len(cols), len(m.Groups))
		}
		apiRow := matrix.first(sel("tr", "data-group", "pod:shop/api"))
		if got := strings.TrimSpace(apiRow.first(sel("th")).textContent()); got != "shop/api" {
			t.Errorf("shop/api row header %q", got)
		}
		cell := func(from, to string) *node {
			c := matrix.first(sel("td", "data-from", from, "data-to", to))
			if c == nil {
				t.Fatalf("no cell %s -> %s", from, to)
			}
			return c
		}
		prom := cell("pod:monitoring/prometheus", "pod:shop/api")
		if txt := prom.textContent(); !strings.Contains(txt, "TCP 8080") || !strings.Contains(txt, "HTTP any request") || !strings.Contains(txt, "TCP 9090") {
			t.Errorf("prometheus -> api cell shows %q", txt)
		}
		if !prom.hasClass("on") || !prom.hasClass("l7") || !strings.Contains(prom.attrs["title"], "TCP 8080 via the HTTP proxy: every request passes") {
			t.Errorf("prometheus -> api cell: class %q title %q", prom.attrs["class"], prom.attrs["title"])
		}
		web := cell("pod:shop/web", "pod:shop/api")
		if txt := web.textContent(); !strings.Contains(txt, "TCP 8080") || !strings.Contains(txt, "HTTP 2 rules") {
			t.Errorf("web -> api cell shows %q", txt)
		}
		if title := web.attrs["title"]; !strings.Contains(title, "GET /catalog(/.*)?") || !strings.Contains(title, "POST /cart header[X-Session]") {
			t.Errorf("web -> api tooltip %q", title)
		}
		if c := cell("host", "pod:shop/db"); c.textContent() != "any" || !c.hasClass("lvl5") {
			t.Errorf("host -> db cell %q class %q", c.textContent(), c.attrs["class"])
		}
		if c := cell("pod:shop/web", "pod:shop/db"); c.textContent() != "" || c.hasClass("on") {
			t.Errorf("web -> db is denied, cell shows %q class %q", c.textContent(), c.attrs["class"])
		}
		if got := nodeIDs(doc); !slices.Equal(got, groupIDs) {
			t.Errorf("graph nodes %v, want one per group %v", got, groupIDs)
		}
		svg := doc.first(sel("svg", "id", "graph"))
		if edges := svg.all(sel("path", "class", "edge")); len(edges) != len(m.Connections) {
			t.Errorf("%d graph edges, want %d", len(edges), len(m.Connections))
		}
		if e := svg.first(sel("path", "class", "edge", "data-from", "pod:shop/web", "data-to", "pod:shop/api")); e == nil || !e.hasClass("l7") {
			t.Error("web -> api edge missing or not marked as proxied")
		}
		if rows := doc.first(sel("table", "id", "connections")).all(sel("tr", "data-from", "*")); len(rows) != len(m.Connections) {
			t.Errorf("%d connection list rows, want %d", len(rows), len(m.Connections))
		}
		if got := doc.first(sel("", "id", "shown")).textContent(); got != fmt.Sprintf("showing %d of %d groups, %d of %d connections", len(m.Groups), len(m.Groups), len(m.Connections), len(m.Connections)) {
			t.Errorf("summary %q", got)
		}
	})

	t.Run("namespace filter", func(t *testing.T) {
		doc := dom(t, "#ns=payments")
		want := []string{"pod:payments/payments"}
		for _, g := range m.Groups {
			if g.Namespace == "" {
				want = append(want, g.ID)
			}
		}
		if got := rowIDs(doc); !slices.Equal(got, want) {
			t.Errorf("#ns=payments: matrix rows %v, want %v", got, want)
		}
		if got := nodeIDs(doc); !slices.Equal(got, want) {
			t.Errorf("#ns=payments: graph nodes %v, want %v", got, want)
		}
		matrix := doc.first(sel("table", "id", "matrix"))
		if strings.Contains(matrix.textContent(), "shop/") || doc.first(sel("", "data-from", "pod:shop/api")) != nil {
			t.Error("#ns=payments still shows shop workloads")
		}
		if c := matrix.first(sel("td", "data-from", "pod:payments/payments", "data-to", "cidr:198.51.100.0/24")); c == nil || c.textContent() != "TCP 443" {
			t.Errorf("payments -> 198.51.100.0/24 cell %v", c)
		}
		for _, lab := range doc.first(sel("", "id", "filters")).all(sel("label", "data-ns", "*")) {
			on := !lab.hasClass("off")
			if ns := lab.attrs["data-ns"]; on != (ns == "payments" || ns == "") {
				t.Errorf("filter checkbox %q on=%v", ns, on)
			}
		}
		doc = dom(t, "#ns=payments,shop&outside=0")
		if got := rowIDs(doc); !slices.Equal(got, []string{"pod:payments/payments", "pod:shop/api", "pod:shop/db", "pod:shop/web"}) {
			t.Errorf("#ns=payments,shop&outside=0: rows %v", got)
		}
		if got := doc.first(sel("body")).attrs["data-shown-connections"]; got != "3" {
			t.Errorf("#ns=payments,shop&outside=0: %s connections shown, want 3 (api->payments, api->db, web->api)", got)
		}
	})

	t.Run("selection details", func(t *testing.T) {
		doc := dom(t, "#sel=pod:shop/web,pod:shop/api")
		details := doc.first(sel("", "id", "details-body")).textContent()
		for _, want := range []string{"shop/web → shop/api", "TCP 8080", "GET /catalog(/.*)?", "POST /cart header[X-Session]"} {
			if !strings.Contains(details, want) {
				t.Errorf("details %q lack %q", details, want)
			}
		}
		if c := doc.first(sel("td", "data-from", "pod:shop/web", "data-to", "pod:shop/api")); !c.hasClass("sel") {
			t.Error("the selected cell is not highlighted")
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		shot := filepath.Join(t.TempDir(), "matrix.png")
		runChromium(t, bin, "--screenshot="+shot, "--window-size=1400,1000", "--hide-scrollbars", url)
		f, err := os.Open(shot)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
		b := img.Bounds()
		if b.Dx() != 1400 || b.Dy() != 1000 {
			t.Errorf("screenshot is %dx%d, want 1400x1000", b.Dx(), b.Dy())
		}
		colours := map[uint32]bool{}
		var red, header int
		for y := b.Min.Y; y < b.Max.Y; y += 2 {
			for x := b.Min.X; x < b.Max.X; x += 2 {
				r, g, bl, _ := img.At(x, y).RGBA()
				r, g, bl = r>>8, g>>8, bl>>8
				colours[r<<16|g<<8|bl] = true
				if near(r, g, bl, 0xc9, 0x26, 0x1a) { // the "any" cells and edges
					red++
				}
				if near(r, g, bl, 0x1f, 0x2a, 0x3c) { // the header bar
					header++
				}
			}
		}
		if len(colours) < 50 || red < 500 || header < 10000 {
			t.Errorf("screenshot looks empty: %d colours, %d heat-map red pixels, %d header pixels (%s)", len(colours), red, header, shot)
		}
		if keep := os.Getenv("NETWARD_SCREENSHOT"); keep != "" {
			data, _ := os.ReadFile(shot)
			if err := os.WriteFile(keep, data, 0o644); err != nil {
				t.Error(err)
			}
		}
	})

	mu.Lock()
	defer mu.Unlock()
	for _, r := range requests {
		if r != "GET /matrix.html" {
			t.Errorf("the page made a request: %s (all requests: %v)", r, requests)
		}
	}
	if len(requests) == 0 {
		t.Error("Chromium never loaded the page")
	}
}

func near(r, g, b, wr, wg, wb uint32) bool {
	d := func(a, b uint32) uint32 {
		if a > b {
			return a - b
		}
		return b - a
	}
	return d(r, wr) < 12 && d(g, wg) < 12 && d(b, wb) < 12
}
