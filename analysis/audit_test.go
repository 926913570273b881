package analysis_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
)

// auditBase is a small cluster: three pods in namespace app on one node, and cluster DNS.
const auditBase = `
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {team: app}}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 172.18.0.11}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web, role: server}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080, protocol: TCP}]}]
status: {podIP: 10.0.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: app, labels: {app: api, role: server}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: http, containerPort: 80, protocol: TCP}, {name: metrics, containerPort: 9090, protocol: TCP}]}]
status: {podIP: 10.0.1.20}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: app, labels: {app: client}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x}]
status: {podIP: 10.0.1.30}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  nodeName: node-1
  containers: [{name: c, image: x, ports: [{name: dns, containerPort: 53, protocol: UDP}]}]
status: {podIP: 10.0.2.2}
`

func runAudit(t *testing.T, opts policy.Options, manifests string) []analysis.Finding {
	t.Helper()
	objs, errs := api.LoadBytes("test.yaml", []byte(auditBase+"\n---\n"+manifests))
	errs = append(errs, api.Validate(objs)...)
	if len(errs) > 0 {
		t.Fatalf("invalid test input: %v", errs)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: opts})
	if err != nil {
		t.Fatal(err)
	}
	return analysis.Audit(c, objs)
}

func audit(t *testing.T, manifests string) []analysis.Finding {
	t.Helper()
	return runAudit(t, policy.DefaultOptions(), manifests)
}

func withCode(fs []analysis.Finding, code string) []analysis.Finding {
	var out []analysis.Finding
	for _, f := range fs {
		if f.Code == code {
			out = append(out, f)
		}
	}
	return out
}

func dump(fs []analysis.Finding) string {
	b, _ := json.MarshalIndent(fs, "", "  ")
	return string(b)
}

// expectFinding asserts exactly one finding of code, naming exactly objects, whose
// explanation contains every phrase.
func expectFinding(t *testing.T, fs []analysis.Finding, code string, objects []string, phrases ...string) analysis.Finding {
	t.Helper()
	got := withCode(fs, code)
	if len(got) != 1 {
		t.Fatalf("want one %s finding, got %d:\n%s", code, len(got), dump(fs))
	}
	f := got[0]
	want := slices.Clone(objects)
	slices.Sort(want)
	if !slices.Equal(f.Objects, want) {
		t.Errorf("%s objects:\n got %q\nwant %q", code, f.Objects, want)
	}
	for _, p := range phrases {
		if !strings.Contains(f.Explanation, p) {
			t.Errorf("%s explanation lacks %q:\n%s", code, p, f.Explanation)
		}
	}
	return f
}

func expectNone(t *testing.T, fs []analysis.Finding, code string) {
	t.Helper()
	if got := withCode(fs, code); len(got) > 0 {
		t.Errorf("want no %s finding, got:\n%s", code, dump(got))
	}
}

func expectPods(t *testing.T, f analysis.Finding, pods ...string) {
	t.Helper()
	if !slices.Equal(f.Pods, pods) {
		t.Errorf("%s pods: got %q, want %q", f.Code, f.Pods, pods)
	}
}

const apiHTTP = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-l7, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: /public}]
`

func TestAuditL7Shadowed(t *testing.T) {
	fs := audit(t, apiHTTP+`---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-web, namespace: app}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80}]
`)
	f := expectFinding(t, fs, analysis.CodeL7Shadowed,
		[]string{"CiliumNetworkPolicy app/api-l7 spec.ingress[0]", "NetworkPolicy app/api-web spec.ingress[0].from[0]"},
		"ingress TCP 80 of app/api", "connections from app/web without HTTP rules", "GET /public", "every request passes")
	expectPods(t, f, "app/api")
	if f.Severity != analysis.SeverityWarning {
		t.Errorf("severity %s", f.Severity)
	}

	// The same allow on another port leaves the HTTP rules alone.
	fs = audit(t, apiHTTP+`---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-web, namespace: app}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 9090}]
`)
	expectNone(t, fs, analysis.CodeL7Shadowed)
}

// allow-localhost shadows an HTTP rule that also selects the host.
func TestAuditL7ShadowedByAllowLocalhost(t *testing.T) {
	const wildcardHTTP = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-any, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET}]
`
	fs := audit(t, wildcardHTTP)
	f := expectFinding(t, fs, analysis.CodeL7Shadowed,
		[]string{"CiliumNetworkPolicy app/api-any spec.ingress[0]", "allow-localhost: the local node may reach its pods (Kubernetes mode)"},
		"connections from host", "GET")
	expectPods(t, f, "app/api")

	fs = runAudit(t, policy.Options{AllowLocalhost: false}, wildcardHTTP)
	expectNone(t, fs, analysis.CodeL7Shadowed)
}

func TestAuditL7VisibilityOnly(t *testing.T) {
	fs := audit(t, `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-vis, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  enableDefaultDeny: {ingress: false}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: /public}]
`)
	f := expectFinding(t, fs, analysis.CodeL7VisibilityOnly,
		[]string{"CiliumNetworkPolicy app/api-vis spec.ingress[0]"},
		"enableDefaultDeny.ingress: false", "allow-all L7 rule", "TCP 80", "every HTTP request passes")
	expectPods(t, f, "app/api")

	fs = audit(t, apiHTTP)
	expectNone(t, fs, analysis.CodeL7VisibilityOnly)
}

func TestAuditL7ParserConflict(t *testing.T) {
	policyWithHTTPPort := func(port string) string {
		return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-dns, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
    toPorts:
    - ports: [{port: "53", protocol: TCP}]
      rules:
        dns: [{matchPattern: "*"}]
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
    toPorts:
    - ports: [{port: "` + port + `", protocol: TCP}]
      rules:
        http: [{method: GET}]
`
	}
	fs := audit(t, policyWithHTTPPort("53"))
	f := expectFinding(t, fs, analysis.CodeL7ParserConflict,
		[]string{"CiliumNetworkPolicy app/client-dns spec.egress[0]", "CiliumNetworkPolicy app/client-dns spec.egress[1]"},
		"Cilium cannot compute the policy of app/client", "dns and http rules", "every packet to and from these pods is dropped")
	expectPods(t, f, "app/client")
	if f.Severity != analysis.SeverityError || fs[0].Code != analysis.CodeL7ParserConflict {
		t.Errorf("an error must sort first:\n%s", dump(fs))
	}

	fs = audit(t, policyWithHTTPPort("8053"))
	expectNone(t, fs, analysis.CodeL7ParserConflict)
}

func TestAuditSelectsNoPod(t *testing.T) {
	cnp := func(app string) string {
		return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: typo, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: ` + app + `}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
`
	}
	fs := audit(t, cnp("wbe"))
	f := expectFinding(t, fs, analysis.CodeSelectsNoPod, []string{"CiliumNetworkPolicy app/typo"},
		"selects none of the 4 pods", "any:app=wbe")
	expectPods(t, f)

	fs = audit(t, cnp("web"))
	expectNone(t, fs, analysis.CodeSelectsNoPod)
}

func TestAuditSelectsNoPeer(t *testing.T) {
	cnp := func(peer string) string {
		return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-in, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: ` + peer + `}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`
	}
	fs := audit(t, cnp("wbe"))
	f := expectFinding(t, fs, analysis.CodeSelectsNoPeer, []string{"CiliumNetworkPolicy app/api-in spec.ingress[0]"},
		"allows nothing", "any:app=wbe", "only selects pods of the policy's namespace")
	expectPods(t, f, "app/api")

	fs = audit(t, cnp("web"))
	expectNone(t, fs, analysis.CodeSelectsNoPeer)

	// An explicitly empty peer list selects nothing, yet switches default deny on.
	fs = audit(t, `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-empty, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: []
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`)
	expectFinding(t, fs, analysis.CodeSelectsNoPeer, []string{"CiliumNetworkPolicy app/api-empty spec.ingress[0]"},
		"explicitly empty peer list", "turns ingress default deny on for app/api")
}

func TestAuditCIDRInCluster(t *testing.T) {
	knp := func(cidr string) string {
		return `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-cidr, namespace: app}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{ipBlock: {cidr: ` + cidr + `}}]
    ports: [{port: 80}]
`
	}
	fs := audit(t, knp("10.0.1.0/24"))
	f := expectFinding(t, fs, analysis.CodeCIDRInCluster, []string{"NetworkPolicy app/api-cidr spec.ingress[0].from[0]"},
		"ipBlock 10.0.1.0/24", "app/web (10.0.1.10)", "app/client (10.0.1.30)", "upstream Kubernetes NetworkPolicy semantics would match them",
		"policy-cidr-match-mode=pods,nodes")
	expectPods(t, f, "app/api")

	// Node addresses too.
	fs = audit(t, knp("172.18.0.0/16"))
	expectFinding(t, fs, analysis.CodeCIDRInCluster, []string{"NetworkPolicy app/api-cidr spec.ingress[0].from[0]"}, "nodes node-1 (172.18.0.11)")

	// Outside the cluster: nothing to say.
	fs = audit(t, knp("192.0.2.0/24"))
	expectNone(t, fs, analysis.CodeCIDRInCluster)
	// Under policy-cidr-match-mode=pods the prefix does select the pods.
	fs = runAudit(t, policy.Options{AllowLocalhost: true, CIDRMatch: policy.CIDRMatchMode{Pods: true}}, knp("10.0.1.0/24"))
	expectNone(t, fs, analysis.CodeCIDRInCluster)
}

const apiFromWeb = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-web, namespace: app}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80}]
`

func TestAuditDenyOverridesAll(t *testing.T) {
	deny := func(peer string) string {
		return `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: quarantine}
spec:
  endpointSelector: {}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: ` + peer + `}}]
`
	}
	fs := audit(t, apiFromWeb+"---\n"+deny("web"))
	f := expectFinding(t, fs, analysis.CodeDenyOverridesAll,
		[]string{"CiliumClusterwideNetworkPolicy quarantine spec.ingressDeny[0]", "NetworkPolicy app/api-web spec.ingress[0].from[0]"},
		"denies what NetworkPolicy app/api-web spec.ingress[0].from[0] allows from app/web on TCP 80", "has no effect")
	expectPods(t, f, "app/api")
	expectNone(t, fs, analysis.CodeDenyOverridesPart)

	fs = audit(t, apiFromWeb+"---\n"+deny("client"))
	expectNone(t, fs, analysis.CodeDenyOverridesAll)
	expectNone(t, fs, analysis.CodeDenyOverridesPart)
}

func TestAuditDenyOverridesPart(t *testing.T) {
	pol := func(peer string) string {
		return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: ` + peer + `}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`
	}
	fs := audit(t, pol("web"))
	f := expectFinding(t, fs, analysis.CodeDenyOverridesPart,
		[]string{"CiliumNetworkPolicy app/api spec.ingress[0]", "CiliumNetworkPolicy app/api spec.ingressDeny[0]"},
		"from app/web on TCP 22", "still passes")
	if f.Severity != analysis.SeverityInfo {
		t.Errorf("severity %s", f.Severity)
	}
	expectNone(t, fs, analysis.CodeDenyOverridesAll)

	fs = audit(t, pol("client"))
	expectNone(t, fs, analysis.CodeDenyOverridesPart)
}

func TestAuditMixedIntent(t *testing.T) {
	const visibility = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-visibility, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  enableDefaultDeny: {ingress: false}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: /status}]
`
	fs := audit(t, visibility+"---\n"+apiFromWeb)
	f := expectFinding(t, fs, analysis.CodeMixedIntent,
		[]string{"CiliumNetworkPolicy app/api-visibility spec.ingress[0]", "NetworkPolicy app/api-web"},
		"enableDefaultDeny.ingress: false", "GET /status", "NetworkPolicy app/api-web also selects app/api and turns ingress default deny on",
		"enforced from app/client on TCP 80", "rejected (403)")
	expectPods(t, f, "app/api")
	expectNone(t, fs, analysis.CodeL7VisibilityOnly)

	// Alone, the policy is visibility only (NW102), not a conflict.
	fs = audit(t, visibility)
	expectNone(t, fs, analysis.CodeMixedIntent)
	expectFinding(t, fs, analysis.CodeL7VisibilityOnly, []string{"CiliumNetworkPolicy app/api-visibility spec.ingress[0]"})
}

func TestAuditWorldReachable(t *testing.T) {
	fs := audit(t, apiFromWeb)
	got := withCode(fs, analysis.CodeWorldReachable)
	var app *analysis.Finding
	for i := range got {
		if slices.Contains(got[i].Objects, "Namespace app") {
			app = &got[i]
		}
	}
	if app == nil {
		t.Fatalf("no NW401 finding for namespace app:\n%s", dump(fs))
	}
	expectPods(t, *app, "app/client", "app/web")
	if !strings.Contains(app.Explanation, "No policy selects app/client and app/web for ingress") || !strings.Contains(app.Explanation, "every port and protocol") {
		t.Errorf("explanation: %s", app.Explanation)
	}

	fs = audit(t, `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cluster-only}
spec:
  endpointSelector: {}
  ingress:
  - fromEntities: [cluster]
`)
	expectNone(t, fs, analysis.CodeWorldReachable)
}

func TestAuditNoDNS(t *testing.T) {
	const egress = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-out, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: api}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`
	fs := audit(t, egress)
	f := expectFinding(t, fs, analysis.CodeNoDNS, []string{"CiliumNetworkPolicy app/client-out spec.egress[0]"},
		"no rule allows UDP 53", "kube-system/coredns")
	expectPods(t, f, "app/client")

	fs = audit(t, egress+`  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
`)
	expectNone(t, fs, analysis.CodeNoDNS)
}

func TestAuditPolicyTypes(t *testing.T) {
	knp := func(types string) string {
		return `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client, namespace: app}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [` + types + `]
  egress:
  - to: [{podSelector: {matchLabels: {app: api}}}]
`
	}
	fs := audit(t, knp("Ingress"))
	f := expectFinding(t, fs, analysis.CodePolicyTypes, []string{"NetworkPolicy app/client spec.egress"},
		"policyTypes of NetworkPolicy app/client is [Ingress]", "upstream Kubernetes ignores its spec.egress rules", "the egress of app/client is default deny")
	expectPods(t, f, "app/client")

	fs = audit(t, knp("Ingress, Egress"))
	expectNone(t, fs, analysis.CodePolicyTypes)

	// The mirror case: ingress rules under policyTypes [Egress].
	fs = audit(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: app}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
`)
	expectFinding(t, fs, analysis.CodePolicyTypes, []string{"NetworkPolicy app/api spec.ingress"},
		"[Egress]", "the ingress of app/api is default deny")
}

func TestAuditICMPType0(t *testing.T) {
	cnp := func(typ string) string {
		return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ping, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    icmps: [{fields: [{type: ` + typ + `}]}]
`
	}
	fs := audit(t, cnp("EchoReply"))
	f := expectFinding(t, fs, analysis.CodeICMPType0, []string{"CiliumNetworkPolicy app/ping spec.ingress[0]"},
		"type 0 (EchoReply)", "allows every ICMP type")
	expectPods(t, f, "app/api")

	fs = audit(t, cnp("8"))
	expectNone(t, fs, analysis.CodeICMPType0)
}

func TestAuditNamedPortEndPort(t *testing.T) {
	cnp := func(port string) string {
		return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: range, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "` + port + `", endPort: 8090, protocol: TCP}]}]
`
	}
	fs := audit(t, cnp("http"))
	f := expectFinding(t, fs, analysis.CodeNamedPortEndPort, []string{"CiliumNetworkPolicy app/range spec.ingress[0]"},
		`named port "http" with endPort 8090`, "app/api → TCP 80-8090")
	expectPods(t, f, "app/api")

	fs = audit(t, cnp("80"))
	expectNone(t, fs, analysis.CodeNamedPortEndPort)

	// On egress the range end is dropped.
	fs = audit(t, `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: range-out, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: api}}]
    toPorts: [{ports: [{port: http, endPort: 90, protocol: TCP}]}]
`)
	expectFinding(t, fs, analysis.CodeNamedPortEndPort, []string{"CiliumNetworkPolicy app/range-out spec.egress[0]"},
		"drops endPort 90", "app/api → TCP 80")
}

func TestAuditNamedPortNumbers(t *testing.T) {
	cnp := func(peers string) string {
		return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-out, namespace: app}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {` + peers + `}}]
    toPorts: [{ports: [{port: http, protocol: TCP}]}]
`
	}
	fs := audit(t, cnp("role: server"))
	f := expectFinding(t, fs, analysis.CodeNamedPortNumbers, []string{"CiliumNetworkPolicy app/client-out spec.egress[0]"},
		`names port "http"`, "2 different numbers", "app/api → TCP 80", "app/web → TCP 8080", "each destination is allowed only its own number")
	expectPods(t, f, "app/client")

	fs = audit(t, cnp("app: api"))
	expectNone(t, fs, analysis.CodeNamedPortNumbers)
}

// The shop example's deliberate hazard: the monitoring NetworkPolicy allows the API's port
// 8080 without HTTP rules, so prometheus passes the API CNP's HTTP rules.
func TestAuditShopWideningHazard(t *testing.T) {
	objs, errs := api.Load([]string{"../examples/shop"}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
	if err != nil {
		t.Fatal(err)
	}
	fs := analysis.Audit(c, objs)
	f := expectFinding(t, fs, analysis.CodeL7Shadowed,
		[]string{"CiliumNetworkPolicy shop/api spec.ingress[1]", "NetworkPolicy shop/allow-monitoring spec.ingress[0].from[0]"},
		"ingress TCP 8080 of shop/api-5c6b7-fghij", "from monitoring/prometheus-0", "GET /healthz", "every request passes")
	expectPods(t, f, "shop/api-5c6b7-fghij")
	for _, x := range fs {
		if x.Severity == analysis.SeverityError {
			t.Errorf("unexpected error finding: %+v", x)
		}
	}
	// Deterministic order: severity, then code, then objects.
	again := analysis.Audit(c, objs)
	if dump(again) != dump(fs) {
		t.Error("audit is not deterministic")
	}
}

func TestSeverityJSON(t *testing.T) {
	b, err := json.Marshal(analysis.Finding{Code: "NW101", Severity: analysis.SeverityWarning})
	if err != nil || !strings.Contains(string(b), `"severity":"warning"`) {
		t.Fatalf("%s %v", b, err)
	}
	var f analysis.Finding
	if err := json.Unmarshal(b, &f); err != nil || f.Severity != analysis.SeverityWarning {
		t.Fatalf("%+v %v", f, err)
	}
	if _, ok := analysis.ParseSeverity("fatal"); ok {
		t.Error("fatal is not a severity")
	}
}
