package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/policy"
)

// Format is an output format.
type Format string

// Output formats.
const (
	FormatTable    Format = "table"
	FormatJSON     Format = "json"
	FormatCSV      Format = "csv"
	FormatMarkdown Format = "md"
	FormatDOT      Format = "dot"
	FormatHTML     Format = "html"
)

// Formats lists every format, in the order help texts show them.
var Formats = []Format{FormatTable, FormatJSON, FormatCSV, FormatMarkdown, FormatDOT, FormatHTML}

// ParseFormat accepts a format name (and "markdown" for md).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "markdown":
		return FormatMarkdown, nil
	case "":
		return FormatTable, nil
	}
	for _, f := range Formats {
		if string(f) == strings.ToLower(s) {
			return f, nil
		}
	}
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("%q: want one of %s", s, strings.Join(names, ", "))
}

// Options describe the rendered matrix for the formats that carry a heading (Markdown and
// HTML).
type Options struct {
	// Title heads the page or comment; "netward matrix" when empty.
	Title string
	// Filters describes how the matrix was narrowed, e.g. "focus shop/api, port 8080/TCP".
	Filters string
}

func (o Options) title() string {
	if o.Title == "" {
		return "netward matrix"
	}
	return o.Title
}

// Write renders m in format f.
func Write(w io.Writer, m *analysis.Matrix, f Format, opts Options) error {
	switch f {
	case FormatTable:
		return Table(w, m)
	case FormatJSON:
		return JSON(w, m)
	case FormatCSV:
		return CSV(w, m)
	case FormatMarkdown:
		return Markdown(w, m, opts)
	case FormatDOT:
		return DOT(w, m, opts)
	case FormatHTML:
		return HTML(w, m, opts)
	}
	return fmt.Errorf("unknown format %q", f)
}

// Summary renders the port ranges of a connection: "TCP 8080 [HTTP GET /], UDP 53".
func Summary(ports []analysis.PortRange) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// portBounds is the numeric range a port range covers in the JSON and CSV schemas.
func portBounds(p analysis.PortRange) (uint16, uint16) {
	if p.Proto == policy.ProtoAny {
		return 0, 65535
	}
	return p.Lo, p.Hi
}
