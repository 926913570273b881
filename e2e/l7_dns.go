//go:build linux

package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/cni/cnitest"
)

// DNS outcomes of a lookup through the datapath and the DNS proxy.
const (
	DNSAnswered = "answered" // the server answered (NOERROR with its A record)
	DNSRefused  = "refused"  // the proxy answered REFUSED
	DNSNoAnswer = "no answer"
)

// DNSServer is a DNS server at a place (UDP and TCP on one port) that answers every A
// question with DNSServerAddr and records who asked what.
type DNSServer struct {
	mu   sync.Mutex
	seen map[string][]netip.Addr // question name -> client addresses
}

// DNSServerAddr is the address the test server answers with.
var DNSServerAddr = netip.MustParseAddr("192.0.2.53")

// Reset forgets who asked what.
func (s *DNSServer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = map[string][]netip.Addr{}
}

// Seen returns the client addresses that asked the server for name.
func (s *DNSServer) Seen(name string) []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Addr(nil), s.seen[strings.ToLower(name)]...)
}

func (s *DNSServer) answer(q []byte, from netip.Addr) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	s.mu.Lock()
	name := strings.ToLower(question.Name.String())
	s.seen[name] = append(s.seen[name], from)
	s.mu.Unlock()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(question)
	b.StartAnswers()
	if question.Type == dnsmessage.TypeA {
		b.AResource(dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.AResource{A: DNSServerAddr.As4()})
	}
	out, _ := b.Finish()
	return out
}

// DNSServe starts a DNS server at place on port (UDP and TCP) until the test ends.
func DNSServe(t interface {
	Helper()
	Cleanup(func())
	Fatalf(string, ...any)
}, at Place, port uint16) *DNSServer {
	t.Helper()
	s := &DNSServer{seen: map[string][]netip.Addr{}}
	var (
		pc *net.UDPConn
		ln net.Listener
	)
	err := cnitest.InNetns(at.Netns, func() error {
		addr := netip.AddrPortFrom(at.Addr, port)
		var err error
		if pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr)); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("DNS server at %s:%d: %v", at.Name, port, err)
	}
	t.Cleanup(func() { pc.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if out := s.answer(buf[:n], from.Addr()); out != nil {
				pc.WriteToUDPAddrPort(out, from)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
				for {
					c.SetDeadline(time.Now().Add(30 * time.Second))
					q, err := readFramed(c)
					if err != nil {
						return
					}
					if out := s.answer(q, from); out == nil || writeFramed(c, out) != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

func readFramed(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeFramed(w io.Writer, b []byte) error {
	out := binary.BigEndian.AppendUint16(nil, uint16(len(b)))
	_, err := w.Write(append(out, b...))
	return err
}

// DNSLookup is one lookup and what came of it.
type DNSLookup struct {
	Name    string
	Proto   string // "udp" or "tcp"
	Outcome string
	Answer  netip.Addr
	Err     error
}

func dnsQuery(id uint16, name string) ([]byte, error) {
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	n, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// classify turns an answer into an outcome.
func (l *DNSLookup) classify(id uint16, answer []byte) {
	var p dnsmessage.Parser
	h, err := p.Start(answer)
	switch {
	case err != nil:
		l.Outcome, l.Err = "malformed answer", err
		return
	case h.ID != id || !h.Response:
		l.Outcome, l.Err = "mismatched answer", fmt.Errorf("id %d (want %d), response %v", h.ID, id, h.Response)
		return
	case h.RCode == dnsmessage.RCodeRefused:
		l.Outcome = DNSRefused
		return
	case h.RCode != dnsmessage.RCodeSuccess:
		l.Outcome = "rcode " + h.RCode.String()
		return
	}
	p.SkipAllQuestions()
	if a, err := p.AnswerHeader(); err == nil && a.Type == dnsmessage.TypeA {
		if r, err := p.AResource(); err == nil {
			l.Answer = netip.AddrFrom4(r.A)
		}
	}
	l.Outcome = DNSAnswered
	if l.Answer != DNSServerAddr {
		l.Outcome, l.Err = "wrong answer", fmt.Errorf("A %v", l.Answer)
	}
}

// LookupUDP sends one A query for name from a place's namespace and address over UDP.
func LookupUDP(from, to Place, port uint16, name string, id uint16, timeout time.Duration) DNSLookup {
	l := DNSLookup{Name: name, Proto: "udp"}
	q, err := dnsQuery(id, name)
	if err != nil {
		l.Outcome, l.Err = "bad name", err
		return l
	}
	var c *net.UDPConn
	err = cnitest.InNetns(from.Netns, func() error {
		var err error
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: from.Addr.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr, port)))
		return err
	})
	if err != nil {
		l.Outcome, l.Err = "socket", err
		return l
	}
	defer c.Close()
	if _, err := c.Write(q); err != nil {
		l.Outcome, l.Err = "send", err
		return l
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		l.Outcome, l.Err = DNSNoAnswer, err
		return l
	}
	l.classify(id, buf[:n])
	return l
}

// DNSTCPSession is one TCP connection from a place to a DNS server carrying several lookups.
type DNSTCPSession struct {
	c net.Conn
}

// NewDNSTCPSession connects from a place's namespace and address.
func NewDNSTCPSession(from, to Place, port uint16, timeout time.Duration) (*DNSTCPSession, error) {
	var c net.Conn
	err := cnitest.InNetns(from.Netns, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: from.Addr.AsSlice()}}
		var err error
		c, err = d.Dial("tcp4", netip.AddrPortFrom(to.Addr, port).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &DNSTCPSession{c: c}, nil
}

// Lookup sends one A query on the connection and reads its answer.
func (s *DNSTCPSession) Lookup(name string, id uint16, timeout time.Duration) DNSLookup {
	l := DNSLookup{Name: name, Proto: "tcp"}
	q, err := dnsQuery(id, name)
	if err != nil {
		l.Outcome, l.Err = "bad name", err
		return l
	}
	s.c.SetDeadline(time.Now().Add(timeout))
	if err := writeFramed(s.c, q); err != nil {
		l.Outcome, l.Err = "send", err
		return l
	}
	answer, err := readFramed(s.c)
	if err != nil {
		l.Outcome, l.Err = DNSNoAnswer, err
		if errors.Is(err, io.EOF) {
			l.Outcome = "closed"
		}
		return l
	}
	l.classify(id, answer)
	return l
}

// Close closes the connection.
func (s *DNSTCPSession) Close() { s.c.Close() }

// ExpectDNS is what a lookup must come to, from netward trace: dropped at L3/L4 (no
// answer), refused by the DNS proxy, or answered by the server.
func ExpectDNS(r *analysis.Result) string {
	for _, s := range []*analysis.Side{r.Egress, r.Ingress} {
		switch {
		case s == nil:
		case s.DNS != nil && !s.DNS.Allowed:
			return DNSRefused
		case !s.Allowed:
			return DNSNoAnswer
		}
	}
	return DNSAnswered
}

// TraceDNS traces one lookup with netward's analysis.
func TraceDNS(c *cluster.Cluster, from, to Place, proto uint8, port uint16, name string) (*analysis.Result, error) {
	return analysis.Trace(c, analysis.Flow{From: from.Name, To: to.Name, Proto: proto, Port: port, DNS: name})
}
