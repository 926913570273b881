package api

import (
	"strings"
	"testing"
)

func TestValidateLenientDemotesBareAddresses(t *testing.T) {
	objs, errs := LoadBytes("p.yaml", []byte(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {}
  egress:
  - toCIDR: [203.0.113.7]
  - toCIDR: [10.0.0.300/8]
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if strict := Validate(objs); len(strict) != 1 || !strings.Contains(strict[0].Error(), "spec.egress[0].toCIDR[0]") {
		t.Fatalf("strict validation must reject the bare address: %v", strict)
	}
	hard, warnings := ValidateLenient(objs)
	if len(warnings) != 1 || !strings.Contains(warnings[0], "spec.egress[0].toCIDR[0]: 203.0.113.7 is a bare address") {
		t.Errorf("warnings: %v", warnings)
	}
	if len(hard) != 1 || strings.Contains(hard[0].Error(), "egress[0]") || !strings.Contains(hard[0].Error(), "spec.egress[1].toCIDR[0]") {
		t.Errorf("errors: %v", hard)
	}
}
