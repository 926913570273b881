// Command gen writes netward's generated Kubernetes deployment files (the CRDs under
// deploy/kubernetes/crds and deploy/kubernetes/netward.yaml) from the Go types. Run it
// through `go generate ./k8s`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/netward/netward/k8s"
)

func main() {
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	files, err := k8s.GenerateDeployFiles(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(*root, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(p, files[n], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", n)
	}
}
