package agent

import (
	"context"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/netward/netward/datapath"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// view is an immutable snapshot of what events need to name their peers; the reconciler
// publishes a new one after every change.
type view struct {
	node  string
	eps   map[uint32]*epView
	peers map[netip.Addr]Peer
	kinds map[identity.ID]string
}

type epView struct {
	pod      string
	identity identity.ID
	rules    [2][]string // selecting rules: ingress, egress
	err      string
}

// publishViewLocked publishes the view of the current state.
func (a *Agent) publishViewLocked() {
	v := &view{node: a.cfg.Node, eps: map[uint32]*epView{}, peers: map[netip.Addr]Peer{}, kinds: map[identity.ID]string{}}
	if a.cur != nil {
		v.peers = a.cur.peers
		v.kinds = a.cur.kindOf
	}
	for _, ep := range a.eps {
		ev := &epView{pod: ep.rec.pod(), identity: ep.identity, err: ep.err}
		if ep.identity == 0 {
			ev.identity = ep.prog.identity
		}
		if ep.pol != nil {
			for i, d := range []*policy.DirectionPolicy{&ep.pol.Ingress, &ep.pol.Egress} {
				for _, o := range d.Rules {
					ev.rules[i] = append(ev.rules[i], o.String())
				}
			}
		}
		v.eps[ep.rec.ID] = ev
	}
	a.view.Store(v)
}

// readEvents reads the datapath's verdict events until ctx ends.
func (a *Agent) readEvents(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.dp.ReadEvents(ctx, func(e datapath.Event) {
			a.events.publish(a.convertEvent(e))
		})
		if err != nil && ctx.Err() == nil {
			a.log.Error("reading datapath events", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// convertEvent names the sides of a datapath event and the rules behind it.
func (a *Agent) convertEvent(e datapath.Event) Event {
	v := a.view.Load()
	wall := time.Now().Add(e.Time - datapath.MonotonicNow())
	ev := Event{
		Time:      wall,
		Node:      v.node,
		Proto:     policy.ProtoName(e.Proto),
		Port:      e.DstPort,
		SrcPort:   e.SrcPort,
		Direction: "ingress",
		Verdict:   e.Verdict.String(),
		Reason:    e.Reason.String(),
	}
	if e.Reason == datapath.ReasonAuditWouldDrop {
		ev.Verdict = "audit"
	}
	local := Peer{Kind: "pod"}
	ep := v.eps[e.Endpoint]
	if ep != nil {
		local.Pod, local.Identity = ep.pod, uint32(ep.identity)
		ev.Endpoint = ep.pod
	}
	localAddr, peerAddr := e.Dst, e.Src
	if e.Egress {
		ev.Direction = "egress"
		localAddr, peerAddr = e.Src, e.Dst
	}
	local.IP = localAddr.String()
	peer, ok := v.peers[peerAddr]
	if !ok {
		peer = Peer{IP: peerAddr.String(), Kind: v.kinds[e.PeerIdentity]}
		if peer.Kind == "" {
			peer.Kind = "world"
		}
	}
	peer.Identity = uint32(e.PeerIdentity)
	if e.Egress {
		ev.Source, ev.Destination = local, peer
	} else {
		ev.Source, ev.Destination = peer, local
	}
	switch {
	case e.Cookie != 0:
		for _, o := range a.jar.Origins(e.Cookie) {
			ev.Origins = append(ev.Origins, o.String())
		}
	case ep != nil && e.Reason == datapath.ReasonDroppedPolicyError:
		if ep.err != "" {
			ev.Origins = []string{ep.err}
		}
	case ep != nil && (e.Reason == datapath.ReasonDroppedDefaultDeny || e.Reason == datapath.ReasonAuditWouldDrop):
		i := 0
		if e.Egress {
			i = 1
		}
		for _, r := range ep.rules[i] {
			ev.Origins = append(ev.Origins, "default deny: selected by "+r)
		}
	}
	return ev
}

// eventHub keeps the recent events and fans new ones out to followers.
type eventHub struct {
	mu     sync.Mutex
	ring   []Event
	next   int
	full   bool
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch      chan Event
	match   func(Event) bool
	dropped int
}

func newEventHub(size int) *eventHub {
	return &eventHub{ring: make([]Event, size), subs: map[*subscriber]struct{}{}}
}

func (h *eventHub) publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring[h.next] = ev
	h.next = (h.next + 1) % len(h.ring)
	if h.next == 0 {
		h.full = true
	}
	for s := range h.subs {
		if !s.match(ev) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			s.dropped++ // a slow reader loses events rather than slowing the agent
		}
	}
}

// recent returns the kept events that match, oldest first (at most last, when > 0).
func (h *eventHub) recent(match func(Event) bool, last int) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	n := h.next
	start := 0
	if h.full {
		n = len(h.ring)
		start = h.next
	}
	for i := 0; i < n; i++ {
		ev := h.ring[(start+i)%len(h.ring)]
		if match(ev) {
			out = append(out, ev)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if last > 0 && len(out) > last {
		out = out[len(out)-last:]
	}
	return out
}

func (h *eventHub) subscribe(match func(Event) bool) *subscriber {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &subscriber{ch: make(chan Event, 1024), match: match}
	if h.closed {
		close(s.ch)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *eventHub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

func (h *eventHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.ch)
	}
}

// eventFilter builds the match function of pod and verdict filters.
func eventFilter(pod, verdict string) func(Event) bool {
	return func(ev Event) bool {
		if pod != "" && ev.Source.Pod != pod && ev.Destination.Pod != pod {
			return false
		}
		if verdict != "" && ev.Verdict != verdict {
			return false
		}
		return true
	}
}
