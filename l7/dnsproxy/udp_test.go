package dnsproxy

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestNewNeedsDecider(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a Decider succeeded")
	}
}

// TestUDPAllowed: an allowed query goes upstream byte for byte and the upstream's answer
// comes back byte for byte, from the address the client asked.
func TestUDPAllowed(t *testing.T) {
	d := allowNames("api.example.com.")
	h := newHarness(t, d, nil)
	c := h.client()
	q := query(t, 0x1234, "api.example.com.", dnsmessage.TypeA, true)
	a := exchangeUDP(t, c, q)

	udpMsgs, _, answers, _ := h.up.snapshot()
	if len(udpMsgs) != 1 || !bytes.Equal(udpMsgs[0], q) {
		t.Fatalf("upstream received %x, want %x", udpMsgs, q)
	}
	if len(answers) != 1 || !bytes.Equal(a, answers[0]) {
		t.Fatalf("client got %x, upstream sent %x", a, answers)
	}
	m := unpack(t, a)
	if m.ID != 0x1234 || !m.Response || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
		t.Fatalf("answer %+v", m)
	}
	if r, ok := m.Answers[0].Body.(*dnsmessage.AResource); !ok || r.A != answerA {
		t.Fatalf("answer record %v", m.Answers[0])
	}
	client := addrPort(c.LocalAddr())
	checkEvent(t, h.event(), Event{Src: client, Dst: h.udpAddr, Proto: "udp", Name: "api.example.com.", Type: 1,
		Verdict: VerdictAllowed, Rcode: 0, Origins: []string{"allow:api.example.com."}})
	flows := d.seen()
	if len(flows) != 1 || flows[0] != (Flow{Src: client, Dst: h.udpAddr, Proto: "udp", Name: "api.example.com.", Type: 1}) {
		t.Fatalf("flows %+v", flows)
	}
	if s := h.p.Stats(); s.Allowed != 1 || s.UpstreamDials != 1 || s.Denied+s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestUDPDenied: a denied query gets REFUSED (same ID, the question, RD copied, no
// records) and nothing reaches the upstream.
func TestUDPDenied(t *testing.T) {
	h := newHarness(t, allowNames("api.example.com."), nil)
	c := h.client()
	for i, rd := range []bool{true, false} {
		id := uint16(0xbeef + i)
		a := exchangeUDP(t, c, query(t, id, "blocked.example.org.", dnsmessage.TypeAAAA, rd))
		checkReply(t, a, id, dnsmessage.RCodeRefused, rd, question("blocked.example.org.", dnsmessage.TypeAAAA))
		checkEvent(t, h.event(), Event{Src: addrPort(c.LocalAddr()), Dst: h.udpAddr, Proto: "udp", Name: "blocked.example.org.",
			Type: 28, Verdict: VerdictDenied, Rcode: 5, Origins: []string{"deny-rule"}, Reason: "name not allowed"})
	}
	time.Sleep(50 * time.Millisecond)
	if udpMsgs, tcpMsgs, _, _ := h.up.snapshot(); len(udpMsgs)+len(tcpMsgs) != 0 {
		t.Fatalf("the upstream received %d+%d messages", len(udpMsgs), len(tcpMsgs))
	}
	if s := h.p.Stats(); s.Denied != 2 || s.UpstreamDials != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestNameCaseFolding: the Decider sees the name lower-cased and fully qualified, the
// upstream the query as sent, and a refusal echoes the question as sent (0x20 encoding).
func TestNameCaseFolding(t *testing.T) {
	d := allowNames("api.example.com.")
	h := newHarness(t, d, nil)
	c := h.client()

	q := query(t, 7, "API.Example.COM.", dnsmessage.TypeA, true)
	a := exchangeUDP(t, c, q)
	if m := unpack(t, a); m.RCode != dnsmessage.RCodeSuccess || m.Questions[0].Name.String() != "API.Example.COM." {
		t.Fatalf("answer %+v", m)
	}
	if udpMsgs, _, _, _ := h.up.snapshot(); len(udpMsgs) != 1 || !bytes.Equal(udpMsgs[0], q) {
		t.Fatalf("upstream received %x, want the query unchanged %x", udpMsgs, q)
	}
	if e := h.event(); e.Name != "api.example.com." || e.Verdict != VerdictAllowed {
		t.Fatalf("event %v", e)
	}

	a = exchangeUDP(t, c, query(t, 8, "Blocked.EXAMPLE.", dnsmessage.TypeA, true))
	checkReply(t, a, 8, dnsmessage.RCodeRefused, true, question("Blocked.EXAMPLE.", dnsmessage.TypeA))
	h.event()

	// Bytes that are not printable ASCII, and the backslash, are \DDD; the root is ".".
	a = exchangeUDP(t, c, query(t, 9, "A b\x00\xff\\.Example.", dnsmessage.TypeTXT, true))
	checkReply(t, a, 9, dnsmessage.RCodeRefused, true, question("A b\x00\xff\\.Example.", dnsmessage.TypeTXT))
	h.event()
	a = exchangeUDP(t, c, query(t, 10, ".", dnsmessage.TypeNS, false))
	checkReply(t, a, 10, dnsmessage.RCodeRefused, false, question(".", dnsmessage.TypeNS))
	h.event()

	var names []string
	for _, f := range d.seen() {
		names = append(names, f.Name)
	}
	want := []string{"api.example.com.", "blocked.example.", `a\032b\000\255\092.example.`, "."}
	if strings.Join(names, " | ") != strings.Join(want, " | ") {
		t.Fatalf("the Decider saw %q, want %q", names, want)
	}
}

// TestUDPUpstreamTimeout: an upstream that does not answer within Timeout gives SERVFAIL
// and an error event.
func TestUDPUpstreamTimeout(t *testing.T) {
	h := newHarness(t, allowNames("slow.example."), func(c *Config) { c.Timeout = 200 * time.Millisecond })
	h.up.silent.Store(true)
	c := h.client()
	start := time.Now()
	a := exchangeUDP(t, c, query(t, 0x4242, "slow.example.", dnsmessage.TypeA, true))
	if el := time.Since(start); el < 200*time.Millisecond || el > 3*time.Second {
		t.Fatalf("SERVFAIL after %v, want after the 200ms timeout", el)
	}
	checkReply(t, a, 0x4242, dnsmessage.RCodeServerFailure, true, question("slow.example.", dnsmessage.TypeA))
	checkEvent(t, h.event(), Event{Src: addrPort(c.LocalAddr()), Dst: h.udpAddr, Proto: "udp", Name: "slow.example.", Type: 1,
		Verdict: VerdictError, Rcode: 2, Origins: []string{"allow:slow.example."}, Reason: "upstream: "})
	if udpMsgs, _, _, _ := h.up.snapshot(); len(udpMsgs) != 1 {
		t.Fatalf("upstream received %d queries", len(udpMsgs))
	}
}

// TestUDPWrongIDIgnored: an upstream datagram with another ID is not an answer: the proxy
// waits for the one with the query's ID, and times out when there is none.
func TestUDPWrongIDIgnored(t *testing.T) {
	h := newHarness(t, allowNames("api.example.com."), func(c *Config) { c.Timeout = 500 * time.Millisecond })
	c := h.client()

	h.up.wrongIDFirst.Store(true)
	a := exchangeUDP(t, c, query(t, 100, "api.example.com.", dnsmessage.TypeA, true))
	_, _, answers, _ := h.up.snapshot()
	if len(answers) != 1 || !bytes.Equal(a, answers[0]) {
		t.Fatalf("client got %x, want the answer with the right ID %x", a, answers)
	}
	if m := unpack(t, a); m.ID != 100 {
		t.Fatalf("ID %d", m.ID)
	}
	if extra := recv(t, c, 200*time.Millisecond); extra != nil {
		t.Fatalf("a second datagram reached the client: %x", extra)
	}
	if e := h.event(); e.Verdict != VerdictAllowed || e.Rcode != 0 {
		t.Fatalf("event %v", e)
	}

	h.up.wrongIDFirst.Store(false)
	h.up.onlyWrongID.Store(true)
	a = exchangeUDP(t, c, query(t, 200, "api.example.com.", dnsmessage.TypeA, true))
	checkReply(t, a, 200, dnsmessage.RCodeServerFailure, true, question("api.example.com.", dnsmessage.TypeA))
	if e := h.event(); e.Verdict != VerdictError || e.Rcode != 2 || !strings.Contains(e.Reason, "answer ID 201 is not the query's 200") {
		t.Fatalf("event %v", e)
	}
}

// TestMalformed: bytes that are not a query are dropped with an error event; a query with
// two questions, none, or another opcode gets FORMERR.
func TestMalformed(t *testing.T) {
	h := newHarness(t, &fakeDecider{allowAll: true}, nil)
	c := h.client()
	client := addrPort(c.LocalAddr())

	resp := query(t, 5, "x.example.", dnsmessage.TypeA, true)
	resp[2] |= 0x80 // QR
	for _, b := range [][]byte{
		{1, 2, 3},
		{},
		append(query(t, 6, "x.example.", dnsmessage.TypeA, true)[:12], 3, 'a'), // question cut short
		resp,
	} {
		c.Write(b)
		if a := recv(t, c, 200*time.Millisecond); a != nil {
			t.Fatalf("answer %x to %x", a, b)
		}
		checkEvent(t, h.event(), Event{Src: client, Dst: h.udpAddr, Proto: "udp", Verdict: VerdictError, Rcode: -1})
	}

	two := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x2222, RecursionDesired: true})
	two.StartQuestions()
	two.Question(*question("a.example.", dnsmessage.TypeA))
	two.Question(*question("b.example.", dnsmessage.TypeA))
	twoQ, _ := two.Finish()
	nb := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x3333})
	none, _ := nb.Finish()
	status := query(t, 0x4444, "a.example.", dnsmessage.TypeA, false)
	status[2] |= 2 << 3 // opcode STATUS
	for _, tc := range []struct {
		msg    []byte
		id     uint16
		rd     bool
		reason string
	}{
		{twoQ, 0x2222, true, "2 questions"},
		{none, 0x3333, false, "0 questions"},
		{status, 0x4444, false, "opcode 2"},
	} {
		a := exchangeUDP(t, c, tc.msg)
		checkReply(t, a, tc.id, dnsmessage.RCodeFormatError, tc.rd, nil)
		if tc.id == 0x4444 {
			if m := unpack(t, a); m.OpCode != 2 {
				t.Errorf("opcode %d not echoed", m.OpCode)
			}
		}
		checkEvent(t, h.event(), Event{Src: client, Dst: h.udpAddr, Proto: "udp", Verdict: VerdictError, Rcode: 1, Reason: tc.reason})
	}
	if udpMsgs, _, _, _ := h.up.snapshot(); len(udpMsgs) != 0 {
		t.Fatalf("the upstream received %d messages", len(udpMsgs))
	}
	if s := h.p.Stats(); s.Malformed != 4 || s.Errors != 7 || s.UpstreamDials != 0 {
		t.Fatalf("stats %+v", s)
	}

	// The proxy still serves.
	a := exchangeUDP(t, c, query(t, 1, "ok.example.", dnsmessage.TypeA, true))
	if m := unpack(t, a); m.RCode != dnsmessage.RCodeSuccess || m.ID != 1 {
		t.Fatalf("answer %+v", m.Header)
	}
}

// TestMaxInFlight: beyond MaxInFlight queries waiting for the upstream, datagrams are
// dropped with an error event; the queries in flight are answered when it does.
func TestMaxInFlight(t *testing.T) {
	h := newHarness(t, &fakeDecider{allowAll: true}, func(c *Config) { c.MaxInFlight = 2 })
	h.up.holdAnswers()
	c := h.client()
	for id := uint16(1); id <= 5; id++ {
		if _, err := c.Write(query(t, id, "q.example.", dnsmessage.TypeA, true)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		checkEvent(t, h.event(), Event{Src: addrPort(c.LocalAddr()), Dst: h.udpAddr, Proto: "udp", Name: "q.example.", Type: 1,
			Verdict: VerdictError, Rcode: -1, Reason: "too many DNS queries in flight (2): dropped"})
	}
	h.up.waitReceived(2)
	if s := h.p.Stats(); s.Dropped != 3 || s.InFlight != 2 {
		t.Fatalf("stats %+v", s)
	}
	h.up.release()
	ids := map[uint16]bool{}
	for range 2 {
		m := unpack(t, recv(t, c, 5*time.Second))
		ids[m.ID] = true
		if e := h.event(); e.Verdict != VerdictAllowed {
			t.Fatalf("event %v", e)
		}
	}
	if !ids[1] || !ids[2] {
		t.Fatalf("answered IDs %v, want 1 and 2", ids)
	}
	if a := recv(t, c, 200*time.Millisecond); a != nil {
		t.Fatalf("a dropped query was answered: %x", a)
	}
	// The slots are free again.
	if m := unpack(t, exchangeUDP(t, c, query(t, 6, "q.example.", dnsmessage.TypeA, true))); m.ID != 6 {
		t.Fatalf("ID %d", m.ID)
	}
	if s := h.p.Stats(); s.Dropped != 3 || s.Allowed != 3 {
		t.Fatalf("stats %+v", s)
	}
}
