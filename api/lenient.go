package api

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ValidateLenient is Validate for analyses of manifests that never went through an API
// server: problems the Cilium agent would itself accept (a bare address in a CIDR field,
// which the agent reads as a /32) become warnings; everything else stays an error.
func ValidateLenient(objs *Objects) (errs []error, warnings []string) {
	for _, err := range Validate(objs) {
		var oe *ObjectError
		if !errors.As(err, &oe) {
			errs = append(errs, err)
			continue
		}
		var hard field.ErrorList
		for _, fe := range oe.Errs {
			if fe.Detail == bareIPDetail {
				warnings = append(warnings, fmt.Sprintf("%s: %s: %s: %v is a bare address; the API server would reject it (the cilium.io/v2 schema wants a prefix), the Cilium agent reads it as a single address", oe.Source, oe.Ref(), fe.Field, fe.BadValue))
				continue
			}
			hard = append(hard, fe)
		}
		if len(hard) > 0 {
			cp := *oe
			cp.Errs = hard
			errs = append(errs, &cp)
		}
	}
	return errs, warnings
}
