package labels

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func set(ls ...Label) Set { return NewSet(ls...) }

func TestSelectorSources(t *testing.T) {
	pod := set(
		Label{SourceK8s, "app", "web"},
		Label{SourceK8s, KeyNamespace, "x"},
		Label{SourceReserved, "host", ""},
	)
	cases := []struct {
		name string
		sel  *metav1.LabelSelector
		want bool
	}{
		{"key without source is any: and matches k8s labels (§2.9)", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, true},
		{"k8s: source matches k8s labels", &metav1.LabelSelector{MatchLabels: map[string]string{"k8s:app": "web"}}, true},
		{"other source does not match", &metav1.LabelSelector{MatchLabels: map[string]string{"container:app": "web"}}, false},
		{"wrong value", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}, false},
		{"reserved key", &metav1.LabelSelector{MatchLabels: map[string]string{"reserved:host": ""}}, true},
		{"In", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "In", Values: []string{"api", "web"}}}}, true},
		{"NotIn", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "NotIn", Values: []string{"web"}}}}, false},
		{"NotIn on absent key", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "NotIn", Values: []string{"x"}}}}, true},
		{"Exists", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k8s:" + KeyNamespace, Operator: "Exists"}}}, true},
		{"DoesNotExist", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "DoesNotExist"}}}, false},
		{"empty selector selects everything", &metav1.LabelSelector{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := FromLabelSelector(c.sel, SourceAny)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Matches(pod); got != c.want {
				t.Errorf("%s matches = %v, want %v", s, got, c.want)
			}
		})
	}
}

func TestSelectorCanonicalKey(t *testing.T) {
	a, _ := FromLabelSelector(&metav1.LabelSelector{MatchLabels: map[string]string{"b": "2", "a": "1"}}, SourceAny)
	b, _ := FromLabelSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "a", Operator: "In", Values: []string{"1"}}, {Key: "b", Operator: "In", Values: []string{"2"}}}}, SourceAny)
	if a.Key() != b.Key() {
		t.Errorf("equal selectors have different keys: %s vs %s", a.Key(), b.Key())
	}
	c, _ := FromLabelSelector(&metav1.LabelSelector{MatchLabels: map[string]string{"a": "1"}}, SourceAny)
	if a.Key() == c.Key() {
		t.Errorf("different selectors share key %s", a.Key())
	}
}

func TestFromK8sLabelSelectorForcesSource(t *testing.T) {
	s, err := FromK8sLabelSelector(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, SourceK8s)
	if err != nil {
		t.Fatal(err)
	}
	if !s.HasKey(SourceK8s, "app") || s.HasKey(SourceAny, "app") {
		t.Errorf("want k8s:app, got %s", s)
	}
}

func TestSelectorErrors(t *testing.T) {
	for _, e := range []metav1.LabelSelectorRequirement{
		{Key: "a", Operator: "In"},
		{Key: "a", Operator: "Exists", Values: []string{"x"}},
		{Key: "a", Operator: "Gt", Values: []string{"1"}},
	} {
		if _, err := FromLabelSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{e}}, SourceAny); err == nil {
			t.Errorf("%+v: want an error", e)
		}
	}
}

// TestIdentityRelevantLabels follows Cilium's default label filter (§2.9, pkg/labelsfilter).
func TestIdentityRelevantLabels(t *testing.T) {
	f := DefaultFilter()
	cases := map[string]bool{
		"app":                                               true,
		"app.kubernetes.io/name":                            true,
		"pod-template-hash":                                 false,
		"controller-revision-hash":                          false,
		"statefulset.kubernetes.io/pod-name":                false,
		"apps.kubernetes.io/pod-index":                      false,
		"batch.kubernetes.io/controller-uid":                false,
		"kubernetes.io/hostname":                            false,
		"topology.kubernetes.io/zone":                       false,
		"beta.kubernetes.io/arch":                           false,
		"k8s.io/foo":                                        false,
		KeyNamespace:                                        true,
		KeyNamespaceLabels + ".kubernetes.io/metadata.name": true,
		KeyServiceAccount:                                   true,
		KeyCluster:                                          true,
		"io.kubernetes.container.name":                      false,
		"annotation.foo":                                    false,
	}
	for key, want := range cases {
		if got := f.Relevant(Label{Source: SourceK8s, Key: key}); got != want {
			t.Errorf("%s relevant = %v, want %v", key, got, want)
		}
	}
	if !f.Relevant(Label{Source: SourceReserved, Key: "host"}) {
		t.Error("reserved labels are always relevant")
	}
}
