package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/datapath"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// desired is the state the agent wants the kernel to hold.
type desired struct {
	cluster  *cluster.Cluster
	eps      map[string]*desiredEP // by container ID
	ipcache  map[netip.Prefix]identity.ID
	keys     map[string]bool // allocator keys in use
	labelsOf map[identity.ID][]string
	kindOf   map[identity.ID]string
	peers    map[netip.Addr]Peer
}

type desiredEP struct {
	cep      *cluster.Endpoint
	pol      *policy.EndpointPolicy
	identity identity.ID
	flags    datapath.EndpointFlags
	entries  []policy.KeyEntry
	m        *policy.MapState
	sig      map[policy.Key]entrySig
	knownPod bool
	err      string
}

// buildError is an input the cluster cannot be built from (a policy the translator rejects,
// a pod defined twice): a policy error, not a datapath one.
type buildError struct{ err error }

func (e *buildError) Error() string { return e.err.Error() }
func (e *buildError) Unwrap() error { return e.err }

// applyStats counts what one reconciliation wrote.
type applyStats struct {
	changed, narrowed     int
	upserted, deleted     int
	ipUpserted, ipDeleted int
	compute, total        time.Duration
	errors                int
}

func relevantFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// reloadLocked reads the policy directory. A valid set is applied as a whole; an invalid one
// (any decoding, validation or translation error) is rejected as a whole, every problem is
// logged and reported, and the last valid set keeps enforcing.
func (a *Agent) reloadLocked(detected time.Time, initial bool) {
	if a.cfg.Kubernetes != nil {
		return // the informers deliver the objects (applySnapshotLocked)
	}
	dir := a.cfg.PoliciesDir
	objs, errs, digest, derr := a.loadDir(dir)
	if derr == nil && !initial && digest == a.tried {
		return
	}
	a.tried = digest
	start := time.Now()
	a.lastLoad = start
	if derr != nil {
		objs, errs = &api.Objects{}, []error{derr}
	}
	verrs, warnings := api.ValidateLenient(objs)
	errs = append(errs, verrs...)
	if len(errs) > 0 {
		a.rejectLocked(errs)
		return
	}
	for _, n := range objs.Notes {
		a.log.Debug("policy directory", "note", n)
	}
	if berr, _ := a.acceptLocked(objs, digest, warnings, detected, start, initial, "policy change"); berr != nil {
		a.rejectLocked([]error{berr})
	}
}

// acceptLocked applies a valid set and makes it the last good one. buildErr: the objects
// do not resolve (nothing was applied); applyErr: the datapath failed part of the apply
// (the set is current; the next change or resync retries).
func (a *Agent) acceptLocked(objs *api.Objects, digest [32]byte, warnings []string, detected, start time.Time, initial bool, reason string) (buildErr, applyErr error) {
	rev := a.revision + 1
	if digest == a.savedDigest {
		rev = a.revision // the set already applied (before an invalid edit, or a restart)
	}
	stats, err := a.applyLocked(objs, rev, reason)
	var be *buildError
	if errors.As(err, &be) {
		return be.err, nil
	}
	if a.good == nil {
		close(a.firstGood)
	}
	a.good = &loaded{objs: objs, digest: digest, at: start}
	if rev != a.revision || digest != a.savedDigest {
		a.revision, a.savedDigest = rev, digest
		a.saveLocked(nil)
	}
	a.lastErr = nil
	a.warnings = warnings
	for _, w := range warnings {
		a.log.Warn("policy input", "warning", w)
	}
	elapsed := time.Since(detected)
	if initial {
		elapsed = time.Since(start)
	}
	a.metrics.apply.Observe(elapsed.Seconds())
	a.log.Info("policy set applied", "revision", a.revision, "changedEndpoints", stats.changed,
		"narrowedFirst", stats.narrowed, "mapUpserts", stats.upserted, "mapDeletes", stats.deleted,
		"ipcacheUpserts", stats.ipUpserted, "ipcacheDeletes", stats.ipDeleted,
		"compute", stats.compute, "sinceChange", elapsed)
	if err != nil {
		a.log.Error("applying the policy set to the datapath failed; retrying at the next change or resync", "error", err)
	}
	return nil, err
}

// rejectLocked records an invalid policy set.
func (a *Agent) rejectLocked(errs []error) {
	pe := &PolicyError{Time: time.Now(), Message: fmt.Sprintf("%d problem(s) in %s; nothing of it was applied", len(errs), a.sourceName())}
	for _, err := range errs {
		pe.Errors = append(pe.Errors, issuesOf(err)...)
	}
	a.lastErr = pe
	a.metrics.policyErrors.Inc()
	keeping := "the last valid policy set keeps enforcing"
	if a.good == nil {
		keeping = "no valid policy set loaded yet; the pinned state of the previous agent (if any) keeps enforcing"
	}
	for _, is := range pe.Errors {
		a.log.Error("invalid policy input rejected", "file", is.File, "document", is.Document,
			"object", is.Object, "field", is.Field, "error", is.Message)
	}
	a.log.Error("policy set rejected: "+keeping, "problems", len(pe.Errors))
}

// issuesOf splits an error into located issues.
func issuesOf(err error) []ObjectIssue {
	var oe *api.ObjectError
	if errors.As(err, &oe) {
		var out []ObjectIssue
		for _, fe := range oe.Errs {
			out = append(out, ObjectIssue{File: oe.Source.File, Document: oe.Source.Doc, Item: oe.Source.Item,
				Object: oe.Ref(), Field: fe.Field, Message: fe.ErrorBody()})
		}
		if len(out) > 0 {
			return out
		}
		return []ObjectIssue{{File: oe.Source.File, Document: oe.Source.Doc, Object: oe.Ref(), Message: oe.Error()}}
	}
	is := ObjectIssue{Message: err.Error()}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		is.File = pe.Path
	}
	return []ObjectIssue{is}
}

// applyLocked computes the desired state from objs and the endpoints and programs it.
func (a *Agent) applyLocked(objs *api.Objects, rev uint64, reason string) (applyStats, error) {
	start := time.Now()
	d, err := a.desiredLocked(objs)
	if err != nil {
		return applyStats{}, err
	}
	stats := applyStats{compute: time.Since(start)}
	a.metrics.regen.Observe(stats.compute.Seconds())
	err = a.programLocked(d, rev, &stats)
	stats.total = time.Since(start)
	a.log.Debug("reconciled", "reason", reason, "took", stats.total)
	return stats, err
}

// reconcileLocked re-applies the current valid set (after an endpoint change or a resync).
func (a *Agent) reconcileLocked(objs *api.Objects, reason string) (applyStats, error) {
	stats, err := a.applyLocked(objs, a.revision, reason)
	var be *buildError
	if !errors.As(err, &be) {
		a.reportStatusLocked(err) // endpoints come and go: whether they enforce may change
	}
	return stats, err
}

// mergeEndpoints returns objs with the registered endpoints merged in: each endpoint's Pod
// object gets the endpoint's addresses (they override status.podIP) and this node; an
// endpoint without a Pod object gets one without labels. Other pods lose addresses the
// endpoints now have.
func mergeEndpoints(objs *api.Objects, recs []*endpointRecord, node string) (*api.Objects, map[string]bool) {
	out := *objs
	byPod := map[string][]*endpointRecord{}
	taken := map[string]bool{}
	for _, r := range recs {
		byPod[r.pod()] = append(byPod[r.pod()], r)
		for _, ip := range r.IPs {
			taken[ip] = true
		}
	}
	known := map[string]bool{}
	out.Pods = make([]api.Object[corev1.Pod], 0, len(objs.Pods)+len(recs))
	setIPs := func(p *corev1.Pod, rs []*endpointRecord) {
		var ips []string
		for _, r := range rs {
			for _, ip := range r.IPs {
				if !slices.Contains(ips, ip) {
					ips = append(ips, ip)
				}
			}
		}
		p.Status.PodIP, p.Status.PodIPs = "", nil
		for i, ip := range ips {
			if i == 0 {
				p.Status.PodIP = ip
			}
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		p.Spec.NodeName = node
	}
	for _, o := range objs.Pods {
		ns := o.Obj.Namespace
		if ns == "" {
			ns = "default"
		}
		key := ns + "/" + o.Obj.Name
		if rs := byPod[key]; len(rs) > 0 {
			if known[key] {
				out.Pods = append(out.Pods, o) // defined twice: cluster.Build rejects the set
				continue
			}
			known[key] = true
			p := o.Obj.DeepCopy()
			setIPs(p, rs)
			out.Pods = append(out.Pods, api.Object[corev1.Pod]{Source: o.Source, Obj: p})
			continue
		}
		conflict := taken[o.Obj.Status.PodIP]
		for _, pip := range o.Obj.Status.PodIPs {
			conflict = conflict || taken[pip.IP]
		}
		if !conflict {
			out.Pods = append(out.Pods, o)
			continue
		}
		p := o.Obj.DeepCopy()
		p.Status.PodIP, p.Status.PodIPs = "", nil
		ips := []string{o.Obj.Status.PodIP}
		for _, pip := range o.Obj.Status.PodIPs {
			ips = append(ips, pip.IP)
		}
		for _, ip := range ips {
			if ip == "" || taken[ip] {
				continue
			}
			if p.Status.PodIP == "" {
				p.Status.PodIP = ip
			}
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		out.Pods = append(out.Pods, api.Object[corev1.Pod]{Source: o.Source, Obj: p})
	}
	keys := make([]string, 0, len(byPod))
	for k := range byPod {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if known[key] {
			continue
		}
		rs := byPod[key]
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: rs[0].PodNamespace, Name: rs[0].PodName}}
		setIPs(p, rs)
		out.Pods = append(out.Pods, api.Object[corev1.Pod]{Source: api.Source{File: "endpoint " + rs[0].ContainerID}, Obj: p})
	}
	return &out, known
}

// identityKey is the allocator key of an identity and the scope of its number.
func identityKey(id *identity.Identity) (string, idScope) {
	switch {
	case id.Kind == identity.KindWorld && len(id.Prefixes) == 1:
		return "cidr:" + id.Prefixes[0].String(), scopeCIDR
	case id.Kind == identity.KindRemoteNode:
		return "node:" + id.Node, scopeNode
	}
	return "pod:" + id.Labels.String(), scopePod
}

func labelStrings(id *identity.Identity) []string {
	var out []string
	for _, l := range id.Labels.Sorted() {
		out = append(out, l.String())
	}
	return out
}

// desiredLocked builds the cluster from objs and the endpoints and computes what the kernel
// should hold, in stable identity numbers.
func (a *Agent) desiredLocked(objs *api.Objects) (*desired, error) {
	recs := a.recordsLocked()
	merged, known := mergeEndpoints(objs, recs, a.cfg.Node)
	c, err := cluster.Build(merged, cluster.Options{Policy: a.cfg.Policy, Cluster: a.cfg.ClusterName})
	if err != nil {
		return nil, &buildError{err}
	}
	d := &desired{
		cluster:  c,
		eps:      map[string]*desiredEP{},
		ipcache:  map[netip.Prefix]identity.ID{},
		keys:     map[string]bool{},
		labelsOf: map[identity.ID][]string{},
		kindOf:   map[identity.ID]string{},
		peers:    map[netip.Addr]Peer{},
	}
	remap := map[identity.ID]identity.ID{}
	cidrID := map[netip.Prefix]identity.ID{}
	// The deterministic numbers matter only for label sets without a number yet: computed
	// once per build, and only when there is one (not on every endpoint change or resync).
	var preferred map[string]identity.ID
	for _, id := range c.Engine.SelectorCache().Universe() {
		st := id.ID
		if id.ID >= identity.MinCluster {
			key, scope := identityKey(id)
			var pref identity.ID
			if _, numbered := a.alloc.byKey[key]; scope == scopePod && !numbered {
				if preferred == nil {
					if preferred, err = deterministicNumbers(merged, c); err != nil {
						return nil, err
					}
				}
				pref = preferred[id.Labels.String()]
			}
			if st = a.alloc.get(key, scope, pref); st == 0 {
				return nil, fmt.Errorf("no identity number left for %s", key)
			}
			d.keys[key] = true
		}
		remap[id.ID] = st
		d.labelsOf[st] = labelStrings(id)
		switch {
		case id.Kind == identity.KindWorld && len(id.Prefixes) == 1 && id.ID >= identity.LocalScope:
			cidrID[id.Prefixes[0]] = st
			d.kindOf[st] = "cidr"
		case id.Kind == identity.KindPod:
			d.kindOf[st] = "pod"
		case id.Kind == identity.KindHost:
			d.kindOf[st] = "host"
		case id.Kind == identity.KindRemoteNode:
			d.kindOf[st] = "remote-node"
		case id.ID == identity.World:
			d.kindOf[st] = "world"
		default:
			d.kindOf[st] = identity.ReservedName(id.ID)
		}
	}
	// The ipcache: CIDR identities, then nodes, then pods (a pod's /32 wins, as in trace).
	for p, id := range cidrID {
		if p.Addr().Is4() {
			d.ipcache[p] = id
		}
	}
	for _, n := range c.Nodes {
		for _, ip := range n.IPs {
			if !ip.Unmap().Is4() {
				continue
			}
			ip = ip.Unmap()
			id, kind := remap[n.Remote.ID], "remote-node"
			if n.Name == a.cfg.Node {
				id, kind = identity.Host, "host"
			}
			d.ipcache[netip.PrefixFrom(ip, 32)] = id
			d.peers[ip] = Peer{IP: ip.String(), Identity: uint32(id), Kind: kind, Node: n.Name}
		}
	}
	addrs, err := a.net.Addrs()
	if err != nil {
		a.log.Warn("reading the node's addresses failed", "error", err)
	}
	for _, ip := range addrs {
		if _, ok := d.peers[ip]; !ok {
			d.ipcache[netip.PrefixFrom(ip, 32)] = identity.Host
			d.peers[ip] = Peer{IP: ip.String(), Identity: uint32(identity.Host), Kind: "host", Node: a.cfg.Node}
		}
	}
	for _, ep := range c.Endpoints {
		id := remap[ep.Identity.ID]
		for _, ip := range ep.IPs {
			if !ip.Unmap().Is4() {
				continue
			}
			ip = ip.Unmap()
			d.ipcache[netip.PrefixFrom(ip, 32)] = id
			d.peers[ip] = Peer{Pod: ep.Key(), IP: ip.String(), Identity: uint32(id), Kind: "pod", Node: ep.Node}
		}
	}
	for _, r := range recs {
		cep, ok := c.Endpoint(r.pod())
		if !ok {
			return nil, fmt.Errorf("endpoint %s: pod missing from the built cluster", r.pod())
		}
		d.eps[r.ContainerID] = a.desiredEndpoint(c, cep, remap, known[r.pod()])
	}
	return d, nil
}

// deterministicNumbers numbers the pods' label sets with identity.Allocate: a claim per pod,
// dated by its creationTimestamp, so that every agent reading the same cluster computes
// the same numbers.
func deterministicNumbers(objs *api.Objects, c *cluster.Cluster) (map[string]identity.ID, error) {
	created := make(map[string]time.Time, len(objs.Pods))
	for _, o := range objs.Pods {
		ns := o.Obj.Namespace
		if ns == "" {
			ns = "default"
		}
		created[ns+"/"+o.Obj.Name] = o.Obj.CreationTimestamp.Time
	}
	claims := make([]identity.Claim, 0, len(c.Endpoints))
	for _, ep := range c.Endpoints {
		if ep.Identity.Kind == identity.KindPod {
			claims = append(claims, identity.Claim{Labels: ep.Identity.Labels, Since: created[ep.Key()]})
		}
	}
	return identity.Allocate(claims)
}

func (a *Agent) desiredEndpoint(c *cluster.Cluster, cep *cluster.Endpoint, remap map[identity.ID]identity.ID, known bool) *desiredEP {
	pol := c.Policy(cep)
	de := &desiredEP{cep: cep, pol: pol, identity: remap[cep.Identity.ID], knownPod: known}
	if a.cfg.Audit {
		de.flags |= datapath.FlagAudit
	}
	if pol.Ingress.Enforced {
		de.flags |= datapath.FlagIngressEnforced
	}
	if pol.Egress.Enforced {
		de.flags |= datapath.FlagEgressEnforced
	}
	var problems []string
	if pol.Err != nil {
		problems = append(problems, pol.Err.Error())
	}
	entries := pol.Map.Entries()
	for i := range entries {
		k := &entries[i].Key
		if k.Identity == 0 {
			continue
		}
		st, ok := remap[k.Identity]
		if !ok {
			problems = append(problems, fmt.Sprintf("map key %v names an unknown identity", *k))
			entries = nil
			break
		}
		k.Identity = st
	}
	if len(entries) > maxPolicyEntries {
		problems = append(problems, fmt.Sprintf("the policy map has %d entries; the datapath holds %d", len(entries), maxPolicyEntries))
		entries = nil
	}
	if len(problems) > 0 {
		de.flags |= datapath.FlagPolicyError
		de.err = strings.Join(problems, "; ")
	}
	de.entries = entries
	de.m = policy.NewMapState(entries)
	de.sig = a.sigOf(entries)
	return de
}

func (a *Agent) sigOf(entries []policy.KeyEntry) map[policy.Key]entrySig {
	sig := make(map[policy.Key]entrySig, len(entries))
	for i := range entries {
		e := &entries[i].Entry
		sig[entries[i].Key] = entrySig{verdict: e.Verdict, prec: e.Precedence, parser: e.Parser, cookie: a.jar.Cookie(e)}
	}
	return sig
}

func (a *Agent) recordsLocked() []*endpointRecord {
	recs := make([]*endpointRecord, 0, len(a.eps))
	for _, ep := range a.eps {
		recs = append(recs, ep.rec)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	return recs
}

func (p *programmed) matches(de *desiredEP) bool {
	return p.hasEndpoint && p.m != nil && p.identity == de.identity && p.flags == de.flags && maps.Equal(p.sig, de.sig)
}

func dirFlag(egress bool) datapath.EndpointFlags {
	if egress {
		return datapath.FlagEgressEnforced
	}
	return datapath.FlagIngressEnforced
}

// dirMap is the map one direction decides with: everything passes when it is not enforced;
// nothing when it is and there is no map.
func dirMap(flags datapath.EndpointFlags, m *policy.MapState, egress bool) *policy.MapState {
	switch {
	case flags&dirFlag(egress) == 0:
		return policy.NewMapState([]policy.KeyEntry{allowAll(egress)})
	case m == nil:
		return policy.NewMapState(nil)
	}
	return m
}

type change struct {
	ep *endpoint
	de *desiredEP
}

// programLocked moves the kernel from what it holds to d in the three phases of doc.go:
// every changed endpoint to its transitional policy (only what old and new both allow),
// then the ipcache, then every changed endpoint to its new policy.
func (a *Agent) programLocked(d *desired, rev uint64, stats *applyStats) error {
	var changes []change
	for _, r := range a.recordsLocked() {
		ep := a.eps[r.ContainerID]
		de := d.eps[r.ContainerID]
		if !ep.prog.matches(de) {
			changes = append(changes, change{ep, de})
		}
	}
	ipChanged := !a.ipcacheSynced || !maps.Equal(a.ipcache, d.ipcache)
	if len(changes) > 0 || ipChanged {
		// Write-ahead: the identity numbers about to be used and every ipcache entry the
		// kernel may hold in the middle.
		if err := a.saveLocked(d.ipcache); err != nil {
			return err
		}
	}
	var errs []error
	// One endpoint changing alone (the ipcache and every other endpoint stay) needs no
	// transitional policy: each of its decisions reads its map once, so it decides as the
	// old or as the new policy, and so does every flow it is part of. Only the order of its
	// flags and map matters (toDesiredLocked), unless one direction becomes enforced while
	// the other stops being enforced.
	direct := len(changes) == 1 && !ipChanged && !mixedEnforcement(changes[0].ep.prog, changes[0].de)
	// Phase 1.
	for _, ch := range changes {
		if direct {
			break
		}
		narrowed, err := a.narrowLocked(ch)
		if narrowed {
			stats.narrowed++
		}
		if err != nil {
			a.log.Error("transitional policy failed; failing the endpoint closed", "pod", ch.ep.rec.pod(), "error", err)
			if ferr := a.setFlagsLocked(ch.ep, ch.ep.prog.flags|datapath.FlagPolicyError, ch.ep.prog.identity); ferr != nil {
				return fmt.Errorf("endpoint %s: %w (and failing it closed: %v); the ipcache was not changed", ch.ep.rec.pod(), err, ferr)
			}
		}
	}
	// Phase 2.
	if ipChanged {
		if err := a.syncIPCacheLocked(d.ipcache, stats); err != nil {
			return err
		}
	}
	// Phase 3.
	for _, ch := range changes {
		stats.changed++
		if err := a.toDesiredLocked(ch, stats); err != nil {
			ch.ep.err = err.Error()
			ch.ep.state = "error"
			errs = append(errs, fmt.Errorf("endpoint %s: %w", ch.ep.rec.pod(), err))
		}
	}
	for cid, ep := range a.eps {
		de := d.eps[cid]
		ep.identity, ep.labels, ep.knownPod, ep.pol = de.identity, d.labelsOf[de.identity], de.knownPod, de.pol
		if !ep.prog.matches(de) {
			continue // the error is set above
		}
		ep.revision = rev
		ep.err = de.err
		ep.state = "enforcing"
		if de.err != "" {
			ep.state = "error"
		}
		if !de.knownPod && ep.rec != nil {
			a.log.Debug("endpoint has no Pod object in the policy directory", "pod", ep.rec.pod())
		}
	}
	a.cur = d
	a.l7.publish(d) // the proxy decides with the new policies from its next request
	if len(errs) > 0 {
		stats.errors = len(errs)
		return errors.Join(errs...)
	}
	// Nothing programmed refers to numbers outside d any more.
	a.alloc.retain(d.keys)
	if len(changes) > 0 || ipChanged {
		return a.saveLocked(nil)
	}
	return nil
}

// narrowLocked puts a changed endpoint on its transitional policy when the new one does not
// allow everything the old one did. It reports whether it wrote anything.
func (a *Agent) narrowLocked(ch change) (bool, error) {
	ep, de := ch.ep, ch.de
	old := ep.prog
	if !old.hasEndpoint || old.flags&datapath.FlagPolicyError != 0 {
		return false, nil // nothing passes the endpoint now (no entry: the programs drop all)
	}
	if de.flags&datapath.FlagPolicyError != 0 {
		return true, a.setFlagsLocked(ep, old.flags|datapath.FlagPolicyError, old.identity)
	}
	tflags := old.flags | de.flags&enforcedFlags
	narrows := tflags != old.flags
	var entries []policy.KeyEntry
	widens := false
	for _, egress := range []bool{false, true} {
		if tflags&dirFlag(egress) == 0 {
			continue
		}
		es, n, w, err := intersect(dirMap(old.flags, old.m, egress), dirMap(de.flags, de.m, egress), egress, maxPolicyEntries-len(entries))
		if err != nil {
			a.log.Warn("transitional policy too large; the direction drops everything during the update", "pod", ep.rec.pod(), "egress", egress)
			es, n, w = nil, true, true
		}
		narrows, widens = narrows || n, widens || w
		entries = append(entries, es...)
	}
	if !narrows {
		return false, nil
	}
	if !widens && tflags&enforcedFlags == de.flags&enforcedFlags {
		// The new policy only narrows and enforces the same directions as T: T decides as
		// the new map does, so the new map itself is the transitional one (one write
		// instead of two).
		if _, err := a.dp.SetPolicy(ep.rec.ID, de.entries, a.jar.Cookie); err != nil {
			return true, err
		}
		ep.prog.m, ep.prog.sig = de.m, de.sig
		return true, a.setFlagsLocked(ep, tflags, old.identity)
	}
	if _, err := a.dp.SetPolicy(ep.rec.ID, entries, a.jar.Cookie); err != nil {
		return true, err
	}
	ep.prog.m, ep.prog.sig = policy.NewMapState(entries), a.sigOf(entries)
	return true, a.setFlagsLocked(ep, tflags, old.identity)
}

func (a *Agent) setFlagsLocked(ep *endpoint, flags datapath.EndpointFlags, id identity.ID) error {
	if ep.prog.hasEndpoint && ep.prog.flags == flags && ep.prog.identity == id {
		return nil
	}
	if err := a.dp.SetEndpoint(ep.rec.Ifindex, datapath.Endpoint{ID: ep.rec.ID, Identity: id, Flags: flags}); err != nil {
		return err
	}
	ep.prog.hasEndpoint, ep.prog.flags, ep.prog.identity = true, flags, id
	return nil
}

// mapFirst says in which order an endpoint goes from its programmed state to de. From a
// failed or absent endpoint the map goes first: nothing passes until the flags are written.
// When the new flags enforce a direction the programmed ones do not (and stop enforcing
// none), the map goes first too: the old flags do not look at the new direction's entries,
// and with the new flags the map is already the new one. Otherwise the flags go first:
// the directions still enforced decide with the programmed map (the old one, or the
// transitional one), the others pass as the new policy says; an endpoint whose new policy
// failed drops everything at once.
func mapFirst(p programmed, de *desiredEP) bool {
	switch {
	case !p.hasEndpoint || p.flags&datapath.FlagPolicyError != 0:
		return true
	case de.flags&datapath.FlagPolicyError != 0:
		return false
	}
	return de.flags&enforcedFlags&^p.flags != 0
}

// mixedEnforcement: one direction becomes enforced while another stops being enforced, so
// neither order of flags and map is safe without a transitional policy.
func mixedEnforcement(p programmed, de *desiredEP) bool {
	if !p.hasEndpoint || p.flags&datapath.FlagPolicyError != 0 || de.flags&datapath.FlagPolicyError != 0 {
		return false
	}
	return de.flags&enforcedFlags&^p.flags != 0 && p.flags&enforcedFlags&^de.flags != 0
}

// toDesiredLocked writes an endpoint's new policy and flags, in mapFirst's order. In the
// phased update the programmed flags then enforce every direction the new ones do, so the
// flags go first, and the map that decides until the new one is written is the
// transitional one (or the old one, when the new policy allows everything it did).
func (a *Agent) toDesiredLocked(ch change, stats *applyStats) error {
	ep, de := ch.ep, ch.de
	writeMap := func() error {
		if ep.prog.m != nil && maps.Equal(ep.prog.sig, de.sig) {
			return nil
		}
		delta, err := a.dp.SetPolicy(ep.rec.ID, de.entries, a.jar.Cookie)
		if err != nil {
			return err
		}
		stats.upserted += delta.Upserted
		stats.deleted += delta.Deleted
		ep.prog.m, ep.prog.sig = de.m, de.sig
		return nil
	}
	if mapFirst(ep.prog, de) {
		if err := writeMap(); err != nil {
			return err
		}
		return a.setFlagsLocked(ep, de.flags, de.identity)
	}
	if err := a.setFlagsLocked(ep, de.flags, de.identity); err != nil {
		return err
	}
	return writeMap()
}

// syncIPCacheLocked makes the kernel's ipcache want: upserts longest prefixes first, then
// deletes shortest first, so that every lookup in between finds the old or the new identity
// of its address (doc.go).
func (a *Agent) syncIPCacheLocked(want map[netip.Prefix]identity.ID, stats *applyStats) error {
	var ups, dels []netip.Prefix
	for p, id := range want {
		if cur, ok := a.ipcache[p]; !ok || cur != id || !a.ipcacheSynced {
			ups = append(ups, p)
		}
	}
	for p := range a.ipcache {
		if _, ok := want[p]; !ok {
			dels = append(dels, p)
		}
	}
	sort.Slice(ups, func(i, j int) bool {
		if ups[i].Bits() != ups[j].Bits() {
			return ups[i].Bits() > ups[j].Bits()
		}
		return ups[i].Addr().Less(ups[j].Addr())
	})
	sort.Slice(dels, func(i, j int) bool {
		if dels[i].Bits() != dels[j].Bits() {
			return dels[i].Bits() < dels[j].Bits()
		}
		return dels[i].Addr().Less(dels[j].Addr())
	})
	for _, p := range ups {
		if err := a.dp.UpsertIPCache(p, want[p]); err != nil {
			return err
		}
		a.ipcache[p] = want[p]
		stats.ipUpserted++
	}
	for _, p := range dels {
		if err := a.dp.DeleteIPCache(p); err != nil {
			return err
		}
		delete(a.ipcache, p)
		stats.ipDeleted++
	}
	a.ipcacheSynced = true
	return nil
}
