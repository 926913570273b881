package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/netward/netward/agent"
)

// clientFlags are the flags of the commands that talk to an agent.
type clientFlags struct {
	socket string
	node   string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.socket, "api-socket", "", "the agent's API socket")
	cmd.Flags().StringVar(&f.node, "node", "", "the node whose agent to ask (socket /run/netward/NODE.sock)")
}

func (f *clientFlags) client() (*agent.Client, error) {
	s, err := agentSocket(f.socket, f.node)
	if err != nil {
		return nil, &exitError{2, err}
	}
	return agent.NewClient(s), nil
}

func newEndpointCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "endpoint",
		Short: "Show the endpoints an agent enforces (list, get)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newEndpointListCommand(), newEndpointGetCommand())
	return cmd
}

func newEndpointListCommand() *cobra.Command {
	var cf clientFlags
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the endpoints of a node's agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			eps, err := c.Endpoints(ctx)
			if err != nil {
				return &exitError{1, err}
			}
			switch output {
			case "json":
				return writeJSONOut(cmd.OutOrStdout(), eps)
			case "text", "":
				printEndpoints(cmd.OutOrStdout(), eps)
				return nil
			}
			return &exitError{2, fmt.Errorf("-o %q: want text or json", output)}
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func newEndpointGetCommand() *cobra.Command {
	var cf clientFlags
	var output string
	cmd := &cobra.Command{
		Use:   "get ID|NAMESPACE/NAME|CONTAINER-ID",
		Short: "Show one endpoint and its programmed policy map",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			ep, err := c.Endpoint(ctx, args[0])
			if err != nil {
				return &exitError{1, err}
			}
			switch output {
			case "json":
				return writeJSONOut(cmd.OutOrStdout(), ep)
			case "text", "":
				printEndpoint(cmd.OutOrStdout(), ep)
				return nil
			}
			return &exitError{2, fmt.Errorf("-o %q: want text or json", output)}
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func enforcement(enforced, defaultDeny bool) string {
	switch {
	case !enforced:
		return "-"
	case defaultDeny:
		return "enforced"
	}
	return "enforced(default-allow)"
}

func printEndpoints(w io.Writer, eps []agent.Endpoint) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPOD\tIDENTITY\tIPS\tINGRESS\tEGRESS\tENTRIES\tREVISION\tSTATE")
	for _, e := range eps {
		state := e.State
		if e.Error != "" {
			state += ": " + e.Error
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\n", e.ID, e.Pod, e.Identity, strings.Join(e.IPs, ","),
			enforcement(e.IngressEnforced, e.IngressDefaultDeny), enforcement(e.EgressEnforced, e.EgressDefaultDeny),
			e.MapEntries, e.PolicyRevision, state)
	}
	tw.Flush()
}

func printEndpoint(w io.Writer, e agent.Endpoint) {
	fmt.Fprintf(w, "Endpoint %d: %s\n", e.ID, e.Pod)
	fmt.Fprintf(w, "  container:  %s\n", e.ContainerID)
	fmt.Fprintf(w, "  interface:  %s (netns %s)\n", e.HostIfName, e.Netns)
	fmt.Fprintf(w, "  addresses:  %s\n", strings.Join(e.IPs, ", "))
	fmt.Fprintf(w, "  identity:   %d %s\n", e.Identity, strings.Join(e.Labels, ","))
	if !e.KnownPod {
		fmt.Fprintf(w, "  pod:        no Pod object in the policy directory (no pod labels)\n")
	}
	fmt.Fprintf(w, "  ingress:    %s\n", enforcement(e.IngressEnforced, e.IngressDefaultDeny))
	fmt.Fprintf(w, "  egress:     %s\n", enforcement(e.EgressEnforced, e.EgressDefaultDeny))
	if e.Audit {
		fmt.Fprintf(w, "  audit:      on (nothing is dropped)\n")
	}
	fmt.Fprintf(w, "  revision:   %d\n", e.PolicyRevision)
	fmt.Fprintf(w, "  state:      %s\n", e.State)
	if e.Error != "" {
		fmt.Fprintf(w, "  error:      %s\n", e.Error)
	}
	fmt.Fprintf(w, "  map:        %d entries\n", len(e.Map))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range e.Map {
		fmt.Fprintf(tw, "    %s\t%s\t%s\n", m.Key, m.Verdict, strings.Join(m.Origins, "; "))
	}
	tw.Flush()
}
