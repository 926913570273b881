package analysis

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/netward/netward/cluster"
	"github.com/netward/netward/l7"
	"github.com/netward/netward/policy"
)

// Expectation is one line of an expect file:
//
//	FROM TO PORT/PROTO VERDICT [http METHOD PATH [Header-Name:value ...] | dns NAME]
type Expectation struct {
	Line    int
	Text    string
	Flow    Flow
	Allowed bool
}

// ParsePortProto parses "80/TCP", "53/UDP", "80/SCTP" or "0/ICMP" (0 means an echo request,
// ICMP type 8; another number is that ICMP type).
func ParsePortProto(s string) (uint8, uint16, error) {
	ps, pr, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want PORT/PROTO, e.g. 80/TCP or 0/ICMP", s)
	}
	proto, ok := policy.ParseProto(pr)
	if !ok || proto == policy.ProtoAny {
		return 0, 0, fmt.Errorf("%q: protocol must be TCP, UDP, SCTP or ICMP", s)
	}
	n, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: port must be a number 0-65535", s)
	}
	port := uint16(n)
	if proto == policy.ProtoICMP || proto == policy.ProtoICMPv6 {
		if port > 255 {
			return 0, 0, fmt.Errorf("%q: ICMP type must be 0-255", s)
		}
		if port == 0 {
			port = 8 // echo request
			if proto == policy.ProtoICMPv6 {
				port = 128
			}
		}
	}
	return proto, port, nil
}

// ParseExpectations reads an expect file. Every malformed line is reported.
func ParseExpectations(r io.Reader) ([]Expectation, []error) {
	var out []Expectation
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		fail := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("line %d: %s", n, fmt.Sprintf(format, a...)))
		}
		if len(fs) < 4 {
			fail("want FROM TO PORT/PROTO allow|deny [http METHOD PATH [Header:value ...] | dns NAME], got %d fields", len(fs))
			continue
		}
		proto, port, err := ParsePortProto(fs[2])
		if err != nil {
			fail("%v", err)
			continue
		}
		e := Expectation{Line: n, Text: strings.Join(fs, " "), Flow: Flow{From: fs[0], To: fs[1], Proto: proto, Port: port}}
		switch strings.ToLower(fs[3]) {
		case "allow":
			e.Allowed = true
		case "deny":
		default:
			fail("verdict %q: want allow or deny", fs[3])
			continue
		}
		if len(fs) > 4 && strings.EqualFold(fs[4], "dns") {
			if len(fs) != 6 {
				fail("dns needs exactly one NAME")
				continue
			}
			if proto != policy.ProtoUDP && proto != policy.ProtoTCP {
				fail("dns lookups are UDP or TCP, not %s", policy.ProtoName(proto))
				continue
			}
			if _, err := l7.CompileDNSRule(fs[5], ""); err != nil {
				fail("dns name: %v", err)
				continue
			}
			e.Flow.DNS = fs[5]
		} else if len(fs) > 4 {
			if !strings.EqualFold(fs[4], "http") {
				fail("%q: the L7 protocols are http and dns", fs[4])
				continue
			}
			if len(fs) < 7 {
				fail("http needs METHOD and PATH")
				continue
			}
			if proto != policy.ProtoTCP {
				fail("http flows must be TCP, not %s", policy.ProtoName(proto))
				continue
			}
			req, err := NewRequest(fs[5], fs[6], fs[7:])
			if err != nil {
				fail("%v", err)
				continue
			}
			e.Flow.HTTP = req
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return out, errs
}

// CheckedFlow is the outcome of one expectation, in the JSON shape of `netward check -o json`.
type CheckedFlow struct {
	Line     int     `json:"line"`
	From     string  `json:"from"`
	To       string  `json:"to"`
	Port     string  `json:"port"`
	HTTP     string  `json:"http,omitempty"`
	DNS      string  `json:"dns,omitempty"`
	Expected string  `json:"expected"`
	Actual   string  `json:"actual"`
	Pass     bool    `json:"pass"`
	Reason   string  `json:"reason"`
	Trace    *Result `json:"-"`
}

// CheckReport is the outcome of an expect file.
type CheckReport struct {
	Passed int           `json:"passed"`
	Failed int           `json:"failed"`
	Flows  []CheckedFlow `json:"flows"`
}

// Check decides every expectation. An error is returned when a flow cannot be decided
// (an unknown pod or node, or no pod at either end): that is invalid input, not a failure.
func Check(c *cluster.Cluster, exps []Expectation) (*CheckReport, []error) {
	rep := &CheckReport{Flows: []CheckedFlow{}}
	var errs []error
	for _, e := range exps {
		res, err := Trace(c, e.Flow)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", e.Line, err))
			continue
		}
		cf := CheckedFlow{Line: e.Line, From: e.Flow.From, To: e.Flow.To, Port: res.Port, Expected: verdictWord(e.Allowed), Actual: res.Verdict, Reason: res.Reason, Trace: res}
		if e.Flow.HTTP != nil {
			cf.HTTP = e.Flow.HTTP.Method + " " + e.Flow.HTTP.Path
		}
		cf.DNS = e.Flow.DNS
		cf.Pass = cf.Expected == cf.Actual
		if cf.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Flows = append(rep.Flows, cf)
	}
	return rep, errs
}

func verdictWord(allowed bool) string {
	if allowed {
		return "allow"
	}
	return "deny"
}
