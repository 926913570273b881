package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func newMapCommand() *cobra.Command {
	var in inputFlags
	var pod, output string
	cmd := &cobra.Command{
		Use:   "map -f PATH --pod ns/name",
		Short: "Print the compiled policy map of a pod (what the datapath enforces)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := in.load(cmd)
			if err != nil {
				return err
			}
			ep, ok := c.Endpoint(pod)
			if !ok {
				return &exitError{2, fmt.Errorf("--pod %q: no such pod in the input", pod)}
			}
			p := c.Policy(ep)
			w := cmd.OutOrStdout()
			type row struct {
				Key        string   `json:"key"`
				Verdict    string   `json:"verdict"`
				Precedence uint32   `json:"precedence"`
				Origins    []string `json:"origins"`
			}
			var rows []row
			for _, ke := range p.Map.Entries() {
				r := row{Key: ke.Key.String(), Verdict: ke.Entry.String(), Precedence: uint32(ke.Entry.Precedence)}
				for _, o := range ke.Entry.Origins {
					r.Origins = append(r.Origins, o.String())
				}
				rows = append(rows, r)
			}
			if output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"pod": pod, "identity": ep.Identity.ID, "ingressEnforced": p.Ingress.Enforced,
					"ingressDefaultDeny": p.Ingress.DefaultDeny, "egressEnforced": p.Egress.Enforced, "egressDefaultDeny": p.Egress.DefaultDeny, "entries": rows})
			}
			fmt.Fprintf(w, "pod %s identity %d labels %s\n", pod, ep.Identity.ID, ep.Identity.Labels)
			fmt.Fprintf(w, "ingress: enforced=%v default-deny=%v; egress: enforced=%v default-deny=%v\n", p.Ingress.Enforced, p.Ingress.DefaultDeny, p.Egress.Enforced, p.Egress.DefaultDeny)
			if p.Err != nil {
				fmt.Fprintf(w, "error: %v\n", p.Err)
			}
			for _, r := range rows {
				fmt.Fprintf(w, "%-60s %-14s %v\n", r.Key, r.Verdict, r.Origins)
			}
			return nil
		},
	}
	in.register(cmd)
	cmd.Flags().StringVar(&pod, "pod", "", "ns/name of the pod")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
