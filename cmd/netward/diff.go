package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/netward/netward/analysis"
)

func newDiffCommand() *cobra.Command {
	var base, head inputFlags
	var output string
	var failOnWidening bool
	cmd := &cobra.Command{
		Use:   "diff --base PATH --head PATH",
		Short: "Allowed connections added, removed or changed between two sets of manifests",
		Long: `Compare the allowed traffic of two sets of manifests (for example the main branch and a
pull request): connections added, removed or changed (ports, L7), with the rules that decide
them now. With --fail-on-widening the exit code is 1 when anything became more open.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (len(base.files) == 0 && !base.fromCluster()) || len(head.files) == 0 {
				return &exitError{2, fmt.Errorf("--head and one of --base or --kubeconfig/--context (the live cluster as the base) are required")}
			}
			head.cidrMatchMode, head.allowLocalhost = base.cidrMatchMode, base.allowLocalhost
			bc, err := base.load(cmd)
			if err != nil {
				return err
			}
			hc, err := head.load(cmd)
			if err != nil {
				return err
			}
			d, err := analysis.DiffClusters(cmd.Context(), bc, hc)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch output {
			case "json":
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(d); err != nil {
					return err
				}
			case "md":
				printDiffMarkdown(w, d)
			case "text", "":
				printDiffText(w, d)
			default:
				return &exitError{2, fmt.Errorf("-o %q: want text, md or json", output)}
			}
			if failOnWidening && d.Widening {
				return &exitError{1, fmt.Errorf("the change widens allowed traffic")}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&base.files, "base", nil, "manifests before the change (file, directory or -); repeatable")
	base.registerCluster(cmd)
	cmd.Flags().StringArrayVar(&head.files, "head", nil, "manifests after the change (file, directory or -); repeatable")
	cmd.Flags().StringVar(&base.cidrMatchMode, "cidr-match-mode", "", `Cilium's policy-cidr-match-mode: "", "nodes", "pods" or "nodes,pods"`)
	cmd.Flags().BoolVar(&base.allowLocalhost, "allow-localhost", true, "the local node reaches its pods under ingress default deny")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text, md or json")
	cmd.Flags().BoolVar(&failOnWidening, "fail-on-widening", false, "exit 1 when any connection became more open")
	return cmd
}

func printDiffText(w io.Writer, d *analysis.Diff) {
	if len(d.Changes) == 0 {
		fmt.Fprintln(w, "no change in allowed traffic")
		return
	}
	for _, c := range d.Changes {
		fmt.Fprintf(w, "%s %s -> %s\n", strings.ToUpper(string(c.Kind)), c.From, c.To)
		for _, pc := range c.Changes {
			mark := " "
			if pc.Widening {
				mark = "+"
			}
			fmt.Fprintf(w, "  %s %s  =>  %s\n", mark, pc.Was, pc.Now)
			for _, r := range pc.Rules {
				fmt.Fprintf(w, "      rule: %s\n", r)
			}
			if len(pc.Rules) == 0 && pc.Reason != "" {
				fmt.Fprintf(w, "      why: %s\n", pc.Reason)
			}
		}
	}
	if d.Widening {
		fmt.Fprintln(w, "\nthe change widens allowed traffic (lines marked +)")
	}
}

func printDiffMarkdown(w io.Writer, d *analysis.Diff) {
	fmt.Fprintln(w, "### netward: change in allowed traffic")
	fmt.Fprintln(w)
	if len(d.Changes) == 0 {
		fmt.Fprintln(w, "No change in allowed traffic.")
		return
	}
	if d.Widening {
		fmt.Fprintln(w, "**This change widens allowed traffic** (rows marked :warning:).")
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "| | from | to | before | after | rules |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
	for _, c := range d.Changes {
		for _, pc := range c.Changes {
			mark := ""
			if pc.Widening {
				mark = ":warning:"
			}
			rules := strings.Join(pc.Rules, "<br>")
			if rules == "" {
				rules = esc(pc.Reason)
			}
			fmt.Fprintf(w, "| %s | `%s` | `%s` | %s | %s | %s |\n", mark, c.From, c.To, esc(pc.Was), esc(pc.Now), esc(rules))
		}
	}
}
