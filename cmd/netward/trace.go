package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/policy"
)

func newTraceCommand() *cobra.Command {
	var in inputFlags
	var from, to, port, method, path, dnsName, output string
	var headers []string
	cmd := &cobra.Command{
		Use:   "trace -f PATH --from FROM --to TO --port 80/TCP",
		Short: "Decide one flow and explain which policy entry and rules decided it",
		Long: `Decide one flow and explain it. FROM and TO are ns/pod, an IP address, host (the node
of the pod at the other end) or node:NAME. --port is PORT/PROTO: 80/TCP, 53/UDP, 80/SCTP,
0/ICMP (an echo request). Add --http-method and --http-path (and --http-header 'Name: value')
to decide an HTTP request, or --dns-name to decide a DNS lookup (with a UDP or TCP port).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" || port == "" {
				return &exitError{2, fmt.Errorf("--from, --to and --port are required")}
			}
			proto, p, err := analysis.ParsePortProto(port)
			if err != nil {
				return &exitError{2, fmt.Errorf("--port %w", err)}
			}
			f := analysis.Flow{From: from, To: to, Proto: proto, Port: p}
			if method != "" || path != "" || len(headers) > 0 {
				if method == "" || path == "" {
					return &exitError{2, fmt.Errorf("an HTTP request needs both --http-method and --http-path")}
				}
				if f.HTTP, err = analysis.NewRequest(method, path, headers); err != nil {
					return &exitError{2, fmt.Errorf("--http-header %w", err)}
				}
			}
			if dnsName != "" {
				if f.HTTP != nil {
					return &exitError{2, fmt.Errorf("a flow is an HTTP request or a DNS lookup, not both: --dns-name with --http-*")}
				}
				if proto != policy.ProtoUDP && proto != policy.ProtoTCP {
					return &exitError{2, fmt.Errorf("--dns-name needs a UDP or TCP --port, not %s", port)}
				}
				if _, err := l7.CompileDNSRule(dnsName, ""); err != nil {
					return &exitError{2, fmt.Errorf("--dns-name: %w", err)}
				}
				f.DNS = dnsName
			}
			c, err := in.load(cmd)
			if err != nil {
				return err
			}
			res, err := analysis.Trace(c, f)
			if err != nil {
				return &exitError{2, err}
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			case "text", "":
				printTrace(cmd.OutOrStdout(), res)
				return nil
			}
			return &exitError{2, fmt.Errorf("-o %q: want text or json", output)}
		},
	}
	in.register(cmd)
	cmd.Flags().StringVar(&from, "from", "", "source: ns/pod, IP, host or node:NAME")
	cmd.Flags().StringVar(&to, "to", "", "destination: ns/pod, IP, host or node:NAME")
	cmd.Flags().StringVar(&port, "port", "", "PORT/PROTO, e.g. 80/TCP, 53/UDP, 0/ICMP")
	cmd.Flags().StringVar(&method, "http-method", "", "HTTP method of the request")
	cmd.Flags().StringVar(&path, "http-path", "", "HTTP path of the request")
	cmd.Flags().StringArrayVar(&headers, "http-header", nil, "HTTP header 'Name: value'; repeatable")
	cmd.Flags().StringVar(&dnsName, "dns-name", "", "name of a DNS lookup, e.g. api.example.com")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func printTrace(w io.Writer, r *analysis.Result) {
	fmt.Fprintf(w, "%s -> %s %s: %s\n", r.From, r.To, r.Port, strings.ToUpper(r.Verdict))
	for _, s := range []*analysis.Side{r.Egress, r.Ingress} {
		if s == nil {
			continue
		}
		verdict := "allows"
		if !s.Allowed {
			verdict = "denies"
		}
		fmt.Fprintf(w, "\n%s of %s (identity %d) %s, peer %s (identity %d)\n", s.Direction, s.Endpoint, s.Identity, verdict, s.Peer, s.PeerID)
		if s.Entry != nil {
			fmt.Fprintf(w, "  map entry:  %s -> %s (precedence %#x)\n", s.Entry.Key, s.Entry.Verdict, s.Entry.Precedence)
			for _, o := range s.Entry.Origins {
				fmt.Fprintf(w, "  rule:       %s\n", o)
			}
		}
		if s.HTTP != nil {
			for _, rr := range s.HTTP.Rules {
				fmt.Fprintf(w, "  http rule:  %s\n", rr)
			}
		}
		if s.DNS != nil {
			for _, rr := range s.DNS.Rules {
				fmt.Fprintf(w, "  dns rule:   %s\n", rr)
			}
		}
		fmt.Fprintf(w, "  why:        %s\n", s.Reason)
		if s.Enforcement != "" {
			fmt.Fprintf(w, "  netward:    %s\n", s.Enforcement)
		}
	}
}
