package dnsproxy

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzQuery feeds arbitrary datagrams through the UDP path of two proxies, one allowing
// every query (to the fake upstream), one denying every query. It must never panic or
// hang; every datagram gives exactly one event; a datagram is answered exactly when its
// event has an rcode, and the answer parses as a DNS message with the query's ID, QR set
// and that rcode; a refusal echoes the question.
func FuzzQuery(f *testing.F) {
	seed := func(b []byte) { f.Add(b) }
	seed(query(f, 1, "api.example.com.", dnsmessage.TypeA, true))
	seed(query(f, 2, "A.B.C.", dnsmessage.TypeAAAA, false))
	seed(query(f, 3, ".", dnsmessage.TypeNS, true))
	two := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4})
	two.StartQuestions()
	two.Question(*question("a.example.", dnsmessage.TypeA))
	two.Question(*question("b.example.", dnsmessage.TypeA))
	twoQ, _ := two.Finish()
	seed(twoQ)
	resp := query(f, 5, "x.", dnsmessage.TypeA, true)
	resp[2] |= 0x80
	seed(resp)
	op := query(f, 6, "x.", dnsmessage.TypeA, true)
	op[2] |= 5 << 3
	seed(op)
	seed([]byte{0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})            // pointer loop
	seed([]byte{0, 8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 18, 0, 1, 0, 1, 1, 'a', 0}) // pointer forward
	seed([]byte{0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', '.', 'b', 0, 0, 1, 0, 1}) // dot in a label
	seed([]byte{})
	seed([]byte{1, 2, 3})

	type side struct {
		h      *harness
		c      *net.UDPConn
		denyer bool
	}
	quiet := func(c *Config) { c.Timeout = 300 * time.Millisecond; c.Logf = nil }
	allow := newHarness(f, &fakeDecider{allowAll: true}, quiet)
	deny := newHarness(f, &fakeDecider{}, quiet)
	sides := []side{{h: allow, c: allow.client()}, {h: deny, c: deny.client(), denyer: true}}

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 65507 {
			return // not a UDP datagram
		}
		for _, s := range sides {
			if stale := recvNow(t, s.c); stale != nil {
				t.Fatalf("a datagram answered without an event: %x", stale)
			}
			if _, err := s.c.Write(data); err != nil {
				t.Fatal(err)
			}
			var e Event
			select {
			case e = <-s.h.events:
			case <-time.After(10 * time.Second):
				t.Fatalf("no event for %x", data)
			}
			if e.Rcode == -1 {
				continue
			}
			a := recv(t, s.c, 5*time.Second)
			if a == nil {
				t.Fatalf("event %v but no answer to %x", e, data)
			}
			var m dnsmessage.Message
			if err := m.Unpack(a); err != nil {
				t.Fatalf("answer %x to %x does not parse: %v", a, data, err)
			}
			if len(data) < 2 || m.ID != binary.BigEndian.Uint16(data) || !m.Response || int(m.RCode) != e.Rcode {
				t.Fatalf("answer %+v to %x, event %v", m.Header, data, e)
			}
			if s.denyer && e.Verdict == VerdictAllowed {
				t.Fatalf("allowed by a deny-all decider: %v", e)
			}
			if e.Verdict == VerdictDenied {
				var p dnsmessage.Parser
				p.Start(data)
				q, err := p.Question()
				if err != nil || len(m.Questions) != 1 || m.Questions[0] != q || e.Rcode != RcodeRefused {
					t.Fatalf("refusal %+v to %x (question %v, %v)", m, data, q, err)
				}
			}
		}
	})
}

// recvNow returns a datagram already queued on c, or nil.
func recvNow(t *testing.T, c *net.UDPConn) []byte {
	buf := make([]byte, 65535)
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatal(err)
	}
	return buf[:n]
}
