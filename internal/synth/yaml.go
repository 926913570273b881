package synth

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"github.com/netward/netward/api"
)

// Marshal renders every object as one multi-document YAML stream: namespaces, nodes, pods,
// NetworkPolicies, CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies, in the order of
// objs (for generated objects, document i is the object whose Source.Doc is i).
func Marshal(objs *api.Objects) ([]byte, error) {
	var b bytes.Buffer
	for _, part := range sections(objs) {
		if err := writeDocs(&b, part.objs); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

type section struct {
	file string
	objs []any
}

func sections(objs *api.Objects) []section {
	return []section{
		{"namespaces.yaml", anys(objs.Namespaces)},
		{"nodes.yaml", anys(objs.Nodes)},
		{"pods.yaml", anys(objs.Pods)},
		{filepath.Join("policies", "networkpolicies.yaml"), anys(objs.NetworkPolicies)},
		{filepath.Join("policies", "ciliumnetworkpolicies.yaml"), anys(objs.CNPs)},
		{filepath.Join("policies", "ciliumclusterwidenetworkpolicies.yaml"), anys(objs.CCNPs)},
	}
}

func anys[T any](list []api.Object[T]) []any {
	out := make([]any, len(list))
	for i, o := range list {
		out[i] = o.Obj
	}
	return out
}

func writeDocs(b *bytes.Buffer, objs []any) error {
	for _, o := range objs {
		data, err := yaml.Marshal(o)
		if err != nil {
			return fmt.Errorf("synth: marshalling %T: %w", o, err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return nil
}

// WriteDir writes objs under dir (created if needed) as multi-document YAML files:
// namespaces.yaml, nodes.yaml, pods.yaml and policies/{networkpolicies,
// ciliumnetworkpolicies,ciliumclusterwidenetworkpolicies}.yaml. Empty sections are not
// written. The directory loads with api.Load.
func WriteDir(dir string, objs *api.Objects) error {
	for _, s := range sections(objs) {
		if len(s.objs) == 0 {
			continue
		}
		var b bytes.Buffer
		if err := writeDocs(&b, s.objs); err != nil {
			return err
		}
		path := filepath.Join(dir, s.file)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
