package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/netward/netward/datapath"
)

// Handler is the agent's API (served on the unix socket).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/endpoints", a.handleRegister)
	mux.HandleFunc("DELETE /v1/endpoints/{containerID}", a.handleDeregister)
	mux.HandleFunc("GET /v1/endpoints", a.handleList)
	mux.HandleFunc("GET /v1/endpoints/{key...}", a.handleGet)
	mux.HandleFunc("GET /v1/events", a.handleEvents)
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	mux.HandleFunc("GET /healthz", a.handleHealth)
	mux.Handle("GET /metrics", a.metrics.handler())
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{Error: err.Error()})
}

// httpError carries a status code.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }

func (a *Agent) handleRegister(w http.ResponseWriter, r *http.Request) {
	var req EndpointRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("endpoint request: %w", err))
		return
	}
	resp, err := a.Register(req)
	if err != nil {
		code := http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
		writeError(w, code, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *Agent) handleDeregister(w http.ResponseWriter, r *http.Request) {
	err := a.Deregister(r.PathValue("containerID"))
	if err != nil {
		code := http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			code = he.code
		}
		writeError(w, code, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "deleted"})
}

func (a *Agent) handleList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Endpoints())
}

func (a *Agent) handleGet(w http.ResponseWriter, r *http.Request) {
	ep, ok := a.EndpointDetail(r.PathValue("key"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no endpoint %q (give an id, namespace/name or a container ID)", r.PathValue("key")))
		return
	}
	writeJSON(w, http.StatusOK, ep)
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Status())
}

func (a *Agent) handleHealth(w http.ResponseWriter, _ *http.Request) {
	msg, ok := a.Health()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, msg)
}

func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	match := eventFilter(q.Get("pod"), q.Get("verdict"))
	last, _ := strconv.Atoi(q.Get("last"))
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	var sub *subscriber
	if follow {
		sub = a.events.subscribe(match) // before the backlog: nothing falls in between
		defer a.events.unsubscribe(sub)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	backlog := a.events.recent(match, last)
	var newest time.Time
	for _, ev := range backlog {
		if enc.Encode(ev) != nil {
			return
		}
		newest = ev.Time
	}
	if flusher != nil {
		flusher.Flush()
	}
	if !follow {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-sub.ch:
			if !ok {
				return
			}
			if !newest.IsZero() && !ev.Time.After(newest) && containsEvent(backlog, ev) {
				continue
			}
			if enc.Encode(ev) != nil {
				return
			}
			if flusher != nil && len(sub.ch) == 0 {
				flusher.Flush()
			}
		}
	}
}

func containsEvent(list []Event, ev Event) bool {
	for i := len(list) - 1; i >= 0 && i >= len(list)-64; i-- {
		if list[i].Time.Equal(ev.Time) && list[i].Source == ev.Source && list[i].Destination == ev.Destination && list[i].Reason == ev.Reason {
			return true
		}
	}
	return false
}

// Register registers (or re-registers) an endpoint: it computes the pod's identity and
// policy, programs the policy map and the endpoint, then attaches the datapath to the host
// veth, and only then returns: the pod is never reachable before its policy is enforced.
func (a *Agent) Register(req EndpointRequest) (EndpointResponse, error) {
	if req.ContainerID == "" || strings.ContainsAny(req.ContainerID, "/\x00") {
		return EndpointResponse{}, &httpError{http.StatusBadRequest, fmt.Errorf("containerID %q: required, without '/'", req.ContainerID)}
	}
	if req.HostIfName == "" || strings.ContainsAny(req.HostIfName, "/\x00 ") || len(req.HostIfName) > 15 {
		return EndpointResponse{}, &httpError{http.StatusBadRequest, fmt.Errorf("hostIfName %q: required, a valid interface name", req.HostIfName)}
	}
	var ips []string
	for _, s := range req.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return EndpointResponse{}, &httpError{http.StatusBadRequest, fmt.Errorf("ips: %q is not an address", s)}
		}
		ips = append(ips, ip.Unmap().String())
	}
	if req.PodName == "" {
		// No K8S_POD_NAME in CNI_ARGS: name it after the container.
		req.PodName = "container-" + shortID(req.ContainerID)
		a.log.Warn("endpoint registered without a pod name", "containerID", req.ContainerID, "pod", req.PodName)
	}
	if req.PodNamespace == "" {
		req.PodNamespace = "default"
	}
	ifindex, err := a.net.LinkIndex(req.HostIfName)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrNoLink) {
			code = http.StatusBadRequest
		}
		return EndpointResponse{}, &httpError{code, fmt.Errorf("host interface %s in the node netns: %w", req.HostIfName, err)}
	}

	if a.cfg.Kubernetes != nil {
		// The informers take a moment to sync after a start: the pod waits for them (the
		// plugin's call allows minutes), rather than failing its sandbox.
		select {
		case <-a.firstGood:
		case <-time.After(firstSyncWait):
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.publishViewLocked()
	if a.good == nil {
		msg := "no valid policy set loaded yet"
		if a.lastErr != nil {
			msg += ": " + a.lastErr.Message
		}
		return EndpointResponse{}, &httpError{http.StatusServiceUnavailable, errors.New(msg)}
	}
	for cid, other := range a.eps {
		if cid != req.ContainerID && other.rec.HostIfName == req.HostIfName {
			return EndpointResponse{}, &httpError{http.StatusConflict, fmt.Errorf("host interface %s belongs to endpoint %d (container %s)", req.HostIfName, other.rec.ID, cid)}
		}
	}
	rec := &endpointRecord{
		ContainerID: req.ContainerID, Netns: req.Netns, IfName: req.IfName, HostIfName: req.HostIfName,
		Ifindex: ifindex, PodNamespace: req.PodNamespace, PodName: req.PodName, IPs: ips,
	}
	prev := a.eps[req.ContainerID]
	ep := prev
	if prev == nil {
		rec.ID = a.nextEPID
		a.nextEPID++
		ep = &endpoint{rec: rec, state: "new"}
	} else {
		rec.ID = prev.rec.ID
		if prev.rec.Ifindex != ifindex || prev.rec.HostIfName != req.HostIfName {
			// Another veth now: the old one's entry goes, the new one starts unprogrammed.
			if prev.prog.hasEndpoint {
				a.dp.DeleteEndpoint(prev.rec.Ifindex)
			}
			if prev.detach != nil {
				prev.detach()
			}
			prev.prog, prev.attached, prev.detach = programmed{}, false, nil
		}
		prev.rec = rec
	}
	a.eps[req.ContainerID] = ep
	log := a.log.With("pod", rec.pod(), "containerID", rec.ContainerID, "endpoint", rec.ID, "hostIfName", rec.HostIfName)
	if _, err := a.reconcileLocked(a.good.objs, "endpoint "+rec.pod()); err != nil {
		if a.cur == nil || a.cur.eps[req.ContainerID] == nil || !ep.prog.matches(a.cur.eps[req.ContainerID]) {
			log.Error("programming the endpoint failed", "error", err)
			if prev == nil {
				a.removeLocked(ep)
			}
			return EndpointResponse{}, fmt.Errorf("programming endpoint %s: %w", rec.pod(), err)
		}
		log.Error("reconciling other endpoints failed", "error", err)
	}
	if !ep.attached {
		detach, err := a.dp.Attach(a.netnsPath, rec.HostIfName)
		if err != nil {
			log.Error("attaching the datapath failed", "error", err)
			a.removeLocked(ep)
			return EndpointResponse{}, fmt.Errorf("attaching the datapath to %s: %w", rec.HostIfName, err)
		}
		ep.detach, ep.attached = detach, true
	}
	if err := a.saveLocked(nil); err != nil {
		return EndpointResponse{}, err
	}
	if !ep.knownPod {
		log.Warn("no Pod object for this endpoint in the policy directory: registered without pod labels (default policy semantics); it is re-labelled when the Pod appears")
	}
	log.Info("endpoint registered", "identity", uint32(ep.identity), "ips", rec.IPs, "ifindex", ifindex,
		"ingressEnforced", ep.prog.flags&datapath.FlagIngressEnforced != 0, "egressEnforced", ep.prog.flags&datapath.FlagEgressEnforced != 0)
	return EndpointResponse{ID: rec.ID, Identity: uint32(ep.identity), Pod: rec.pod()}, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// removeLocked takes an endpoint out of the datapath (fail closed first: with its entry gone
// the attached programs drop its traffic; then they are detached) and of the registry, and
// reconciles the others.
func (a *Agent) removeLocked(ep *endpoint) {
	if ep.prog.hasEndpoint || ep.attached {
		if err := a.dp.DeleteEndpoint(ep.rec.Ifindex); err != nil {
			a.log.Warn("delete endpoint", "endpoint", ep.rec.ID, "error", err)
		}
	}
	if err := a.dp.DeletePolicy(ep.rec.ID); err != nil {
		a.log.Warn("delete policy map", "endpoint", ep.rec.ID, "error", err)
	}
	if ep.detach != nil {
		if err := ep.detach(); err != nil {
			a.log.Debug("detach", "endpoint", ep.rec.ID, "error", err)
		}
	} else {
		a.net.RemoveLinkPins(ep.rec.HostIfName)
	}
	delete(a.eps, ep.rec.ContainerID)
	if a.good != nil {
		if _, err := a.reconcileLocked(a.good.objs, "endpoint "+ep.rec.pod()+" removed"); err != nil {
			a.log.Error("reconciling after an endpoint removal", "error", err)
		}
	}
	a.saveLocked(nil)
}

// Deregister removes an endpoint by container ID.
func (a *Agent) Deregister(containerID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.publishViewLocked()
	ep := a.eps[containerID]
	if ep == nil {
		return &httpError{http.StatusNotFound, fmt.Errorf("no endpoint for container %s", containerID)}
	}
	a.removeLocked(ep)
	a.log.Info("endpoint removed", "pod", ep.rec.pod(), "containerID", containerID, "endpoint", ep.rec.ID)
	return nil
}

// Endpoints lists the endpoints, by id.
func (a *Agent) Endpoints() []Endpoint {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Endpoint, 0, len(a.eps))
	for _, ep := range a.eps {
		out = append(out, a.endpointViewLocked(ep))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (a *Agent) endpointViewLocked(ep *endpoint) Endpoint {
	r := ep.rec
	e := Endpoint{
		ID: r.ID, ContainerID: r.ContainerID, Pod: r.pod(), Namespace: r.PodNamespace, Name: r.PodName,
		IPs: append([]string{}, r.IPs...), Identity: uint32(ep.identity), Labels: ep.labels, HostIfName: r.HostIfName,
		Netns: r.Netns, PolicyRevision: ep.revision, KnownPod: ep.knownPod, State: ep.state, Error: ep.err,
		IngressEnforced: ep.prog.flags&datapath.FlagIngressEnforced != 0,
		EgressEnforced:  ep.prog.flags&datapath.FlagEgressEnforced != 0,
		Audit:           ep.prog.flags&datapath.FlagAudit != 0,
		MapEntries:      len(ep.prog.sig),
	}
	if e.Identity == 0 {
		e.Identity = uint32(ep.prog.identity)
	}
	if e.Labels == nil {
		e.Labels = []string{}
	}
	if ep.pol != nil && ep.state != "restored" {
		e.IngressDefaultDeny = ep.pol.Ingress.DefaultDeny
		e.EgressDefaultDeny = ep.pol.Egress.DefaultDeny
	}
	return e
}

// EndpointDetail returns one endpoint with its programmed map: key is the id, namespace/name
// or the container ID.
func (a *Agent) EndpointDetail(key string) (Endpoint, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var found *endpoint
	id, idErr := strconv.ParseUint(key, 10, 32)
	for cid, ep := range a.eps {
		if (idErr == nil && uint64(ep.rec.ID) == id) || ep.rec.pod() == key || cid == key {
			found = ep
			break
		}
	}
	if found == nil {
		return Endpoint{}, false
	}
	e := a.endpointViewLocked(found)
	e.Map = []MapEntry{}
	if found.prog.m != nil {
		for _, ke := range found.prog.m.Entries() {
			me := MapEntry{Key: ke.Key.String(), Verdict: ke.Entry.String(), Precedence: uint32(ke.Entry.Precedence), Origins: []string{}}
			origins := ke.Entry.Origins
			if origins == nil {
				origins = a.jar.Origins(found.prog.sig[ke.Key].cookie)
			}
			for _, o := range origins {
				me.Origins = append(me.Origins, o.String())
			}
			e.Map = append(e.Map, me)
		}
	}
	return e, true
}

func (a *Agent) enforcingLocked() string {
	switch {
	case a.good != nil && a.lastErr == nil:
		return "current"
	case a.good != nil:
		return "last-good"
	case a.restored:
		return "restored"
	}
	return "none"
}

// Status reports the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{
		Node:           a.cfg.Node,
		PoliciesDir:    a.cfg.PoliciesDir,
		PolicyRevision: a.revision,
		Enforcing:      a.enforcingLocked(),
		Endpoints:      len(a.eps),
		Audit:          a.cfg.Audit,
		DatapathLoaded: a.dp != nil,
		LastError:      a.lastErr,
		Warnings:       a.warnings,
		Identities:     len(a.alloc.byKey),
		IPCacheEntries: len(a.ipcache),
	}
	if a.cfg.Kubernetes != nil {
		st.Kubernetes = a.cfg.KubernetesName
	}
	if a.l7 != nil {
		st.Proxy = a.l7.status()
	}
	if a.kube != nil {
		for _, oe := range a.kube.invalid {
			st.InvalidPolicies = append(st.InvalidPolicies, issuesOf(oe)...)
		}
		st.StatusPending = a.kube.reporter.pending()
	}
	if !a.lastLoad.IsZero() {
		t := a.lastLoad
		st.LastLoad = &t
	}
	if a.good != nil {
		t := a.good.at
		st.LastGoodLoad = &t
	}
	a.metricsMu.Lock()
	st.MetricsError = a.metricErr
	a.metricsMu.Unlock()
	return st
}

// Health is /healthz: ok when the datapath is loaded and either the policy directory as it
// is or the last good state is enforced; the message says which.
func (a *Agent) Health() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dp == nil {
		return "not ready: datapath not loaded", false
	}
	switch a.enforcingLocked() {
	case "current":
		return fmt.Sprintf("ok: enforcing the current policy set (revision %d, %d endpoints)", a.revision, len(a.eps)), true
	case "last-good":
		return fmt.Sprintf("ok: enforcing the last good policy set (revision %d); %s is invalid: %s", a.revision, a.sourceName(), firstIssue(a.lastErr)), true
	case "restored":
		return fmt.Sprintf("ok: enforcing the pinned state of the previous agent (%d endpoints); no valid policy set loaded yet: %s", len(a.eps), firstIssue(a.lastErr)), true
	}
	return "not ready: no valid policy set loaded: " + firstIssue(a.lastErr), false
}

func firstIssue(pe *PolicyError) string {
	if pe == nil {
		return "not loaded"
	}
	if len(pe.Errors) > 0 {
		s := pe.Errors[0].String()
		if len(pe.Errors) > 1 {
			s += fmt.Sprintf(" (and %d more)", len(pe.Errors)-1)
		}
		return s
	}
	return pe.Message
}
