package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/policy"
	"github.com/netward/netward/report"
)

// matrixProgressInterval is how long a matrix computation runs before it reports progress on
// stderr, and how often it does then. Tests set it to 0.
var matrixProgressInterval = time.Second

func newMatrixCommand() *cobra.Command {
	var in inputFlags
	var output, focus, port, direction string
	cmd := &cobra.Command{
		Use:   "matrix -f PATH [-o table|json|csv|md|dot|html] [--focus ns/workload] [--port 8080/TCP] [--direction ingress|egress]",
		Short: "Print every allowed connection between workloads and outside peers",
		Long: `Print every allowed connection: pods grouped into workloads (one row for all replicas with
the same identity), the CIDR ranges the policies distinguish, the rest of the world, the host
and the remote nodes, with the ports and protocols the compiled policy maps allow and the
HTTP rules of connections that go through the L7 proxy ("TCP 8080 [HTTP GET /public.*]").

Output formats (-o): table (default), json (schema netward.matrix/v1), csv (one row per
connection and port range), md (a Markdown table for a pull-request comment), dot (Graphviz),
html (one self-contained page with a heat-map, a graph and a namespace filter).

--focus ns/workload keeps the connections from or to one workload (also accepted: ns/pod,
world, host, remote-node, a CIDR group); --direction ingress|egress keeps only those into or
out of it. --port PORT/PROTO keeps the connections that allow that port, with only the port
ranges containing it. Progress goes to stderr when the computation takes over a second.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := report.ParseFormat(output)
			if err != nil {
				return &exitError{2, fmt.Errorf("-o %w", err)}
			}
			dir, err := report.ParseDirection(direction)
			if err != nil {
				return &exitError{2, fmt.Errorf("--direction %w", err)}
			}
			if dir != report.Both && focus == "" {
				return &exitError{2, fmt.Errorf("--direction %s needs --focus ns/workload: it keeps the connections into or out of that workload", dir)}
			}
			var proto uint8
			var portNum uint16
			if port != "" {
				if proto, portNum, err = analysis.ParsePortProto(port); err != nil {
					return &exitError{2, fmt.Errorf("--port %w", err)}
				}
				if portNum == 0 && proto != policy.ProtoICMP && proto != policy.ProtoICMPv6 {
					return &exitError{2, fmt.Errorf("--port %q: port must be 1-65535", port)}
				}
			}

			stderr := &matrixStderr{w: cmd.ErrOrStderr()}
			cmd.SetErr(stderr)
			prog := startMatrixProgress(stderr, matrixProgressInterval)
			defer prog.stop()
			prog.set("loading and compiling the policies", 0, 0)
			c, err := in.load(cmd)
			if err != nil {
				return err
			}
			if focus != "" {
				if _, err := report.FocusGroups(analysis.Groups(c), focus); err != nil {
					return &exitError{2, fmt.Errorf("--focus %w", err)}
				}
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, cancel := signal.NotifyContext(ctx, os.Interrupt)
			defer cancel()
			m, err := analysis.BuildMatrix(ctx, c, analysis.MatrixOptions{Progress: func(done, total int) {
				prog.set("source groups", done, total)
			}})
			if err != nil {
				return err
			}
			var filters []string
			if focus != "" {
				if m, err = report.Focus(m, focus, dir); err != nil {
					return &exitError{2, fmt.Errorf("--focus %w", err)}
				}
				f := "focus " + focus
				if dir != report.Both {
					f += " (" + string(dir) + ")"
				}
				filters = append(filters, f)
			}
			if port != "" {
				m = report.Port(m, proto, portNum)
				filters = append(filters, "port "+analysis.PortString(proto, portNum))
			}
			prog.finish(fmt.Sprintf("%d groups, %d allowed connections", len(m.Groups), len(m.Connections)))
			return report.Write(cmd.OutOrStdout(), m, format, report.Options{Title: "netward matrix", Filters: strings.Join(filters, ", ")})
		},
	}
	in.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json, csv, md, dot or html")
	cmd.Flags().StringVar(&focus, "focus", "", "ns/workload: only connections from or to it")
	cmd.Flags().StringVar(&port, "port", "", "PORT/PROTO, e.g. 8080/TCP: only connections allowing it")
	cmd.Flags().StringVar(&direction, "direction", "", "with --focus: ingress (into the workload) or egress (out of it)")
	return cmd
}

// matrixStderr serializes writes: progress lines come from a ticker goroutine while the
// command writes notes and errors.
type matrixStderr struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *matrixStderr) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// progress reports a long computation on stderr: nothing during the first interval, then
// a line at most every interval — from the callbacks as work completes, and from a ticker
// when one step takes long — and a closing line if anything was reported.
type matrixProgress struct {
	mu          sync.Mutex
	w           io.Writer
	interval    time.Duration
	start, last time.Time
	stage       string
	done, total int
	printed     bool
	quit        chan struct{}
	wg          sync.WaitGroup
}

func startMatrixProgress(w io.Writer, interval time.Duration) *matrixProgress {
	p := &matrixProgress{w: w, interval: interval, start: time.Now(), quit: make(chan struct{})}
	tick := max(interval, 50*time.Millisecond)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case now := <-t.C:
				p.mu.Lock()
				p.report(now)
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// set records the current stage and reports it if a report is due.
func (p *matrixProgress) set(stage string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stage, p.done, p.total = stage, done, total
	p.report(time.Now())
}

// report prints the status line when the computation has run for an interval and the last
// line is an interval old; callers hold mu.
func (p *matrixProgress) report(now time.Time) {
	if p.stage == "" || now.Sub(p.start) < p.interval || (p.printed && now.Sub(p.last) < p.interval) {
		return
	}
	p.last, p.printed = now, true
	elapsed := now.Sub(p.start).Seconds()
	if p.total > 0 {
		fmt.Fprintf(p.w, "netward matrix: %d/%d %s (%d%%), %.1fs\n", p.done, p.total, p.stage, p.done*100/p.total, elapsed)
	} else {
		fmt.Fprintf(p.w, "netward matrix: %s, %.1fs\n", p.stage, elapsed)
	}
}

// finish stops reporting and, if anything was reported, says how it ended.
func (p *matrixProgress) finish(result string) {
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.printed {
		fmt.Fprintf(p.w, "netward matrix: done: %s in %.1fs\n", result, time.Since(p.start).Seconds())
		p.printed = false
	}
	p.stage = ""
}

func (p *matrixProgress) stop() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.wg.Wait()
}
