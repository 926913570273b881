package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
)

// Source says where an object was read: a file (or "-" for stdin, or a cluster) and the
// 1-based index of the YAML document in it. Item is the 1-based index inside a kind: List.
type Source struct {
	File string
	Doc  int
	Item int
}

func (s Source) String() string {
	if s.Doc == 0 {
		return s.File
	}
	out := fmt.Sprintf("%s (document %d", s.File, s.Doc)
	if s.Item > 0 {
		out += fmt.Sprintf(", item %d", s.Item)
	}
	return out + ")"
}

// Object is a decoded object with its origin.
type Object[T any] struct {
	Source Source
	Obj    *T
}

// Kinds netward reads.
const (
	KindNamespace     = "Namespace"
	KindPod           = "Pod"
	KindNode          = "Node"
	KindNetworkPolicy = "NetworkPolicy"
	KindCNP           = "CiliumNetworkPolicy"
	KindCCNP          = "CiliumClusterwideNetworkPolicy"
)

// Objects is everything read from a set of inputs.
type Objects struct {
	Namespaces      []Object[corev1.Namespace]
	Pods            []Object[corev1.Pod]
	Nodes           []Object[corev1.Node]
	NetworkPolicies []Object[networkingv1.NetworkPolicy]
	CNPs            []Object[CiliumNetworkPolicy]
	CCNPs           []Object[CiliumClusterwideNetworkPolicy]
	// Notes are informational: objects of other kinds that were skipped.
	Notes []string
}

// ObjectError is every problem found in one object, with where it is.
type ObjectError struct {
	Source    Source
	Kind      string
	Namespace string
	Name      string
	Errs      field.ErrorList
}

// Ref names the object as kind namespace/name (or kind name when cluster-scoped).
func (e *ObjectError) Ref() string {
	if e.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", e.Kind, e.Namespace, e.Name)
	}
	if e.Name == "" {
		return e.Kind
	}
	return fmt.Sprintf("%s %s", e.Kind, e.Name)
}

func (e *ObjectError) Error() string {
	var b strings.Builder
	for i, fe := range e.Errs {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s: %s: %s", e.Source, e.Ref(), fe.Error())
	}
	return b.String()
}

// Load reads every path: a file, a directory (recursively, *.yaml, *.yml and *.json), or "-"
// for stdin. It returns what it could decode and one error per unreadable input or
// undecodable object; callers decide whether partial input is acceptable.
func Load(paths []string, stdin io.Reader) (*Objects, []error) {
	objs := &Objects{}
	var errs []error
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				errs = append(errs, fmt.Errorf("reading stdin: %w", err))
				continue
			}
			errs = append(errs, objs.decodeStream("-", data)...)
			continue
		}
		files, err := expand(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, objs.decodeStream(f, data)...)
		}
	}
	return objs, errs
}

func expand(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	return files, nil
}

// LoadBytes decodes one in-memory stream, named name in errors.
func LoadBytes(name string, data []byte) (*Objects, []error) {
	objs := &Objects{}
	return objs, objs.decodeStream(name, data)
}

func (o *Objects) decodeStream(name string, data []byte) []error {
	var errs []error
	dec := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			errs = append(errs, fmt.Errorf("%s (document %d): not valid YAML or JSON: %v", name, doc, err))
			break
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		errs = append(errs, o.decodeObject(Source{File: name, Doc: doc}, raw)...)
	}
	return errs
}

type typeHeader struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// Append adds every object of o2 (and its notes) after o's.
func (o *Objects) Append(o2 *Objects) {
	o.Namespaces = append(o.Namespaces, o2.Namespaces...)
	o.Pods = append(o.Pods, o2.Pods...)
	o.Nodes = append(o.Nodes, o2.Nodes...)
	o.NetworkPolicies = append(o.NetworkPolicies, o2.NetworkPolicies...)
	o.CNPs = append(o.CNPs, o2.CNPs...)
	o.CCNPs = append(o.CCNPs, o2.CCNPs...)
	o.Notes = append(o.Notes, o2.Notes...)
}

// AddRaw decodes one JSON object (or a List) read from elsewhere, e.g. a cluster, with the
// same strict rules as files.
func (o *Objects) AddRaw(src Source, raw []byte) []error { return o.decodeObject(src, raw) }

func (o *Objects) decodeObject(src Source, raw []byte) []error {
	var h typeHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return []error{&ObjectError{Source: src, Kind: "object", Errs: decodeErrors(err)}}
	}
	oe := &ObjectError{Source: src, Kind: h.Kind, Namespace: h.Metadata.Namespace, Name: h.Metadata.Name}
	if h.Kind == "" {
		oe.Kind = "object"
		oe.Errs = append(oe.Errs, field.Required(field.NewPath("kind"), "every object needs apiVersion and kind"))
		return []error{oe}
	}
	if strings.HasSuffix(h.Kind, "List") && h.Items != nil {
		var errs []error
		for i, item := range h.Items {
			s := src
			s.Item = i + 1
			errs = append(errs, o.decodeObject(s, item)...)
		}
		return errs
	}
	group, _, _ := strings.Cut(h.APIVersion, "/")
	if !strings.Contains(h.APIVersion, "/") {
		group = ""
	}
	var err error
	switch {
	case h.Kind == KindNamespace && h.APIVersion == "v1":
		err = decodeInto(&o.Namespaces, src, raw, false)
	case h.Kind == KindPod && h.APIVersion == "v1":
		err = decodeInto(&o.Pods, src, raw, false)
	case h.Kind == KindNode && h.APIVersion == "v1":
		err = decodeInto(&o.Nodes, src, raw, false)
	case h.Kind == KindNetworkPolicy && h.APIVersion == "networking.k8s.io/v1":
		err = decodeInto(&o.NetworkPolicies, src, raw, true)
	case h.Kind == KindCNP && h.APIVersion == "cilium.io/v2":
		err = decodeInto(&o.CNPs, src, raw, true)
	case h.Kind == KindCCNP && h.APIVersion == "cilium.io/v2":
		err = decodeInto(&o.CCNPs, src, raw, true)
	case group == "cilium.io" && (h.Kind == KindCNP || h.Kind == KindCCNP):
		oe.Errs = append(oe.Errs, field.NotSupported(field.NewPath("apiVersion"), h.APIVersion, []string{"cilium.io/v2"}))
		return []error{oe}
	default:
		o.Notes = append(o.Notes, fmt.Sprintf("%s: skipped %s %s (not a kind netward reads)", src, h.APIVersion, oe.Ref()))
		return nil
	}
	if err != nil {
		oe.Errs = append(oe.Errs, decodeErrors(err)...)
		return []error{oe}
	}
	return nil
}

// decodeInto decodes raw into a new T appended to list. Policies are decoded strictly: an
// unknown or misspelt field in a policy is an error (the API server would prune it silently,
// and a pruned peer or port is a policy that does something else than its author meant).
func decodeInto[T any](list *[]Object[T], src Source, raw []byte, strict bool) error {
	obj := new(T)
	if strict {
		strictErrs, err := sigsjson.UnmarshalStrict(raw, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			return err
		}
		if len(strictErrs) > 0 {
			return errors.Join(strictErrs...)
		}
	} else if err := json.Unmarshal(raw, obj); err != nil {
		return err
	}
	*list = append(*list, Object[T]{Source: src, Obj: obj})
	return nil
}

// decodeErrors turns JSON decoding errors into field errors with a path.
func decodeErrors(err error) field.ErrorList {
	var out field.ErrorList
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var te *json.UnmarshalTypeError
		if errors.As(e, &te) {
			p := te.Field
			if p == "" {
				p = "<root>"
			}
			msg := fmt.Sprintf("must be of type %s, not %s", jsonTypeName(te.Type.Kind().String()), te.Value)
			switch {
			case te.Type.Kind().String() == "string" && te.Value == "number":
				msg += " (quote it, as the cilium.io/v2 schema requires)"
			case te.Type.Kind().String() == "string" && te.Value == "bool":
				msg += " (YAML reads y, n, yes, no, on, off, true and false as booleans: quote the value)"
			}
			out = append(out, field.Invalid(field.NewPath(p), nil, msg))
			continue
		}
		msg := e.Error()
		msg = strings.TrimPrefix(msg, "json: ")
		if strings.HasPrefix(msg, "unknown field ") {
			name := strings.Trim(strings.TrimPrefix(msg, "unknown field "), `"`)
			out = append(out, field.Invalid(field.NewPath(name), nil, "unknown field (misspelt, or not in this kind's schema)"))
			continue
		}
		if strings.HasPrefix(msg, "duplicate field ") {
			name := strings.Trim(strings.TrimPrefix(msg, "duplicate field "), `"`)
			out = append(out, field.Duplicate(field.NewPath(name), nil))
			continue
		}
		out = append(out, field.Invalid(field.NewPath("<root>"), nil, msg))
	}
	return out
}

func jsonTypeName(goKind string) string {
	switch goKind {
	case "slice", "array":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	case "int", "int32", "int64", "uint16", "uint32", "float64":
		return "integer"
	case "bool":
		return "boolean"
	}
	return goKind
}
