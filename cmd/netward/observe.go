package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/netward/netward/agent"
)

func newObserveCommand() *cobra.Command {
	var cf clientFlags
	var pod, verdict, output string
	var follow bool
	var last int
	cmd := &cobra.Command{
		Use:   "observe",
		Short: "Show live flow verdicts of a node's datapath and the policies behind them",
		Long: `Show the datapath's verdicts as they happen: time, source and destination (pod and
identity), port, verdict (forwarded, dropped, redirected, or audit in audit mode) and the
policy rules that allowed or denied the flow (for a default deny, the rules that select the
endpoint). The agent's recent events come first. Verdicts are reported for new flows and
for every drop.

Connections redirected to the L7 proxy add one event per HTTP request (HTTP/1.x request or
HTTP/2 stream): method, host and path, the proxy's verdict (allowed: forwarded, denied: 403
"Access denied", error: malformed or destination unreachable) and the rules that admitted
the request or, when denied, the rules consulted. Redirects to a parser netward has no
proxy for (DNS, TLS, CRD) are denied and reported the same way.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch verdict {
			case "", "forwarded", "dropped", "redirected", "audit", "error":
			default:
				return &exitError{2, fmt.Errorf("--verdict %q: want forwarded, dropped, redirected, audit or error", verdict)}
			}
			if output != "text" && output != "json" && output != "" {
				return &exitError{2, fmt.Errorf("-o %q: want text or json", output)}
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			err = c.Events(ctx, agent.EventFilter{Pod: pod, Verdict: verdict, Follow: follow, Last: last}, func(ev agent.Event) error {
				if output == "json" {
					return enc.Encode(ev)
				}
				printEvent(out, ev)
				return nil
			})
			if err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&pod, "pod", "", "only flows from or to this pod (namespace/name)")
	cmd.Flags().StringVar(&verdict, "verdict", "", "only this verdict: forwarded, dropped, redirected, audit or error (L7)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", true, "keep streaming new verdicts (--follow=false prints the recent ones and exits)")
	cmd.Flags().IntVar(&last, "last", 0, "at most this many recent verdicts first (0: all the agent keeps)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (one event a line)")
	return cmd
}

func peerString(p agent.Peer) string {
	name := p.Name()
	if p.Pod == "" {
		kind := p.Kind
		if kind == "" {
			kind = "world"
		}
		if name == p.IP {
			name = kind
		}
		name += " " + p.IP
	}
	return fmt.Sprintf("%s (%d)", name, p.Identity)
}

func printEvent(w io.Writer, ev agent.Event) {
	port := fmt.Sprintf("%d/%s", ev.Port, ev.Proto)
	if ev.Proto == "ICMP" {
		port = fmt.Sprintf("ICMP type %d", ev.Port)
	}
	verdict := strings.ToUpper(ev.Verdict)
	line := fmt.Sprintf("%s %s -> %s %s %s %s (%s)", ev.Time.Format("15:04:05.000"), peerString(ev.Source),
		peerString(ev.Destination), port, ev.Direction, verdict, ev.Reason)
	if l7 := l7String(ev); l7 != "" {
		line += " " + l7
	}
	if len(ev.Origins) > 0 {
		line += " by " + strings.Join(ev.Origins, "; ")
	}
	fmt.Fprintln(w, line)
}

// l7String renders the L7 part of a proxy event: `HTTP/1.1 GET host/path denied 403: reason`.
func l7String(ev agent.Event) string {
	if ev.L7Protocol == "" {
		return ""
	}
	if ev.L7Protocol == "dns" && ev.DNSVerdict != "" {
		s := fmt.Sprintf("[DNS %s %s %s", ev.DNSType, ev.DNSName, ev.DNSVerdict)
		if ev.DNSRcode != "" {
			s += " " + ev.DNSRcode
		}
		if ev.L7Reason != "" && ev.DNSVerdict != "allowed" {
			s += ": " + ev.L7Reason
		}
		return s + "]"
	}
	if ev.L7Protocol != "http" {
		return fmt.Sprintf("[%s: %s]", ev.L7Protocol, ev.L7Reason)
	}
	proto := ev.HTTPVersion
	if proto == "" {
		proto = "HTTP"
	}
	s := fmt.Sprintf("[%s %s %q host=%q %s", proto, ev.HTTPMethod, ev.HTTPPath, ev.HTTPHost, ev.HTTPVerdict)
	if ev.HTTPStatus != 0 {
		s += fmt.Sprintf(" %d", ev.HTTPStatus)
	}
	for _, op := range ev.HTTPHeaderOps {
		s += " {" + op + "}"
	}
	if ev.L7Reason != "" && ev.HTTPVerdict != "allowed" {
		s += ": " + ev.L7Reason
	}
	return s + "]"
}
