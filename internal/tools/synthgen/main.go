// Command synthgen writes a synthetic cluster (internal/synth) as YAML manifests, for
// benchmarks of the netward commands and comparisons with other tools:
//
//	go run ./internal/tools/synthgen -pods 5000 -policies 1000 -out /tmp/c5k
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/netward/netward/internal/synth"
)

func main() {
	pods := flag.Int("pods", 1000, "number of pods")
	policies := flag.Int("policies", 300, "number of policies")
	seed := flag.Uint64("seed", 1, "random seed")
	knpOnly := flag.Bool("knp-only", false, "only Kubernetes NetworkPolicies (for tools that read no Cilium policies)")
	out := flag.String("out", "", "directory to write (created)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "synthgen: -out DIR is required")
		os.Exit(2)
	}
	cfg := synth.Sized(*pods, *policies)
	cfg.Seed = *seed
	if *knpOnly {
		cfg.Mix = synth.Mix{KNP: 1}
	}
	if err := cfg.Check(); err != nil {
		fmt.Fprintln(os.Stderr, "synthgen:", err)
		os.Exit(2)
	}
	if err := synth.WriteDir(*out, synth.Generate(cfg)); err != nil {
		fmt.Fprintln(os.Stderr, "synthgen:", err)
		os.Exit(1)
	}
}
