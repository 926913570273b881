//go:build linux

package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/netward/netward/policy"
)

// requireBPF skips (loudly) when the test cannot load BPF programs.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the datapath tests load eBPF programs and need root (CAP_BPF, CAP_NET_ADMIN) and a kernel with BPF; run `go test ./datapath` as root")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("SKIPPED: the datapath tests need a kernel with BPF and BTF (/sys/kernel/btf/vmlinux is missing)")
	}
}

// newTestDatapath loads the datapath with its own pin directory, removed at cleanup.
func newTestDatapath(t testing.TB) *Datapath {
	t.Helper()
	requireBPF(t)
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir := filepath.Join(bpffsRoot, fmt.Sprintf("netward-test-%s-%d", name, time.Now().UnixNano()))
	d, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		d.Unpin()
		d.Close()
		os.RemoveAll(dir)
	})
	return d
}

// mapStateOf builds a policy.MapState from entries.
func mapStateOf(t testing.TB, entries map[policy.Key]policy.MapEntry) *policy.MapState {
	t.Helper()
	list := make([]policy.KeyEntry, 0, len(entries))
	for k, e := range entries {
		list = append(list, policy.KeyEntry{Key: k, Entry: e})
	}
	ms := policy.NewMapState(list)
	if ms.Len() != len(entries) {
		t.Fatalf("mapStateOf: Len %d, want %d", ms.Len(), len(entries))
	}
	return ms
}

// precedence is policy's precedence formula (Cilium's pkg/policy/types/entry.go): upper 24
// bits the inverted tier, low byte 255 deny, 254-listener priority for a redirect, 1 allow.
func precedence(tier policy.Tier, v policy.Verdict, parser policy.L7Parser) policy.Precedence {
	base := policy.Precedence(1<<24-1-uint32(tier)) << 8
	switch v {
	case policy.Deny:
		return base | 255
	case policy.Redirect:
		lp := map[policy.L7Parser]uint32{policy.ParserHTTP: 101, policy.ParserTLS: 116, policy.ParserDNS: 121, policy.ParserCRD: 126}[parser]
		return base | policy.Precedence(254-lp)
	}
	return base | 1
}

// pkt describes a test packet.
type pkt struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16 // TCP/UDP/SCTP ports
	icmpType     uint8
	icmpID       uint16
	// inner is the quoted packet of an ICMP error.
	inner *pkt
	// fragOff and moreFrags set the IPv4 fragment fields.
	fragOff   uint16
	moreFrags bool
	ipID      uint16
}

func (p pkt) l4() []byte {
	switch p.proto {
	case policy.ProtoTCP:
		b := make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], p.sport)
		binary.BigEndian.PutUint16(b[2:], p.dport)
		b[12] = 5 << 4
		b[13] = 0x02 // SYN
		return b
	case policy.ProtoUDP, policy.ProtoSCTP:
		b := make([]byte, 8)
		binary.BigEndian.PutUint16(b[0:], p.sport)
		binary.BigEndian.PutUint16(b[2:], p.dport)
		binary.BigEndian.PutUint16(b[4:], 8)
		return b
	case policy.ProtoICMP:
		b := make([]byte, 8)
		b[0] = p.icmpType
		binary.BigEndian.PutUint16(b[4:], p.icmpID)
		if p.inner != nil {
			b = append(b, p.inner.ip()...)
		}
		return b
	}
	return make([]byte, 8)
}

func (p pkt) ip() []byte {
	var payload []byte
	if p.fragOff == 0 {
		payload = p.l4()
	} else {
		payload = make([]byte, 16)
	}
	b := make([]byte, 20, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[4:], p.ipID)
	frag := p.fragOff & 0x1fff
	if p.moreFrags {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = p.proto
	s, d := p.src.As4(), p.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return append(b, payload...)
}

// frame is the Ethernet frame of the packet.
func (p pkt) frame() []byte {
	b := make([]byte, 14, 14+60)
	copy(b[0:], []byte{0x02, 0, 0, 0, 0, 2})
	copy(b[6:], []byte{0x02, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	return append(b, p.ip()...)
}

func (p pkt) reply() pkt {
	r := p
	r.src, r.dst = p.dst, p.src
	r.sport, r.dport = p.dport, p.sport
	if p.proto == policy.ProtoICMP && p.icmpType == 8 {
		r.icmpType = 0
	}
	return r
}

// skbCtx is the start of struct __sk_buff, enough for the mark (in and out).
const skbCtxSize = 256 // >= sizeof(struct __sk_buff); the tail must be zero

const skbMarkOffset = 8

// TC return codes.
const (
	tcActOK       = 0
	tcActShot     = 2
	tcActRedirect = 7
)

// testRun is the result of one BPF_PROG_TEST_RUN.
type testRun struct {
	ret  uint32
	mark uint32
}

// run test-runs the program of a direction on a packet. BPF_PROG_TEST_RUN gives the skb
// the loopback device, so the endpoint must be keyed by ifindex 1 (testIfindex).
func run(t testing.TB, d *Datapath, egress bool, p pkt) testRun {
	t.Helper()
	prog := d.objs.ToPod
	if egress {
		prog = d.objs.FromPod
	}
	ctxIn := make([]byte, skbCtxSize)
	ctxOut := make([]byte, skbCtxSize)
	ret, err := prog.Run(&ebpf.RunOptions{Data: p.frame(), Context: ctxIn, ContextOut: ctxOut})
	if err != nil {
		t.Fatalf("prog run: %v", err)
	}
	return testRun{ret: ret, mark: binary.NativeEndian.Uint32(ctxOut[skbMarkOffset:])}
}

const testIfindex = 1 // loopback: the device of test-run skbs

// eventReader drains the ring buffer synchronously.
type eventReader struct {
	t  testing.TB
	rd *ringbuf.Reader
}

func newEventReader(t testing.TB, d *Datapath) *eventReader {
	t.Helper()
	rd, err := ringbuf.NewReader(d.objs.Events)
	if err != nil {
		t.Fatalf("ringbuf reader: %v", err)
	}
	t.Cleanup(func() { rd.Close() })
	return &eventReader{t: t, rd: rd}
}

// drain returns the events in the ring now.
func (r *eventReader) drain() []Event {
	r.t.Helper()
	var out []Event
	r.rd.SetDeadline(time.Now())
	for {
		rec, err := r.rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			r.t.Fatalf("read event: %v", err)
		}
		ev, err := decodeEvent(rec.RawSample)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, ev)
	}
}

// metricsDelta returns after - before per reason.
func metricsDelta(before, after map[string]Counter) map[string]uint64 {
	out := map[string]uint64{}
	for k, a := range after {
		if n := a.Packets - before[k].Packets; n != 0 {
			out[k] = n
		}
	}
	return out
}

func mustMetrics(t testing.TB, d *Datapath) map[string]Counter {
	t.Helper()
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// portMask is the mask of a key's port prefix.
func portMask(plen uint8) uint16 {
	n := int(plen) - 8
	if n <= 0 {
		return 0
	}
	return bits.Reverse16(uint16(1<<n - 1))
}
