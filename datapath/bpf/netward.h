/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * netward datapath: map layouts shared by netward.c and the Go loader (the Go types are
 * generated from the BTF of these structs by bpf2go; never hand-copy them).
 */
#pragma once

#include <linux/types.h>

/* Endpoint flags (struct endpoint.flags). */
#define EP_F_AUDIT             (1U << 0) /* compute and report verdicts, never drop */
#define EP_F_INGRESS_ENFORCED  (1U << 1) /* ingress policy is enforced (else: not looked up) */
#define EP_F_EGRESS_ENFORCED   (1U << 2) /* egress policy is enforced (else: not looked up) */
#define EP_F_POLICY_ERROR      (1U << 3) /* the policy failed to compute: drop everything */

/* Directions, as in the policy key's egress byte and the conntrack key's dir byte. */
#define DIR_INGRESS 0
#define DIR_EGRESS  1

/* Reserved identity of addresses the ipcache does not know. */
#define WORLD_ID 2

/* Prefix of struct policy_key: identity (32) + egress (8) are always exact. */
#define POLICY_KEY_BASE_PREFIX 40
/* Full prefix: identity, egress, protocol, port. */
#define POLICY_KEY_FULL_PREFIX 64

/* Inner policy map size: Cilium's bpf-policy-map-max default. */
#define POLICY_MAP_SIZE 16384

/*
 * skb->mark layout (docs/l7-proxy.md "Mark layout"):
 *   to proxy    proxy_port<<16 | 0x0A00 | dir   set by the programs on a packet a redirect
 *               entry sends to the L7 proxy (dir: the direction whose policy redirected it).
 *               The node's nftables TPROXY rule of that port delivers it to the listener; an
 *               ingress redirect (decided at to_pod, after routing) is first sent back into
 *               the host veth's ingress so that it passes PREROUTING (hairpin).
 *   from proxy  0x0B00 | dir                    SO_MARK of the proxy's upstream sockets:
 *               dir 0 (ingress): the destination's ingress policy was judged by the proxy,
 *               to_pod lets it pass; dir 1 (egress): only the source's egress policy was,
 *               to_pod enforces the destination's ingress policy as for any packet.
 * Marks do not cross network namespaces (the veth scrubs them), so a pod cannot forge them.
 */
#define MARK_MAGIC_TO_PROXY   0x0A00U
#define MARK_MAGIC_FROM_PROXY 0x0B00U
#define MARK_MAGIC_MASK       0xFF00U
#define MARK_DIR_MASK         0x0001U

/* Reasons: metrics index and verdict_event.reason. Keep in sync with reasons.go. */
enum reason {
	REASON_FORWARDED_POLICY = 0,
	REASON_FORWARDED_REPLY = 1,
	REASON_FORWARDED_UNENFORCED = 2,
	REASON_DROPPED_POLICY_DENY = 3,
	REASON_DROPPED_DEFAULT_DENY = 4,
	REASON_DROPPED_POLICY_ERROR = 5,
	REASON_AUDIT_WOULD_DROP = 6,
	REASON_REDIRECTED = 7,
	REASON_MAX = 8,
};

/* verdict_event.verdict */
enum verdict {
	VERDICT_FORWARDED = 0,
	VERDICT_DROPPED = 1,
	VERDICT_REDIRECTED = 2,
};

/* endpoints: host-side veth ifindex -> endpoint. */
struct endpoint {
	__u32 id;
	__u32 identity;
	__u32 flags;
};

/* ipcache: LPM trie on IPv4 addresses. */
struct ipcache_key {
	__u32 prefixlen; /* 0..32 */
	__u32 ip;        /* network byte order */
};

struct ipcache_value {
	__u32 identity;
	__u32 flags;
};

/*
 * Policy key with Cilium's layout (bpf/lib/policy.h). prefixlen counts the bits after
 * itself: 32 (identity) + 8 (egress) always, +8 when the protocol is exact, +0..16 port bits.
 * Go's policy.Key.PrefixLen p is prefixlen 40 + p.
 */
struct policy_key {
	__u32 prefixlen;
	__u32 identity;
	__u8 egress;
	__u8 protocol;
	__be16 dport; /* ICMP: the type */
};

struct policy_entry {
	__be16 proxy_port;     /* != 0: redirect to this proxy port */
	__u8 deny;
	__u8 key_prefix_len;   /* Go's policy.Key.PrefixLen (0..24), for tie-breaking */
	__u32 precedence;      /* policy.Precedence: higher wins */
	__u32 cookie;          /* rule-origin id, copied into events */
};

/* conntrack: one entry per (flow, endpoint, direction) created by an allowed new flow. */
struct ct_key {
	__u32 saddr;  /* network byte order */
	__u32 daddr;
	__be16 sport; /* ICMP echo: the echo id */
	__be16 dport; /* ICMP echo: the echo id */
	__u8 proto;
	__u8 dir;     /* DIR_INGRESS / DIR_EGRESS of the endpoint that created it */
	__u16 pad;
	__u32 ep_id;
};

/* Conntrack entry flags. */
#define CT_F_REDIRECT   (1U << 0) /* created by a redirect entry */
#define CT_F_AUDIT      (1U << 1) /* created while in audit mode */
#define CT_F_UNENFORCED (1U << 2) /* created while the direction was not enforced */
#define CT_F_FROM_PROXY (1U << 3) /* the L7 proxy's upstream connection, judged by the proxy */

struct ct_value {
	__u64 last_seen_ns; /* bpf_ktime_get_ns() */
	__u32 flags;
	__u32 pad;
};

struct metric_value {
	__u64 packets;
	__u64 bytes;
};

struct verdict_event {
	__u64 ts;            /* bpf_ktime_get_ns() */
	__u32 ep_id;
	__u32 peer_identity;
	__u32 saddr;         /* network byte order */
	__u32 daddr;
	__u16 sport;         /* host byte order; ICMP: echo id or 0 */
	__u16 dport;         /* host byte order; the policy port (ICMP: the type) */
	__u8 proto;
	__u8 dir;
	__u8 verdict;        /* enum verdict (in audit mode: the verdict policy would give) */
	__u8 reason;         /* enum reason */
	__u32 cookie;        /* cookie of the deciding entry, 0 when none */
	__u32 precedence;    /* precedence of the deciding entry, 0 when none */
};
