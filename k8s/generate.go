package k8s

import "path/filepath"

//go:generate go run ./gen -root ..

// DeployDir is where the generated deployment lives, relative to the repository root.
const DeployDir = "deploy/kubernetes"

// GenerateDeployFiles computes every generated file under deploy/kubernetes (the CRDs and
// netward.yaml, the default `netward install` output), keyed by path relative to the
// repository root, from the Go sources under root.
func GenerateDeployFiles(root string) (map[string][]byte, error) {
	docs, err := SourceDocs(root)
	if err != nil {
		return nil, err
	}
	crds, err := GenerateCRDFiles(docs)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for name, b := range crds {
		out[filepath.Join(DeployDir, "crds", name)] = b
	}
	all, err := InstallYAML(InstallOptions{CRDs: crds})
	if err != nil {
		return nil, err
	}
	out[filepath.Join(DeployDir, "netward.yaml")] = all
	return out, nil
}
