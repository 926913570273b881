package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// matrixRows parses the table output into FROM, TO, PORTS triples.
func matrixRows(t *testing.T, out string) [][3]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	head := lines[0]
	to, ports := strings.Index(head, "TO"), strings.Index(head, "PORTS")
	if !strings.HasPrefix(head, "FROM") || to < 0 || ports < 0 {
		t.Fatalf("table header %q", head)
	}
	var rows [][3]string
	for _, l := range lines[1:] {
		if l == "(no allowed connections)" {
			continue
		}
		rows = append(rows, [3]string{strings.TrimSpace(l[:to]), strings.TrimSpace(l[to:ports]), l[ports:]})
	}
	return rows
}

func TestMatrixTable(t *testing.T) {
	// progress lines must not depend on how loaded the machine is
	defer func(d time.Duration) { matrixProgressInterval = d }(matrixProgressInterval)
	matrixProgressInterval = time.Hour
	out, errOut, code := run(t, "", "matrix", "-f", example)
	if code != 0 {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	rows := matrixRows(t, out)
	got := map[string]string{}
	for _, r := range rows {
		got[r[0]+" -> "+r[1]] = r[2]
	}
	for k, want := range map[string]string{
		"monitoring/prometheus -> shop/api":    "TCP 8080 [HTTP any request], TCP 9090",
		"shop/web -> shop/api":                 "TCP 8080 [HTTP GET /catalog(/.*)? | POST /cart header[X-Session]]",
		"shop/api -> shop/db":                  "TCP 5432",
		"payments/payments -> 198.51.100.0/24": "TCP 443",
		"world (other addresses) -> shop/web":  "TCP 8080",
		"host -> shop/db":                      "any",
	} {
		if got[k] != want {
			t.Errorf("%s: %q, want %q", k, got[k], want)
		}
	}
	for _, denied := range []string{"shop/web -> shop/db", "payments/payments -> 198.51.100.254/32", "world (other addresses) -> payments/payments"} {
		if _, ok := got[denied]; ok {
			t.Errorf("%s is denied but listed", denied)
		}
	}
	if errOut != "" {
		t.Errorf("a fast matrix writes nothing on stderr, got %q", errOut)
	}
}

func TestMatrixFormats(t *testing.T) {
	for _, tc := range []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"json", func(t *testing.T, out string) {
			var doc struct {
				Schema      string
				Groups      []struct{ ID string }
				Connections []struct{ From, To, Summary string }
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Schema != "netward.matrix/v1" || len(doc.Groups) != 11 || len(doc.Connections) != 29 {
				t.Errorf("schema %q, %d groups, %d connections", doc.Schema, len(doc.Groups), len(doc.Connections))
			}
		}},
		{"csv", func(t *testing.T, out string) {
			recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if recs[0][0] != "from" || len(recs) != 43 {
				t.Errorf("%d records, header %v", len(recs), recs[0])
			}
		}},
		{"md", func(t *testing.T, out string) {
			if !strings.Contains(out, "| From | To | Ports |") || !strings.Contains(out, "| `shop/api` | `shop/db` | `TCP 5432` |") {
				t.Errorf("markdown:\n%s", out)
			}
		}},
		{"markdown", func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "### netward matrix") {
				t.Errorf("markdown:\n%s", out)
			}
		}},
		{"dot", func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "digraph netward {") || !strings.Contains(out, `"pod:shop/api" -> "pod:shop/db" [label="TCP 5432"];`) {
				t.Errorf("dot:\n%s", out)
			}
		}},
		{"html", func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, `id="netward-data"`) || strings.Contains(out, "http://") || strings.Contains(out, "https://") {
				t.Error("html page malformed or not self-contained")
			}
		}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			out, errOut, code := run(t, "", "matrix", "-f", example, "-o", tc.format)
			if code != 0 {
				t.Fatalf("code %d, stderr %q", code, errOut)
			}
			tc.check(t, out)
		})
	}
}

func TestMatrixFilters(t *testing.T) {
	rowsOf := func(args ...string) [][3]string {
		t.Helper()
		out, errOut, code := run(t, "", append([]string{"matrix", "-f", example}, args...)...)
		if code != 0 {
			t.Fatalf("%v: code %d, stderr %q", args, code, errOut)
		}
		return matrixRows(t, out)
	}
	both := rowsOf("--focus", "shop/api")
	if len(both) != 6 {
		t.Errorf("--focus shop/api: %d rows, want 6: %v", len(both), both)
	}
	for _, r := range both {
		if r[0] != "shop/api" && r[1] != "shop/api" {
			t.Errorf("--focus shop/api kept %v", r)
		}
	}
	in := rowsOf("--focus", "shop/api", "--direction", "ingress")
	for _, r := range in {
		if r[1] != "shop/api" {
			t.Errorf("--direction ingress kept %v", r)
		}
	}
	out := rowsOf("--focus", "shop/api", "--direction", "egress")
	for _, r := range out {
		if r[0] != "shop/api" {
			t.Errorf("--direction egress kept %v", r)
		}
	}
	if len(in) != 3 || len(out) != 3 {
		t.Errorf("ingress %v, egress %v", in, out)
	}
	for _, r := range rowsOf("--port", "8080/TCP") {
		if !strings.Contains(r[2], "TCP 8080") && r[2] != "any" {
			t.Errorf("--port 8080/TCP kept %v", r)
		}
		if strings.Contains(r[2], "9090") {
			t.Errorf("--port 8080/TCP kept other ranges: %v", r)
		}
	}
	got := rowsOf("--focus", "shop/api", "--direction", "ingress", "--port", "8080/TCP")
	want := [][3]string{
		{"monitoring/prometheus", "shop/api", "TCP 8080 [HTTP any request]"},
		{"shop/web", "shop/api", "TCP 8080 [HTTP GET /catalog(/.*)? | POST /cart header[X-Session]]"},
		{"host", "shop/api", "any"},
	}
	if len(got) != len(want) {
		t.Fatalf("focus+direction+port: %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: %v, want %v", i, got[i], want[i])
		}
	}
	if r := rowsOf("--focus", "payments/payments", "--port", "53/UDP", "--direction", "egress"); len(r) != 1 || r[0][1] != "kube-system/kube-dns" || r[0][2] != "UDP 53" {
		t.Errorf("payments egress 53/UDP: %v", r)
	}
	if r := rowsOf("--port", "5432/UDP", "--focus", "shop/db"); len(r) != 1 || r[0][0] != "host" {
		t.Errorf("shop/db on 5432/UDP: %v", r)
	}
	// a pod name focuses its workload
	if r := rowsOf("--focus", "shop/api-5c6b7-fghij"); len(r) != len(both) {
		t.Errorf("--focus by pod name: %v", r)
	}
	out2, _, _ := run(t, "", "matrix", "-f", example, "--focus", "shop/api", "-o", "md")
	if !strings.Contains(out2, "Filtered: focus shop/api.") {
		t.Errorf("markdown does not say it is filtered:\n%s", out2)
	}
}

func TestMatrixFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "yaml"}, `-o "yaml": want one of table, json, csv, md, dot, html`},
		{[]string{"--direction", "sideways", "--focus", "shop/api"}, `--direction "sideways": want ingress, egress or both`},
		{[]string{"--direction", "ingress"}, "--direction ingress needs --focus"},
		{[]string{"--port", "8080"}, "--port \"8080\": want PORT/PROTO"},
		{[]string{"--port", "8080/XTP"}, "protocol must be TCP, UDP, SCTP or ICMP"},
		{[]string{"--port", "0/TCP"}, "port must be 1-65535"},
		{[]string{"--port", "70000/TCP"}, "port must be a number"},
		{[]string{"--focus", "shop/nope"}, `--focus "shop/nope": no such workload (want ns/workload; workloads: kube-system/kube-dns, monitoring/prometheus, payments/payments, shop/api, shop/db, shop/web)`},
	} {
		out, errOut, code := run(t, "", append([]string{"matrix", "-f", example}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if _, errOut, code := run(t, "", "matrix"); code != 2 || !strings.Contains(errOut, "no input") {
		t.Errorf("no -f: code %d, stderr %q", code, errOut)
	}
}

// TestMatrixProgress makes every step "slow" and checks the progress lines go to stderr and
// leave stdout alone.
func TestMatrixProgress(t *testing.T) {
	quiet, _, _ := run(t, "", "matrix", "-f", example, "-o", "json")
	defer func(d time.Duration) { matrixProgressInterval = d }(matrixProgressInterval)
	matrixProgressInterval = 0
	out, errOut, code := run(t, "", "matrix", "-f", example, "-o", "json")
	if code != 0 || out != quiet {
		t.Fatalf("code %d; stdout changed with progress on", code)
	}
	for _, want := range []string{"netward matrix: loading and compiling the policies", "netward matrix: 1/11 source groups (9%)", "netward matrix: 11/11 source groups (100%)", "netward matrix: done: 11 groups, 29 allowed connections in"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestMatrixProgressQuietWhenFast(t *testing.T) {
	var b bytes.Buffer
	p := startMatrixProgress(&b, time.Hour)
	p.set("source groups", 1, 2)
	p.finish("done")
	p.stop()
	if b.Len() != 0 {
		t.Errorf("progress printed %q before its interval", b.String())
	}
	b.Reset()
	p = startMatrixProgress(&b, time.Millisecond)
	p.set("source groups", 1, 4)
	time.Sleep(5 * time.Millisecond)
	p.set("source groups", 2, 4)
	p.finish("4 groups")
	if !strings.Contains(b.String(), "netward matrix: 2/4 source groups (50%)") || !strings.Contains(b.String(), "done: 4 groups in") {
		t.Errorf("progress %q", b.String())
	}
}
