package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/netward/netward/agent"
)

func newStatusCommand() *cobra.Command {
	var cf clientFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what a node's agent enforces: its policy source, revision, problems",
		Long: `Show the state of a node's agent: where its policies come from (a directory or a
cluster), what the datapath enforces (current, last-good, restored), the policy revision,
the rejected input or the policies left out as invalid, and, with a cluster, how many
per-node status entries are still to be written. Exit 1 when the agent is not healthy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				return &exitError{1, err}
			}
			switch output {
			case "json":
				if err := writeJSONOut(cmd.OutOrStdout(), st); err != nil {
					return err
				}
			case "text", "":
				printStatus(cmd.OutOrStdout(), st)
			default:
				return &exitError{2, fmt.Errorf("-o %q: want text or json", output)}
			}
			// The agent's own verdict (/healthz), not a second opinion computed here.
			msg, ok, err := c.Health(ctx)
			if err != nil {
				return &exitError{1, err}
			}
			if !ok {
				return &exitError{1, fmt.Errorf("agent of %s: %s", st.Node, msg)}
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func printStatus(w io.Writer, st agent.Status) {
	source := "directory " + st.PoliciesDir
	if st.Kubernetes != "" {
		source = "cluster " + st.Kubernetes
	}
	fmt.Fprintf(w, "node:        %s\n", st.Node)
	fmt.Fprintf(w, "source:      %s\n", source)
	fmt.Fprintf(w, "enforcing:   %s, policy revision %d", st.Enforcing, st.PolicyRevision)
	if st.LastGoodLoad != nil {
		fmt.Fprintf(w, " (applied %s)", st.LastGoodLoad.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	mode := "enforce"
	if st.Audit {
		mode = "audit (verdicts reported, nothing dropped)"
	}
	loaded := "loaded"
	if !st.DatapathLoaded {
		loaded = "NOT loaded"
	}
	fmt.Fprintf(w, "datapath:    %s, %s\n", loaded, mode)
	fmt.Fprintf(w, "endpoints:   %d; identities %d; ipcache entries %d\n", st.Endpoints, st.Identities, st.IPCacheEntries)
	if p := st.Proxy; p != nil {
		fmt.Fprintf(w, "L7 proxies:  HTTP on %d (ingress) and %d (egress), %d open connections (%d refused since start); DNS on %d, %d lookups in flight, %d TCP connections (%d dropped since start)\n",
			p.HTTPIngressPort, p.HTTPEgressPort, p.HTTPOpenConnections, p.HTTPRefusedConnections, p.DNSPort, p.DNSInFlight, p.DNSTCPConnections, p.DNSDropped)
	}
	if st.Kubernetes != "" {
		fmt.Fprintf(w, "status:      %d policy status entries to write\n", st.StatusPending)
	}
	if len(st.InvalidPolicies) > 0 {
		fmt.Fprintf(w, "left out:    %d invalid policy issue(s); every other policy enforces\n", len(st.InvalidPolicies))
		for _, is := range st.InvalidPolicies {
			fmt.Fprintf(w, "  %s\n", is)
		}
	}
	if st.LastError != nil {
		fmt.Fprintf(w, "rejected:    %s (%s)\n", st.LastError.Message, st.LastError.Time.UTC().Format(time.RFC3339))
		for _, is := range st.LastError.Errors {
			fmt.Fprintf(w, "  %s\n", is)
		}
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "warning:     %s\n", warn)
	}
	if st.MetricsError != "" {
		fmt.Fprintf(w, "metrics:     not served: %s\n", st.MetricsError)
	}
}
