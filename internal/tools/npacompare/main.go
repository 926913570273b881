// Command npacompare compares the pod-to-pod connectivity netward computes (`netward matrix
// -o json`) with np-guard's netpol-analyzer (`netpol-analyzer list -o json`) on the same
// Kubernetes-only manifests, for TCP, UDP and SCTP (netpol-analyzer does not model ICMP,
// the host or other nodes). It prints the number of pod pairs compared, how many agree, and
// every disagreement with both answers.
//
//	go run ./internal/tools/npacompare -netward nw.json -npa npa.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

type interval struct{ lo, hi int }

// portSet is per protocol a sorted list of disjoint intervals.
type portSet map[string][]interval

func (s portSet) add(proto string, lo, hi int) {
	s[proto] = append(s[proto], interval{lo, hi})
}

func (s portSet) normalize() portSet {
	out := portSet{}
	for p, ivs := range s {
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].lo < ivs[j].lo })
		var merged []interval
		for _, iv := range ivs {
			if n := len(merged); n > 0 && iv.lo <= merged[n-1].hi+1 {
				if iv.hi > merged[n-1].hi {
					merged[n-1].hi = iv.hi
				}
				continue
			}
			merged = append(merged, iv)
		}
		out[p] = merged
	}
	return out
}

func (s portSet) String() string {
	var parts []string
	for _, p := range []string{"TCP", "UDP", "SCTP"} {
		for _, iv := range s[p] {
			if iv.lo == iv.hi {
				parts = append(parts, fmt.Sprintf("%s %d", p, iv.lo))
			} else {
				parts = append(parts, fmt.Sprintf("%s %d-%d", p, iv.lo, iv.hi))
			}
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

func equal(a, b portSet) bool { return a.String() == b.String() }

var protos = []string{"TCP", "UDP", "SCTP"}

func all() portSet {
	s := portSet{}
	for _, p := range protos {
		s.add(p, 1, 65535)
	}
	return s
}

// parseNPA parses "All Connections", "TCP 8080,9000", "TCP 53,UDP 53", "TCP 1-79,81-65535".
func parseNPA(conn string) (portSet, error) {
	if conn == "All Connections" {
		return all(), nil
	}
	if conn == "No Connections" {
		return portSet{}, nil
	}
	s := portSet{}
	proto := ""
	for _, item := range strings.Split(conn, ",") {
		item = strings.TrimSpace(item)
		if f := strings.Fields(item); len(f) == 2 {
			proto, item = f[0], f[1]
		}
		if proto == "" {
			return nil, fmt.Errorf("no protocol in %q", conn)
		}
		lo, hi, ok := strings.Cut(item, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("port %q in %q", item, conn)
		}
		b := a
		if ok {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("port %q in %q", item, conn)
			}
		}
		s.add(proto, a, b)
	}
	return s, nil
}

func main() {
	nwPath := flag.String("netward", "", "netward matrix -o json output")
	npaPath := flag.String("npa", "", "netpol-analyzer list -o json output")
	flag.Parse()
	if *nwPath == "" || *npaPath == "" {
		fmt.Fprintln(os.Stderr, "npacompare: -netward and -npa are required")
		os.Exit(2)
	}
	var nw struct {
		Groups []struct {
			ID, Kind, Namespace string
			Pods                []string
		}
		Connections []struct {
			From, To string
			Ports    []struct {
				Protocol string
				From, To int
			}
		}
	}
	var npa []struct{ Src, Dst, Conn string }
	for path, v := range map[string]any{*nwPath: &nw, *npaPath: &npa} {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "npacompare:", err)
			os.Exit(2)
		}
		if err := json.Unmarshal(b, v); err != nil {
			fmt.Fprintf(os.Stderr, "npacompare: %s: %v\n", path, err)
			os.Exit(2)
		}
	}
	pods := map[string][]string{}
	var allPods []string
	for _, g := range nw.Groups {
		if g.Kind != "workload" {
			continue
		}
		for _, p := range g.Pods {
			pods[g.ID] = append(pods[g.ID], g.Namespace+"/"+p)
			allPods = append(allPods, g.Namespace+"/"+p)
		}
	}
	type pair struct{ from, to string }
	ours := map[pair]portSet{}
	for _, c := range nw.Connections {
		for _, f := range pods[c.From] {
			for _, t := range pods[c.To] {
				s := ours[pair{f, t}]
				if s == nil {
					s = portSet{}
					ours[pair{f, t}] = s
				}
				for _, p := range c.Ports {
					switch p.Protocol {
					case "ANY":
						for _, pr := range protos {
							s.add(pr, 1, 65535)
						}
					case "TCP", "UDP", "SCTP":
						lo := max(p.From, 1)
						s.add(p.Protocol, lo, p.To)
					}
				}
			}
		}
	}
	theirs := map[pair]portSet{}
	podName := func(s string) (string, bool) {
		i := strings.LastIndex(s, "[")
		if i < 0 || !strings.HasSuffix(s, "]") {
			return "", false
		}
		kind := s[i+1 : len(s)-1]
		return s[:i], kind != "External"
	}
	for _, c := range npa {
		f, ok1 := podName(c.Src)
		t, ok2 := podName(c.Dst)
		if !ok1 || !ok2 {
			continue
		}
		s, err := parseNPA(c.Conn)
		if err != nil {
			fmt.Fprintln(os.Stderr, "npacompare:", err)
			os.Exit(2)
		}
		theirs[pair{f, t}] = s
	}
	agree, differ := 0, 0
	for _, f := range allPods {
		for _, t := range allPods {
			if f == t {
				continue // netpol-analyzer leaves a pod's traffic to itself out
			}
			a, b := portSet{}, portSet{}
			if s := ours[pair{f, t}]; s != nil {
				a = s.normalize()
			}
			if s := theirs[pair{f, t}]; s != nil {
				b = s.normalize()
			}
			if equal(a, b) {
				agree++
				continue
			}
			differ++
			if differ <= 20 {
				fmt.Printf("DIFFER %s -> %s: netward %s; netpol-analyzer %s\n", f, t, a, b)
			}
		}
	}
	fmt.Printf("%d pod pairs compared (TCP, UDP, SCTP): %d agree, %d differ\n", agree+differ, agree, differ)
	if differ > 0 {
		os.Exit(1)
	}
}
