package analysis

import (
	"strings"
	"testing"

	"github.com/netward/netward/policy"
)

func TestParsePortProto(t *testing.T) {
	cases := []struct {
		in    string
		proto uint8
		port  uint16
		err   bool
	}{
		{"80/TCP", policy.ProtoTCP, 80, false},
		{"53/udp", policy.ProtoUDP, 53, false},
		{"80/SCTP", policy.ProtoSCTP, 80, false},
		{"0/ICMP", policy.ProtoICMP, 8, false}, // echo request
		{"3/ICMP", policy.ProtoICMP, 3, false},
		{"80", 0, 0, true},
		{"80/ANY", 0, 0, true},
		{"70000/TCP", 0, 0, true},
		{"x/TCP", 0, 0, true},
		{"300/ICMP", 0, 0, true},
	}
	for _, c := range cases {
		proto, port, err := ParsePortProto(c.in)
		if (err != nil) != c.err {
			t.Errorf("%s: err = %v", c.in, err)
			continue
		}
		if !c.err && (proto != c.proto || port != c.port) {
			t.Errorf("%s: got %d/%d, want %d/%d", c.in, port, proto, c.port, c.proto)
		}
	}
}

func TestParseExpectations(t *testing.T) {
	in := `# comment
x/a   x/b   80/TCP  allow            # trailing comment
x/a   1.2.3.4 53/UDP deny
x/a   x/b   80/TCP  allow http GET /p X-A:b Host:h
x/a   x/dns 53/TCP  deny  DNS api.Example.com
`
	exps, errs := ParseExpectations(strings.NewReader(in))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(exps) != 4 {
		t.Fatalf("got %d expectations", len(exps))
	}
	if exps[0].Line != 2 || !exps[0].Allowed || exps[0].Flow.From != "x/a" || exps[0].Flow.Port != 80 {
		t.Errorf("line 2 parsed as %+v", exps[0])
	}
	if exps[1].Allowed || exps[1].Flow.Proto != policy.ProtoUDP {
		t.Errorf("line 3 parsed as %+v", exps[1])
	}
	h := exps[2].Flow.HTTP
	if h == nil || h.Method != "GET" || h.Path != "/p" || h.Header.Get("X-A") != "b" || h.Host != "h" {
		t.Errorf("line 4 request parsed as %+v", h)
	}
	if f := exps[3].Flow; f.DNS != "api.Example.com" || f.HTTP != nil || f.Proto != policy.ProtoTCP || exps[3].Allowed {
		t.Errorf("line 5 parsed as %+v", exps[3])
	}
}

func TestParseExpectationsErrorsNameTheLine(t *testing.T) {
	in := "x/a x/b 80/TCP maybe\nx/a x/b\nx/a x/b 80/UDP allow http GET /\nx/a x/b 80/TCP allow grpc x\n" +
		"x/a x/b 53/UDP allow dns\nx/a x/b 0/ICMP allow dns a.io\nx/a x/b 53/UDP allow dns a*.io\n"
	_, errs := ParseExpectations(strings.NewReader(in))
	want := []string{"line 1: verdict", "line 2: want FROM TO", "line 3: http flows must be TCP", "line 4: \"grpc\"",
		"line 5: dns needs exactly one NAME", "line 6: dns lookups are UDP or TCP", "line 7: dns name"}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors: %v", len(errs), errs)
	}
	for i, w := range want {
		if !strings.Contains(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want it to contain %q", i, errs[i], w)
		}
	}
}
