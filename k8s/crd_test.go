package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/netward/netward/api"
)

// The committed files under deploy/kubernetes are what `go generate ./k8s` produces now.
func TestGeneratedFilesUpToDate(t *testing.T) {
	files, err := GenerateDeployFiles("..")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("generated %d files, want 3", len(files))
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Errorf("%s: %v (run `go generate ./k8s`)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run `go generate ./k8s`\n%s", name, firstDiff(got, want))
		}
	}
	// The binary embeds the committed CRDs.
	emb, err := EmbeddedCRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range CRDFiles {
		if !bytes.Equal(emb[f], files[filepath.Join(DeployDir, "crds", f)]) {
			t.Errorf("embedded %s differs from the generated one (rebuild after `go generate ./k8s`)", f)
		}
	}
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + itoa(i+1) + ":\n  committed: " + gl + "\n  generated: " + wl
		}
	}
	return ""
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// loadCRD decodes a generated CRD file into the internal type the API server validates.
func loadCRD(t *testing.T, b []byte) (*apiextv1.CustomResourceDefinition, *apiextensions.CustomResourceDefinition) {
	t.Helper()
	var crd apiextv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(b, &crd); err != nil {
		t.Fatal(err)
	}
	var internal apiextensions.CustomResourceDefinition
	if err := apiextv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&crd, &internal, nil); err != nil {
		t.Fatal(err)
	}
	internal.Status.StoredVersions = []string{"v2"} // set by the API server
	return &crd, &internal
}

// schemaOf returns the internal CRD's schema (the internal type keeps a schema shared by
// every version at the top).
func schemaOf(crd *apiextensions.CustomResourceDefinition) *apiextensions.JSONSchemaProps {
	if crd.Spec.Validation != nil {
		return crd.Spec.Validation.OpenAPIV3Schema
	}
	return crd.Spec.Versions[0].Schema.OpenAPIV3Schema
}

// The CRDs pass the API server's own CRD validation, structural schema rules included.
func TestCRDsAreValidAndStructural(t *testing.T) {
	crds, err := EmbeddedCRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range CRDFiles {
		v1crd, crd := loadCRD(t, crds[f])
		if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), crd); len(errs) > 0 {
			t.Errorf("%s: %v", f, errs.ToAggregate())
		}
		s, err := structuralschema.NewStructural(schemaOf(crd))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if errs := structuralschema.ValidateStructural(field.NewPath("schema"), s); len(errs) > 0 {
			t.Errorf("%s: not structural: %v", f, errs.ToAggregate())
		}
		v := v1crd.Spec.Versions[0]
		if v.Subresources == nil || v.Subresources.Status == nil {
			t.Errorf("%s: no status subresource", f)
		}
		var cols []string
		for _, c := range v.AdditionalPrinterColumns {
			cols = append(cols, c.Name+"="+c.JSONPath)
		}
		if strings.Join(cols, " ") != "Age=.metadata.creationTimestamp Valid=.status.conditions[?(@.type=='Valid')].status" {
			t.Errorf("%s: printer columns %v", f, cols)
		}
	}
}

// ciliumManifest is one CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy document of
// the repository's examples and conformance cases.
type ciliumManifest struct {
	where      string // file (document N)
	kind       string
	namespace  string
	name       string
	obj        map[string]any // as the API server decodes JSON (integers as int64)
	decodeErrs []error        // netward's own strict decoding and validation
}

func ciliumManifests(t *testing.T) []ciliumManifest {
	t.Helper()
	var files []string
	for _, root := range []string{"../examples/shop/policies", "../testdata/conformance"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(files)
	var out []ciliumManifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for doc := 1; ; doc++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			var h struct {
				APIVersion, Kind string
				Metadata         struct{ Name, Namespace string }
			}
			if len(bytes.TrimSpace(raw)) == 0 || json.Unmarshal(raw, &h) != nil {
				continue
			}
			if h.APIVersion != "cilium.io/v2" || (h.Kind != api.KindCNP && h.Kind != api.KindCCNP) {
				continue
			}
			m := ciliumManifest{where: f + " (document " + itoa(doc) + ")", kind: h.Kind, namespace: h.Metadata.Namespace, name: h.Metadata.Name}
			if err := utiljson.Unmarshal(raw, &m.obj); err != nil {
				t.Fatal(err)
			}
			objs := &api.Objects{}
			m.decodeErrs = objs.AddRaw(api.Source{File: f, Doc: doc}, raw)
			if len(m.decodeErrs) == 0 {
				m.decodeErrs = api.Validate(objs)
			}
			out = append(out, m)
		}
	}
	return out
}

// Every Cilium policy of the examples and of the conformance suite is accepted by the
// schema as it is: nothing pruned, no validation error.
func TestSchemaAcceptsCiliumManifests(t *testing.T) {
	crds, err := EmbeddedCRDs()
	if err != nil {
		t.Fatal(err)
	}
	type checker struct {
		s *structuralschema.Structural
		v apiservervalidation.SchemaValidator
	}
	byKind := map[string]checker{}
	for _, f := range CRDFiles {
		v1crd, crd := loadCRD(t, crds[f])
		sch := schemaOf(crd)
		s, err := structuralschema.NewStructural(sch)
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := apiservervalidation.NewSchemaValidator(sch)
		if err != nil {
			t.Fatal(err)
		}
		byKind[v1crd.Spec.Names.Kind] = checker{s, v}
	}
	ms := ciliumManifests(t)
	if len(ms) < 100 {
		t.Fatalf("found only %d Cilium policies", len(ms))
	}
	var invalidForNetward int
	for _, m := range ms {
		c := byKind[m.kind]
		pruned := pruning.PruneWithOptions(deepCopyJSON(m.obj), c.s, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
		errs := apiservervalidation.ValidateCustomResource(nil, m.obj, c.v)
		if len(m.decodeErrs) > 0 {
			invalidForNetward++
			t.Logf("%s: %s %s/%s is invalid for netward (%v); schema: pruned %v, errors %v", m.where, m.kind, m.namespace, m.name, m.decodeErrs[0], pruned, errs)
			continue
		}
		if len(pruned) > 0 {
			t.Errorf("%s: the schema prunes %v", m.where, pruned)
		}
		if len(errs) > 0 {
			t.Errorf("%s: the schema rejects it: %v", m.where, errs.ToAggregate())
		}
	}
	t.Logf("%d Cilium policies checked against the schema, %d of them invalid for netward's validator", len(ms), invalidForNetward)
}

func deepCopyJSON(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = utiljson.Unmarshal(b, &out)
	return out
}

// The status schema accepts what StatusWriter writes, and Cilium's own status shape.
func TestStatusSchemaAcceptsNodeStatus(t *testing.T) {
	crds, err := EmbeddedCRDs()
	if err != nil {
		t.Fatal(err)
	}
	_, crd := loadCRD(t, crds[CRDFiles[0]])
	sch := schemaOf(crd)
	s, _ := structuralschema.NewStructural(sch)
	v, _, err := apiservervalidation.NewSchemaValidator(sch)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
		"metadata": map[string]any{"name": "p", "namespace": "default"},
		"spec":     map[string]any{"endpointSelector": map[string]any{}},
		"status": map[string]any{
			"conditions": []any{map[string]any{"type": "Valid", "status": "True", "lastTransitionTime": "2026-11-25T10:00:00Z", "message": ValidMessage}},
			"nodes": map[string]any{
				"node-1": map[string]any{"ok": true, "enforcing": true, "localPolicyRevision": int64(7), "lastUpdated": "2026-11-25T10:00:00Z", "annotations": map[string]any{"a": "b"}},
				"node-2": map[string]any{"ok": false, "error": "spec.ingress[0]: bad", "enforcing": false, "localPolicyRevision": int64(0), "lastUpdated": "2026-11-25T10:00:01Z"},
			},
			"derivativePolicies": map[string]any{"x": map[string]any{"ok": true}},
		},
	}
	if pruned := pruning.PruneWithOptions(deepCopyJSON(obj), s, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}); len(pruned) > 0 {
		t.Errorf("pruned %v", pruned)
	}
	if errs := apiservervalidation.ValidateCustomResource(nil, obj, v); len(errs) > 0 {
		t.Error(errs.ToAggregate())
	}
}
