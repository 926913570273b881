// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * netward datapath: per-endpoint policy enforcement on the host side of each pod's veth.
 *
 *   from_pod  tcx ingress of the host-side veth: packets the pod sends   -> the pod's EGRESS policy
 *   to_pod    tcx egress of the host-side veth: packets delivered to it -> the pod's INGRESS policy
 *
 * Per packet (IPv4 only; everything else passes untouched):
 *   1. endpoint = endpoints[skb->ifindex] (missing: drop, fail closed);
 *      a failed policy (EP_F_POLICY_ERROR) drops everything;
 *   2. a reply (the reverse tuple has a conntrack entry of this endpoint in the opposite
 *      direction), or an ICMP error about such a flow, passes without policy;
 *   3. a direction that is not enforced passes without lookup (but is tracked, so the replies
 *      pass the other, possibly enforced, direction);
 *   4. otherwise the policy decides, with the lookup of policy.MapState.Lookup: an LPM lookup
 *      for the peer identity and one for identity 0; higher precedence wins, then the longer
 *      key_prefix_len, then the specific identity; no entry is default deny. The policy is
 *      evaluated for new flows and, like Cilium (bpf_lxc.c), again for later packets of the
 *      flow in its original direction, so that revoking an allow cuts established
 *      connections. A new flow the policy lets through creates the conntrack entry.
 *   5. a redirect entry marks the packet for the L7 proxy (netward.h, mark layout); at
 *      to_pod (after routing) the packet is also sent back into the host veth's ingress, so
 *      that it passes the node's PREROUTING again, where TPROXY delivers it to the proxy.
 *      That hairpinned packet passes from_pod untouched. The proxy's upstream packets carry
 *      a from-proxy mark: to_pod lets those whose ingress policy the proxy judged pass (and
 *      tracks them for the replies); the others are judged by the ingress policy as usual.
 *   Events go to the ring buffer for every decision on a new flow and for every drop.
 */
#include <stdbool.h>
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netward.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define MAX_ENDPOINTS   16384
#define IPCACHE_SIZE    512000
#define CT_SIZE         262144
#define FRAG_SIZE       8192

#define ICMP_ECHOREPLY      0
#define ICMP_DEST_UNREACH   3
#define ICMP_ECHO           8
#define ICMP_TIME_EXCEEDED  11
#define ICMP_PARAMETERPROB  12

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

#define IP_MF     0x2000
#define IP_OFFSET 0x1FFF

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32); /* ifindex of the host-side veth */
	__type(value, struct endpoint);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, IPCACHE_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
} ipcache SEC(".maps");

/*
 * Template of the per-endpoint inner maps. Sizes rather than BTF types: clang emits the
 * types of an inner map definition as forward declarations.
 */
struct policy_map {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, POLICY_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct policy_key));
	__uint(value_size, sizeof(struct policy_entry));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32); /* endpoint id */
	__array(values, struct policy_map);
} policy_maps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_SIZE);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
} conntrack SEC(".maps");

/* Ports of fragmented datagrams, learnt from the first fragment. */
struct frag_key {
	__u32 saddr;
	__u32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct frag_ports {
	__be16 sport;
	__be16 dport;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FRAG_SIZE);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
} fragments SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, struct metric_value);
} metrics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* How conntrack treats a packet. */
enum flow_kind {
	FLOW_TRACKED = 0,    /* TCP, UDP, SCTP, other protocols: may be a reply, else tracked */
	FLOW_ECHO = 1,       /* ICMP echo request: never a reply, tracked (for the echo reply) */
	FLOW_REPLY_ONLY = 2, /* ICMP echo reply: a reply or else a policy decision, never tracked */
	FLOW_ICMP_ERROR = 3, /* ICMP error: related to the flow it quotes, or else policy */
	FLOW_UNTRACKED = 4,  /* other ICMP, fragments without known ports: policy on every packet */
};

struct flow {
	__u32 saddr;
	__u32 daddr;
	__be16 sport;       /* conntrack ports */
	__be16 dport;
	__be16 policy_port; /* port of the policy lookup: dport, or the ICMP type */
	__u8 proto;
	__u8 kind;
	struct ct_key related; /* FLOW_ICMP_ERROR: the quoted flow as it was sent */
};

static __always_inline int load_ports(struct __sk_buff *skb, __u32 off, __u8 proto,
				      __be16 *sport, __be16 *dport, __u8 *icmp_type)
{
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
			return -1;
		*sport = ports[0];
		*dport = ports[1];
		return 0;
	}
	case IPPROTO_ICMP: {
		__u8 hdr[8]; /* type, code, checksum, echo id, echo sequence */

		if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)) < 0)
			return -1;
		*icmp_type = hdr[0];
		if (hdr[0] == ICMP_ECHO || hdr[0] == ICMP_ECHOREPLY) {
			__be16 id;

			__builtin_memcpy(&id, &hdr[4], sizeof(id));
			*sport = id;
			*dport = id;
		}
		return 0;
	}
	}
	return 0;
}

/* parse fills f; it returns -1 for packets that are not IPv4 (they pass untouched). */
static __always_inline int parse(struct __sk_buff *skb, struct flow *f)
{
	__be16 h_proto;
	struct iphdr ip;
	__u8 icmp_type = 0;

	if (bpf_skb_load_bytes(skb, offsetof(struct ethhdr, h_proto), &h_proto, sizeof(h_proto)) < 0)
		return -1;
	if (h_proto != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.ihl < 5)
		return -1; /* not a valid IPv4 header: the IP stack drops it */

	f->saddr = ip.saddr;
	f->daddr = ip.daddr;
	f->proto = ip.protocol;
	f->kind = FLOW_TRACKED;

	__u32 l4off = ETH_HLEN + ip.ihl * 4;
	__u16 frag = bpf_ntohs(ip.frag_off);
	struct frag_key fk = {
		.saddr = ip.saddr, .daddr = ip.daddr, .id = ip.id, .proto = ip.protocol,
	};

	if (frag & IP_OFFSET) {
		/* Not the first fragment: no L4 header; use the ports of the first one. */
		struct frag_ports *fp = bpf_map_lookup_elem(&fragments, &fk);

		if (!fp || ip.protocol == IPPROTO_ICMP) {
			f->kind = FLOW_UNTRACKED;
			return 0;
		}
		f->sport = fp->sport;
		f->dport = fp->dport;
		f->policy_port = fp->dport;
		return 0;
	}

	if (load_ports(skb, l4off, ip.protocol, &f->sport, &f->dport, &icmp_type) < 0) {
		/* Truncated L4 header: ports 0, decided by policy on every packet. */
		f->kind = FLOW_UNTRACKED;
		return 0;
	}
	f->policy_port = f->dport;

	if (frag & IP_MF) {
		struct frag_ports fp = { .sport = f->sport, .dport = f->dport };

		bpf_map_update_elem(&fragments, &fk, &fp, BPF_ANY);
	}

	if (ip.protocol != IPPROTO_ICMP)
		return 0;

	/* ICMP: the type takes the port slot of the policy key, as in Cilium. */
	f->policy_port = bpf_htons((__u16)icmp_type);
	switch (icmp_type) {
	case ICMP_ECHO:
		f->kind = FLOW_ECHO;
		return 0;
	case ICMP_ECHOREPLY:
		f->kind = FLOW_REPLY_ONLY;
		return 0;
	case ICMP_DEST_UNREACH:
	case ICMP_TIME_EXCEEDED:
	case ICMP_PARAMETERPROB: {
		struct iphdr inner;
		__u8 inner_type = 0;

		f->kind = FLOW_UNTRACKED;
		if (bpf_skb_load_bytes(skb, l4off + 8, &inner, sizeof(inner)) < 0 || inner.ihl < 5)
			return 0;
		f->related.saddr = inner.saddr;
		f->related.daddr = inner.daddr;
		f->related.proto = inner.protocol;
		if (load_ports(skb, l4off + 8 + inner.ihl * 4, inner.protocol,
			       &f->related.sport, &f->related.dport, &inner_type) < 0)
			return 0;
		if (inner.protocol == IPPROTO_ICMP && inner_type != ICMP_ECHO)
			return 0;
		f->kind = FLOW_ICMP_ERROR;
		return 0;
	}
	default:
		f->kind = FLOW_UNTRACKED;
		return 0;
	}
}

static __always_inline void count(__u32 reason, __u32 len)
{
	struct metric_value *m = bpf_map_lookup_elem(&metrics, &reason);

	if (m) {
		m->packets++;
		m->bytes += len;
	}
}

static __always_inline __u32 resolve_identity(__u32 addr)
{
	struct ipcache_key k = { .prefixlen = 32, .ip = addr };
	struct ipcache_value *v = bpf_map_lookup_elem(&ipcache, &k);

	return v ? v->identity : WORLD_ID;
}

/*
 * policy_lookup is policy.MapState.Lookup: LPM for the peer identity and for identity 0;
 * the higher precedence wins, then the longer key prefix, then the specific identity. It
 * copies the deciding entry to *out and returns false when there is none (default deny).
 * (Not inlined, which also puts struct policy_key and policy_entry into the BTF.)
 */
static __noinline bool policy_lookup(__u32 ep_id, struct policy_key *key, struct policy_entry *out)
{
	void *inner = bpf_map_lookup_elem(&policy_maps, &ep_id);
	struct policy_entry *p, *a = NULL;
	__u32 peer = key->identity;

	if (!inner)
		return false;
	p = bpf_map_lookup_elem(inner, key);
	if (peer != 0) {
		key->identity = 0;
		a = bpf_map_lookup_elem(inner, key);
		key->identity = peer;
	}
	if (a && (!p || a->precedence > p->precedence ||
		  (a->precedence == p->precedence && a->key_prefix_len > p->key_prefix_len)))
		p = a;
	if (!p)
		return false;
	*out = *p;
	return true;
}

/* emit sends a verdict event (not inlined, which also puts struct verdict_event into the BTF). */
static __noinline void emit(struct verdict_event *ev)
{
	ev->ts = bpf_ktime_get_ns();
	bpf_ringbuf_output(&events, ev, sizeof(*ev), 0);
}

/*
 * hairpin sends a packet leaving the host veth back into the same veth's ingress, as if the
 * pod had sent it: it then passes the node's PREROUTING, where the TPROXY rule of its mark
 * takes it (TPROXY only works before routing, and to_pod runs after it). The destination
 * MAC becomes the host veth's own (the source MAC of a packet it sends), so that the stack
 * accepts the frame as addressed to it. The mark survives: the redirect stays in the
 * namespace.
 */
static __always_inline int hairpin(struct __sk_buff *skb)
{
	__u8 mac[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, ETH_ALEN, mac, ETH_ALEN) < 0 ||
	    bpf_skb_store_bytes(skb, 0, mac, ETH_ALEN, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct flow f = {};
	__u32 ifindex = skb->ifindex;
	__u32 len = skb->len;
	__u32 mark = skb->mark;
	__u64 now;

	/*
	 * An ingress redirect hairpinned by to_pod (below) re-enters here: it was judged by the
	 * destination's ingress policy and is on its way to the proxy, not sent by the pod.
	 */
	if (dir == DIR_EGRESS && (mark & MARK_MAGIC_MASK) == MARK_MAGIC_TO_PROXY &&
	    (mark & MARK_DIR_MASK) == DIR_INGRESS)
		return TC_ACT_OK;

	if (parse(skb, &f) < 0)
		return TC_ACT_OK;

	struct endpoint *ep = bpf_map_lookup_elem(&endpoints, &ifindex);

	if (!ep) {
		/* Attached but not configured: fail closed. */
		count(REASON_DROPPED_POLICY_ERROR, len);
		return TC_ACT_SHOT;
	}

	__u32 ep_id = ep->id;
	__u32 flags = ep->flags;
	bool audit = flags & EP_F_AUDIT;
	struct verdict_event ev = {
		.ep_id = ep_id,
		.saddr = f.saddr,
		.daddr = f.daddr,
		.sport = bpf_ntohs(f.sport),
		.dport = bpf_ntohs(f.policy_port),
		.proto = f.proto,
		.dir = dir,
		.verdict = VERDICT_DROPPED,
	};
	__u32 peer_addr = dir == DIR_EGRESS ? f.daddr : f.saddr;

	if (flags & EP_F_POLICY_ERROR) {
		ev.reason = audit ? REASON_AUDIT_WOULD_DROP : REASON_DROPPED_POLICY_ERROR;
		ev.peer_identity = resolve_identity(peer_addr);
		emit(&ev);
		count(ev.reason, len);
		return audit ? TC_ACT_OK : TC_ACT_SHOT;
	}

	now = bpf_ktime_get_ns();

	/* Replies and ICMP errors about tracked flows pass without policy. */
	if (f.kind == FLOW_TRACKED || f.kind == FLOW_REPLY_ONLY || f.kind == FLOW_ICMP_ERROR) {
		struct ct_key rk = {};
		struct ct_value *rv;

		if (f.kind == FLOW_ICMP_ERROR) {
			rk = f.related;
		} else {
			rk.saddr = f.daddr;
			rk.daddr = f.saddr;
			rk.sport = f.dport;
			rk.dport = f.sport;
			rk.proto = f.proto;
		}
		rk.dir = !dir;
		rk.ep_id = ep_id;
		rv = bpf_map_lookup_elem(&conntrack, &rk);
		if (rv) {
			rv->last_seen_ns = now;
			count(REASON_FORWARDED_REPLY, len);
			return TC_ACT_OK;
		}
	}

	struct ct_key fk = {
		.saddr = f.saddr,
		.daddr = f.daddr,
		.sport = f.sport,
		.dport = f.dport,
		.proto = f.proto,
		.dir = dir,
		.ep_id = ep_id,
	};
	struct ct_value *est = NULL;
	bool tracked = f.kind == FLOW_TRACKED || f.kind == FLOW_ECHO;

	if (tracked)
		est = bpf_map_lookup_elem(&conntrack, &fk);

	bool from_proxy = dir == DIR_INGRESS && (mark & MARK_MAGIC_MASK) == MARK_MAGIC_FROM_PROXY;

	if (from_proxy && (mark & MARK_DIR_MASK) == DIR_INGRESS) {
		/*
		 * The proxy's upstream connection of an ingress redirect (or of an egress one whose
		 * destination's ingress the proxy judged too): this endpoint's ingress policy decided
		 * its requests. Track it so that the replies pass the pod's egress.
		 */
		if (est) {
			est->last_seen_ns = now;
		} else if (tracked) {
			struct ct_value nv = { .last_seen_ns = now, .flags = CT_F_FROM_PROXY };

			bpf_map_update_elem(&conntrack, &fk, &nv, BPF_ANY);
		}
		count(REASON_FORWARDED_POLICY, len);
		return TC_ACT_OK;
	}

	bool enforced = flags & (dir == DIR_EGRESS ? EP_F_EGRESS_ENFORCED : EP_F_INGRESS_ENFORCED);

	if (!enforced) {
		if (est) {
			est->last_seen_ns = now;
		} else if (tracked) {
			struct ct_value nv = { .last_seen_ns = now, .flags = CT_F_UNENFORCED };

			bpf_map_update_elem(&conntrack, &fk, &nv, BPF_ANY);
		}
		count(REASON_FORWARDED_UNENFORCED, len);
		return TC_ACT_OK;
	}

	struct policy_key key = {
		.prefixlen = POLICY_KEY_FULL_PREFIX,
		.identity = resolve_identity(peer_addr),
		.egress = dir,
		.protocol = f.proto,
		.dport = f.policy_port,
	};
	struct policy_entry e = {};
	__u16 proxy_port = 0;

	ev.peer_identity = key.identity;
	if (!policy_lookup(ep_id, &key, &e)) {
		ev.reason = REASON_DROPPED_DEFAULT_DENY;
	} else {
		ev.cookie = e.cookie;
		ev.precedence = e.precedence;
		proxy_port = bpf_ntohs(e.proxy_port);
		if (e.deny) {
			ev.reason = REASON_DROPPED_POLICY_DENY;
		} else if (proxy_port && from_proxy) {
			/*
			 * The egress proxy's upstream connection meets an ingress redirect: a second
			 * proxy hop on the same node cannot route its replies back (the agent's egress
			 * proxy judges such a destination's ingress itself and marks the connection
			 * accordingly; this happens only when the policy changed under an open
			 * connection). Fail closed.
			 */
			ev.reason = REASON_DROPPED_POLICY_DENY;
		} else if (proxy_port) {
			ev.verdict = VERDICT_REDIRECTED;
			ev.reason = REASON_REDIRECTED;
		} else {
			ev.verdict = VERDICT_FORWARDED;
			ev.reason = REASON_FORWARDED_POLICY;
		}
	}

	if (ev.verdict == VERDICT_DROPPED) {
		if (!audit) {
			/* Like Cilium: report every drop, also of established flows. */
			emit(&ev);
			count(ev.reason, len);
			return TC_ACT_SHOT;
		}
		ev.reason = REASON_AUDIT_WOULD_DROP;
	}
	if (!est)
		emit(&ev);

	if (ev.verdict == VERDICT_REDIRECTED)
		skb->mark = ((__u32)proxy_port << 16) | MARK_MAGIC_TO_PROXY | dir;

	if (est) {
		est->last_seen_ns = now;
	} else if (tracked) {
		struct ct_value nv = { .last_seen_ns = now };

		if (ev.verdict == VERDICT_REDIRECTED)
			nv.flags |= CT_F_REDIRECT;
		if (ev.reason == REASON_AUDIT_WOULD_DROP)
			nv.flags |= CT_F_AUDIT;
		bpf_map_update_elem(&conntrack, &fk, &nv, BPF_ANY);
	}
	count(ev.reason, len);
	if (ev.verdict == VERDICT_REDIRECTED && dir == DIR_INGRESS)
		return hairpin(skb);
	return TC_ACT_OK;
}

SEC("tcx/ingress")
int from_pod(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

SEC("tcx/egress")
int to_pod(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}
