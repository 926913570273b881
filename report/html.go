package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"strings"

	"github.com/netward/netward/analysis"
)

//go:embed web/matrix.css
var pageCSS string

//go:embed web/matrix.js
var pageJS string

// HTML writes one self-contained page: inline CSS and JavaScript, the matrix as JSON in a
// <script type="application/json" id="netward-data"> element (the -o json document), and
// no reference to anything outside the page — a Content-Security-Policy forbids every
// fetch. The script builds a heat-map of groups × groups, a node-link graph in SVG and a
// connection list, and a namespace filter that it keeps in the URL fragment
// (#ns=shop,payments&outside=0, and the selection: &sel=FROM,TO or &node=ID) so a view
// can be linked to.
func HTML(w io.Writer, m *analysis.Matrix, opts Options) error {
	data, err := json.Marshal(NewDocument(m)) // escapes <, > and &: cannot end the script element
	if err != nil {
		return err
	}
	sub := fmt.Sprintf("%d group%s, %d allowed connection%s", len(m.Groups), plural(len(m.Groups)), len(m.Connections), plural(len(m.Connections)))
	if opts.Filters != "" {
		sub += " — " + opts.Filters
	}
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<link rel="icon" href="data:,">
<title>`)
	b.WriteString(html.EscapeString(opts.title()))
	b.WriteString("</title>\n<style>\n")
	b.WriteString(pageCSS)
	b.WriteString("</style>\n</head>\n<body>\n<header>\n<h1>")
	b.WriteString(html.EscapeString(opts.title()))
	b.WriteString("</h1>\n<p class=\"sub\" id=\"subtitle\">")
	b.WriteString(html.EscapeString(sub))
	b.WriteString(`</p>
</header>
<nav id="filters" aria-label="namespace filter"><span class="label">Namespaces</span><span id="ns-boxes"></span><span id="outside-box"></span><button type="button" id="ns-all">all</button><button type="button" id="ns-none">none</button><span id="shown" class="muted"></span></nav>
<main>
<section id="matrix-section"><h2>Matrix <span class="muted">rows: from · columns: to<span id="matrix-note"></span></span></h2>
<div class="legend" id="legend"><span class="cell-sample lvl1">1 port</span><span class="cell-sample lvl2">a few</span><span class="cell-sample lvl3">10+</span><span class="cell-sample lvl4">1000+</span><span class="cell-sample lvl5">any</span><span class="cell-sample lvl1 l7">via the HTTP proxy</span></div>
<div class="scroll"><table id="matrix" class="matrix"></table></div>
</section>
<section id="graph-section"><h2>Graph <span class="muted">arrows point to the destination · dashed: through the L7 proxy · red: every protocol and port</span></h2>
<svg id="graph" role="img" aria-label="connection graph" preserveAspectRatio="xMidYMid meet"></svg>
</section>
<aside id="details"><h2>Details</h2><div id="details-body" class="muted">Click a matrix cell, a graph edge or a node.</div></aside>
<section id="list-section"><h2>Connections</h2><table id="connections" class="list"></table></section>
</main>
<noscript><p>This page needs JavaScript to draw the matrix; the data is in the netward-data element.</p></noscript>
<script type="application/json" id="netward-data">`)
	b.Write(data)
	b.WriteString("</script>\n<script>\n")
	b.WriteString(pageJS)
	b.WriteString("</script>\n</body>\n</html>\n")
	_, err = io.WriteString(w, b.String())
	return err
}
