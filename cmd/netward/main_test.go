package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the CLI in-process and returns stdout, stderr and the exit code main would use.
func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCommand(strings.NewReader(stdin), &out, &errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	code := 0
	if err != nil {
		code = 2
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const example = "../../examples/shop"

func TestCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	out, _, code := run(t, "", "check", "-f", example, "--expect", filepath.Join(example, "expect.tsv"))
	if code != 0 || !strings.Contains(out, "24 passed, 0 failed") {
		t.Fatalf("passing expect file: code %d, out %q", code, out)
	}
	failing := writeFile(t, dir, "fail.tsv", "shop/web-7d9f8-abcde shop/db-0 5432/TCP allow\n")
	out, _, code = run(t, "", "check", "-f", example, "--expect", failing)
	if code != 1 || !strings.Contains(out, "FAIL line 1") || !strings.Contains(out, "0 passed, 1 failed") {
		t.Fatalf("failing expect file: code %d, out %q", code, out)
	}
	bad := writeFile(t, dir, "bad.tsv", "shop/web-7d9f8-abcde shop/db-0 5432/TCP perhaps\n")
	_, errOut, code := run(t, "", "check", "-f", example, "--expect", bad)
	if code != 2 || !strings.Contains(errOut, "line 1: verdict") {
		t.Fatalf("invalid expect file: code %d, stderr %q", code, errOut)
	}
	unknown := writeFile(t, dir, "unknown.tsv", "shop/nobody shop/db-0 5432/TCP deny\n")
	_, errOut, code = run(t, "", "check", "-f", example, "--expect", unknown)
	if code != 2 || !strings.Contains(errOut, "no pod shop/nobody") {
		t.Fatalf("unknown pod: code %d, stderr %q", code, errOut)
	}
}

func TestCheckJSON(t *testing.T) {
	dir := t.TempDir()
	exp := writeFile(t, dir, "e.tsv", "# header\nshop/api-5c6b7-fghij shop/db-0 5432/TCP allow\nshop/web-7d9f8-abcde shop/db-0 5432/TCP allow\n")
	out, _, code := run(t, "", "check", "-f", example, "--expect", exp, "-o", "json")
	if code != 1 {
		t.Fatalf("code %d", code)
	}
	var rep struct {
		Passed, Failed int
		Flows          []struct {
			Line                                     int
			From, To, Port, Expected, Actual, Reason string
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Passed != 1 || rep.Failed != 1 || len(rep.Flows) != 2 {
		t.Fatalf("report %+v", rep)
	}
	f := rep.Flows[1]
	if f.Line != 3 || f.From != "shop/web-7d9f8-abcde" || f.Port != "5432/TCP" || f.Expected != "allow" || f.Actual != "deny" || !strings.Contains(f.Reason, "default deny") {
		t.Errorf("flow %+v", f)
	}
}

func TestInvalidPolicyStopsEvaluation(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.yaml", `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromCIDR: ["10.0.0.300/8"]
`)
	writeFile(t, dir, "pods.yaml", `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
status: {podIP: 10.1.1.1}
`)
	exp := writeFile(t, dir, "e.tsv", "x/a 10.1.1.1 80/TCP allow\n")
	_, errOut, code := run(t, "", "check", "-f", dir, "--expect", exp)
	if code != 2 || !strings.Contains(errOut, "p.yaml") || !strings.Contains(errOut, "CiliumNetworkPolicy x/bad") || !strings.Contains(errOut, "spec.ingress[0].fromCIDR[0]") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	out, _, code := run(t, "", "validate", "-f", dir)
	if code != 2 || !strings.Contains(out, "spec.ingress[0].fromCIDR[0]") {
		t.Fatalf("validate: code %d, out %q", code, out)
	}
}

func TestValidateStdinAndNotes(t *testing.T) {
	in := "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n"
	out, errOut, code := run(t, in, "validate", "-f", "-")
	if code != 0 || !strings.Contains(out, "valid: 1 policies") || !strings.Contains(errOut, "skipped v1 Service s") {
		t.Fatalf("code %d out %q stderr %q", code, out, errOut)
	}
}

func TestTraceJSON(t *testing.T) {
	out, _, code := run(t, "", "trace", "-f", example, "--from", "shop/web-7d9f8-abcde", "--to", "shop/api-5c6b7-fghij",
		"--port", "8080/TCP", "--http-method", "GET", "--http-path", "/catalog/1", "-o", "json")
	if code != 0 {
		t.Fatalf("code %d", code)
	}
	var r struct {
		Verdict string
		Ingress struct {
			Entry struct{ Verdict string }
			HTTP  struct {
				Allowed bool
				Matched []string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Verdict != "allow" || r.Ingress.Entry.Verdict != "redirect(http)" || !r.Ingress.HTTP.Allowed || len(r.Ingress.HTTP.Matched) != 1 {
		t.Errorf("trace: %+v", r)
	}
}

func TestTraceFlagErrors(t *testing.T) {
	_, errOut, code := run(t, "", "trace", "-f", example, "--from", "shop/db-0", "--to", "shop/db-0", "--port", "80")
	if code != 2 || !strings.Contains(errOut, "PORT/PROTO") {
		t.Errorf("code %d stderr %q", code, errOut)
	}
	_, errOut, code = run(t, "", "trace", "-f", example, "--from", "shop/db-0", "--to", "shop/db-0", "--port", "80/TCP", "--cidr-match-mode", "all")
	if code != 2 || !strings.Contains(errOut, "cidr-match-mode") {
		t.Errorf("code %d stderr %q", code, errOut)
	}
}

func TestDiffCommand(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	head := filepath.Join(dir, "head")
	for _, d := range []string{base, head} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, d, "cluster.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: {app: b}}\nstatus: {podIP: 10.0.0.2}\n")
		writeFile(t, d, "deny.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n")
	}
	writeFile(t, head, "allow.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: b}}\n  ingress: [{ports: [{port: 80}]}]\n")
	out, _, code := run(t, "", "diff", "--base", base, "--head", base, "--fail-on-widening")
	if code != 0 || !strings.Contains(out, "no change") {
		t.Fatalf("self diff: code %d out %q", code, out)
	}
	out, _, code = run(t, "", "diff", "--base", base, "--head", head, "--fail-on-widening")
	if code != 1 || !strings.Contains(out, "ADDED x/a -> x/b") || !strings.Contains(out, "rule: NetworkPolicy x/allow spec.ingress[0]") {
		t.Fatalf("widening diff: code %d out %q", code, out)
	}
	out, _, code = run(t, "", "diff", "--base", base, "--head", head, "-o", "md")
	if code != 0 || !strings.Contains(out, "| :warning: | `x/a` | `x/b` | TCP 80 denied | TCP 80 |") {
		t.Fatalf("markdown diff: code %d out %q", code, out)
	}
	out, _, code = run(t, "", "diff", "--base", head, "--head", base, "-o", "json", "--fail-on-widening")
	var d struct {
		Widening bool
		Changes  []struct{ Kind, From, To string }
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 || d.Widening || len(d.Changes) == 0 || d.Changes[0].Kind != "removed" {
		t.Fatalf("json diff: code %d err %v out %q", code, err, out)
	}
}
