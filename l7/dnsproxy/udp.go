package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// maxUDP is the read buffer of a listener: the largest UDP payload.
const maxUDP = 65535

// ServeUDP serves the datagrams of pc until pc is closed or Close, judging each on its own
// goroutine (at most MaxInFlight at once). The original destination of a datagram is its
// IP_ORIGDSTADDR control message when present (a TPROXY socket with IP_RECVORIGDSTADDR, see
// ListenTransparentUDP), else pc.LocalAddr(). After Close it returns ErrClosed.
func (p *Proxy) ServeUDP(pc *net.UDPConn) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.packets[pc] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.packets, pc)
		p.mu.Unlock()
		p.wg.Done()
	}()
	local := addrPort(pc.LocalAddr())
	send := p.cfg.ReplyUDP
	if send == nil {
		send = func(from, to netip.AddrPort, b []byte) error {
			_, err := pc.WriteToUDPAddrPort(b, to)
			return err
		}
	}
	buf := make([]byte, maxUDP)
	oob := make([]byte, 128)
	var backoff time.Duration
	for {
		n, oobn, _, from, err := pc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if p.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout() {
				return err
			}
			// A transient error (e.g. no buffer space): back off and go on.
			p.logf("DNS proxy: UDP read: %v", err)
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		dst := origDst(oob[:oobn])
		if !dst.IsValid() {
			dst = local
		}
		src := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		p.datagram(buf[:n], src, dst, send)
	}
}

// datagram handles one datagram read by ServeUDP. msg is only valid during the call.
func (p *Proxy) datagram(msg []byte, src, dst netip.AddrPort, send func(from, to netip.AddrPort, b []byte) error) {
	q, perr := parseQuery(msg)
	if perr != nil {
		p.notJudged(perr, src, dst, "udp", func(b []byte) error { return send(dst, src, b) })
		return
	}
	ev := Event{Src: src, Dst: dst, Proto: "udp", Name: q.name, Type: uint16(q.q.Type), Rcode: -1}
	select {
	case p.sem <- struct{}{}:
	default:
		p.dropped.Add(1)
		ev.Verdict = VerdictError
		ev.Reason = "too many DNS queries in flight (" + strconv.Itoa(p.cfg.MaxInFlight) + "): dropped"
		p.emit(ev)
		return
	}
	if !p.track() {
		<-p.sem
		return
	}
	p.inFlight.Add(1)
	m := append([]byte(nil), msg...) // a copy of the actual size only
	go func() {
		defer func() {
			p.inFlight.Add(-1)
			<-p.sem
			p.wg.Done()
		}()
		p.serveUDPQuery(m, q, ev, send)
	}()
}

// notJudged drops a message that did not parse, or answers FORMERR, with an error event.
func (p *Proxy) notJudged(perr *parseError, src, dst netip.AddrPort, proto string, write func([]byte) error) {
	ev := Event{Src: src, Dst: dst, Proto: proto, Verdict: VerdictError, Rcode: -1, Reason: perr.reason}
	if !perr.formErr {
		p.malformed.Add(1)
		p.emit(ev)
		return
	}
	if err := write(reply(perr.hdr, nil, dnsmessage.RCodeFormatError, proto == "tcp")); err != nil {
		ev.Reason += "; sending FORMERR: " + err.Error()
	} else {
		ev.Rcode = RcodeFormErr
	}
	p.emit(ev)
}

// serveUDPQuery judges one UDP query and answers it.
func (p *Proxy) serveUDPQuery(msg []byte, q parsedQuery, ev Event, send func(from, to netip.AddrPort, b []byte) error) {
	d := p.cfg.Decider.Decide(p.ctx, Flow{Src: ev.Src, Dst: ev.Dst, Proto: "udp", Name: q.name, Type: uint16(q.q.Type)})
	ev.Origins, ev.Reason = d.Origins, d.Reason
	var answer []byte
	if !d.Allowed {
		ev.Verdict, ev.Rcode = VerdictDenied, RcodeRefused
		answer = reply(q.hdr, &q.q, dnsmessage.RCodeRefused, false)
	} else if a, rcode, err := p.exchangeUDP(msg, q.hdr.ID, ev.Src, ev.Dst); err != nil {
		ev.Verdict, ev.Rcode = VerdictError, RcodeServFail
		ev.Reason = joinReason(ev.Reason, "upstream: "+err.Error())
		answer = reply(q.hdr, &q.q, dnsmessage.RCodeServerFailure, false)
	} else {
		ev.Verdict, ev.Rcode = VerdictAllowed, rcode
		answer = a
	}
	if err := send(ev.Dst, ev.Src, answer); err != nil {
		ev.Rcode = -1
		ev.Reason = joinReason(ev.Reason, "reply: "+err.Error())
	}
	p.emit(ev)
}

// exchangeUDP sends a query on its own upstream socket and waits, at most Timeout, for the
// answer with the query's ID; other datagrams are ignored.
func (p *Proxy) exchangeUDP(msg []byte, id uint16, src, dst netip.AddrPort) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Timeout)
	defer cancel()
	c, done, err := p.dial(ctx, "udp", src, dst)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := c.Write(msg); err != nil {
		return nil, 0, err
	}
	var last error
	for {
		a, err := readDatagram(c)
		if err != nil {
			if last != nil {
				err = errors.Join(err, last)
			}
			return nil, 0, err
		}
		h, err := answerHeader(a, id)
		if err != nil {
			last = err // a stray or spoofed datagram: wait for the answer
			continue
		}
		return a, int(h.RCode), nil
	}
}

// readDatagramBuffered reads a datagram into a pooled buffer and returns a copy of its size.
func readDatagramBuffered(c net.Conn) ([]byte, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, err := c.Read(*bp)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), (*bp)[:n]...), nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, maxUDP); return &b }}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
