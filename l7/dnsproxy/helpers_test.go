package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// answerA is the address the fake upstream answers every A query with.
var answerA = [4]byte{192, 0, 2, 1}

// upstreamServer is a fake DNS server on 127.0.0.1 (UDP and TCP, same port): it answers A
// queries with answerA (other types: NOERROR, no answer) and records what it received.
type upstreamServer struct {
	t   testing.TB
	udp *net.UDPConn
	tcp net.Listener

	// hold, when not nil, delays every answer until it is closed.
	hold chan struct{}
	// silent: never answer. wrongIDFirst: send an answer with another ID first; onlyWrongID:
	// send only that.
	silent, wrongIDFirst, onlyWrongID atomic.Bool

	mu       sync.Mutex
	udpMsgs  [][]byte // queries received over UDP
	tcpMsgs  [][]byte // queries received over TCP
	answers  [][]byte // answers sent with the right ID
	tcpConns int
	conns    []net.Conn
	received chan struct{} // one token per query received
	wg       sync.WaitGroup
	done     chan struct{}
}

func newUpstream(t testing.TB) *upstreamServer {
	t.Helper()
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		// The UDP port is taken: use any UDP port (dialers use udpAddr and tcpAddr).
		udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
	}
	u := &upstreamServer{t: t, udp: udp, tcp: tcp, received: make(chan struct{}, 1<<16), done: make(chan struct{})}
	u.wg.Add(2)
	go u.serveUDP()
	go u.serveTCP()
	t.Cleanup(u.close)
	return u
}

func (u *upstreamServer) udpAddr() netip.AddrPort { return addrPort(u.udp.LocalAddr()) }
func (u *upstreamServer) tcpAddr() netip.AddrPort { return addrPort(u.tcp.Addr()) }

// dialer is a Config.DialUpstream that dials the fake upstream whatever the destination.
func (u *upstreamServer) dialer() func(ctx context.Context, network string, src, dst netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, network string, src, dst netip.AddrPort) (net.Conn, error) {
		var d net.Dialer
		if network == "udp" {
			return d.DialContext(ctx, "udp4", u.udpAddr().String())
		}
		return d.DialContext(ctx, "tcp4", u.tcpAddr().String())
	}
}

func (u *upstreamServer) close() {
	select {
	case <-u.done:
		return
	default:
	}
	close(u.done)
	u.release()
	u.udp.Close()
	u.tcp.Close()
	u.mu.Lock()
	for _, c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// holdAnswers makes answers wait until release.
func (u *upstreamServer) holdAnswers() {
	u.mu.Lock()
	u.hold = make(chan struct{})
	u.mu.Unlock()
}

func (u *upstreamServer) release() {
	u.mu.Lock()
	if u.hold != nil {
		close(u.hold)
		u.hold = nil
	}
	u.mu.Unlock()
}

func (u *upstreamServer) wait() {
	u.mu.Lock()
	h := u.hold
	u.mu.Unlock()
	if h != nil {
		select {
		case <-h:
		case <-u.done:
		}
	}
}

// waitReceived waits until the upstream has received n more queries.
func (u *upstreamServer) waitReceived(n int) {
	u.t.Helper()
	for range n {
		select {
		case <-u.received:
		case <-time.After(5 * time.Second):
			u.t.Fatal("the upstream did not receive the query")
		}
	}
}

func (u *upstreamServer) snapshot() (udpMsgs, tcpMsgs, answers [][]byte, tcpConns int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][]byte(nil), u.udpMsgs...), append([][]byte(nil), u.tcpMsgs...), append([][]byte(nil), u.answers...), u.tcpConns
}

func (u *upstreamServer) serveUDP() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := u.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		msg := append([]byte(nil), buf[:n]...)
		u.mu.Lock()
		u.udpMsgs = append(u.udpMsgs, msg)
		u.mu.Unlock()
		u.received <- struct{}{}
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			for _, a := range u.answersTo(msg) {
				u.udp.WriteToUDPAddrPort(a, from)
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
}

func (u *upstreamServer) serveTCP() {
	defer u.wg.Done()
	for {
		c, err := u.tcp.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.tcpConns++
		u.conns = append(u.conns, c)
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer c.Close()
			for {
				frame, _, err := readFrame(c)
				if err != nil {
					return
				}
				msg := frame[2:]
				u.mu.Lock()
				u.tcpMsgs = append(u.tcpMsgs, msg)
				u.mu.Unlock()
				u.received <- struct{}{}
				for _, a := range u.answersTo(msg) {
					if _, err := c.Write(frameOf(a)); err != nil {
						return
					}
				}
			}
		}()
	}
}

// answersTo returns what the upstream sends back to msg, after hold.
func (u *upstreamServer) answersTo(msg []byte) [][]byte {
	u.wait()
	if u.silent.Load() {
		return nil
	}
	a := buildAnswer(msg)
	if a == nil {
		return nil
	}
	var out [][]byte
	if u.wrongIDFirst.Load() || u.onlyWrongID.Load() {
		w := append([]byte(nil), a...)
		binary.BigEndian.PutUint16(w, binary.BigEndian.Uint16(w)+1)
		out = append(out, w)
	}
	if !u.onlyWrongID.Load() {
		u.mu.Lock()
		u.answers = append(u.answers, a)
		u.mu.Unlock()
		out = append(out, a)
	}
	return out
}

// buildAnswer answers a query: A records with answerA, NOERROR otherwise; FORMERR when the
// question does not parse; nothing when the header does not.
func buildAnswer(msg []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	q, err := p.Question()
	if err != nil {
		rh.RCode = dnsmessage.RCodeFormatError
		b := dnsmessage.NewBuilder(nil, rh)
		out, _ := b.Finish()
		return out
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	if q.Type == dnsmessage.TypeA {
		b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: answerA})
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

func frameOf(msg []byte) []byte {
	f := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(f, uint16(len(msg)))
	copy(f[2:], msg)
	return f
}

// fakeDecider allows the names of a set (all names when allowAll) and records the flows.
type fakeDecider struct {
	allowAll bool
	allow    map[string]bool
	mu       sync.Mutex
	flows    []Flow
}

func allowNames(names ...string) *fakeDecider {
	d := &fakeDecider{allow: map[string]bool{}}
	for _, n := range names {
		d.allow[n] = true
	}
	return d
}

func (d *fakeDecider) Decide(ctx context.Context, f Flow) Decision {
	d.mu.Lock()
	d.flows = append(d.flows, f)
	d.mu.Unlock()
	if d.allowAll || d.allow[f.Name] {
		return Decision{Allowed: true, Origins: []string{"allow:" + f.Name}}
	}
	return Decision{Origins: []string{"deny-rule"}, Reason: "name not allowed"}
}

func (d *fakeDecider) seen() []Flow {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Flow(nil), d.flows...)
}

// switchDecider delegates to a Decider that can be switched at any time.
type switchDecider struct{ cur atomic.Pointer[fakeDecider] }

func (s *switchDecider) Decide(ctx context.Context, f Flow) Decision {
	return s.cur.Load().Decide(ctx, f)
}

// harness is a Proxy serving UDP and TCP on 127.0.0.1 in front of a fake upstream.
type harness struct {
	t       testing.TB
	p       *Proxy
	up      *upstreamServer
	events  chan Event
	udp     *net.UDPConn
	tcp     net.Listener
	udpErr  chan error
	tcpErr  chan error
	udpAddr netip.AddrPort
	tcpAddr netip.AddrPort
	logs    atomic.Int64
}

func newHarness(t testing.TB, d Decider, mod func(*Config)) *harness {
	t.Helper()
	up := newUpstream(t)
	h := &harness{t: t, up: up, events: make(chan Event, 1<<12), udpErr: make(chan error, 1), tcpErr: make(chan error, 1)}
	cfg := Config{
		Decider:      d,
		Events:       func(e Event) { h.events <- e },
		DialUpstream: up.dialer(),
		Timeout:      2 * time.Second,
		Logf:         func(string, ...any) { h.logs.Add(1) },
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	h.udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h.tcp, err = net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.udpAddr, h.tcpAddr = addrPort(h.udp.LocalAddr()), addrPort(h.tcp.Addr())
	go func() { h.udpErr <- p.ServeUDP(h.udp) }()
	go func() { h.tcpErr <- p.ServeTCP(h.tcp) }()
	t.Cleanup(func() {
		p.Close()
		for _, ch := range []chan error{h.udpErr, h.tcpErr} {
			select {
			case err := <-ch:
				if !errors.Is(err, ErrClosed) {
					t.Errorf("Serve returned %v, want ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Serve did not return after Close")
			}
		}
	})
	return h
}

// event waits for the next event.
func (h *harness) event() Event {
	h.t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(5 * time.Second):
		h.t.Fatal("no event")
	}
	return Event{}
}

// noEvent checks that no event is pending.
func (h *harness) noEvent() {
	h.t.Helper()
	select {
	case e := <-h.events:
		h.t.Fatalf("unexpected event %v", e)
	case <-time.After(50 * time.Millisecond):
	}
}

// client is a UDP client socket connected to the proxy's listener.
func (h *harness) client() *net.UDPConn {
	h.t.Helper()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(h.udpAddr))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func (h *harness) tcpClient() net.Conn {
	h.t.Helper()
	c, err := net.Dial("tcp4", h.tcpAddr.String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// query builds a query with one question.
func query(t testing.TB, id uint16, name string, typ dnsmessage.Type, rd bool) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: rd})
	b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recv reads one datagram within d; nil when none comes.
func recv(t testing.TB, c *net.UDPConn, d time.Duration) []byte {
	t.Helper()
	buf := make([]byte, 65535)
	c.SetReadDeadline(time.Now().Add(d))
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

func exchangeUDP(t testing.TB, c *net.UDPConn, q []byte) []byte {
	t.Helper()
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	a := recv(t, c, 5*time.Second)
	if a == nil {
		t.Fatal("no answer")
	}
	return a
}

func exchangeTCP(t testing.TB, c net.Conn, q []byte) []byte {
	t.Helper()
	if _, err := c.Write(frameOf(q)); err != nil {
		t.Fatal(err)
	}
	return readAnswerTCP(t, c)
}

func readAnswerTCP(t testing.TB, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, _, err := readFrame(c)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return f[2:]
}

func unpack(t testing.TB, b []byte) dnsmessage.Message {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		t.Fatalf("answer does not parse: %v (%x)", err, b)
	}
	return m
}

// checkReply checks the proxy's own answer: ID, QR, rcode, RD, the question echoed, nothing else.
func checkReply(t testing.TB, b []byte, id uint16, rcode dnsmessage.RCode, rd bool, q *dnsmessage.Question) {
	t.Helper()
	m := unpack(t, b)
	if m.ID != id || !m.Response || m.RCode != rcode || m.RecursionDesired != rd {
		t.Fatalf("header %+v, want ID %d QR rcode %v RD %v", m.Header, id, rcode, rd)
	}
	if q == nil {
		if len(m.Questions) != 0 {
			t.Fatalf("questions %v, want none", m.Questions)
		}
	} else if len(m.Questions) != 1 || m.Questions[0] != *q {
		t.Fatalf("questions %v, want %v", m.Questions, *q)
	}
	if len(m.Answers)+len(m.Authorities)+len(m.Additionals) != 0 {
		t.Fatalf("records in the proxy's answer: %+v", m)
	}
}

func question(name string, typ dnsmessage.Type) *dnsmessage.Question {
	return &dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}
}

func checkEvent(t testing.TB, e Event, want Event) {
	t.Helper()
	if e.Time.IsZero() {
		t.Errorf("event without time: %v", e)
	}
	if want.Src.IsValid() && e.Src != want.Src || e.Dst != want.Dst || e.Proto != want.Proto ||
		e.Name != want.Name || e.Type != want.Type || e.Verdict != want.Verdict || e.Rcode != want.Rcode ||
		strings.Join(e.Origins, ",") != strings.Join(want.Origins, ",") || !strings.Contains(e.Reason, want.Reason) {
		t.Fatalf("event\n %v %q\nwant\n %v %q", e, e.Origins, want, want.Origins)
	}
}

// noProxyGoroutines fails if a goroutine of the proxy is still there.
func noProxyGoroutines(t testing.TB) {
	t.Helper()
	var stacks string
	for range 100 {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "dnsproxy.(*Proxy)") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("goroutines of the proxy left:\n%s", stacks)
}
