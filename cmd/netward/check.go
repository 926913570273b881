package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/netward/netward/analysis"
)

func newCheckCommand() *cobra.Command {
	var in inputFlags
	var expect, output string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "check -f PATH --expect FILE",
		Short: "Assert expected flows (policy unit tests): exit 0 when all hold, 1 when any fails",
		Long: `Assert expected flows. FILE has one flow a line, '#' starts a comment:

  FROM TO PORT/PROTO VERDICT [http METHOD PATH [Header-Name:value ...]]

FROM/TO: ns/pod, an IP outside the cluster, host (the node of the other endpoint) or
node:NAME. PORT/PROTO: 80/TCP, 53/UDP, 80/SCTP, 0/ICMP (echo). VERDICT: allow or deny.
Exit 0 when every line holds, 1 when any does not, 2 on invalid input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if expect == "" {
				return &exitError{2, fmt.Errorf("--expect FILE is required")}
			}
			fh, err := os.Open(expect)
			if err != nil {
				return &exitError{2, err}
			}
			exps, errs := analysis.ParseExpectations(fh)
			fh.Close()
			if len(errs) > 0 {
				for _, e := range errs {
					fmt.Fprintf(cmd.ErrOrStderr(), "error: %s: %v\n", expect, e)
				}
				return &exitError{2, fmt.Errorf("%s: %d invalid line(s)", expect, len(errs))}
			}
			c, err := in.load(cmd)
			if err != nil {
				return err
			}
			rep, errs := analysis.Check(c, exps)
			if len(errs) > 0 {
				for _, e := range errs {
					fmt.Fprintf(cmd.ErrOrStderr(), "error: %s: %v\n", expect, e)
				}
				return &exitError{2, fmt.Errorf("%s: %d flow(s) cannot be decided", expect, len(errs))}
			}
			w := cmd.OutOrStdout()
			switch output {
			case "json":
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			case "text", "":
				for _, f := range rep.Flows {
					if f.Pass && !verbose {
						continue
					}
					status := "PASS"
					if !f.Pass {
						status = "FAIL"
					}
					desc := f.From + " -> " + f.To + " " + f.Port
					if f.HTTP != "" {
						desc += " http " + f.HTTP
					}
					if f.DNS != "" {
						desc += " dns " + f.DNS
					}
					fmt.Fprintf(w, "%s line %d: %s: expected %s, got %s\n    %s\n", status, f.Line, desc, f.Expected, f.Actual, f.Reason)
				}
				fmt.Fprintf(w, "%d passed, %d failed\n", rep.Passed, rep.Failed)
			default:
				return &exitError{2, fmt.Errorf("-o %q: want text or json", output)}
			}
			if rep.Failed > 0 {
				return &exitError{1, nil}
			}
			return nil
		},
	}
	in.register(cmd)
	cmd.Flags().StringVar(&expect, "expect", "", "file of expected flows")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the flows that pass, with their reasons")
	return cmd
}
