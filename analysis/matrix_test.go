package analysis_test

import (
	"context"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/policy"
)

// TestMatrixAgreesWithTrace checks, for every ordered pair of pods and outside peers of the
// bundled example and every port the policies mention (and their neighbours), that the
// matrix allows exactly what trace allows: both read the same compiled maps.
func TestMatrixAgreesWithTrace(t *testing.T) {
	c := shop(t)
	m, err := analysis.BuildMatrix(context.Background(), c, analysis.MatrixOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conns := map[[2]string][]analysis.PortRange{}
	for _, cn := range m.Connections {
		conns[[2]string{cn.From.ID, cn.To.ID}] = cn.Ports
	}
	groupOf := map[string]*analysis.Group{}
	for _, g := range m.Groups {
		for _, p := range g.Pods {
			groupOf[g.Namespace+"/"+p] = g
		}
	}
	peers := []string{"203.0.113.9", "198.51.100.10", "198.51.100.254", "host"}
	for _, ep := range c.Endpoints {
		peers = append(peers, ep.Key())
	}
	outside := map[string]string{"203.0.113.9": "world", "198.51.100.10": "cidr:198.51.100.0/24", "198.51.100.254": "cidr:198.51.100.254/32", "host": "host"}
	type pp struct {
		proto uint8
		port  uint16
	}
	var ports []pp
	for _, p := range []uint16{22, 53, 79, 80, 443, 5432, 8080, 8081, 8443, 9090} {
		for _, proto := range []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP} {
			ports = append(ports, pp{proto, p})
		}
	}
	ports = append(ports, pp{policy.ProtoICMP, 8})
	checked := 0
	for _, from := range peers {
		for _, to := range peers {
			fg, tg := groupOf[from], groupOf[to]
			fid, tid := outside[from], outside[to]
			if fg != nil {
				fid = fg.ID
			}
			if tg != nil {
				tid = tg.ID
			}
			if fg == nil && tg == nil {
				continue
			}
			for _, p := range ports {
				r, err := analysis.Trace(c, analysis.Flow{From: from, To: to, Proto: p.proto, Port: p.port})
				if err != nil {
					t.Fatal(err)
				}
				inMatrix := false
				for _, pr := range conns[[2]string{fid, tid}] {
					if pr.Contains(p.proto, p.port) {
						inMatrix = true
					}
				}
				if inMatrix != r.Allowed {
					t.Errorf("%s -> %s %s: trace %v, matrix %v (%v)", from, to, analysis.PortString(p.proto, p.port), r.Allowed, inMatrix, conns[[2]string{fid, tid}])
				}
				checked++
			}
		}
	}
	if checked < 500 {
		t.Fatalf("only %d flows compared", checked)
	}
}
