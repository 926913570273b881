package report

import (
	"encoding/json"
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

// JSON writes the matrix as an indented JSON document.
func JSON(w io.Writer, m *analysis.Matrix) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(NewDocument(m))
}
