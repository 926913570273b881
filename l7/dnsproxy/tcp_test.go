package dnsproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// TestTCPMixed: several queries on one connection, allowed and denied mixed: each gets
// its answer in order, the connection stays open after a refusal, and the allowed ones
// share one upstream connection.
func TestTCPMixed(t *testing.T) {
	h := newHarness(t, allowNames("api.example.com."), nil)
	c := h.tcpClient()
	client := addrPort(c.LocalAddr())
	var sent [][]byte
	for i, tc := range []struct {
		name    string
		typ     dnsmessage.Type
		allowed bool
	}{
		{"api.example.com.", dnsmessage.TypeA, true},
		{"evil.example.com.", dnsmessage.TypeA, false},
		{"api.example.com.", dnsmessage.TypeAAAA, true},
		{"evil.example.com.", dnsmessage.TypeAAAA, false},
		{"api.example.com.", dnsmessage.TypeA, true},
	} {
		id := uint16(0x100 + i)
		q := query(t, id, tc.name, tc.typ, true)
		a := exchangeTCP(t, c, q)
		if !tc.allowed {
			checkReply(t, a, id, dnsmessage.RCodeRefused, true, question(tc.name, tc.typ))
			checkEvent(t, h.event(), Event{Src: client, Dst: h.tcpAddr, Proto: "tcp", Name: tc.name, Type: uint16(tc.typ),
				Verdict: VerdictDenied, Rcode: 5, Origins: []string{"deny-rule"}, Reason: "name not allowed"})
			continue
		}
		sent = append(sent, q)
		_, _, answers, _ := h.up.snapshot()
		if !bytes.Equal(a, answers[len(answers)-1]) {
			t.Fatalf("client got %x, upstream sent %x", a, answers[len(answers)-1])
		}
		m := unpack(t, a)
		if m.ID != id || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != map[bool]int{true: 1, false: 0}[tc.typ == dnsmessage.TypeA] {
			t.Fatalf("answer %+v", m)
		}
		checkEvent(t, h.event(), Event{Src: client, Dst: h.tcpAddr, Proto: "tcp", Name: tc.name, Type: uint16(tc.typ),
			Verdict: VerdictAllowed, Rcode: 0, Origins: []string{"allow:api.example.com."}})
	}
	_, tcpMsgs, _, tcpConns := h.up.snapshot()
	if tcpConns != 1 || len(tcpMsgs) != 3 {
		t.Fatalf("upstream: %d connections, %d queries; want 1 and 3", tcpConns, len(tcpMsgs))
	}
	for i := range sent {
		if !bytes.Equal(tcpMsgs[i], sent[i]) {
			t.Fatalf("upstream query %d is %x, want %x", i, tcpMsgs[i], sent[i])
		}
	}
	if s := h.p.Stats(); s.UpstreamDials != 1 || s.Allowed != 3 || s.Denied != 2 || s.TCPConns != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestTCPSplitWrites: a message split across writes (the length prefix itself split) is
// reassembled, and two messages in one write are both answered, in order.
func TestTCPSplitWrites(t *testing.T) {
	h := newHarness(t, allowNames("api.example.com."), nil)
	c := h.tcpClient()
	q := query(t, 0x5151, "api.example.com.", dnsmessage.TypeA, true)
	f := frameOf(q)
	for _, part := range [][]byte{f[:1], f[1:5], f[5:20], f[20:]} {
		if _, err := c.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	if m := unpack(t, readAnswerTCP(t, c)); m.ID != 0x5151 || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
		t.Fatalf("answer %+v", m)
	}
	if _, tcpMsgs, _, _ := h.up.snapshot(); len(tcpMsgs) != 1 || !bytes.Equal(tcpMsgs[0], q) {
		t.Fatalf("upstream received %x, want %x", tcpMsgs, q)
	}

	both := append(frameOf(query(t, 1, "api.example.com.", dnsmessage.TypeA, true)), frameOf(query(t, 2, "no.example.", dnsmessage.TypeA, true))...)
	if _, err := c.Write(both); err != nil {
		t.Fatal(err)
	}
	if m := unpack(t, readAnswerTCP(t, c)); m.ID != 1 || m.RCode != dnsmessage.RCodeSuccess {
		t.Fatalf("first answer %+v", m.Header)
	}
	checkReply(t, readAnswerTCP(t, c), 2, dnsmessage.RCodeRefused, true, question("no.example.", dnsmessage.TypeA))
}

// TestTCPUpstreamFailure: an upstream that does not answer gives SERVFAIL on the same
// client connection, which stays open; the upstream connection is dropped and dialed again
// for the next allowed query.
func TestTCPUpstreamFailure(t *testing.T) {
	h := newHarness(t, allowNames("api.example.com."), func(c *Config) { c.Timeout = 200 * time.Millisecond })
	c := h.tcpClient()
	h.up.silent.Store(true)
	a := exchangeTCP(t, c, query(t, 9, "api.example.com.", dnsmessage.TypeA, false))
	checkReply(t, a, 9, dnsmessage.RCodeServerFailure, false, question("api.example.com.", dnsmessage.TypeA))
	checkEvent(t, h.event(), Event{Src: addrPort(c.LocalAddr()), Dst: h.tcpAddr, Proto: "tcp", Name: "api.example.com.", Type: 1,
		Verdict: VerdictError, Rcode: 2, Origins: []string{"allow:api.example.com."}, Reason: "upstream: "})

	h.up.silent.Store(false)
	if m := unpack(t, exchangeTCP(t, c, query(t, 10, "api.example.com.", dnsmessage.TypeA, false))); m.ID != 10 || m.RCode != dnsmessage.RCodeSuccess {
		t.Fatalf("answer %+v", m.Header)
	}
	if _, _, _, tcpConns := h.up.snapshot(); tcpConns != 2 {
		t.Fatalf("upstream connections %d, want 2 (redialed after the failure)", tcpConns)
	}
	if s := h.p.Stats(); s.UpstreamDials != 2 {
		t.Fatalf("stats %+v", s)
	}

	// An answer with another ID is a failure too (one query at a time per connection).
	h.up.onlyWrongID.Store(true)
	checkReply(t, exchangeTCP(t, c, query(t, 11, "api.example.com.", dnsmessage.TypeA, true)), 11,
		dnsmessage.RCodeServerFailure, true, question("api.example.com.", dnsmessage.TypeA))
	h.event()
	if e := h.event(); e.Verdict != VerdictError || !strings.Contains(e.Reason, "answer ID 12 is not the query's 11") {
		t.Fatalf("event %v", e)
	}
}

// TestTCPUpstreamClosedIdle: when the destination closed the kept upstream connection
// while it was idle, the next query is sent on a new one, transparently.
func TestTCPUpstreamClosedIdle(t *testing.T) {
	h := newHarness(t, allowNames("api.example.com."), nil)
	c := h.tcpClient()
	exchangeTCP(t, c, query(t, 1, "api.example.com.", dnsmessage.TypeA, true))
	h.up.mu.Lock()
	for _, uc := range h.up.conns {
		uc.Close()
	}
	h.up.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	if m := unpack(t, exchangeTCP(t, c, query(t, 2, "api.example.com.", dnsmessage.TypeA, true))); m.ID != 2 || m.RCode != dnsmessage.RCodeSuccess {
		t.Fatalf("answer %+v", m.Header)
	}
	for range 2 {
		if e := h.event(); e.Verdict != VerdictAllowed {
			t.Fatalf("event %v", e)
		}
	}
	if _, _, _, n := h.up.snapshot(); n != 2 {
		t.Fatalf("upstream connections %d, want 2", n)
	}
}

// TestTCPMalformed: over TCP too, a message that does not parse is dropped and one with two
// questions gets FORMERR; the connection stays usable.
func TestTCPMalformed(t *testing.T) {
	h := newHarness(t, &fakeDecider{allowAll: true}, nil)
	c := h.tcpClient()
	c.Write(frameOf([]byte{0xde, 0xad}))
	c.Write(frameOf(nil))
	for range 2 {
		checkEvent(t, h.event(), Event{Src: addrPort(c.LocalAddr()), Dst: h.tcpAddr, Proto: "tcp", Verdict: VerdictError, Rcode: -1, Reason: "malformed"})
	}
	two := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 77})
	two.StartQuestions()
	two.Question(*question("a.example.", dnsmessage.TypeA))
	two.Question(*question("b.example.", dnsmessage.TypeA))
	twoQ, _ := two.Finish()
	checkReply(t, exchangeTCP(t, c, twoQ), 77, dnsmessage.RCodeFormatError, false, nil)
	checkEvent(t, h.event(), Event{Src: addrPort(c.LocalAddr()), Dst: h.tcpAddr, Proto: "tcp", Verdict: VerdictError, Rcode: 1, Reason: "2 questions"})
	if m := unpack(t, exchangeTCP(t, c, query(t, 78, "a.example.", dnsmessage.TypeA, true))); m.ID != 78 || m.RCode != dnsmessage.RCodeSuccess {
		t.Fatalf("answer %+v", m.Header)
	}
}

// TestTCPIdleTimeout: a query that does not arrive completely within TCPIdleTimeout closes
// the connection (slowloris), without an event.
func TestTCPIdleTimeout(t *testing.T) {
	h := newHarness(t, &fakeDecider{allowAll: true}, func(c *Config) { c.TCPIdleTimeout = 200 * time.Millisecond })
	c := h.tcpClient()
	f := frameOf(query(t, 1, "a.example.", dnsmessage.TypeA, true))
	start := time.Now()
	c.Write(f[:10])
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the proxy answered an incomplete query")
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 3*time.Second {
		t.Fatalf("closed after %v, want after 200ms", el)
	}
	h.noEvent()
}

// TestMaxTCPConns: beyond MaxTCPConns open client connections, a new one is closed at once.
func TestMaxTCPConns(t *testing.T) {
	h := newHarness(t, allowNames("a.example."), func(c *Config) { c.MaxTCPConns = 2 })
	c1, c2 := h.tcpClient(), h.tcpClient()
	for i, c := range []net.Conn{c1, c2} {
		checkReply(t, exchangeTCP(t, c, query(t, uint16(i), "x.example.", dnsmessage.TypeA, true)), uint16(i),
			dnsmessage.RCodeRefused, true, question("x.example.", dnsmessage.TypeA))
		h.event()
	}
	c3 := h.tcpClient()
	c3.Write(frameOf(query(t, 3, "x.example.", dnsmessage.TypeA, true)))
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c3.Read(make([]byte, 100)); err == nil || isTimeout(err) {
		t.Fatalf("connection beyond the limit: read %d, %v; want it closed", n, err)
	}
	if s := h.p.Stats(); s.TCPRefused != 1 || s.TCPConns != 2 {
		t.Fatalf("stats %+v", s)
	}
	h.noEvent()

	c1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for h.p.Stats().TCPConns != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", h.p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c4 := h.tcpClient()
	checkReply(t, exchangeTCP(t, c4, query(t, 4, "x.example.", dnsmessage.TypeA, true)), 4,
		dnsmessage.RCodeRefused, true, question("x.example.", dnsmessage.TypeA))
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestPolicyChangeTCP: every query is judged when it arrives: switching the Decider
// applies to the next query of an open connection.
func TestPolicyChangeTCP(t *testing.T) {
	var sw switchDecider
	allow, deny := allowNames("api.example.com."), allowNames()
	sw.cur.Store(allow)
	h := newHarness(t, &sw, nil)
	c := h.tcpClient()
	for i, d := range []*fakeDecider{allow, deny, allow, deny} {
		sw.cur.Store(d)
		id := uint16(i + 1)
		a := exchangeTCP(t, c, query(t, id, "api.example.com.", dnsmessage.TypeA, true))
		if d == deny {
			checkReply(t, a, id, dnsmessage.RCodeRefused, true, question("api.example.com.", dnsmessage.TypeA))
			if e := h.event(); e.Verdict != VerdictDenied || e.Rcode != 5 {
				t.Fatalf("event %v", e)
			}
			continue
		}
		if m := unpack(t, a); m.ID != id || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
			t.Fatalf("answer %+v", m)
		}
		if e := h.event(); e.Verdict != VerdictAllowed {
			t.Fatalf("event %v", e)
		}
	}
	if len(allow.seen()) != 2 || len(deny.seen()) != 2 {
		t.Fatalf("flows: allow %d, deny %d", len(allow.seen()), len(deny.seen()))
	}
	if _, tcpMsgs, _, tcpConns := h.up.snapshot(); len(tcpMsgs) != 2 || tcpConns != 1 {
		t.Fatalf("upstream: %d queries on %d connections", len(tcpMsgs), tcpConns)
	}
}

// TestCloseInFlight: Close while UDP and TCP queries wait for the upstream returns, ends
// every Serve with ErrClosed, closes the client connection and leaves no goroutine behind.
func TestCloseInFlight(t *testing.T) {
	h := newHarness(t, &fakeDecider{allowAll: true}, func(c *Config) { c.Timeout = time.Minute })
	h.up.holdAnswers()
	uc := h.client()
	tc := h.tcpClient()
	for id := uint16(1); id <= 3; id++ {
		uc.Write(query(t, id, "u.example.", dnsmessage.TypeA, true))
	}
	tc.Write(frameOf(query(t, 9, "t.example.", dnsmessage.TypeA, true)))
	h.up.waitReceived(4)
	if s := h.p.Stats(); s.InFlight != 3 || s.TCPConns != 1 {
		t.Fatalf("stats %+v", s)
	}

	done := make(chan struct{})
	go func() { h.p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, ch := range []chan error{h.udpErr, h.tcpErr} {
		select {
		case err := <-ch:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Serve returned %v", err)
			}
			ch <- err // for the harness's cleanup
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return")
		}
	}
	// The connection is closed (a SERVFAIL may have made it out first).
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(tc); err != nil && isTimeout(err) {
		t.Fatalf("client connection after Close: %v, want closed", err)
	}
	noProxyGoroutines(t)
	if s := h.p.Stats(); s.InFlight != 0 || s.TCPConns != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The interrupted queries are reported as errors.
	for range 4 {
		if e := h.event(); e.Verdict != VerdictError {
			t.Fatalf("event %v", e)
		}
	}
	if err := h.p.ServeUDP(h.udp); !errors.Is(err, ErrClosed) {
		t.Fatalf("ServeUDP after Close: %v", err)
	}
	if err := h.p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
