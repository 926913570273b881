package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/policy"
)

func newAuditCommand() *cobra.Command {
	var in inputFlags
	var output, failOn string
	cmd := &cobra.Command{
		Use:   "audit -f PATH [-o text|json] [--fail-on warning|error]",
		Short: "Find policy hazards: L7 rules bypassed, rules that select nothing, CIDRs that miss pods, denies that override allows, ...",
		Long: `Audit the policies: every finding has a stable code (see docs/audit.md), a severity
(info, warning, error), the objects involved and an explanation computed from the compiled
policy maps.

Exit 0 when no finding is at or above --fail-on (default error), 1 otherwise, 2 on invalid
input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			threshold, ok := analysis.ParseSeverity(failOn)
			if !ok {
				return &exitError{2, fmt.Errorf("--fail-on %q: want info, warning or error", failOn)}
			}
			if output != "text" && output != "json" && output != "" {
				return &exitError{2, fmt.Errorf("-o %q: want text or json", output)}
			}
			objs, c, err := auditLoad(&in, cmd)
			if err != nil {
				return err
			}
			findings := analysis.Audit(c, objs)
			w := cmd.OutOrStdout()
			if output == "json" {
				if findings == nil {
					findings = []analysis.Finding{}
				}
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"findings": findings, "summary": summarize(findings)}); err != nil {
					return err
				}
			} else {
				printFindings(w, findings)
			}
			for _, f := range findings {
				if f.Severity >= threshold {
					return &exitError{1, nil}
				}
			}
			return nil
		},
	}
	in.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().StringVar(&failOn, "fail-on", "error", "exit 1 when a finding has this severity or higher: info, warning or error")
	return cmd
}

// auditLoad is inputFlags.load that also returns the objects: the audit needs what the
// engine does not keep (policyTypes, host policies).
func auditLoad(f *inputFlags, cmd *cobra.Command) (*api.Objects, *cluster.Cluster, error) {
	if len(f.files) == 0 {
		return nil, nil, &exitError{2, errors.New("no input: give manifests with -f FILE|DIR|-")}
	}
	mode, ok := policy.ParseCIDRMatchMode(f.cidrMatchMode)
	if !ok {
		return nil, nil, &exitError{2, fmt.Errorf("--cidr-match-mode %q: want \"\", nodes, pods or nodes,pods", f.cidrMatchMode)}
	}
	objs, errs := api.Load(f.files, cmd.InOrStdin())
	errs = append(errs, api.Validate(objs)...)
	if len(errs) > 0 {
		printErrors(cmd.ErrOrStderr(), errs)
		return nil, nil, &exitError{2, fmt.Errorf("%d invalid input(s); nothing was evaluated", len(errs))}
	}
	for _, n := range objs.Notes {
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
	}
	opts := cluster.Options{Policy: policy.Options{CIDRMatch: mode, AllowLocalhost: f.allowLocalhost}}
	c, err := cluster.Build(objs, opts)
	if err != nil {
		return nil, nil, &exitError{2, err}
	}
	return objs, c, nil
}

func summarize(fs []analysis.Finding) map[string]int {
	out := map[string]int{"error": 0, "warning": 0, "info": 0}
	for _, f := range fs {
		out[f.Severity.String()]++
	}
	return out
}

func printFindings(w io.Writer, fs []analysis.Finding) {
	for _, f := range fs {
		fmt.Fprintf(w, "%s %s: %s\n", strings.ToUpper(f.Severity.String()), f.Code, f.Title)
		for i, o := range f.Objects {
			label := "objects:"
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(w, "  %-9s %s\n", label, o)
		}
		if len(f.Pods) > 0 {
			fmt.Fprintf(w, "  %-9s %s\n", "pods:", strings.Join(f.Pods, ", "))
		}
		for _, line := range wrap(f.Explanation, 96) {
			fmt.Fprintf(w, "  %s\n", line)
		}
		fmt.Fprintln(w)
	}
	s := summarize(fs)
	fmt.Fprintf(w, "%d finding(s): %d error, %d warning, %d info\n", len(fs), s["error"], s["warning"], s["info"])
}

// wrap breaks text into lines of at most width characters at spaces.
func wrap(text string, width int) []string {
	var lines []string
	var cur strings.Builder
	n := 0 // runes in cur
	for _, word := range strings.Fields(text) {
		wn := len([]rune(word))
		if n > 0 && n+1+wn > width {
			lines = append(lines, cur.String())
			cur.Reset()
			n = 0
		}
		if n > 0 {
			cur.WriteByte(' ')
			n++
		}
		cur.WriteString(word)
		n += wn
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}
