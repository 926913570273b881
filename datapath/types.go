//go:build linux

package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// Endpoint is the datapath's view of a pod: the key of its policy map, its identity and
// how its policy is enforced.
type Endpoint struct {
	// ID keys the endpoint's policy map (SetPolicy) and appears in events.
	ID       uint32
	Identity identity.ID
	Flags    EndpointFlags
}

// EndpointFlags say how an endpoint's policy is enforced.
type EndpointFlags uint32

// Endpoint flags (struct endpoint.flags in bpf/netward.h).
const (
	// FlagAudit computes and reports verdicts but never drops (Cilium's policy audit mode):
	// would-be drops pass with reason ReasonAuditWouldDrop.
	FlagAudit EndpointFlags = 1 << 0
	// FlagIngressEnforced: packets to the pod are looked up in its policy map. Without it
	// they pass (ReasonForwardedUnenforced), as in Cilium when no policy selects the pod
	// for that direction.
	FlagIngressEnforced EndpointFlags = 1 << 1
	// FlagEgressEnforced: packets from the pod are looked up in its policy map.
	FlagEgressEnforced EndpointFlags = 1 << 2
	// FlagPolicyError: the endpoint's policy failed to compute (policy.EndpointPolicy.Err);
	// every IPv4 packet to or from the pod is dropped (ReasonDroppedPolicyError).
	FlagPolicyError EndpointFlags = 1 << 3
)

// Reason is why a packet was forwarded or dropped: the index of the metrics map and the
// reason of an event.
type Reason uint8

// Reasons (enum reason in bpf/netward.h).
const (
	ReasonForwardedPolicy     Reason = 0 // an allow entry (or, for an established flow, the policy still allows it)
	ReasonForwardedReply      Reason = 1 // a reply of a tracked flow, or an ICMP error about one: no policy lookup
	ReasonForwardedUnenforced Reason = 2 // the direction is not enforced: no policy lookup
	ReasonDroppedPolicyDeny   Reason = 3 // a deny entry
	ReasonDroppedDefaultDeny  Reason = 4 // no entry matches
	ReasonDroppedPolicyError  Reason = 5 // the endpoint's policy failed, or the interface has no endpoint
	ReasonAuditWouldDrop      Reason = 6 // audit mode: the packet passed but policy would drop it
	ReasonRedirected          Reason = 7 // a redirect entry: marked for the L7 proxy and passed
	numReasons                       = 8
)

var reasonNames = [numReasons]string{
	"forwarded-policy", "forwarded-reply", "forwarded-unenforced", "dropped-policy-deny",
	"dropped-default-deny", "dropped-policy-error", "audit-would-drop", "redirected",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// Verdict of an event (enum verdict in bpf/netward.h). In audit mode it is the verdict the
// policy would give; the packet passed.
type Verdict uint8

// Verdicts.
const (
	VerdictForwarded  Verdict = 0
	VerdictDropped    Verdict = 1
	VerdictRedirected Verdict = 2
)

func (v Verdict) String() string {
	switch v {
	case VerdictForwarded:
		return "forwarded"
	case VerdictDropped:
		return "dropped"
	case VerdictRedirected:
		return "redirected"
	}
	return fmt.Sprintf("verdict-%d", uint8(v))
}

// Event is a policy decision on a new flow, or a drop.
type Event struct {
	// Time is CLOCK_MONOTONIC (bpf_ktime_get_ns), not wall time.
	Time         time.Duration
	Endpoint     uint32
	PeerIdentity identity.ID
	Src, Dst     netip.Addr
	// SrcPort is the source port (ICMP echo: the echo id; other ICMP: 0).
	SrcPort uint16
	// DstPort is the port of the policy lookup: the destination port, or the ICMP type.
	DstPort uint16
	Proto   uint8
	// Egress: the packet left the pod (its egress policy decided).
	Egress  bool
	Verdict Verdict
	Reason  Reason
	// Cookie and Precedence of the deciding policy entry (0 when none matched).
	Cookie     uint32
	Precedence policy.Precedence
}

func (e Event) String() string {
	dir := "ingress"
	if e.Egress {
		dir = "egress"
	}
	return fmt.Sprintf("ep=%d %s %s:%d -> %s:%d %s peer=%d %s (%s) cookie=%d",
		e.Endpoint, dir, e.Src, e.SrcPort, e.Dst, e.DstPort, policy.ProtoName(e.Proto),
		e.PeerIdentity, e.Verdict, e.Reason, e.Cookie)
}

// eventSize is sizeof(struct verdict_event).
const eventSize = 40

// decodeEvent decodes a struct verdict_event as the ring buffer delivers it.
func decodeEvent(b []byte) (Event, error) {
	if len(b) < eventSize {
		return Event{}, fmt.Errorf("verdict event of %d bytes, want %d", len(b), eventSize)
	}
	ne := binary.NativeEndian
	return Event{
		Time:         time.Duration(ne.Uint64(b[0:])),
		Endpoint:     ne.Uint32(b[8:]),
		PeerIdentity: identity.ID(ne.Uint32(b[12:])),
		Src:          netip.AddrFrom4([4]byte(b[16:20])),
		Dst:          netip.AddrFrom4([4]byte(b[20:24])),
		SrcPort:      ne.Uint16(b[24:]),
		DstPort:      ne.Uint16(b[26:]),
		Proto:        b[28],
		Egress:       b[29] == dirEgress,
		Verdict:      Verdict(b[30]),
		Reason:       Reason(b[31]),
		Cookie:       ne.Uint32(b[32:]),
		Precedence:   policy.Precedence(ne.Uint32(b[36:])),
	}, nil
}

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Directions of the policy key's egress byte and the conntrack key's dir byte.
const (
	dirIngress = 0
	dirEgress  = 1
)

// Policy key prefix lengths (bpf/netward.h).
const (
	policyKeyBasePrefix = 40 // identity + egress
	policyKeyFullPrefix = 64 // + protocol + port
)

// htons converts a port to the __be16 layout of the BPF structs (the generated Go field
// holds the raw bytes in native order).
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func ntohs(v uint16) uint16 { return htons(v) }

// ip4 converts an IPv4 address to the network-order __u32 of the BPF structs.
func ip4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// bpfKey converts a policy.Key to the BPF policy key and back (fromBPFKey). It is the only
// place that knows the layout: prefixlen = 40 + Key.PrefixLen; the protocol only when
// PrefixLen >= 8; the port, in network order, masked to its PrefixLen-8 significant bits.
func bpfKey(k policy.Key) (netwardPolicyKey, error) {
	if k.PrefixLen > 24 {
		return netwardPolicyKey{}, fmt.Errorf("policy key %v: prefix length %d > 24", k, k.PrefixLen)
	}
	b := netwardPolicyKey{
		Prefixlen: policyKeyBasePrefix + uint32(k.PrefixLen),
		Identity:  uint32(k.Identity),
	}
	if k.Egress {
		b.Egress = dirEgress
	}
	if k.PrefixLen >= 8 {
		b.Protocol = k.Proto
	}
	if n := int(k.PrefixLen) - 8; n > 0 {
		mask := uint16(0xffff << (16 - n))
		b.Dport = htons(k.Port & mask)
	}
	return b, nil
}

// fromBPFKey is the inverse of bpfKey.
func fromBPFKey(b netwardPolicyKey) (policy.Key, error) {
	if b.Prefixlen < policyKeyBasePrefix || b.Prefixlen > policyKeyFullPrefix {
		return policy.Key{}, fmt.Errorf("BPF policy key with prefix length %d", b.Prefixlen)
	}
	k := policy.Key{
		Identity:  identity.ID(b.Identity),
		Egress:    b.Egress != 0,
		PrefixLen: uint8(b.Prefixlen - policyKeyBasePrefix),
	}
	if k.PrefixLen >= 8 {
		k.Proto = b.Protocol
	}
	if n := int(k.PrefixLen) - 8; n > 0 {
		k.Port = ntohs(b.Dport) & uint16(0xffff<<(16-n))
	}
	return k, nil
}
