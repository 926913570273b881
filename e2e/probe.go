//go:build linux

package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netward/netward/cni/cnitest"
	"github.com/netward/netward/policy"
)

// Outcome is what a probe observed.
type Outcome int

// Outcomes. Denied means no answer within the timeout, which is how the datapath's drops
// look; Failed is anything else (refused, unreachable, a wrong answer): a harness or
// topology problem, never a verdict.
const (
	Allowed Outcome = iota + 1
	Denied
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allow"
	case Denied:
		return "deny"
	case Failed:
		return "error"
	}
	return "?"
}

// Place is one end of a flow: where it lives and the name trace knows it by.
type Place struct {
	// Name is the flow endpoint for analysis.Trace: "ns/pod", "host", or an IP address.
	Name  string
	Netns string // netns path
	Addr  netip.Addr
}

// Observation is a probe's result.
type Observation struct {
	Outcome Outcome
	Err     error // why it was Denied (the timeout) or Failed
}

// Prober sends real traffic between network namespaces. Destinations need Serve first.
type Prober struct {
	// Timeout is how long a probe waits for an answer before calling the flow denied.
	Timeout time.Duration

	mu        sync.Mutex
	listeners []func()
}

// NewProber returns a prober with a 1.5 s timeout.
func NewProber() *Prober { return &Prober{Timeout: 1500 * time.Millisecond} }

// Close stops every responder.
func (p *Prober) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.listeners {
		c()
	}
	p.listeners = nil
}

func (p *Prober) onClose(f func()) {
	p.mu.Lock()
	p.listeners = append(p.listeners, f)
	p.mu.Unlock()
}

// Serve starts responders at place for every (protocol, port): a TCP listener that echoes
// a line, a UDP socket that echoes datagrams, and an SCTP responder that answers INIT with
// INIT-ACK. ICMP echo is answered by the kernel.
func (p *Prober) Serve(at Place, ports map[uint8][]uint16) error {
	return cnitest.InNetns(at.Netns, func() error {
		for _, port := range ports[policy.ProtoTCP] {
			ln, err := net.Listen("tcp4", netip.AddrPortFrom(at.Addr, port).String())
			if err != nil {
				return fmt.Errorf("%s: tcp %d: %w", at.Name, port, err)
			}
			p.onClose(func() { ln.Close() })
			go serveTCP(ln)
		}
		for _, port := range ports[policy.ProtoUDP] {
			c, err := net.ListenPacket("udp4", netip.AddrPortFrom(at.Addr, port).String())
			if err != nil {
				return fmt.Errorf("%s: udp %d: %w", at.Name, port, err)
			}
			p.onClose(func() { c.Close() })
			go serveUDP(c)
		}
		if sctp := ports[policy.ProtoSCTP]; len(sctp) > 0 {
			fd, err := rawSocket(unix.IPPROTO_SCTP, at.Addr)
			if err != nil {
				return fmt.Errorf("%s: sctp responder: %w", at.Name, err)
			}
			set := map[uint16]bool{}
			for _, port := range sctp {
				set[port] = true
			}
			stop := make(chan struct{})
			p.onClose(func() { close(stop) })
			go serveSCTP(fd, set, stop)
		}
		return nil
	})
}

func serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				fmt.Fprintf(c, "echo %s", line)
			}
		}()
	}
}

func serveUDP(c net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		c.WriteTo(append([]byte("echo "), buf[:n]...), from)
	}
}

var probeSeq atomic.Uint32

// Probe sends one flow from src to dst and reports whether it got through.
func (p *Prober) Probe(src, dst Place, proto uint8, port uint16) Observation {
	n := probeSeq.Add(1)
	var err error
	switch proto {
	case policy.ProtoTCP:
		err = p.probeTCP(src, dst, port, n)
	case policy.ProtoUDP:
		err = p.probeUDP(src, dst, port, n)
	case policy.ProtoSCTP:
		err = p.probeSCTP(src, dst, port, n)
	case policy.ProtoICMP:
		err = p.probeICMP(src, dst, n)
	default:
		err = fmt.Errorf("protocol %d: not probed", proto)
	}
	switch {
	case err == nil:
		return Observation{Outcome: Allowed}
	case isTimeout(err):
		return Observation{Outcome: Denied, Err: err}
	}
	return Observation{Outcome: Failed, Err: err}
}

type timeoutError struct{ what string }

func (e *timeoutError) Error() string { return "timeout: " + e.what }
func (e *timeoutError) Timeout() bool { return true }

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *Prober) probeTCP(src, dst Place, port uint16, n uint32) error {
	var c net.Conn
	err := cnitest.InNetns(src.Netns, func() error {
		d := net.Dialer{Timeout: p.Timeout, LocalAddr: &net.TCPAddr{IP: src.Addr.AsSlice()}}
		var err error
		c, err = d.Dial("tcp4", netip.AddrPortFrom(dst.Addr, port).String())
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(p.Timeout))
	msg := fmt.Sprintf("probe %d\n", n)
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("connected, but no echo: %w", err)
	}
	if line != "echo "+msg {
		return fmt.Errorf("echo %q, want %q", line, "echo "+msg)
	}
	return nil
}

func (p *Prober) probeUDP(src, dst Place, port uint16, n uint32) error {
	var c net.Conn
	err := cnitest.InNetns(src.Netns, func() error {
		var err error
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: src.Addr.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.Addr, port)))
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	msg := fmt.Sprintf("probe %d", n)
	deadline := time.Now().Add(p.Timeout)
	buf := make([]byte, 1500)
	// Resend every 300 ms: a datagram may be lost on the way without any policy involved.
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		wait := min(time.Until(deadline), 300*time.Millisecond)
		c.SetReadDeadline(time.Now().Add(wait))
		k, err := c.Read(buf)
		if isTimeout(err) {
			continue
		}
		if err != nil {
			return err
		}
		if got := string(buf[:k]); got != "echo "+msg {
			return fmt.Errorf("echo %q, want %q", got, "echo "+msg)
		}
		return nil
	}
	return &timeoutError{"no UDP echo"}
}

// rawSocket opens a raw IPv4 socket for proto bound to addr. Reads return whole IP packets.
func rawSocket(proto int, addr netip.Addr) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.As4()}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// recvUntil reads packets from a raw socket until match accepts one or the deadline passes.
func recvUntil(fd int, deadline time.Time, match func(src netip.Addr, payload []byte) bool) error {
	buf := make([]byte, 2048)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return &timeoutError{"no answer"}
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		k, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		pkt := buf[:k]
		if len(pkt) < 20 || pkt[0]>>4 != 4 {
			continue
		}
		ihl := int(pkt[0]&0x0f) * 4
		if len(pkt) < ihl {
			continue
		}
		src := netip.AddrFrom4([4]byte(pkt[12:16]))
		if match(src, pkt[ihl:]) {
			return nil
		}
	}
}

// ICMP echo with a raw socket, identified by a per-probe echo ID.

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func (p *Prober) probeICMP(src, dst Place, n uint32) error {
	var fd int
	err := cnitest.InNetns(src.Netns, func() error {
		var err error
		fd, err = rawSocket(unix.IPPROTO_ICMP, src.Addr)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	id := uint16(n)
	deadline := time.Now().Add(p.Timeout)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		msg := make([]byte, 16)
		msg[0] = 8 // echo request
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], seq)
		copy(msg[8:], "netward!")
		binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
		if err := unix.Sendto(fd, msg, 0, &unix.SockaddrInet4{Addr: dst.Addr.As4()}); err != nil {
			return err
		}
		var icmpErr error
		err := recvUntil(fd, minTime(deadline, time.Now().Add(300*time.Millisecond)), func(from netip.Addr, b []byte) bool {
			if len(b) < 8 {
				return false
			}
			switch {
			case b[0] == 0 && from == dst.Addr && binary.BigEndian.Uint16(b[4:]) == id:
				return true
			case b[0] == 3 && len(b) >= 8+20+8 && binary.BigEndian.Uint16(b[8+20+4:]) == id:
				icmpErr = fmt.Errorf("ICMP destination unreachable (code %d) from %s", b[1], from)
				return true
			}
			return false
		})
		if icmpErr != nil {
			return icmpErr
		}
		if err == nil {
			return nil
		}
		if !isTimeout(err) {
			return err
		}
	}
	return &timeoutError{"no ICMP echo reply"}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// SCTP: the kernel here has no SCTP stack (CONFIG_IP_SCTP is off), so both ends speak the
// first two packets of the association handshake, INIT and INIT-ACK (RFC 9260 §5.1), over
// raw sockets. A raw socket that receives the packet also stops the kernel from answering
// "protocol unreachable". Ports, verification tags and the CRC32c checksum are real, so the
// datapath sees ordinary SCTP.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	sctpInit    = 1
	sctpInitAck = 2
)

// sctpPacket builds a packet with one chunk; the checksum is CRC32c over the packet.
func sctpPacket(sport, dport uint16, vtag uint32, chunkType uint8, initTag uint32, cookie []byte) []byte {
	chunkLen := 20
	if chunkType == sctpInitAck {
		chunkLen += 4 + len(cookie) // State Cookie parameter
	}
	b := make([]byte, 12+chunkLen+(4-chunkLen%4)%4)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], vtag)
	c := b[12:]
	c[0] = chunkType
	binary.BigEndian.PutUint16(c[2:], uint16(chunkLen))
	binary.BigEndian.PutUint32(c[4:], initTag)  // initiate tag
	binary.BigEndian.PutUint32(c[8:], 65536)    // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)       // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)       // inbound streams
	binary.BigEndian.PutUint32(c[16:], initTag) // initial TSN
	if chunkType == sctpInitAck {
		binary.BigEndian.PutUint16(c[20:], 7) // State Cookie
		binary.BigEndian.PutUint16(c[22:], uint16(4+len(cookie)))
		copy(c[24:], cookie)
	}
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	return b
}

type sctpHeader struct {
	sport, dport uint16
	vtag         uint32
	chunk        uint8
	initTag      uint32
}

func parseSCTP(b []byte) (sctpHeader, bool) {
	if len(b) < 12+20 {
		return sctpHeader{}, false
	}
	sum := binary.LittleEndian.Uint32(b[8:])
	c := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(c[8:], 0)
	if crc32.Checksum(c, castagnoli) != sum {
		return sctpHeader{}, false
	}
	return sctpHeader{
		sport: binary.BigEndian.Uint16(b[0:]), dport: binary.BigEndian.Uint16(b[2:]),
		vtag: binary.BigEndian.Uint32(b[4:]), chunk: b[12], initTag: binary.BigEndian.Uint32(b[16:]),
	}, true
}

// serveSCTP answers until stop is closed, then closes fd (here, so that the descriptor is
// not reused while a read is pending).
func serveSCTP(fd int, ports map[uint16]bool, stop chan struct{}) {
	defer unix.Close(fd)
	for {
		select {
		case <-stop:
			return
		default:
		}
		err := recvUntil(fd, time.Now().Add(500*time.Millisecond), func(from netip.Addr, b []byte) bool {
			h, ok := parseSCTP(b)
			if !ok || h.chunk != sctpInit || h.vtag != 0 || !ports[h.dport] {
				return false
			}
			ack := sctpPacket(h.dport, h.sport, h.initTag, sctpInitAck, h.initTag^0x5a5a5a5a, []byte("netward!"))
			unix.Sendto(fd, ack, 0, &unix.SockaddrInet4{Addr: from.As4()})
			return false
		})
		if err != nil && !isTimeout(err) {
			return
		}
	}
}

func (p *Prober) probeSCTP(src, dst Place, port uint16, n uint32) error {
	var fd int
	err := cnitest.InNetns(src.Netns, func() error {
		var err error
		fd, err = rawSocket(unix.IPPROTO_SCTP, src.Addr)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sport := uint16(20000 + n%40000)
	tag := 0x4e570000 | n&0xffff | 1
	deadline := time.Now().Add(p.Timeout)
	for time.Now().Before(deadline) {
		init := sctpPacket(sport, port, 0, sctpInit, tag, nil)
		if err := unix.Sendto(fd, init, 0, &unix.SockaddrInet4{Addr: dst.Addr.As4()}); err != nil {
			return err
		}
		err := recvUntil(fd, minTime(deadline, time.Now().Add(300*time.Millisecond)), func(from netip.Addr, b []byte) bool {
			h, ok := parseSCTP(b)
			return ok && from == dst.Addr && h.chunk == sctpInitAck && h.sport == port && h.dport == sport && h.vtag == tag
		})
		if err == nil {
			return nil
		}
		if !isTimeout(err) {
			return err
		}
	}
	return &timeoutError{"no SCTP INIT-ACK"}
}

// String renders a flow for messages.
func flowString(src, dst Place, proto uint8, port uint16) string {
	if proto == policy.ProtoICMP {
		return fmt.Sprintf("%s -> %s ICMP echo", src.Name, dst.Name)
	}
	return fmt.Sprintf("%s -> %s %d/%s", src.Name, dst.Name, port, strings.ToUpper(policy.ProtoName(proto)))
}
