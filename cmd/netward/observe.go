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
for every drop.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch verdict {
			case "", "forwarded", "dropped", "redirected", "audit":
			default:
				return &exitError{2, fmt.Errorf("--verdict %q: want forwarded, dropped, redirected or audit", verdict)}
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
	cmd.Flags().StringVar(&verdict, "verdict", "", "only this verdict: forwarded, dropped, redirected or audit")
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
	if len(ev.Origins) > 0 {
		line += " by " + strings.Join(ev.Origins, "; ")
	}
	fmt.Fprintln(w, line)
}
