package analysis_test

import (
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
)

func shop(t *testing.T) *cluster.Cluster {
	t.Helper()
	objs, errs := api.Load([]string{"../examples/shop"}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func trace(t *testing.T, c *cluster.Cluster, from, to, port string, http ...string) *analysis.Result {
	t.Helper()
	proto, p, err := analysis.ParsePortProto(port)
	if err != nil {
		t.Fatal(err)
	}
	f := analysis.Flow{From: from, To: to, Proto: proto, Port: p}
	if len(http) > 0 {
		if f.HTTP, err = analysis.NewRequest(http[0], http[1], http[2:]); err != nil {
			t.Fatal(err)
		}
	}
	r, err := analysis.Trace(c, f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTraceExplainsDefaultDeny(t *testing.T) {
	c := shop(t)
	r := trace(t, c, "shop/web-7d9f8-abcde", "shop/db-0", "5432/TCP")
	if r.Allowed {
		t.Fatal("web must not reach the database")
	}
	if r.Egress == nil || r.Egress.Allowed || r.Egress.Entry != nil {
		t.Fatalf("egress side: %+v", r.Egress)
	}
	for _, want := range []string{"default deny: selected by", "CiliumClusterwideNetworkPolicy baseline-dns spec.egress[0]", "CiliumNetworkPolicy shop/web spec.egress[0]"} {
		if !strings.Contains(r.Egress.Reason, want) {
			t.Errorf("egress reason %q lacks %q", r.Egress.Reason, want)
		}
	}
}

func TestTraceNamesTheDecidingRule(t *testing.T) {
	c := shop(t)
	r := trace(t, c, "shop/api-5c6b7-fghij", "shop/db-0", "5432/TCP")
	if !r.Allowed {
		t.Fatalf("api -> db must be allowed: %s", r.Reason)
	}
	if r.Ingress.Entry == nil || len(r.Ingress.Entry.Origins) != 1 || r.Ingress.Entry.Origins[0] != "NetworkPolicy shop/db-from-api spec.ingress[0].from[0]" {
		t.Errorf("ingress entry: %+v", r.Ingress.Entry)
	}
	if r.Egress.Entry == nil || r.Egress.Entry.Origins[0] != "CiliumNetworkPolicy shop/api spec.egress[0]" {
		t.Errorf("egress entry: %+v", r.Egress.Entry)
	}
}

func TestTraceNoPolicy(t *testing.T) {
	c := shop(t)
	r := trace(t, c, "shop/api-5c6b7-fghij", "payments/payments-6f7c8-klmno", "8443/TCP")
	if !r.Allowed {
		t.Fatalf("want allowed: %s", r.Reason)
	}
	r = trace(t, c, "payments/payments-6f7c8-klmno", "kube-system/coredns-abc12", "53/UDP")
	if r.Ingress.Enforced || !strings.Contains(r.Ingress.Reason, "no policy selects kube-system/coredns-abc12 for ingress") {
		t.Errorf("ingress of coredns: %+v", r.Ingress)
	}
}

// TestTraceHTTPWidening is the §2.5 hazard in the bundled example: a NetworkPolicy port allow
// without HTTP rules admits every request from monitoring although the CNP allows GET /healthz.
func TestTraceHTTPWidening(t *testing.T) {
	c := shop(t)
	r := trace(t, c, "monitoring/prometheus-0", "shop/api-5c6b7-fghij", "8080/TCP", "DELETE", "/admin/users")
	if !r.Allowed {
		t.Fatalf("the widening hazard must let the request through: %s", r.Reason)
	}
	h := r.Ingress.HTTP
	if h == nil || !h.Allowed {
		t.Fatalf("http view: %+v", h)
	}
	if len(h.Matched) != 1 || !strings.Contains(h.Matched[0], "NetworkPolicy shop/allow-monitoring") || !strings.Contains(h.Matched[0], "every request passes") {
		t.Errorf("matched: %v", h.Matched)
	}
	r = trace(t, c, "shop/web-7d9f8-abcde", "shop/api-5c6b7-fghij", "8080/TCP", "DELETE", "/catalog/x")
	if r.Allowed || r.Ingress.HTTP == nil || r.Ingress.HTTP.Allowed {
		t.Errorf("web DELETE must be refused by the proxy: %s", r.Reason)
	}
}

func TestTraceRejectsFlowsWithoutPods(t *testing.T) {
	c := shop(t)
	_, err := analysis.Trace(c, analysis.Flow{From: "1.2.3.4", To: "node:node-1", Proto: policy.ProtoTCP, Port: 80})
	if err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("err = %v", err)
	}
	_, err = analysis.Trace(c, analysis.Flow{From: "shop/nope", To: "shop/db-0", Proto: policy.ProtoTCP, Port: 80})
	if err == nil || !strings.Contains(err.Error(), "no pod shop/nope") {
		t.Errorf("err = %v", err)
	}
	_, err = analysis.Trace(c, analysis.Flow{From: "node:node-9", To: "shop/db-0", Proto: policy.ProtoTCP, Port: 80})
	if err == nil || !strings.Contains(err.Error(), `no node "node-9"`) {
		t.Errorf("err = %v", err)
	}
}

// TestExampleExpectations runs the bundled example's expect file.
func TestExampleExpectations(t *testing.T) {
	c := shop(t)
	fh := strings.NewReader(mustRead(t, "../examples/shop/expect.tsv"))
	exps, errs := analysis.ParseExpectations(fh)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rep, errs := analysis.Check(c, exps)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if rep.Failed != 0 || rep.Passed != len(exps) || rep.Passed < 20 {
		for _, f := range rep.Flows {
			if !f.Pass {
				t.Errorf("line %d: %s", f.Line, f.Reason)
			}
		}
		t.Fatalf("passed %d failed %d", rep.Passed, rep.Failed)
	}
}
