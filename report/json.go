package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/policy"
)

// Schema names the version of the JSON document.
const Schema = "netward.matrix/v1"

// Document is the JSON form of a matrix (see the package documentation for the schema).
type Document struct {
	Schema      string           `json:"schema"`
	Groups      []JSONGroup      `json:"groups"`
	Connections []JSONConnection `json:"connections"`
}

// JSONGroup is a group in the JSON document.
type JSONGroup struct {
	ID        string   `json:"id"`
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Label     string   `json:"label"`
	Identity  uint32   `json:"identity"`
	Pods      []string `json:"pods"`
	Prefix    string   `json:"prefix"`
	Except    []string `json:"except"`
}

// JSONConnection is a connection in the JSON document.
type JSONConnection struct {
	From    string     `json:"from"`
	To      string     `json:"to"`
	Ports   []JSONPort `json:"ports"`
	Summary string     `json:"summary"`
}

// JSONPort is a port range in the JSON document.
type JSONPort struct {
	Protocol string   `json:"protocol"`
	From     uint16   `json:"from"`
	To       uint16   `json:"to"`
	Proxied  bool     `json:"proxied"`
	HTTP     []string `json:"http"`
	Summary  string   `json:"summary"`
}

// NewDocument converts a matrix to its JSON document.
func NewDocument(m *analysis.Matrix) *Document {
	d := &Document{Schema: Schema, Groups: []JSONGroup{}, Connections: []JSONConnection{}}
	for _, g := range m.Groups {
		d.Groups = append(d.Groups, JSONGroup{ID: g.ID, Kind: string(g.Kind), Namespace: g.Namespace, Name: g.Name, Label: g.Label(),
			Identity: uint32(g.Identity), Pods: nonNil(g.Pods), Prefix: g.Prefix, Except: nonNil(g.Except)})
	}
	for _, c := range m.Connections {
		jc := JSONConnection{From: c.From.ID, To: c.To.ID, Ports: []JSONPort{}, Summary: Summary(c.Ports)}
		for _, p := range c.Ports {
			lo, hi := portBounds(p)
			jc.Ports = append(jc.Ports, JSONPort{Protocol: policy.ProtoName(p.Proto), From: lo, To: hi, Proxied: p.Proxied, HTTP: nonNil(p.HTTP), Summary: p.String()})
		}
		d.Connections = append(d.Connections, jc)
	}
	return d
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// JSON writes the matrix as a JSON document: the groups indented, then one connection a
// line. It streams, so a matrix of hundreds of thousands of connections is written without
// holding its whole text in memory; connections that share a port list (a bucket of
// equivalent workloads) share its encoding.
func JSON(w io.Writer, m *analysis.Matrix) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	groups := NewDocument(&analysis.Matrix{Groups: m.Groups}).Groups
	gb, err := json.MarshalIndent(groups, "  ", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(bw, "{\n  \"schema\": %q,\n  \"groups\": %s,\n  \"connections\": [", Schema, gb)
	type encoded struct{ ports, summary []byte }
	cache := map[*analysis.PortRange]encoded{}
	for i, c := range m.Connections {
		var enc encoded
		var ok bool
		if len(c.Ports) > 0 {
			enc, ok = cache[&c.Ports[0]]
		}
		if !ok {
			ports := make([]JSONPort, 0, len(c.Ports))
			for _, p := range c.Ports {
				lo, hi := portBounds(p)
				ports = append(ports, JSONPort{Protocol: policy.ProtoName(p.Proto), From: lo, To: hi, Proxied: p.Proxied, HTTP: nonNil(p.HTTP), Summary: p.String()})
			}
			if enc.ports, err = json.Marshal(ports); err != nil {
				return err
			}
			if enc.summary, err = json.Marshal(Summary(c.Ports)); err != nil {
				return err
			}
			if len(c.Ports) > 0 {
				cache[&c.Ports[0]] = enc
			}
		}
		from, _ := json.Marshal(c.From.ID)
		to, _ := json.Marshal(c.To.ID)
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    {\"from\": ")
		bw.Write(from)
		bw.WriteString(", \"to\": ")
		bw.Write(to)
		bw.WriteString(", \"ports\": ")
		bw.Write(enc.ports)
		bw.WriteString(", \"summary\": ")
		bw.Write(enc.summary)
		bw.WriteByte('}')
	}
	if len(m.Connections) > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]\n}\n")
	return bw.Flush()
}
