// Package agent is netward's node agent: it reads Namespaces, Pods, Nodes and the three
// policy kinds from a directory (re-read on change), keeps the node's endpoints (pods
// registered by the CNI plugin), their identities and compiled policy maps, and programs the
// eBPF datapath (package datapath) of the node's network namespace. It serves an HTTP API
// on a unix socket, Prometheus metrics and a health check.
//
// # API (unix socket, default /run/netward/<node>.sock)
//
//	POST   /v1/endpoints              {"containerID","netns","ifName","hostIfName","podNamespace",
//	                                   "podName","ips"} -> 200 {"id","identity","pod"}
//	DELETE /v1/endpoints/{containerID} -> 200; 404 when unknown
//	GET    /v1/endpoints              -> [Endpoint]
//	GET    /v1/endpoints/{id|ns/name|containerID} -> Endpoint with "map"
//	GET    /v1/events[?follow=true&pod=ns/name&verdict=dropped&last=N] -> NDJSON Event
//	GET    /v1/status                 -> Status
//	GET    /healthz                   -> 200 "ok: ..." / 503 "not ready: ..."
//	GET    /metrics                   -> Prometheus (also on --metrics-addr)
//
// Registration answers only after the endpoint's policy map and endpoint entry are written
// and the programs are attached to the host veth, so a pod is never reachable unenforced.
// A pod without a Pod object in the directory is registered with no pod labels (default
// policy semantics) and re-labelled when its Pod object appears. Until the first valid
// policy set is loaded, registrations are refused with 503.
//
// # Sources and bad input
//
// The directory is watched with inotify and polled (sizes, times, inodes) every
// PollInterval. A change is applied once the directory has been quiet for Debounce and no
// file written since is still open for writing (so a writer's truncated, half-written file
// is not read). The set is read with api.Load, checked with api.ValidateLenient and built
// with cluster.Build; any error rejects the whole set: each problem is logged with file,
// document, object and field, /v1/status reports it, netward_policy_errors_total counts it,
// and the last valid set keeps enforcing. A partial set is never applied.
//
// The cluster is built from the directory with the registered endpoints merged in: an
// endpoint's addresses (from the CNI plugin) override its Pod object's status.podIP and put
// it on this node. The ipcache holds every pod of every node with an address (remote pods'
// addresses come from their Pod objects' status), the node's addresses (its Node object's
// InternalIPs and the addresses of the node netns) as host, the other nodes' as
// remote-node, and the CIDR identities of the policies' prefixes; other addresses are
// world, as netward trace resolves them.
//
// # Identities
//
// cluster.Build numbers identities afresh on every build; the BPF maps key on the numbers,
// so the agent translates them to stable ones: a label set (or CIDR prefix, or node) keeps
// its number for as long as anything programmed uses it, a new one gets a number from a hash
// of its labels (linear probing on collision), and numbers are persisted in the state file
// and released only after an update completed, so a number never stands for two label sets
// while the kernel may hold it.
//
// # Update ordering
//
// Every update (a policy change, a pod change, an endpoint added or removed) moves the
// kernel from an old state (ipcache I0, per endpoint flags F0 and policy map M0) to a new one
// (I1, F1, M1). The programs read the ipcache once per lookup, an endpoint's flags once and
// its policy map once per packet (the datapath swaps each endpoint's map atomically:
// datapath.SetPolicy). A flow between two local pods is decided twice, by the source's
// egress and the destination's ingress, possibly from different generations. Writing the
// new state in any one order can allow a flow that neither state allows: for example, if
// old = {A egress allows, B ingress denies} and new = {A egress denies, B ingress allows},
// old A with new B allows the flow; and an ipcache entry updated before the maps can send a
// peer's new identity to an old map whose wildcard entries allow it where the old map denied
// the old identity. So the agent updates in three global phases:
//
//  1. Every changed endpoint gets its transitional policy T = old AND new: its map allows
//     (or redirects) exactly where both the old and the new policy allow, for every identity
//     number (numbers keep their meaning, see above), and its flags enforce every direction
//     either enforces (an unenforced direction counts as allow-all). The map is written
//     first, then the flags: with the old flags, enforced directions use T, which allows
//     nothing the old map does not, and unenforced ones pass as before. When the new policy
//     allows everything the old one did (T equals old), nothing is written. When the new
//     policy fails (FlagPolicyError), the endpoint just gets the error flag (drop all).
//  2. The ipcache: upserts, longest prefixes first, then deletes, shortest first. In
//     between, a lookup finds for an address either its old or its new identity (never the
//     identity of a shorter prefix that covers it in neither state).
//  3. Every changed endpoint gets its new flags, then its new map (from a failed or new
//     endpoint: map first, then flags). With the new flags, the directions the new policy
//     enforces still use T, which allows nothing the new map does not, and the others pass
//     as the new policy says. When the new policy only narrows and enforces the same
//     directions, T is the new map itself: phase 1 writes it and phase 3 has nothing left.
//
// During phase 1 the ipcache is I0 and every endpoint is at M0 or T: each decision is one
// the old state allows (T(x) ⊆ M0(x) for every identity x). During phase 2 every changed
// endpoint is at T: whichever identity a lookup finds, T allows only what both allow.
// During phase 3 the ipcache is I1 and every endpoint is at T or M1: each decision is one
// the new state allows. So at no moment is a flow allowed that neither the old nor the new
// state allows, whatever mix of endpoints a flow crosses. A flow both allow may be dropped
// for the duration of the update only where T had to be approximated (a transitional map
// larger than the BPF map drops the direction), which is logged.
//
// When a single endpoint changes and the ipcache does not, the phases are skipped: every
// other decision stays as it is and this endpoint's decisions read its map once, so each
// is the old or the new one (a pod's traffic to its own address stays in its netns, so no
// flow is decided twice by one endpoint). Its flags and map are written in the order that
// keeps that true (mapFirst): the map first when the new flags enforce more directions (the
// old flags do not look at the new entries), the flags first when they enforce fewer or the
// new policy failed; a direction gained together with one lost goes through the phases.
// This halves the latency of the common edit: every policy map swap costs an RCU grace
// period (the kernel's map-in-map update and the datapath's standby reuse).
//
// T is computed per direction (intersect): S are the identities with keys of their own in
// either map, P0 the prefixes of the wildcard keys of both, P(x) the prefixes of x's keys
// plus P0; T has one key per identity in S ∪ {0} and prefix of P(x) that is the longest match
// somewhere, all with one precedence, so the datapath's lookup (precedence, then prefix
// length, then the specific identity) is a plain longest-prefix match, and on each key's
// region the old and new lookups are constant and decided at one point.
//
// # Fail closed, restart
//
// Maps and the tcx links are pinned (datapath.Load, datapath.Attach): when the agent dies,
// the kernel keeps enforcing the last state. The registry is written atomically (a new file
// renamed over <state-dir>/endpoints.json) before the kernel is changed: the endpoints, the
// identity numbers and every ipcache entry the kernel may hold. A new agent adopts the pins,
// reads each endpoint's pinned entry and map back as its old state, re-attaches (Attach
// swaps the programs into the pinned links atomically), and reconciles with the three
// phases above once a valid policy set is loaded; until then the pinned maps stay as they
// are (never cleared). Endpoints whose host veth vanished meanwhile are removed. An endpoint
// being removed loses its endpoint entry first (its traffic is dropped), then the programs.
//
// # Audit mode
//
// With Config.Audit every endpoint has datapath.FlagAudit: verdicts are computed and
// reported (verdict "audit" for would-be drops) and nothing is dropped.
package agent
