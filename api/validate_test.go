package api

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Manifest builders: specs are written in YAML flow style to keep each case on a few lines.

func cnp(spec string) string {
	return "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: ns}\nspec: " + spec + "\n"
}

func ccnp(spec string) string {
	return "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: p}\nspec: " + spec + "\n"
}

func knp(spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: ns}\nspec: " + spec + "\n"
}

// ing, ingDeny, eg and egDeny wrap elements into a rule selecting every endpoint.
func ing(elems string) string     { return "{endpointSelector: {}, ingress: [" + elems + "]}" }
func ingDeny(elems string) string { return "{endpointSelector: {}, ingressDeny: [" + elems + "]}" }
func eg(elems string) string      { return "{endpointSelector: {}, egress: [" + elems + "]}" }
func egDeny(elems string) string  { return "{endpointSelector: {}, egressDeny: [" + elems + "]}" }

// ports returns a flow list of n TCP ports starting at 1000.
func ports(n int) string {
	var b []string
	for i := range n {
		b = append(b, fmt.Sprintf(`{port: "%d", protocol: TCP}`, 1000+i))
	}
	return "[" + strings.Join(b, ", ") + "]"
}

// icmpFields returns a flow list of n ICMP type numbers.
func icmpFields(n int) string {
	var b []string
	for i := range n {
		b = append(b, fmt.Sprintf(`{type: %d}`, i))
	}
	return "[" + strings.Join(b, ", ") + "]"
}

const (
	httpTCP80 = `{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}`
	dnsUDP53  = `{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}`
)

// ruleCase is one validation rule: a minimal manifest that breaks exactly that rule, the exact
// field errors it must produce, and a close variant that must be valid.
type ruleCase struct {
	name    string
	invalid string
	want    []string
	valid   string
}

// validateOne loads one manifest and validates it; load errors fail the test.
func validateOne(t *testing.T, manifest string) []error {
	t.Helper()
	objs, loadErrs := LoadBytes("test.yaml", []byte(manifest))
	if len(loadErrs) > 0 {
		t.Fatalf("load errors: %v\nmanifest:\n%s", loadErrs, manifest)
	}
	return Validate(objs)
}

func fieldErrors(t *testing.T, errs []error) []string {
	t.Helper()
	if len(errs) != 1 {
		t.Fatalf("want exactly one object error, got %d: %v", len(errs), errs)
	}
	var oe *ObjectError
	if !errors.As(errs[0], &oe) {
		t.Fatalf("want *ObjectError, got %T", errs[0])
	}
	var out []string
	for _, fe := range oe.Errs {
		out = append(out, fe.Error())
	}
	return out
}

func runRuleCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %s", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			if tc.valid == "" || len(tc.want) == 0 {
				t.Fatal("every rule needs an invalid manifest with expected errors and a valid variant")
			}
			got := fieldErrors(t, validateOne(t, tc.invalid))
			if !slices.Equal(got, tc.want) {
				t.Errorf("invalid manifest:\n got: %q\nwant: %q", got, tc.want)
			}
			if errs := validateOne(t, tc.valid); len(errs) != 0 {
				t.Errorf("valid variant rejected: %v", errs)
			}
		})
	}
}

// TestValidateCiliumPolicyRules: one case per CiliumNetworkPolicy/CCNP validation rule. Each
// comment names the Cilium v1.20.2 source the rule follows and the semantics doc section
// (/work/shared/docs/cilium-semantics.md).
func TestValidateCiliumPolicyRules(t *testing.T) {
	runRuleCases(t, []ruleCase{
		// --- object level -------------------------------------------------------------------
		{
			// cnp_types.go: CiliumNetworkPolicy.Parse "must have name". §1.1
			name:    "metadata_name_required",
			invalid: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {namespace: ns}\nspec: " + ing("{}"),
			want:    []string{"metadata.name: Required value: CiliumNetworkPolicy must have name"},
			valid:   cnp(ing("{}")),
		},
		{
			// ccnp_types.go: CiliumClusterwideNetworkPolicy.Parse "must have name". §1.1
			name:    "ccnp_metadata_name_required",
			invalid: "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {}\nspec: " + ing("{}"),
			want:    []string{"metadata.name: Required value: CiliumClusterwideNetworkPolicy must have name"},
			valid:   ccnp(ing("{}")),
		},
		{
			// API server object meta validation: names are DNS-1123 subdomains. §1.1
			name:    "metadata_name_format",
			invalid: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: My_Policy, namespace: ns}\nspec: " + ing("{}"),
			want:    []string{`metadata.name: Invalid value: "My_Policy": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
			valid:   "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: my-policy, namespace: ns}\nspec: " + ing("{}"),
		},
		{
			// API server object meta validation: namespaces are DNS-1123 labels. §1.1
			name:    "metadata_namespace_format",
			invalid: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: Prod}\nspec: " + ing("{}"),
			want:    []string{`metadata.namespace: Invalid value: "Prod": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
			valid:   "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec: " + ing("{}"),
		},
		{
			// CRD CEL rule "spec or specs must be provided"; cnp_types.go Parse ErrEmptyCNP. §1.1
			name:    "spec_or_specs_required",
			invalid: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: ns}\n",
			want:    []string{"spec: Required value: spec or specs must be provided"},
			valid:   "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: ns}\nspecs: [" + ing("{}") + "]\n",
		},
		// --- rule level ---------------------------------------------------------------------
		{
			// rule_validation.go: Rule.Sanitize "at least one of Ingress, IngressDeny, Egress,
			// EgressDeny"; CRD anyOf. §1.2
			name:    "rule_needs_a_direction",
			invalid: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: ns}\nspecs: [" + ing("{}") + ", {endpointSelector: {}, ingress: []}]\n",
			want:    []string{"specs[1]: Required value: rule must have at least one of ingress, ingressDeny, egress, egressDeny"},
			valid:   "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: ns}\nspecs: [" + ing("{}") + ", {endpointSelector: {}, egressDeny: [{}]}]\n",
		},
		{
			// rule_validation.go: Rule.Sanitize "one of EndpointSelector or NodeSelector"; CRD oneOf. §1.2
			name:    "rule_needs_a_selector",
			invalid: cnp("{ingress: [{}]}"),
			want:    []string{"spec.endpointSelector: Required value: rule must have one of endpointSelector or nodeSelector"},
			valid:   cnp("{endpointSelector: {}, ingress: [{}]}"),
		},
		{
			// rule_validation.go: Rule.Sanitize "cannot have both EndpointSelector and NodeSelector". §1.2
			name:    "rule_both_selectors",
			invalid: ccnp("{endpointSelector: {}, nodeSelector: {}, ingress: [{}]}"),
			want:    []string{"spec.nodeSelector: Forbidden: rule cannot have both endpointSelector and nodeSelector"},
			valid:   ccnp("{nodeSelector: {}, ingress: [{}]}"),
		},
		{
			// cnp_types.go: CiliumNetworkPolicy.Parse "rule cannot have NodeSelector". §1.1, §2.11
			name:    "cnp_node_selector",
			invalid: cnp("{nodeSelector: {matchLabels: {role: worker}}, ingress: [{}]}"),
			want:    []string{"spec.nodeSelector: Forbidden: rule cannot have NodeSelector: only a CiliumClusterwideNetworkPolicy may select nodes"},
			valid:   ccnp("{nodeSelector: {matchLabels: {role: worker}}, ingress: [{}]}"),
		},
		{
			// CRD schema: labels[].key is required. §1.2
			name:    "rule_label_key_required",
			invalid: cnp("{endpointSelector: {}, ingress: [{}], labels: [{value: v}]}"),
			want:    []string{"spec.labels[0].key: Required value"},
			valid:   cnp("{endpointSelector: {}, ingress: [{}], labels: [{key: k, value: v}]}"),
		},
		{
			// rule.go: LogConfig.Value MaxLength=32. §1.2
			name:    "log_value_too_long",
			invalid: cnp(`{endpointSelector: {}, ingress: [{}], log: {value: "` + strings.Repeat("x", 33) + `"}}`),
			want:    []string{`spec.log.value: Invalid value: "` + strings.Repeat("x", 33) + `": must be at most 32 characters (it is 33)`},
			valid:   cnp(`{endpointSelector: {}, ingress: [{}], log: {value: "` + strings.Repeat("é", 32) + `"}}`),
		},
		{
			// rule.go: LogConfig.Value Pattern=^\PC*$ (printable). §1.2
			name:    "log_value_printable",
			invalid: cnp(`{endpointSelector: {}, ingress: [{}], log: {value: "a\tb"}}`),
			want:    []string{`spec.log.value: Invalid value: "a\tb": must contain only printable characters`},
			valid:   cnp(`{endpointSelector: {}, ingress: [{}], log: {value: "a b"}}`),
		},
		// --- peers ----------------------------------------------------------------------------
		{
			// rule_validation.go: IngressCommonRule.sanitize "combining X and Y is not supported yet". §1.3, §5.15
			name:    "ingress_one_peer_kind",
			invalid: cnp(ing(`{fromEndpoints: [{}], fromCIDR: ["10.0.0.0/8"]}`)),
			want:    []string{"spec.ingress[0].fromCIDR: Forbidden: combining fromEndpoints and fromCIDR is not supported yet: use a separate ingress element for each peer kind"},
			valid:   cnp(ing(`{fromEndpoints: [{}]}, {fromCIDR: ["10.0.0.0/8"]}`)),
		},
		{
			// rule_validation.go: an empty peer list does not count as a peer kind (len() > 0). §1.3, §5.1
			name:    "empty_peer_list_is_not_a_kind",
			invalid: cnp(ing(`{fromEndpoints: [], fromEntities: [world], fromCIDRSet: [{cidr: "10.0.0.0/8"}]}`)),
			want:    []string{"spec.ingress[0].fromEntities: Forbidden: combining fromCIDRSet and fromEntities is not supported yet: use a separate ingress element for each peer kind"},
			valid:   cnp(ing(`{fromEndpoints: [], fromEntities: [world]}`)),
		},
		{
			// rule_validation.go: EgressCommonRule.sanitize; toCIDR and toCIDRSet are different kinds. §1.3
			name:    "egress_toCIDR_and_toCIDRSet",
			invalid: cnp(eg(`{toCIDR: ["10.0.0.0/8"], toCIDRSet: [{cidr: "192.168.0.0/16"}]}`)),
			want:    []string{"spec.egress[0].toCIDRSet: Forbidden: combining toCIDR and toCIDRSet is not supported yet: use a separate egress element for each peer kind"},
			valid:   cnp(eg(`{toCIDR: ["10.0.0.0/8"]}, {toCIDRSet: [{cidr: "192.168.0.0/16"}]}`)),
		},
		{
			// rule_validation.go: EgressRule.l3Members counts toFQDNs; only toPorts may go with it. §1.3
			name:    "egress_toFQDNs_alone",
			invalid: cnp(eg(`{toFQDNs: [{matchName: example.com}], toEntities: [world]}`)),
			want:    []string{"spec.egress[0].toFQDNs: Forbidden: combining toEntities and toFQDNs is not supported yet: use a separate egress element for each peer kind"},
			valid:   cnp(eg(`{toFQDNs: [{matchName: example.com}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}`)),
		},
		{
			// rule_validation.go: EgressCommonRule.l3Members counts toServices. §1.3, §5.29
			name:    "egress_toServices_alone",
			invalid: cnp(eg(`{toServices: [{k8sService: {serviceName: db, namespace: ns}}], toEndpoints: [{}]}`)),
			want:    []string{"spec.egress[0].toServices: Forbidden: combining toEndpoints and toServices is not supported yet: use a separate egress element for each peer kind"},
			valid:   cnp(eg(`{toServices: [{k8sService: {serviceName: db, namespace: ns}}], toPorts: [{ports: [{port: "5432", protocol: TCP}]}]}`)),
		},
		{
			// rule_validation.go: IngressDenyRule.sanitize -> IngressCommonRule.sanitize. §1.3
			name:    "ingressDeny_one_peer_kind",
			invalid: cnp(ingDeny(`{fromEntities: [world], fromGroups: [{aws: {securityGroupsIds: [sg-1]}}]}`)),
			want:    []string{"spec.ingressDeny[0].fromGroups: Forbidden: combining fromEntities and fromGroups is not supported yet: use a separate ingressDeny element for each peer kind"},
			valid:   cnp(ingDeny(`{fromEntities: [world]}, {fromGroups: [{aws: {securityGroupsIds: [sg-1]}}]}`)),
		},
		{
			// rule_validation.go: EgressDenyRule.sanitize -> EgressCommonRule.sanitize. §1.3
			name:    "egressDeny_one_peer_kind",
			invalid: cnp(egDeny(`{toEndpoints: [{}], toCIDR: ["10.0.0.0/8"], toEntities: [world]}`)),
			want: []string{
				"spec.egressDeny[0].toCIDR: Forbidden: combining toEndpoints and toCIDR is not supported yet: use a separate egressDeny element for each peer kind",
				"spec.egressDeny[0].toEntities: Forbidden: combining toEndpoints and toEntities is not supported yet: use a separate egressDeny element for each peer kind",
			},
			valid: cnp(egDeny(`{toEndpoints: [{}]}, {toCIDR: ["10.0.0.0/8"]}, {toEntities: [world]}`)),
		},
		{
			// ingress.go: FromRequires is deprecated, CRD MaxItems=0. §1.3
			name:    "fromRequires_deprecated",
			invalid: cnp(ing(`{fromEndpoints: [{}], fromRequires: [{matchLabels: {env: prod}}]}`)),
			want:    []string{"spec.ingress[0].fromRequires: Forbidden: fromRequires is deprecated and no longer supported (the cilium.io/v2 schema allows at most 0 items)"},
			valid:   cnp(ing(`{fromEndpoints: [{}], fromRequires: []}`)),
		},
		{
			// egress.go: ToRequires is deprecated, CRD MaxItems=0. §1.3
			name:    "toRequires_deprecated",
			invalid: cnp(egDeny(`{toEndpoints: [{}], toRequires: [{matchLabels: {env: prod}}]}`)),
			want:    []string{"spec.egressDeny[0].toRequires: Forbidden: toRequires is deprecated and no longer supported (the cilium.io/v2 schema allows at most 0 items)"},
			valid:   cnp(egDeny(`{toEndpoints: [{}]}`)),
		},
		{
			// rule_validation.go: IngressCommonRule.sanitize ErrFromToNodesRequiresNodeSelectorOption. §1.3
			name:    "fromNodes_needs_node_selector_labels",
			invalid: ccnp(ing(`{fromNodes: [{matchLabels: {role: cp}}]}`)),
			want:    []string{`spec.ingress[0].fromNodes: Forbidden: FromNodes/ToNodes rules can only be applied when the "enable-node-selector-labels" flag is set, and netward models this agent option as off`},
			valid:   ccnp(ing(`{fromEntities: [remote-node]}`)),
		},
		{
			// rule_validation.go: EgressCommonRule.sanitize ErrFromToNodesRequiresNodeSelectorOption. §1.3
			name:    "toNodes_needs_node_selector_labels",
			invalid: cnp(eg(`{toNodes: [{}]}`)),
			want:    []string{`spec.egress[0].toNodes: Forbidden: FromNodes/ToNodes rules can only be applied when the "enable-node-selector-labels" flag is set, and netward models this agent option as off`},
			valid:   cnp(eg(`{toNodes: []}`)),
		},
		{
			// rule_validation.go: CIDR.sanitize "unable to parse CIDR". §1.3, §2.7
			name:    "cidr_unparsable",
			invalid: cnp(ing(`{fromCIDR: ["10.0.0.300/8"]}`)),
			want:    []string{`spec.ingress[0].fromCIDR[0]: Invalid value: "10.0.0.300/8": unable to parse CIDR: must be a prefix such as 10.0.0.0/8 or 2001:db8::/32`},
			valid:   cnp(ing(`{fromCIDR: ["10.0.0.3/8"]}`)),
		},
		{
			// CRD schema: CIDR has kubebuilder Format=cidr (cidr.go), so the API server rejects a
			// bare IP even though CIDR.sanitize would take it. §1.3
			name:    "cidr_bare_ip",
			invalid: cnp(eg(`{toCIDR: ["192.0.2.1"]}`)),
			want:    []string{`spec.egress[0].toCIDR[0]: Invalid value: "192.0.2.1": must be a CIDR prefix such as 192.0.2.1/32: the cilium.io/v2 schema declares format: cidr, so the API server rejects a bare IP`},
			valid:   cnp(eg(`{toCIDR: ["192.0.2.1/32", "2001:db8::1/128"]}`)),
		},
		{
			// rule_validation.go: CIDR.sanitize parses with net/netip, which rejects leading zeros. §2.7
			name:    "cidr_leading_zeros",
			invalid: cnp(eg(`{toCIDR: ["010.0.0.0/8"]}`)),
			want:    []string{`spec.egress[0].toCIDR[0]: Invalid value: "010.0.0.0/8": unable to parse CIDR: leading zeros are not accepted (Cilium parses prefixes with net/netip)`},
			valid:   cnp(eg(`{toCIDR: ["10.0.0.0/8"]}`)),
		},
		{
			// rule_validation.go: CIDRRule.sanitize "unable to parse CIDRRule". §1.3
			name:    "cidrSet_cidr_unparsable",
			invalid: cnp(eg(`{toCIDRSet: [{cidr: "10.0.0.0/33"}]}`)),
			want:    []string{`spec.egress[0].toCIDRSet[0].cidr: Invalid value: "10.0.0.0/33": unable to parse CIDR: must be a prefix such as 10.0.0.0/8 or 2001:db8::/32`},
			valid:   cnp(eg(`{toCIDRSet: [{cidr: "10.0.0.0/32"}]}`)),
		},
		{
			// rule_validation.go: CIDRRule.sanitize "exactly one of" (none given); CRD oneOf. §1.3
			name:    "cidrSet_needs_one_source",
			invalid: cnp(eg(`{toCIDRSet: [{except: ["10.0.0.0/24"]}]}`)),
			want:    []string{"spec.egress[0].toCIDRSet[0]: Required value: one of cidr, cidrGroupRef, or cidrGroupSelector is required"},
			valid:   cnp(eg(`{toCIDRSet: [{cidr: "10.0.0.0/8", except: ["10.0.0.0/24"]}]}`)),
		},
		{
			// rule_validation.go: CIDRRule.sanitize "more than one of"; CRD oneOf. §1.3
			name:    "cidrSet_only_one_source",
			invalid: cnp(eg(`{toCIDRSet: [{cidrGroupRef: office, cidrGroupSelector: {matchLabels: {site: a}}}]}`)),
			want:    []string{"spec.egress[0].toCIDRSet[0]: Forbidden: more than one of cidr, cidrGroupRef, or cidrGroupSelector may not be set"},
			valid:   cnp(eg(`{toCIDRSet: [{cidrGroupRef: office}, {cidrGroupSelector: {matchLabels: {site: a}}}]}`)),
		},
		{
			// cidr.go: CIDRGroupRef MaxLength=253, Pattern (lowercase DNS subdomain). §1.3
			name:    "cidrGroupRef_format",
			invalid: cnp(ing(`{fromCIDRSet: [{cidrGroupRef: Office_Net}]}`)),
			want:    []string{`spec.ingress[0].fromCIDRSet[0].cidrGroupRef: Invalid value: "Office_Net": must be the name of a CiliumCIDRGroup (a lowercase DNS-1123 subdomain)`},
			valid:   cnp(ing(`{fromCIDRSet: [{cidrGroupRef: office-net}]}`)),
		},
		{
			// rule_validation.go: CIDRRule.sanitize, except must be inside cidr (prefix length >= cidr's). §1.3, §5.17
			name:    "except_inside_cidr",
			invalid: cnp(eg(`{toCIDRSet: [{cidr: "10.0.0.0/24", except: ["10.0.0.0/16", "10.1.0.0/28"]}]}`)),
			want: []string{
				`spec.egress[0].toCIDRSet[0].except[0]: Invalid value: "10.0.0.0/16": allow CIDR prefix 10.0.0.0/24 does not contain exclude CIDR prefix 10.0.0.0/16`,
				`spec.egress[0].toCIDRSet[0].except[1]: Invalid value: "10.1.0.0/28": allow CIDR prefix 10.0.0.0/24 does not contain exclude CIDR prefix 10.1.0.0/28`,
			},
			valid: cnp(eg(`{toCIDRSet: [{cidr: "10.0.0.0/24", except: ["10.0.0.0/24", "10.0.0.128/25"]}]}`)),
		},
		{
			// rule_validation.go: CIDRRule.sanitize, except of another address family. §1.3
			name:    "except_same_family",
			invalid: cnp(eg(`{toCIDRSet: [{cidr: "0.0.0.0/0", except: ["::/64"]}]}`)),
			want:    []string{`spec.egress[0].toCIDRSet[0].except[0]: Invalid value: "::/64": allow CIDR prefix 0.0.0.0/0 does not contain exclude CIDR prefix ::/64`},
			valid:   cnp(eg(`{toCIDRSet: [{cidr: "::/0", except: ["::/64"]}]}`)),
		},
		{
			// rule_validation.go: CIDRRule.sanitize parses except entries; CRD format: cidr. §1.3
			name:    "except_unparsable",
			invalid: cnp(eg(`{toCIDRSet: [{cidr: "10.0.0.0/8", except: ["10.0.0.1"]}]}`)),
			want:    []string{`spec.egress[0].toCIDRSet[0].except[0]: Invalid value: "10.0.0.1": must be a CIDR prefix such as 192.0.2.1/32: the cilium.io/v2 schema declares format: cidr, so the API server rejects a bare IP`},
			valid:   cnp(eg(`{toCIDRSet: [{cidr: "10.0.0.0/8", except: ["10.0.0.1/32"]}]}`)),
		},
		{
			// rule_validation.go: IngressCommonRule.sanitize "unsupported entity"; CRD Entity enum. §1.3, §2.8
			name:    "entity_unknown",
			invalid: cnp(ing(`{fromEntities: [cluster, everything]}`)),
			want:    []string{`spec.ingress[0].fromEntities[1]: Unsupported value: "everything": supported values: "all", "world", "cluster", "cluster-mesh", "host", "init", "ingress", "unmanaged", "remote-node", "health", "none", "kube-apiserver"`},
			valid:   cnp(ing(`{fromEntities: [cluster, kube-apiserver]}`)),
		},
		{
			// entity.go: world-ipv4/world-ipv6 are in EntitySelectorMapping but not in the CRD enum. §1.3, §2.8
			name:    "entity_world_ipv4_not_in_crd",
			invalid: cnp(eg(`{toEntities: [world-ipv6]}`)),
			want:    []string{`spec.egress[0].toEntities[0]: Invalid value: "world-ipv6": entity world-ipv6 is known to Cilium's agent but is not in the cilium.io/v2 entity enum, so the API server rejects it; use world, or toCIDR 0.0.0.0/0 or ::/0`},
			valid:   cnp(eg(`{toEntities: [world]}`)),
		},
		{
			// groups.go: the Groups schema (aws{labels, securityGroupsIds, securityGroupsNames, region}). §1.3
			name:    "groups_schema",
			invalid: cnp(eg(`{toGroups: [{aws: {securityGroupIds: [sg-1]}}]}`)),
			want:    []string{"spec.egress[0].toGroups[0].aws.securityGroupIds: Invalid value: unknown field (misspelt, or not in the cilium.io/v2 schema)"},
			valid:   cnp(eg(`{toGroups: [{aws: {securityGroupsIds: [sg-1]}}]}`)),
		},
		{
			// service.go: the Service schema (k8sService / k8sServiceSelector). §1.3
			name:    "services_schema",
			invalid: cnp(eg(`{toServices: [{k8sService: {name: db}}]}`)),
			want:    []string{"spec.egress[0].toServices[0].k8sService.name: Invalid value: unknown field (misspelt, or not in the cilium.io/v2 schema)"},
			valid:   cnp(eg(`{toServices: [{k8sService: {serviceName: db}}]}`)),
		},
		{
			// service.go: K8sServiceSelectorNamespace.Selector is required. §1.3
			name:    "services_selector_required",
			invalid: cnp(eg(`{toServices: [{k8sServiceSelector: {namespace: ns}}]}`)),
			want:    []string{"spec.egress[0].toServices[0].k8sServiceSelector.selector: Required value"},
			valid:   cnp(eg(`{toServices: [{k8sServiceSelector: {namespace: ns, selector: {matchLabels: {app: db}}}}]}`)),
		},
		// --- label selectors (selector.go EndpointSelector.Sanitize -> pkg/labels ValidateLabelSelector) ---
		{
			// pkg/labels validation.go: ValidateLabelSelectorRequirement, operator; CRD enum. §1.3, §2.9
			name:    "selector_operator",
			invalid: cnp(`{endpointSelector: {matchExpressions: [{key: app, operator: Equals, values: [a]}]}, ingress: [{}]}`),
			want:    []string{`spec.endpointSelector.matchExpressions[0].operator: Unsupported value: "Equals": supported values: "In", "NotIn", "Exists", "DoesNotExist"`},
			valid:   cnp(`{endpointSelector: {matchExpressions: [{key: app, operator: In, values: [a]}]}, ingress: [{}]}`),
		},
		{
			// pkg/labels validation.go: In/NotIn need values. §2.9
			name:    "selector_in_needs_values",
			invalid: cnp(ing(`{fromEndpoints: [{matchExpressions: [{key: app, operator: NotIn}]}]}`)),
			want:    []string{"spec.ingress[0].fromEndpoints[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"},
			valid:   cnp(ing(`{fromEndpoints: [{matchExpressions: [{key: app, operator: NotIn, values: [a]}]}]}`)),
		},
		{
			// pkg/labels validation.go: Exists/DoesNotExist take no values. §2.9
			name:    "selector_exists_without_values",
			invalid: cnp(eg(`{toEndpoints: [{matchExpressions: [{key: app, operator: Exists, values: [a]}]}]}`)),
			want:    []string{"spec.egress[0].toEndpoints[0].matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"},
			valid:   cnp(eg(`{toEndpoints: [{matchExpressions: [{key: app, operator: Exists}]}]}`)),
		},
		{
			// pkg/labels validation.go: IsValidCiliumLabelKey (one optional "source:" prefix). §2.9
			name:    "selector_label_key",
			invalid: cnp(ing(`{fromEndpoints: [{matchLabels: {"k8s:io:app": web}}]}`)),
			want:    []string{`spec.ingress[0].fromEndpoints[0].matchLabels[k8s:io:app]: Invalid value: "k8s:io:app": a valid label key only support ':' character as a source separator with non empty value`},
			valid:   cnp(ing(`{fromEndpoints: [{matchLabels: {"k8s:io.app": web}}]}`)),
		},
		{
			// pkg/labels validation.go: ValidateLabels (label values). §2.9
			name:    "selector_label_value",
			invalid: cnp(ing(`{fromEndpoints: [{matchLabels: {app: "web server"}}]}`)),
			want:    []string{`spec.ingress[0].fromEndpoints[0].matchLabels[app]: Invalid value: "web server": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
			valid:   cnp(ing(`{fromEndpoints: [{matchLabels: {app: web-server}}]}`)),
		},
		{
			// CRD schema: selector list items are objects, not null. §1.3
			name:    "selector_not_null",
			invalid: cnp(ing(`{fromEndpoints: [null]}`)),
			want:    []string{"spec.ingress[0].fromEndpoints[0]: Invalid value: null: must be a label selector object"},
			valid:   cnp(ing(`{fromEndpoints: [{}]}`)),
		},
		{
			// rule_validation.go: CIDRRule.sanitize sanitizes cidrGroupSelector. §1.3
			name:    "cidrGroupSelector_selector",
			invalid: cnp(ing(`{fromCIDRSet: [{cidrGroupSelector: {matchExpressions: [{key: site, operator: In}]}}]}`)),
			want:    []string{"spec.ingress[0].fromCIDRSet[0].cidrGroupSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"},
			valid:   cnp(ing(`{fromCIDRSet: [{cidrGroupSelector: {matchExpressions: [{key: site, operator: In, values: [a]}]}}]}`)),
		},
		// --- ICMP -----------------------------------------------------------------------------
		{
			// rule_validation.go: errUnsupportedICMPWithToPorts. §1.4, §5.14
			name:    "icmps_without_toPorts",
			invalid: cnp(ing(`{icmps: [{fields: [{type: 8}]}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}`)),
			want:    []string{"spec.ingress[0].icmps: Forbidden: the ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts"},
			valid:   cnp(ing(`{icmps: [{fields: [{type: 8}]}]}, {toPorts: [{ports: [{port: "80", protocol: TCP}]}]}`)),
		},
		{
			// rule_validation.go: ICMPRule.verify "too many types"; CRD MaxItems=40. §1.4
			name:    "icmp_too_many_fields",
			invalid: cnp(eg(`{icmps: [{fields: ` + icmpFields(41) + `}]}`)),
			want:    []string{"spec.egress[0].icmps[0].fields: Too many: 41: must have at most 40 items"},
			valid:   cnp(eg(`{icmps: [{fields: ` + icmpFields(40) + `}]}`)),
		},
		{
			// rule_validation.go: ICMPRule.verify "wrong family"; CRD enum IPv4/IPv6. §1.4
			name:    "icmp_family",
			invalid: cnp(egDeny(`{icmps: [{fields: [{family: ipv6, type: 128}]}]}`)),
			want:    []string{`spec.egressDeny[0].icmps[0].fields[0].family: Unsupported value: "ipv6": supported values: "IPv4", "IPv6"`},
			valid:   cnp(egDeny(`{icmps: [{fields: [{family: IPv6, type: 128}]}]}`)),
		},
		{
			// icmp.go: ICMPField.UnmarshalJSON "ICMP type X not found in <family>". §1.4, §2.6
			name:    "icmp_type_name",
			invalid: cnp(ing(`{icmps: [{fields: [{type: Ping}]}]}`)),
			want:    []string{`spec.ingress[0].icmps[0].fields[0].type: Invalid value: "Ping": ICMP type Ping not found in IPv4: must be a number 0-255 or a type name such as EchoRequest`},
			valid:   cnp(ing(`{icmps: [{fields: [{type: EchoRequest}, {type: TimestampReply}]}]}`)),
		},
		{
			// icmp.go: names are looked up in the family's table (IPv4 by default). §1.4
			name:    "icmp_type_name_of_family",
			invalid: cnp(ing(`{icmps: [{fields: [{type: NeighborSolicitation}]}]}`)),
			want:    []string{`spec.ingress[0].icmps[0].fields[0].type: Invalid value: "NeighborSolicitation": ICMP type NeighborSolicitation not found in IPv4: it is an IPv6 type, set family: IPv6`},
			valid:   cnp(ing(`{icmps: [{fields: [{family: IPv6, type: NeighborSolicitation}]}]}`)),
		},
		{
			// icmp.go: ICMPField.Type is an 8-bit type; the CRD does not bound integers, the datapath does. §1.4
			name:    "icmp_type_number_range",
			invalid: cnp(ing(`{icmps: [{fields: [{type: 256}]}]}`)),
			want:    []string{"spec.ingress[0].icmps[0].fields[0].type: Invalid value: 256: must be an ICMP type number 0-255 or a type name"},
			valid:   cnp(ing(`{icmps: [{fields: [{type: 255}, {type: 0}]}]}`)),
		},
		{
			// icmp.go: CRD Pattern of ICMPField.Type (numbers 0-255 without leading zeros). §1.4
			name:    "icmp_type_numeric_string",
			invalid: cnp(ing(`{icmps: [{fields: [{type: "08"}]}]}`)),
			want:    []string{`spec.ingress[0].icmps[0].fields[0].type: Invalid value: "08": must be an ICMP type number 0-255 (without leading zeros) or a type name`},
			valid:   cnp(ing(`{icmps: [{fields: [{type: "8"}]}]}`)),
		},
		{
			// icmp.go: the CRD Pattern lists "ExtendedEcho Reply" (with a space), so the real
			// name is rejected by the API server. §1.4
			name:    "icmp_type_extended_echo_reply",
			invalid: cnp(ing(`{icmps: [{fields: [{family: IPv6, type: ExtendedEchoReply}]}]}`)),
			want:    []string{`spec.ingress[0].icmps[0].fields[0].type: Invalid value: "ExtendedEchoReply": the cilium.io/v2 schema's ICMP type pattern does not accept ExtendedEchoReply (it is misspelt there); use the number 161`},
			valid:   cnp(ing(`{icmps: [{fields: [{family: IPv6, type: 161}, {family: IPv6, type: ExtendedEchoRequest}]}]}`)),
		},
		{
			// icmp.go: CRD schema, type is required. §1.4
			name:    "icmp_type_required",
			invalid: cnp(ing(`{icmps: [{fields: [{family: IPv4}]}]}`)),
			want:    []string{"spec.ingress[0].icmps[0].fields[0].type: Required value: an ICMP type number (0-255) or name is required"},
			valid:   cnp(ing(`{icmps: [{fields: [{family: IPv4, type: 0}]}]}`)),
		},
		// --- ports ----------------------------------------------------------------------------
		{
			// rule_validation.go: PortRule.sanitize "too many ports"; CRD MaxItems=40. §1.4
			name:    "too_many_ports",
			invalid: cnp(ing(`{toPorts: [{ports: ` + ports(41) + `}]}`)),
			want:    []string{"spec.ingress[0].toPorts[0].ports: Too many: 41: must have at most 40 items"},
			valid:   cnp(ing(`{toPorts: [{ports: ` + ports(40) + `}]}`)),
		},
		{
			// rule_validation.go: PortDenyRule.sanitize "too many ports". §1.4
			name:    "too_many_deny_ports",
			invalid: cnp(ingDeny(`{toPorts: [{ports: ` + ports(41) + `}]}`)),
			want:    []string{"spec.ingressDeny[0].toPorts[0].ports: Too many: 41: must have at most 40 items"},
			valid:   cnp(ingDeny(`{toPorts: [{ports: ` + ports(40) + `}]}`)),
		},
		{
			// rule_validation.go: PortProtocol.sanitize "unable to parse port" (0-65535). §1.4
			name:    "port_number_range",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "65536", protocol: TCP}]}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].ports[0].port: Invalid value: "65536": unable to parse port: must be a number 0-65535 or an IANA service name (1-15 letters, digits and '-', at least one letter, no leading, trailing or double '-')`},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "65535", protocol: TCP}, {port: "0", protocol: UDP}]}]}`)),
		},
		{
			// pkg/iana IsSvcName via PortProtocol.sanitize: named ports are IANA service names. §1.4, §2.6
			name:    "port_service_name",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "http--alt", protocol: TCP}, {port: "-dns"}, {port: "very-long-name-x"}]}]}`)),
			want: []string{
				`spec.ingress[0].toPorts[0].ports[0].port: Invalid value: "http--alt": unable to parse port: must be a number 0-65535 or an IANA service name (1-15 letters, digits and '-', at least one letter, no leading, trailing or double '-')`,
				`spec.ingress[0].toPorts[0].ports[1].port: Invalid value: "-dns": unable to parse port: must be a number 0-65535 or an IANA service name (1-15 letters, digits and '-', at least one letter, no leading, trailing or double '-')`,
				`spec.ingress[0].toPorts[0].ports[2].port: Invalid value: "very-long-name-x": unable to parse port: must be a number 0-65535 or an IANA service name (1-15 letters, digits and '-', at least one letter, no leading, trailing or double '-')`,
			},
			valid: cnp(ing(`{toPorts: [{ports: [{port: "http-alt", protocol: TCP}, {port: "dns"}, {port: "very-long-name"}, {port: "HTTPS"}]}]}`)),
		},
		{
			// rule_validation.go: PortProtocol.sanitize "port must be specified" (extended IP
			// protocols off). §1.4
			name:    "port_required",
			invalid: cnp(ing(`{toPorts: [{ports: [{protocol: TCP}]}]}`)),
			want:    []string{`spec.ingress[0].toPorts[0].ports[0].port: Required value: port must be specified: use "0" for all ports (an empty port is only accepted with the agent option "enable-extended-ip-protocols", which netward models as off)`},
			valid:   cnp(ing(`{toPorts: [{ports: [{port: "0", protocol: TCP}]}]}`)),
		},
		{
			// l4.go: PortProtocol.EndPort Minimum=0 Maximum=65535. §1.4
			name:    "endPort_range",
			invalid: cnp(egDeny(`{toPorts: [{ports: [{port: "8000", endPort: 70000, protocol: TCP}]}]}`)),
			want:    []string{"spec.egressDeny[0].toPorts[0].ports[0].endPort: Invalid value: 70000: must be between 0 and 65535, inclusive"},
			valid:   cnp(egDeny(`{toPorts: [{ports: [{port: "8000", endPort: 65535, protocol: TCP}]}]}`)),
		},
		{
			// l4.go: PortProtocol.Protocol enum; utils.go ParseL4Proto. §1.4, §5.13
			name:    "protocol_unknown",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "0", protocol: ICMP}]}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP", "ANY"`},
			valid:   cnp(eg(`{icmps: [{fields: [{type: 8}]}]}, {toPorts: [{ports: [{port: "0", protocol: ANY}]}]}`)),
		},
		{
			// l4.go: the CRD enum is upper case (ParseL4Proto would upper-case, the API server does not). §1.4
			name:    "protocol_upper_case",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: udp}]}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].ports[0].protocol: Invalid value: "udp": must be upper case ("UDP"): the cilium.io/v2 schema enum is case-sensitive`},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: UDP}]}]}`)),
		},
		{
			// l4.go: VRRP, IGMP, GRE, IPIP, IPV6, ESP, AH need enable-extended-ip-protocols. §1.4
			name:    "protocol_extended",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "0", protocol: GRE}]}]}`)),
			want:    []string{`spec.ingress[0].toPorts[0].ports[0].protocol: Forbidden: protocol GRE requires the agent option "enable-extended-ip-protocols", and netward models it as off`},
			valid:   cnp(ing(`{toPorts: [{ports: [{port: "0", protocol: SCTP}]}]}`)),
		},
		{
			// rule_validation.go: PortProtocol.sanitize "port must be empty or 0" for extended protocols. §1.4
			name:    "protocol_extended_port_zero",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "1", protocol: VRRP}]}]}`)),
			want: []string{
				`spec.ingress[0].toPorts[0].ports[0].protocol: Forbidden: protocol VRRP requires the agent option "enable-extended-ip-protocols", and netward models it as off`,
				`spec.ingress[0].toPorts[0].ports[0].port: Invalid value: "1": port must be empty or 0 for protocol VRRP`,
			},
			valid: cnp(ing(`{toPorts: [{ports: [{port: "1", protocol: TCP}]}]}`)),
		},
		// --- L7 -------------------------------------------------------------------------------
		{
			// rule_validation.go: PortRule.sanitize "L7 rules can not be used when a port is 0". §1.4
			name:    "l7_not_on_port_zero",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "0", protocol: TCP}], rules: {http: [{}]}}]}`)),
			want:    []string{`spec.ingress[0].toPorts[0].ports[0].port: Invalid value: "0": L7 rules can not be used when a port is 0`},
			valid:   cnp(ing(`{toPorts: [{ports: [{port: "0", protocol: TCP}], rules: {http: []}}]}`)),
		},
		{
			// rule_validation.go: PortRule.sanitize "L7 rules can only apply to TCP ... except for DNS rules". §1.4
			name:    "http_needs_tcp",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "80"}, {port: "81", protocol: UDP}], rules: {http: [{method: GET}]}}]}`)),
			want: []string{
				`spec.ingress[0].toPorts[0].ports[0].protocol: Invalid value: "": L7 rules can only apply to TCP (not ANY) except for DNS rules: set protocol: TCP`,
				`spec.ingress[0].toPorts[0].ports[1].protocol: Invalid value: "UDP": L7 rules can only apply to TCP (not UDP) except for DNS rules: set protocol: TCP`,
			},
			valid: cnp(ing(`{toPorts: [` + httpTCP80 + `]}`)),
		},
		{
			// rule_validation.go: PortProtocol.sanitize "DNS rules do not support port ranges". §1.4
			name:    "dns_no_port_range",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "53", endPort: 54, protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].ports[0].endPort: Forbidden: DNS rules do not support port ranges"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "53", endPort: 53, protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]}`)),
		},
		{
			// rule_validation.go: L7Rules.sanitize "port 53 must be specified for DNS rules". §1.4
			name:    "dns_needs_ports",
			invalid: cnp(eg(`{toPorts: [{rules: {dns: [{matchName: example.com}]}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].ports: Required value: port 53 must be specified for DNS rules"},
			valid:   cnp(eg(`{toPorts: [` + dnsUDP53 + `]}`)),
		},
		{
			// rule_validation.go: L7Rules.sanitize "multiple L7 protocol rule types"; CRD oneOf. §1.4, §5.9
			name:    "l7_one_protocol",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: TCP}], rules: {http: [{}], dns: [{matchPattern: "*"}]}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].rules: Forbidden: multiple L7 protocol rule types specified in single rule: use either http or dns"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: TCP}], rules: {dns: [{matchPattern: "*"}]}}]}`)),
		},
		{
			// l4.go: L7Rules CRD oneOf http/dns rejects an empty rules object. §1.4
			name:    "l7_rules_not_empty",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].rules: Required value: must specify one of http or dns (omit rules to have no L7 rules)"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}]}]}`)),
		},
		{
			// l4.go: L7Rules has no kafka since 1.20 (upgrade notes). §1.4
			name:    "l7_kafka_removed",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "9092", protocol: TCP}], rules: {kafka: [{topic: t}]}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].rules.kafka: Forbidden: Kafka L7 rules were removed in Cilium 1.20"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "9092", protocol: TCP}]}]}`)),
		},
		{
			// l4.go: L7Rules has no l7proto/l7 since 1.20 (upgrade notes). §1.4
			name:    "l7_generic_removed",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "9000", protocol: TCP}], rules: {l7proto: envoy.filters.x, l7: [{k: v}]}}]}`)),
			want: []string{
				"spec.ingress[0].toPorts[0].rules.l7proto: Forbidden: generic L7 rules (l7proto/l7) were removed in Cilium 1.20",
				"spec.ingress[0].toPorts[0].rules.l7: Forbidden: generic L7 rules (l7proto/l7) were removed in Cilium 1.20",
			},
			valid: cnp(ing(`{toPorts: [{ports: [{port: "9000", protocol: TCP}]}]}`)),
		},
		{
			// rule_validation.go: PortRule.sanitize "DNS rules are not allowed on ingress";
			// IngressRule.sanitize "L7 protocol DNS is not supported on ingress yet". §1.4
			name:    "dns_egress_only",
			invalid: cnp(ing(`{toPorts: [` + dnsUDP53 + `]}`)),
			want:    []string{"spec.ingress[0].toPorts[0].rules.dns: Forbidden: DNS rules are not allowed on ingress (L7 protocol DNS is supported on egress only)"},
			valid:   cnp(eg(`{toPorts: [` + dnsUDP53 + `]}`)),
		},
		{
			// rule_validation.go: IngressRule.sanitize "L7 policy is not supported on host ingress yet". §2.11
			name:    "l7_not_on_host_ingress",
			invalid: ccnp(`{nodeSelector: {}, ingress: [{toPorts: [` + httpTCP80 + `]}]}`),
			want:    []string{"spec.ingress[0].toPorts[0].rules: Forbidden: L7 policy is not supported on host ingress yet"},
			valid:   ccnp(`{nodeSelector: {}, ingress: [{toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]}`),
		},
		{
			// rule_validation.go: EgressRule.sanitize "L7 protocol HTTP is not supported on host egress yet". §2.11
			name:    "http_not_on_host_egress",
			invalid: ccnp(`{nodeSelector: {}, egress: [{toPorts: [` + httpTCP80 + `]}]}`),
			want:    []string{"spec.egress[0].toPorts[0].rules.http: Forbidden: L7 protocol HTTP is not supported on host egress yet"},
			valid:   ccnp(`{nodeSelector: {}, egress: [{toPorts: [` + dnsUDP53 + `]}]}`),
		},
		{
			// http.go: PortRuleHTTP.Sanitize compiles path as a Go regexp. §1.4, §5.30
			name:    "http_path_regexp",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{path: "/api/(v1"}]}}]}`)),
			want:    []string{"spec.ingress[0].toPorts[0].rules.http[0].path: Invalid value: \"/api/(v1\": must be a valid regular expression: error parsing regexp: missing closing ): `/api/(v1`"},
			valid:   cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{path: "/api/(v1|v2)/.*"}]}}]}`)),
		},
		{
			// http.go: PortRuleHTTP.Sanitize compiles method as a Go regexp. §1.4
			name:    "http_method_regexp",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: "*"}]}}]}`)),
			want:    []string{"spec.ingress[0].toPorts[0].rules.http[0].method: Invalid value: \"*\": must be a valid regular expression: error parsing regexp: missing argument to repetition operator: `*`"},
			valid:   cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: "GET|HEAD"}]}}]}`)),
		},
		{
			// http.go: host is a regexp too (Envoy and netward's l7 package compile it). §1.4
			name:    "http_host_regexp",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{host: "[a-z.example.com"}]}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].rules.http[0].host: Invalid value: \"[a-z.example.com\": must be a valid regular expression: error parsing regexp: missing closing ]: `[a-z.example.com`"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{host: "[a-z]+\\.example\\.com"}]}}]}`)),
		},
		{
			// http.go: PortRuleHTTP.Sanitize "Header name missing"; CRD MinLength=1. §1.4
			name:    "header_match_name",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headerMatches: [{value: x}]}]}}]}`)),
			want:    []string{"spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].name: Required value: Header name missing"},
			valid:   cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headerMatches: [{name: X-Token, value: x}]}]}}]}`)),
		},
		{
			// http.go: PortRuleHTTP.Sanitize "Invalid header action"; CRD enum. §1.4
			name:    "header_match_mismatch",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headerMatches: [{name: X-Token, mismatch: log}]}]}}]}`)),
			want:    []string{`spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch: Unsupported value: "log": supported values: "LOG", "ADD", "DELETE", "REPLACE"`},
			valid:   cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headerMatches: [{name: X-Token, mismatch: LOG}]}]}}]}`)),
		},
		{
			// http.go: PortRuleHTTP.Sanitize "Secret name missing". A value together with a
			// secret is allowed (the value is the fallback). §1.4
			name:    "header_match_secret_name",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headerMatches: [{name: X-Token, secret: {namespace: ns, name: ""}}]}]}}]}`)),
			want:    []string{"spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].secret.name: Required value: Secret name missing"},
			valid:   cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{headerMatches: [{name: X-Token, value: v, secret: {namespace: ns, name: token}}]}]}}]}`)),
		},
		{
			// fqdn.go: PortRuleDNS.Sanitize "Invalid characters in MatchName"; CRD Pattern. §1.3, §1.4
			name:    "dns_match_name_chars",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: "*.example.com"}]}}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].rules.dns[0].matchName: Invalid value: "*.example.com": Invalid characters in MatchName: only 0-9, a-z, A-Z, '-', '_' and '.' between labels are allowed`},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: "my_host.example.com."}]}}]}`)),
		},
		{
			// matchpattern.go: prevalidate "Invalid characters in MatchPattern"; CRD Pattern. §1.3, §1.4
			name:    "dns_match_pattern_chars",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*.example.com/x"}]}}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].rules.dns[0].matchPattern: Invalid value: "*.example.com/x": Invalid characters in MatchPattern: only 0-9, a-z, A-Z, '-', '_', '*' and '.' between labels are allowed`},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "**.example.com"}]}}]}`)),
		},
		{
			// fqdn.go: PortRuleDNS CRD oneOf matchName/matchPattern. §1.4
			name:    "dns_rule_needs_a_name",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{}]}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].rules.dns[0]: Required value: one of matchName or matchPattern is required"},
			valid:   cnp(eg(`{toPorts: [` + dnsUDP53 + `]}`)),
		},
		{
			// fqdn.go: FQDNSelector.sanitize "only one of MatchName or MatchPattern"; CRD oneOf. §1.3
			name:    "fqdn_one_of",
			invalid: cnp(eg(`{toFQDNs: [{matchName: example.com, matchPattern: "*.example.com"}]}`)),
			want:    []string{"spec.egress[0].toFQDNs[0]: Forbidden: only one of matchName or matchPattern is allowed in an FQDNSelector"},
			valid:   cnp(eg(`{toFQDNs: [{matchName: example.com}, {matchPattern: "*.example.com"}]}`)),
		},
		{
			// fqdn.go: FQDNSelector CRD oneOf (an empty selector). §1.3
			name:    "fqdn_required",
			invalid: cnp(eg(`{toFQDNs: [{}]}`)),
			want:    []string{"spec.egress[0].toFQDNs[0]: Required value: one of matchName or matchPattern is required"},
			valid:   cnp(eg(`{toFQDNs: [{matchPattern: "*"}]}`)),
		},
		{
			// fqdn.go: MaxLength=255 (matchpattern.MaxFQDNLength). §1.3
			name:    "fqdn_length",
			invalid: cnp(eg(`{toFQDNs: [{matchName: "` + strings.Repeat("a.", 128) + `"}]}`)),
			want:    []string{"spec.egress[0].toFQDNs[0].matchName: Too long: may not be more than 255 bytes"},
			valid:   cnp(eg(`{toFQDNs: [{matchName: "` + strings.Repeat("a.", 127) + `a"}]}`)),
		},
		// --- TLS, listener, authentication -----------------------------------------------------
		{
			// rule_validation.go: PortRule.sanitize "ServerNames are not allowed with L7 rules
			// without TLS termination". §1.4
			name:    "server_names_l7_need_tls",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [api.example.com], rules: {http: [{}]}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].serverNames: Forbidden: ServerNames are not allowed with L7 rules without TLS termination: add terminatingTLS"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [api.example.com], terminatingTLS: {secret: {name: tls}}, rules: {http: [{}]}}]}`)),
		},
		{
			// rule_validation.go: PortRule.sanitize errEmptyServerName. §1.4
			name:    "server_name_empty",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [""]}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].serverNames[0]: Required value: empty server name is not allowed"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: ["*.example.com"]}]}`)),
		},
		{
			// l4.go: ServerNames MinItems=1. §1.4
			name:    "server_names_min_items",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: []}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].serverNames: Too few: 0: must have at least 1 item"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}]}]}`)),
		},
		{
			// l4.go: ServerNames listType=set. §1.4
			name:    "server_names_set",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [a.example.com, a.example.com]}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].serverNames[1]: Duplicate value: "a.example.com"`},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [a.example.com, b.example.com]}]}`)),
		},
		{
			// l4.go: ServerName Pattern. §1.4
			name:    "server_name_pattern",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: ["https://example.com"]}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].serverNames[0]: Invalid value: "https://example.com": must be a DNS name, optionally with '*' wildcards`},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: ["example.com"]}]}`)),
		},
		{
			// l4.go: TLSContext.Secret is required. §1.4
			name:    "tls_secret_required",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], originatingTLS: {trustedCA: ca.crt}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].originatingTLS.secret: Required value: a TLS context needs a secret"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "443", protocol: TCP}], originatingTLS: {secret: {name: ca}, trustedCA: ca.crt}}]}`)),
		},
		{
			// rule_validation.go: PortRule.sanitize "Listener is not allowed on ingress". §1.4
			name:    "listener_egress_only",
			invalid: cnp(ing(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {name: cec}, name: l1}}]}`)),
			want:    []string{"spec.ingress[0].toPorts[0].listener: Forbidden: Listener is not allowed on ingress (l1)"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {name: cec}, name: l1}}]}`)),
		},
		{
			// rule_validation.go: PortRule.sanitize "Listener is not allowed with L7 rules". §1.4
			name:    "listener_without_l7_rules",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {name: cec}, name: l1}, rules: {http: [{}]}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].listener: Forbidden: Listener is not allowed with L7 rules (l1)"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {name: cec}, name: l1}}]}`)),
		},
		{
			// pkg/policy/l4.go: createL4Filter "Listener in CCNP can not use Kind CiliumEnvoyConfig". §1.4
			name:    "listener_ccnp_kind",
			invalid: ccnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: cec}, name: l1}}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].listener.envoyConfig.kind: Forbidden: Listener "l1" in CCNP can not use Kind CiliumEnvoyConfig: a clusterwide policy can only use a CiliumClusterwideEnvoyConfig`},
			valid:   ccnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {kind: CiliumClusterwideEnvoyConfig, name: cec}, name: l1}}]}`)),
		},
		{
			// l4.go: EnvoyConfig.Kind enum. §1.4
			name:    "listener_kind_enum",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {kind: EnvoyConfig, name: cec}, name: l1}}]}`)),
			want:    []string{`spec.egress[0].toPorts[0].listener.envoyConfig.kind: Unsupported value: "EnvoyConfig": supported values: "CiliumEnvoyConfig", "CiliumClusterwideEnvoyConfig"`},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: cec}, name: l1}}]}`)),
		},
		{
			// l4.go: Listener.Name and EnvoyConfig.Name MinLength=1, required. §1.4
			name:    "listener_names_required",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {}, name: ""}}]}`)),
			want: []string{
				"spec.egress[0].toPorts[0].listener.name: Required value",
				"spec.egress[0].toPorts[0].listener.envoyConfig.name: Required value",
			},
			valid: cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {name: cec}, name: l1}}]}`)),
		},
		{
			// l4.go: Listener.Priority Minimum=1 Maximum=100. §1.4
			name:    "listener_priority",
			invalid: cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {name: cec}, name: l1, priority: 101}}]}`)),
			want:    []string{"spec.egress[0].toPorts[0].listener.priority: Invalid value: 101: must be between 1 and 100, inclusive"},
			valid:   cnp(eg(`{toPorts: [{ports: [{port: "80", protocol: TCP}], listener: {envoyConfig: {name: cec}, name: l1, priority: 100}}]}`)),
		},
		{
			// rule.go: Authentication.Mode enum disabled/required/test-always-fail. §1.4
			name:    "authentication_mode",
			invalid: cnp(ing(`{fromEndpoints: [{}], authentication: {mode: mtls}}`)),
			want:    []string{`spec.ingress[0].authentication.mode: Unsupported value: "mtls": supported values: "disabled", "required", "test-always-fail"`},
			valid:   cnp(ing(`{fromEndpoints: [{}], authentication: {mode: required}}`)),
		},
		{
			// rule.go: Authentication.Mode is required. §1.4
			name:    "authentication_mode_required",
			invalid: cnp(eg(`{toEndpoints: [{}], authentication: {}}`)),
			want:    []string{"spec.egress[0].authentication.mode: Required value: one of disabled, required, test-always-fail"},
			valid:   cnp(eg(`{toEndpoints: [{}], authentication: {mode: disabled}}`)),
		},
	})
}

// TestValidateNetworkPolicyRules: one case per Kubernetes NetworkPolicy rule
// (k8s.io/kubernetes pkg/apis/networking/validation ValidateNetworkPolicy), plus what Cilium's
// pkg/k8s/network_policy.go ParseNetworkPolicy needs. §3
func TestValidateNetworkPolicyRules(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{
			// ValidateObjectMeta: name required. §3
			name:    "name_required",
			invalid: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: ns}\nspec: {podSelector: {}}\n",
			want:    []string{"metadata.name: Required value: every NetworkPolicy needs a name"},
			valid:   knp("{podSelector: {}}"),
		},
		{
			// ValidateNetworkPolicySpec: podSelector is a valid label selector. §3
			name:    "pod_selector",
			invalid: knp(`{podSelector: {matchExpressions: [{key: app, operator: Has}]}}`),
			want:    []string{`spec.podSelector.matchExpressions[0].operator: Invalid value: "Has": not a valid selector operator`},
			valid:   knp(`{podSelector: {matchExpressions: [{key: app, operator: Exists}]}}`),
		},
		{
			// ValidateLabelSelector: label values. §3
			name:    "label_value",
			invalid: knp(`{podSelector: {matchLabels: {app: "-web"}}}`),
			want:    []string{`spec.podSelector.matchLabels: Invalid value: "-web": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
			valid:   knp(`{podSelector: {matchLabels: {app: web}}}`),
		},
		{
			// ValidateNetworkPolicyPort: port number 1-65535. §3
			name:    "port_number",
			invalid: knp(`{podSelector: {}, ingress: [{ports: [{port: 0}]}]}`),
			want:    []string{"spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"},
			valid:   knp(`{podSelector: {}, ingress: [{ports: [{port: 1}]}]}`),
		},
		{
			// ValidateNetworkPolicyPort: IANA_SVC_NAME. §3
			name:    "port_name",
			invalid: knp(`{podSelector: {}, egress: [{ports: [{port: HTTP}]}]}`),
			want: []string{
				`spec.egress[0].ports[0].port: Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)`,
				`spec.egress[0].ports[0].port: Invalid value: "HTTP": must contain at least one letter (a-z)`,
			},
			valid: knp(`{podSelector: {}, egress: [{ports: [{port: http}]}]}`),
		},
		{
			// ValidateNetworkPolicyPort: a string port is a name, even if it is digits. §3
			name:    "port_string_digits",
			invalid: knp(`{podSelector: {}, egress: [{ports: [{port: "80"}]}]}`),
			want:    []string{`spec.egress[0].ports[0].port: Invalid value: "80": must contain at least one letter (a-z)`},
			valid:   knp(`{podSelector: {}, egress: [{ports: [{port: 80}]}]}`),
		},
		{
			// ValidateNetworkPolicyPort: endPort >= port. §3, §2.6
			name:    "end_port_not_below_port",
			invalid: knp(`{podSelector: {}, egress: [{ports: [{port: 8080, endPort: 8000}]}]}`),
			want:    []string{"spec.egress[0].ports[0].endPort: Invalid value: 8000: must be greater than or equal to `port`"},
			valid:   knp(`{podSelector: {}, egress: [{ports: [{port: 8000, endPort: 8080}]}]}`),
		},
		{
			// ValidateNetworkPolicyPort: endPort 1-65535. §3
			name:    "end_port_range",
			invalid: knp(`{podSelector: {}, egress: [{ports: [{port: 8000, endPort: 65536}]}]}`),
			want:    []string{"spec.egress[0].ports[0].endPort: Invalid value: 65536: must be between 1 and 65535, inclusive"},
			valid:   knp(`{podSelector: {}, egress: [{ports: [{port: 8000, endPort: 65535}]}]}`),
		},
		{
			// ValidateNetworkPolicyPort: endPort needs a numeric port. §3
			name:    "end_port_needs_numeric_port",
			invalid: knp(`{podSelector: {}, ingress: [{ports: [{port: http, endPort: 8080}]}]}`),
			want:    []string{"spec.ingress[0].ports[0].endPort: Invalid value: 8080: may not be specified when `port` is non-numeric"},
			valid:   knp(`{podSelector: {}, ingress: [{ports: [{port: http}]}]}`),
		},
		{
			// ValidateNetworkPolicyPort: endPort needs a port. §3
			name:    "end_port_needs_port",
			invalid: knp(`{podSelector: {}, ingress: [{ports: [{protocol: UDP, endPort: 8080}]}]}`),
			want:    []string{"spec.ingress[0].ports[0].endPort: Invalid value: 8080: may not be specified when `port` is not specified"},
			valid:   knp(`{podSelector: {}, ingress: [{ports: [{protocol: UDP}]}]}`),
		},
		{
			// ValidateNetworkPolicyPort: protocol TCP/UDP/SCTP (Cilium's parsePorts takes the same). §3
			name:    "protocol",
			invalid: knp(`{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}`),
			want:    []string{`spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"`},
			valid:   knp(`{podSelector: {}, ingress: [{ports: [{protocol: SCTP}]}]}`),
		},
		{
			// ValidateNetworkPolicyPeer: "must specify a peer". §3
			name:    "peer_required",
			invalid: knp(`{podSelector: {}, ingress: [{from: [{}]}]}`),
			want:    []string{"spec.ingress[0].from[0]: Required value: must specify a peer"},
			valid:   knp(`{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}`),
		},
		{
			// ValidateNetworkPolicyPeer: ipBlock alone. §3
			name:    "ip_block_alone",
			invalid: knp(`{podSelector: {}, egress: [{to: [{ipBlock: {cidr: "10.0.0.0/8"}, namespaceSelector: {}}]}]}`),
			want:    []string{"spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer"},
			valid:   knp(`{podSelector: {}, egress: [{to: [{ipBlock: {cidr: "10.0.0.0/8"}}, {namespaceSelector: {}, podSelector: {}}]}]}`),
		},
		{
			// ValidateNetworkPolicyPeer: namespaceSelector is a valid label selector. §3
			name:    "namespace_selector",
			invalid: knp(`{podSelector: {}, egress: [{to: [{namespaceSelector: {matchExpressions: [{key: team, operator: In}]}}]}]}`),
			want:    []string{"spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"},
			valid:   knp(`{podSelector: {}, egress: [{to: [{namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [a]}]}}]}]}`),
		},
		{
			// ValidateIPBlock: cidr required. §3
			name:    "ip_block_cidr_required",
			invalid: knp(`{podSelector: {}, egress: [{to: [{ipBlock: {cidr: ""}}]}]}`),
			want:    []string{"spec.egress[0].to[0].ipBlock.cidr: Required value"},
			valid:   knp(`{podSelector: {}, egress: [{to: [{ipBlock: {cidr: "0.0.0.0/0"}}]}]}`),
		},
		{
			// ValidateIPBlock: IsValidCIDRForLegacyField. §3
			name:    "ip_block_cidr",
			invalid: knp(`{podSelector: {}, egress: [{to: [{ipBlock: {cidr: "10.0.0.1"}}]}]}`),
			want:    []string{`spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.1": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)`},
			valid:   knp(`{podSelector: {}, egress: [{to: [{ipBlock: {cidr: "10.0.0.1/32"}}]}]}`),
		},
		{
			// Cilium ipBlockToCIDRRule: prefixes are parsed with net/netip (no leading zeros). §3, §2.7
			name:    "ip_block_leading_zeros",
			invalid: knp(`{podSelector: {}, egress: [{to: [{ipBlock: {cidr: "10.0.0.0/08"}}]}]}`),
			want:    []string{`spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.0/08": must not have leading zeros: Cilium parses prefixes with net/netip, which rejects them`},
			valid:   knp(`{podSelector: {}, egress: [{to: [{ipBlock: {cidr: "10.0.0.0/8"}}]}]}`),
		},
		{
			// ValidateIPBlock: except is a strict subset of cidr. §3
			name:    "ip_block_except_subset",
			invalid: knp(`{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "10.0.0.0/8", except: ["10.0.0.0/8", "11.0.0.0/16", "::/64"]}}]}]}`),
			want: []string{
				`spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of ` + "`cidr`",
				`spec.ingress[0].from[0].ipBlock.except[1]: Invalid value: "11.0.0.0/16": must be a strict subset of ` + "`cidr`",
				`spec.ingress[0].from[0].ipBlock.except[2]: Invalid value: "::/64": must be a strict subset of ` + "`cidr`",
			},
			valid: knp(`{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "10.0.0.0/8", except: ["10.0.0.0/9", "10.255.0.0/16"]}}]}]}`),
		},
		{
			// ValidateNetworkPolicySpec: policyTypes values. §3, §5.21
			name:    "policy_types_values",
			invalid: knp(`{podSelector: {}, policyTypes: [Ingress, ingress]}`),
			want:    []string{`spec.policyTypes[1]: Unsupported value: "ingress": supported values: "Ingress", "Egress"`},
			valid:   knp(`{podSelector: {}, policyTypes: [Ingress, Egress]}`),
		},
		{
			// ValidateNetworkPolicySpec: at most two policyTypes. §3
			name:    "policy_types_count",
			invalid: knp(`{podSelector: {}, policyTypes: [Ingress, Egress, Ingress]}`),
			want:    []string{`spec.policyTypes: Invalid value: ["Ingress","Egress","Ingress"]: may not specify more than two policyTypes`},
			valid:   knp(`{podSelector: {}, policyTypes: [Egress]}`),
		},
	})
}

// TestValidateClusterObjects: the light checks of Namespaces, Pods and Nodes.
func TestValidateClusterObjects(t *testing.T) {
	ns := func(meta string) string { return "apiVersion: v1\nkind: Namespace\nmetadata: " + meta + "\n" }
	pod := func(status string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: ns}\nstatus: " + status + "\n"
	}
	node := func(status string) string {
		return "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: " + status + "\n"
	}
	runRuleCases(t, []ruleCase{
		{
			// API server ValidateObjectMeta; netward needs the name for namespace labels (§2.10).
			name:    "namespace_name_required",
			invalid: ns("{labels: {team: a}}"),
			want:    []string{"metadata.name: Required value: every Namespace needs a name"},
			valid:   ns("{name: prod, labels: {team: a}}"),
		},
		{
			// Namespace names are DNS-1123 labels (they become label values, §2.10).
			name:    "namespace_name_format",
			invalid: ns("{name: prod.eu}"),
			want:    []string{`metadata.name: Invalid value: "prod.eu": must not contain dots`},
			valid:   ns("{name: prod-eu}"),
		},
		{
			// API server ValidateObjectMeta; Cilium names endpoints after pods (§2.9).
			name:    "pod_name_required",
			invalid: "apiVersion: v1\nkind: Pod\nmetadata: {namespace: ns}\n",
			want:    []string{"metadata.name: Required value: every Pod needs a name"},
			valid:   "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: ns}\n",
		},
		{
			// core/v1 PodStatus.podIP is an IP; netward puts it in the ipcache (§4).
			name:    "pod_ip",
			invalid: pod(`{podIP: "10.0.0.256"}`),
			want:    []string{`status.podIP: Invalid value: "10.0.0.256": must be a valid IP address (e.g. 10.9.8.7 or 2001:db8::ffff)`},
			valid:   pod(`{podIP: "10.0.0.25"}`),
		},
		{
			// core/v1 PodStatus.podIPs[].ip are IPs (no zone); ipcache entries (§4).
			name:    "pod_ips",
			invalid: pod(`{podIP: "10.0.0.25", podIPs: [{ip: "10.0.0.25"}, {ip: "fd00::1%eth0"}]}`),
			want:    []string{`status.podIPs[1].ip: Invalid value: "fd00::1%eth0": must be a valid IP address (e.g. 10.9.8.7 or 2001:db8::ffff)`},
			valid:   pod(`{podIP: "10.0.0.25", podIPs: [{ip: "10.0.0.25"}, {ip: "fd00::1"}]}`),
		},
		{
			// API server ValidatePodStatus: podIPs[0] is podIP.
			name:    "pod_ips_first_is_pod_ip",
			invalid: pod(`{podIP: "10.0.0.25", podIPs: [{ip: "10.0.0.26"}]}`),
			want:    []string{`status.podIPs[0].ip: Invalid value: "10.0.0.26": must match status.podIP`},
			valid:   pod(`{podIP: "10.0.0.26", podIPs: [{ip: "10.0.0.26"}]}`),
		},
		{
			// API server ValidateObjectMeta; host policies select nodes by name and labels (§2.11).
			name:    "node_name_required",
			invalid: "apiVersion: v1\nkind: Node\nmetadata: {labels: {a: b}}\n",
			want:    []string{"metadata.name: Required value: every Node needs a name"},
			valid:   "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {a: b}}\n",
		},
		{
			// Node InternalIP/ExternalIP addresses are IPs; they become host/remote-node ipcache entries (§2.8).
			name:    "node_internal_ip",
			invalid: node(`{addresses: [{type: Hostname, address: n1}, {type: InternalIP, address: "192.168.1.x"}]}`),
			want:    []string{`status.addresses[1].address: Invalid value: "192.168.1.x": an InternalIP address must be a valid IP address (e.g. 10.9.8.7 or 2001:db8::ffff)`},
			valid:   node(`{addresses: [{type: Hostname, address: n1}, {type: InternalIP, address: "192.168.1.10"}]}`),
		},
	})
}

// TestValidateReportsEveryProblem: several problems in one object come back together, in one
// ObjectError, in document order.
func TestValidateReportsEveryProblem(t *testing.T) {
	manifest := `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: many
  namespace: ns
specs:
- nodeSelector: {}
  ingress:
  - fromEndpoints: [{}]
    fromEntities: [world]
    toPorts:
    - ports: [{port: "99999", protocol: TCP}]
- endpointSelector: {}
  egress:
  - toCIDR: ["10.0.0.1"]
    icmps: [{fields: [{type: Bogus}]}]
`
	errs := validateOne(t, manifest)
	got := fieldErrors(t, errs)
	want := []string{
		"specs[0].nodeSelector: Forbidden: rule cannot have NodeSelector: only a CiliumClusterwideNetworkPolicy may select nodes",
		"specs[0].ingress[0].fromEntities: Forbidden: combining fromEndpoints and fromEntities is not supported yet: use a separate ingress element for each peer kind",
		`specs[0].ingress[0].toPorts[0].ports[0].port: Invalid value: "99999": unable to parse port: must be a number 0-65535 or an IANA service name (1-15 letters, digits and '-', at least one letter, no leading, trailing or double '-')`,
		`specs[1].egress[0].toCIDR[0]: Invalid value: "10.0.0.1": must be a CIDR prefix such as 192.0.2.1/32: the cilium.io/v2 schema declares format: cidr, so the API server rejects a bare IP`,
		`specs[1].egress[0].icmps[0].fields[0].type: Invalid value: "Bogus": ICMP type Bogus not found in IPv4: must be a number 0-255 or a type name such as EchoRequest`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := strings.Count(errs[0].Error(), "\n") + 1; n != len(want) {
		t.Errorf("Error() has %d lines, want one per problem (%d)", n, len(want))
	}
}

// TestValidateErrorString: the error names the file, the document index, the kind,
// namespace/name and the field path; one ObjectError per invalid object, in input order.
func TestValidateErrorString(t *testing.T) {
	manifest := cnp(ing("{}")) + "---\n" +
		cnp(ing(`{fromCIDR: ["10.0.0.0/33"]}`)) + "---\n" +
		"apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSpace(ccnp(eg(`{toEntities: [world-ipv4]}`))), "\n", "\n  ") + "\n"
	objs, loadErrs := LoadBytes("policies/prod.yaml", []byte(manifest))
	if len(loadErrs) > 0 {
		t.Fatalf("load errors: %v", loadErrs)
	}
	errs := Validate(objs)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		`policies/prod.yaml (document 2): CiliumNetworkPolicy ns/p: spec.ingress[0].fromCIDR[0]: Invalid value: "10.0.0.0/33": unable to parse CIDR: must be a prefix such as 10.0.0.0/8 or 2001:db8::/32`,
		`policies/prod.yaml (document 3, item 1): CiliumClusterwideNetworkPolicy p: spec.egress[0].toEntities[0]: Invalid value: "world-ipv4": entity world-ipv4 is known to Cilium's agent but is not in the cilium.io/v2 entity enum, so the API server rejects it; use world, or toCIDR 0.0.0.0/0 or ::/0`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range errs {
		var oe *ObjectError
		if !errors.As(e, &oe) {
			t.Fatalf("want *ObjectError, got %T", e)
		}
	}
}

// TestValidateValidObjects: a realistic set of valid objects of every kind passes.
func TestValidateValidObjects(t *testing.T) {
	objs, loadErrs := Load([]string{"testdata/valid"}, nil)
	if len(loadErrs) > 0 {
		t.Fatalf("load errors: %v", loadErrs)
	}
	if len(objs.CNPs) == 0 || len(objs.CCNPs) == 0 || len(objs.NetworkPolicies) == 0 || len(objs.Pods) == 0 ||
		len(objs.Nodes) == 0 || len(objs.Namespaces) == 0 {
		t.Fatalf("testdata/valid should hold every kind, got %+v", objs)
	}
	if errs := Validate(objs); len(errs) > 0 {
		t.Errorf("valid objects rejected:\n%v", errors.Join(errs...))
	}
}

func TestValidateNil(t *testing.T) {
	if errs := Validate(nil); errs != nil {
		t.Errorf("Validate(nil) = %v", errs)
	}
	if errs := Validate(&Objects{CNPs: []Object[CiliumNetworkPolicy]{{}}}); errs != nil {
		t.Errorf("Validate(nil object) = %v", errs)
	}
}
