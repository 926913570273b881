package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ServeTCP accepts DNS-over-TCP connections on ln until Close (or until ln fails), serving
// each on its own goroutine (at most MaxTCPConns at once; beyond, a connection is closed at
// once). The original destination of a connection is its LocalAddr, as with a TPROXY
// listener (IP_TRANSPARENT). After Close it returns ErrClosed.
func (p *Proxy) ServeTCP(ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.listeners[ln] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
		p.wg.Done()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off like net/http.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		p.startTCP(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (p *Proxy) startTCP(c net.Conn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return
	}
	if len(p.conns) >= p.cfg.MaxTCPConns {
		p.mu.Unlock()
		p.tcpRefused.Add(1)
		c.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.tcpConns.Add(1)
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer func() {
			c.Close()
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
			p.tcpConns.Add(-1)
			p.wg.Done()
		}()
		p.serveTCPConn(c)
	}()
}

// upstream is the TCP connection of one client connection to its destination.
type upstream struct {
	c    net.Conn
	done func()
}

func (u *upstream) close() {
	if u.c != nil {
		u.done()
		u.c, u.done = nil, nil
	}
}

// serveTCPConn serves the queries of one client connection, one after the other.
func (p *Proxy) serveTCPConn(c net.Conn) {
	src, dst := addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
	var up upstream
	defer up.close()
	write := func(b []byte) error {
		c.SetWriteDeadline(time.Now().Add(p.cfg.TCPIdleTimeout))
		_, err := c.Write(b)
		return err
	}
	for {
		c.SetReadDeadline(time.Now().Add(p.cfg.TCPIdleTimeout))
		frame, n, err := readFrame(c)
		if err != nil {
			if !(errors.Is(err, io.EOF) && n == 0) && !p.isClosed() {
				p.logf("DNS proxy: TCP connection from %s to %s: %v", src, dst, err)
			}
			return
		}
		q, perr := parseQuery(frame[2:])
		if perr != nil {
			werr := error(nil)
			p.notJudged(perr, src, dst, "tcp", func(b []byte) error { werr = write(b); return werr })
			if werr != nil {
				return
			}
			continue
		}
		ev := Event{Src: src, Dst: dst, Proto: "tcp", Name: q.name, Type: uint16(q.q.Type), Rcode: -1}
		d := p.cfg.Decider.Decide(p.ctx, Flow{Src: src, Dst: dst, Proto: "tcp", Name: q.name, Type: uint16(q.q.Type)})
		ev.Origins, ev.Reason = d.Origins, d.Reason
		var answer []byte
		if !d.Allowed {
			ev.Verdict, ev.Rcode = VerdictDenied, RcodeRefused
			answer = reply(q.hdr, &q.q, dnsmessage.RCodeRefused, true)
		} else if a, rcode, err := p.exchangeTCP(&up, frame, q.hdr.ID, src, dst); err != nil {
			ev.Verdict, ev.Rcode = VerdictError, RcodeServFail
			ev.Reason = joinReason(ev.Reason, "upstream: "+err.Error())
			answer = reply(q.hdr, &q.q, dnsmessage.RCodeServerFailure, true)
		} else {
			ev.Verdict, ev.Rcode = VerdictAllowed, rcode
			answer = a
		}
		if err := write(answer); err != nil {
			ev.Rcode = -1
			ev.Reason = joinReason(ev.Reason, "reply: "+err.Error())
			p.emit(ev)
			return
		}
		p.emit(ev)
	}
}

// exchangeTCP forwards a framed query on the client connection's upstream connection
// (dialed when there is none) and reads one framed answer, within Timeout. A kept
// connection the destination closed meanwhile is replaced once; on any other failure the
// connection is dropped, to be dialed again by the next allowed query.
func (p *Proxy) exchangeTCP(up *upstream, frame []byte, id uint16, src, dst netip.AddrPort) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	for retried := false; ; retried = true {
		reused := up.c != nil
		if !reused {
			c, done, err := p.dial(ctx, "tcp", src, dst)
			if err != nil {
				return nil, 0, err
			}
			up.c, up.done = c, done
		}
		up.c.SetDeadline(deadline)
		a, n, err := roundTrip(up.c, frame)
		if err == nil {
			h, herr := answerHeader(a[2:], id)
			if herr != nil {
				up.close()
				return nil, 0, herr
			}
			return a, int(h.RCode), nil
		}
		up.close()
		var ne net.Error
		if reused && !retried && n == 0 && !(errors.As(err, &ne) && ne.Timeout()) && ctx.Err() == nil {
			continue // closed by the destination while idle: dial again
		}
		return nil, 0, err
	}
}

// roundTrip writes a framed query and reads one framed answer; n is the count of answer
// bytes read.
func roundTrip(c net.Conn, frame []byte) (answer []byte, n int, err error) {
	if _, err := c.Write(frame); err != nil {
		return nil, 0, err
	}
	return readFrame(c)
}

// readFrame reads one message with its 2-byte length prefix (RFC 7766 §8) and returns the
// whole frame. Its buffer grows with the bytes that arrive, not with the announced length.
// n is the count of bytes read, also on error.
func readFrame(r io.Reader) (frame []byte, n int, err error) {
	var hdr [2]byte
	if n, err = io.ReadFull(r, hdr[:]); err != nil {
		return nil, n, err
	}
	size := 2 + int(binary.BigEndian.Uint16(hdr[:]))
	frame = make([]byte, 2, min(size, 514))
	copy(frame, hdr[:])
	for len(frame) < size {
		if len(frame) == cap(frame) {
			grown := make([]byte, len(frame), min(size, 2*cap(frame)))
			copy(grown, frame)
			frame = grown
		}
		m, rerr := r.Read(frame[len(frame):min(cap(frame), size)])
		frame = frame[:len(frame)+m]
		if len(frame) == size {
			break
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return nil, len(frame), rerr
		}
	}
	return frame, len(frame), nil
}
