package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/policy"
)

// Table writes an aligned text table, one row per connection: FROM, TO, PORTS.
func Table(w io.Writer, m *analysis.Matrix) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tPORTS")
	for _, c := range m.Connections {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.From.Label(), c.To.Label(), Summary(c.Ports))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(m.Connections) == 0 {
		_, err := fmt.Fprintln(w, "(no allowed connections)")
		return err
	}
	return nil
}

// CSV writes one row per connection and port range, with a header:
// from,to,protocol,port_from,port_to,proxied,http,summary. from and to are group labels
// (ns/workload, a CIDR, world, host, remote-node); http joins the HTTP rules with " | ".
func CSV(w io.Writer, m *analysis.Matrix) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"from", "to", "protocol", "port_from", "port_to", "proxied", "http", "summary"}); err != nil {
		return err
	}
	for _, c := range m.Connections {
		for _, p := range c.Ports {
			lo, hi := portBounds(p)
			rec := []string{c.From.Label(), c.To.Label(), policy.ProtoName(p.Proto),
				strconv.Itoa(int(lo)), strconv.Itoa(int(hi)), strconv.FormatBool(p.Proxied),
				strings.Join(p.HTTP, " | "), p.String()}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// Markdown writes a GitHub-flavoured Markdown table for a pull-request comment, followed by
// the groups and their pods in a collapsed section.
func Markdown(w io.Writer, m *analysis.Matrix, opts Options) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", mdEscape(opts.title()))
	if opts.Filters != "" {
		fmt.Fprintf(&b, "Filtered: %s.\n\n", mdEscape(opts.Filters))
	}
	fmt.Fprintf(&b, "%d allowed connection%s between %d group%s.\n\n", len(m.Connections), plural(len(m.Connections)), len(m.Groups), plural(len(m.Groups)))
	if len(m.Connections) > 0 {
		b.WriteString("| From | To | Ports |\n|---|---|---|\n")
		for _, c := range m.Connections {
			ports := make([]string, len(c.Ports))
			for i, p := range c.Ports {
				ports[i] = mdCode(p.String())
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", mdCode(c.From.Label()), mdCode(c.To.Label()), strings.Join(ports, "<br>"))
		}
		b.WriteString("\n")
	}
	if len(m.Groups) > 0 {
		b.WriteString("<details><summary>Groups</summary>\n\n| Group | Kind | Identity | Members |\n|---|---|---|---|\n")
		for _, g := range m.Groups {
			members := ""
			switch {
			case len(g.Pods) > 0:
				members = fmt.Sprintf("%d pod%s: %s", len(g.Pods), plural(len(g.Pods)), mdEscape(joinMax(g.Pods, 5)))
			case g.Prefix != "" && len(g.Except) > 0:
				members = mdEscape(g.Prefix + " except " + strings.Join(g.Except, ", "))
			case g.Prefix != "":
				members = mdEscape(g.Prefix)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", mdCode(g.Label()), g.Kind, g.Identity, members)
		}
		b.WriteString("\n</details>\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func joinMax(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", … (+%d)", len(s)-n)
}

// mdEscape escapes text for a GFM table cell.
func mdEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "|", `\|`, "*", `\*`, "_", `\_`, "`", "\\`", "<", "&lt;", ">", "&gt;", "[", `\[`, "]", `\]`, "\n", " ")
	return r.Replace(s)
}

// mdCode renders s as a code span in a GFM table cell: pipes stay escaped (GFM splits cells
// before it parses code spans), backticks get a longer fence.
func mdCode(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// DOT writes a Graphviz digraph: a node per group, workloads clustered by namespace, an
// edge per connection labelled with its ports. Ranges that go through the L7 proxy get an
// edge of their own, dashed.
func DOT(w io.Writer, m *analysis.Matrix, opts Options) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph netward {\n  label=%s;\n  labelloc=t;\n  rankdir=LR;\n  fontname=\"Helvetica\";\n", dotQuote(dotTitle(opts)))
	b.WriteString("  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef3fb\", fontname=\"Helvetica\", fontsize=11];\n")
	b.WriteString("  edge [fontname=\"Helvetica\", fontsize=9];\n")
	var nsOrder []string
	byNS := map[string][]*analysis.Group{}
	var outside []*analysis.Group
	for _, g := range m.Groups {
		if g.Kind != analysis.GroupWorkload {
			outside = append(outside, g)
			continue
		}
		if _, ok := byNS[g.Namespace]; !ok {
			nsOrder = append(nsOrder, g.Namespace)
		}
		byNS[g.Namespace] = append(byNS[g.Namespace], g)
	}
	for i, ns := range nsOrder {
		fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%s;\n    style=\"rounded\";\n    color=\"#8a9bb5\";\n", i, dotQuote("namespace "+ns))
		for _, g := range byNS[ns] {
			label := g.Name
			if len(g.Pods) != 1 {
				label += fmt.Sprintf("\n%d pods", len(g.Pods))
			}
			fmt.Fprintf(&b, "    %s [label=%s, tooltip=%s];\n", dotQuote(g.ID), dotQuote(label), dotQuote(fmt.Sprintf("%s identity %d", g.Label(), g.Identity)))
		}
		b.WriteString("  }\n")
	}
	for _, g := range outside {
		shape, fill := "ellipse", "#fdf1e3"
		switch g.Kind {
		case analysis.GroupHost, analysis.GroupRemoteNode:
			shape, fill = "box3d", "#ececec"
		}
		label := g.Label()
		if len(g.Except) > 0 {
			label += "\nexcept " + strings.Join(g.Except, ", ")
		}
		fmt.Fprintf(&b, "  %s [label=%s, shape=%s, fillcolor=%s, tooltip=%s];\n", dotQuote(g.ID), dotQuote(label), shape, dotQuote(fill), dotQuote(fmt.Sprintf("%s identity %d", g.Label(), g.Identity)))
	}
	for _, c := range m.Connections {
		var plain, proxied []analysis.PortRange
		for _, p := range c.Ports {
			if p.Proxied {
				proxied = append(proxied, p)
			} else {
				plain = append(plain, p)
			}
		}
		if len(plain) > 0 {
			fmt.Fprintf(&b, "  %s -> %s [label=%s];\n", dotQuote(c.From.ID), dotQuote(c.To.ID), dotQuote(lines(plain)))
		}
		if len(proxied) > 0 {
			fmt.Fprintf(&b, "  %s -> %s [label=%s, style=dashed, color=\"#b06000\", fontcolor=\"#b06000\"];\n", dotQuote(c.From.ID), dotQuote(c.To.ID), dotQuote(lines(proxied)))
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func dotTitle(opts Options) string {
	if opts.Filters != "" {
		return opts.title() + " (" + opts.Filters + ")"
	}
	return opts.title()
}

func lines(ports []analysis.PortRange) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// dotQuote quotes s as a DOT string; newlines become \n line breaks.
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", "")
	return `"` + r.Replace(s) + `"`
}
