package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/k8s"
	"github.com/netward/netward/labels"
	"github.com/netward/netward/policy"
)

// kubeSource is the agent's Kubernetes source: informer snapshots replace the policy
// directory, and the status of every CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
// says, in status.nodes.<node>, how this node enforces it.
//
// Unlike a directory, a cluster is not rejected as a whole when one policy is invalid:
// people apply policies one by one, and one bad apply must not freeze every other change.
// A policy that does not validate (or that the translator cannot read) is left out — the
// datapath then enforces the others, exactly as Cilium's agent does — and its status says
// why on every node.
type kubeSource struct {
	reporter *statusReporter
	// invalid are the policies of the last snapshot that are not enforced, and why.
	invalid []*api.ObjectError
}

// firstSyncWait is how long an endpoint registration waits for the first snapshot.
const firstSyncWait = 60 * time.Second

// startKubernetes starts the informers and the status reporter.
func (a *Agent) startKubernetes(ctx context.Context) error {
	rc := rest.CopyConfig(a.cfg.Kubernetes)
	rc.QPS, rc.Burst = a.cfg.KubernetesQPS, a.cfg.KubernetesBurst
	clients, err := k8s.NewClients(rc, a.cfg.KubernetesName)
	if err != nil {
		return fmt.Errorf("kubernetes clients for %s: %w", a.cfg.KubernetesName, err)
	}
	ks := &kubeSource{
		reporter: newStatusReporter(k8s.NewStatusWriter(clients.Dynamic), clients.Dynamic, a.cfg.Node, a.log),
	}
	a.mu.Lock()
	a.kube = ks
	a.mu.Unlock()
	src := k8s.NewSource(clients.Kube, clients.Dynamic, k8s.SourceOptions{
		Name:   a.cfg.KubernetesName,
		Logger: a.log,
		OnChange: func(objs *api.Objects, invalid []*api.ObjectError) {
			detected := time.Now()
			a.mu.Lock()
			defer a.mu.Unlock()
			a.applySnapshotLocked(objs, invalid, detected)
			a.publishViewLocked()
		},
	})
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		if err := src.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("kubernetes source stopped", "error", err)
		}
	}()
	go func() {
		defer a.wg.Done()
		ks.reporter.run(ctx)
	}()
	return nil
}

// sourceName names where the objects come from, for messages.
func (a *Agent) sourceName() string {
	if a.cfg.Kubernetes != nil {
		return "cluster " + a.cfg.KubernetesName
	}
	return a.cfg.PoliciesDir
}

// applySnapshotLocked applies an informer snapshot: every valid policy enforces; invalid
// ones are reported in their status and left out.
func (a *Agent) applySnapshotLocked(objs *api.Objects, invalid []*api.ObjectError, detected time.Time) {
	ks := a.kube
	digest := snapshotDigest(objs, invalid)
	if a.good != nil && digest == a.tried {
		return
	}
	a.tried = digest
	start := time.Now()
	a.lastLoad = start
	ks.invalid = invalid
	for _, oe := range invalid {
		a.log.Error("invalid policy left out; the other policies enforce", "object", oe.Ref(), "error", k8s.StatusMessage(oe))
	}
	for attempt := 0; ; attempt++ {
		berr, aerr := a.acceptLocked(objs, digest, nil, detected, start, false, "kubernetes change")
		if berr == nil {
			a.reportStatusLocked(aerr)
			return
		}
		// The validator passed every policy in objs, so a translation failure is a gap in
		// validation: find the policies, leave them out like invalid ones, and try again.
		var bad []*api.ObjectError
		if attempt == 0 {
			objs, bad = withoutUntranslatable(objs, a.cfg.ClusterName)
		}
		if len(bad) == 0 {
			a.rejectLocked([]error{berr})
			a.reportStatusLocked(nil)
			return
		}
		ks.invalid = append(slices.Clone(ks.invalid), bad...)
		for _, oe := range bad {
			a.log.Error("untranslatable policy left out; the other policies enforce", "object", oe.Ref(), "error", k8s.StatusMessage(oe))
		}
	}
}

// snapshotDigest identifies a snapshot by its objects' versions. Policies count by
// generation, which only spec changes move: status writes (every agent's) change the
// resourceVersion but must not look like a new policy set.
func snapshotDigest(objs *api.Objects, invalid []*api.ObjectError) [32]byte {
	h := sha256.New()
	add := func(kind, ns, name, uid, version string) {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\n", kind, ns, name, uid, version)
	}
	for _, o := range objs.Namespaces {
		add("Namespace", "", o.Obj.Name, string(o.Obj.UID), o.Obj.ResourceVersion)
	}
	for _, o := range objs.Nodes {
		add("Node", "", o.Obj.Name, string(o.Obj.UID), o.Obj.ResourceVersion)
	}
	for _, o := range objs.Pods {
		add("Pod", o.Obj.Namespace, o.Obj.Name, string(o.Obj.UID), o.Obj.ResourceVersion)
	}
	for _, o := range objs.NetworkPolicies {
		add(api.KindNetworkPolicy, o.Obj.Namespace, o.Obj.Name, string(o.Obj.UID), strconv.FormatInt(o.Obj.Generation, 10))
	}
	for _, o := range objs.CNPs {
		add(api.KindCNP, o.Obj.Namespace, o.Obj.Name, string(o.Obj.UID), strconv.FormatInt(o.Obj.Generation, 10))
	}
	for _, o := range objs.CCNPs {
		add(api.KindCCNP, "", o.Obj.Name, string(o.Obj.UID), strconv.FormatInt(o.Obj.Generation, 10))
	}
	for _, oe := range invalid {
		fmt.Fprintf(h, "invalid\x00%s\x00%s\n", oe.Ref(), k8s.StatusMessage(oe))
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// withoutUntranslatable returns objs without the policies the translator rejects, and an
// error for each of them.
func withoutUntranslatable(objs *api.Objects, clusterName string) (*api.Objects, []*api.ObjectError) {
	tr := policy.Translator{Cluster: clusterName}
	out := *objs
	var bad []*api.ObjectError
	fail := func(src api.Source, kind, ns, name string, err error) {
		// The validator accepted it, so this is a gap in validation: say so.
		bad = append(bad, &api.ObjectError{Source: src, Kind: kind, Namespace: ns, Name: name,
			Errs: field.ErrorList{field.InternalError(field.NewPath("spec"), err)}})
	}
	out.CNPs = nil
	for _, o := range objs.CNPs {
		if _, err := tr.CNP(api.KindCNP, o.Obj); err != nil {
			fail(o.Source, api.KindCNP, o.Obj.Namespace, o.Obj.Name, err)
			continue
		}
		out.CNPs = append(out.CNPs, o)
	}
	out.CCNPs = nil
	for _, o := range objs.CCNPs {
		if _, err := tr.CNP(api.KindCCNP, o.Obj); err != nil {
			fail(o.Source, api.KindCCNP, "", o.Obj.Name, err)
			continue
		}
		out.CCNPs = append(out.CCNPs, o)
	}
	out.NetworkPolicies = nil
	for _, o := range objs.NetworkPolicies {
		if _, err := tr.NetworkPolicy(o.Obj); err != nil {
			fail(o.Source, api.KindNetworkPolicy, o.Obj.Namespace, o.Obj.Name, err)
			continue
		}
		out.NetworkPolicies = append(out.NetworkPolicies, o)
	}
	return &out, bad
}

// reportStatusLocked computes this node's status of every Cilium policy and hands it to the
// reporter, which writes what changed. applyErr is the datapath's failure, if any.
func (a *Agent) reportStatusLocked(applyErr error) {
	ks := a.kube
	if ks == nil {
		return
	}
	want := map[k8s.PolicyRef]k8s.NodeStatus{}
	for _, oe := range ks.invalid {
		if oe.Kind != api.KindCNP && oe.Kind != api.KindCCNP {
			continue // NetworkPolicies have no status to write into
		}
		want[k8s.PolicyRef{Kind: oe.Kind, Namespace: oe.Namespace, Name: oe.Name}] =
			k8s.NodeStatus{Invalid: true, Error: k8s.StatusMessage(oe)}
	}
	if a.good == nil || a.cur == nil {
		ks.reporter.set(want, nil)
		return
	}
	// The local endpoints that do not enforce their policy, by identity labels.
	type failing struct {
		labels labels.Set
		pod    string
		why    string
	}
	var fails []failing
	for cid, ep := range a.eps {
		de := a.cur.eps[cid]
		if de == nil || ep.state == "enforcing" {
			continue
		}
		why := ep.err
		if why == "" {
			why = "endpoint state " + ep.state
		}
		fails = append(fails, failing{de.cep.Identity.Labels, ep.rec.pod(), why})
	}
	slices.SortFunc(fails, func(x, y failing) int { return cmp.Compare(x.pod, y.pod) })
	seen := map[string]bool{}
	versionsChanged := false
	objs := a.good.objs
	for _, set := range []struct {
		kind string
		list []api.Object[api.CiliumNetworkPolicy]
	}{{api.KindCNP, objs.CNPs}, {api.KindCCNP, objs.CCNPs}} {
		for _, o := range set.list {
			ns := ""
			if set.kind == api.KindCNP {
				ns = cmp.Or(o.Obj.Namespace, "default")
			}
			ver := string(o.Obj.UID) + "/" + strconv.FormatInt(o.Obj.Generation, 10)
			seen[ver] = true
			rev, ok := a.policyVersions[ver]
			if !ok {
				rev = a.revision
				a.policyVersions[ver] = rev
				versionsChanged = true
			}
			st := k8s.NodeStatus{OK: true, Enforcing: true, Revision: rev, Annotations: o.Obj.Annotations}
			if applyErr != nil {
				st.Enforcing, st.Error = false, "datapath: "+applyErr.Error()
			} else if len(fails) > 0 {
				entries := a.cur.cluster.Engine.Entries(cluster.ResourceKey(set.kind, ns, o.Obj.Name))
			check:
				for _, f := range fails {
					for _, en := range entries {
						if en.Subject.Selector.Matches(f.labels) {
							st.Enforcing, st.Error = false, fmt.Sprintf("endpoint %s: %s", f.pod, f.why)
							break check
						}
					}
				}
			}
			want[k8s.PolicyRef{Kind: set.kind, Namespace: ns, Name: o.Obj.Name}] = st
		}
	}
	maps.DeleteFunc(a.policyVersions, func(ver string, _ uint64) bool {
		versionsChanged = versionsChanged || !seen[ver]
		return !seen[ver]
	})
	if versionsChanged {
		a.saveLocked(nil) // so that a restart reports the same localPolicyRevision
	}
	ks.reporter.set(want, a.clusterNodesLocked(objs))
}

// clusterNodesLocked returns the names of the cluster's nodes when this agent is the one
// that cleans up after departed nodes (the first node by name, so that the agents do not
// all patch the same objects), else nil.
func (a *Agent) clusterNodesLocked(objs *api.Objects) map[string]bool {
	nodes := map[string]bool{}
	first := ""
	for _, n := range objs.Nodes {
		nodes[n.Obj.Name] = true
		if first == "" || n.Obj.Name < first {
			first = n.Obj.Name
		}
	}
	if first != a.cfg.Node {
		return nil
	}
	return nodes
}

// statusReporter writes this node's status entries, each when it changes, in the
// background: the API server's latency or an outage never delays enforcement. Failed
// writes are retried with backoff until they succeed or the entry is no longer wanted.
type statusReporter struct {
	w    *k8s.StatusWriter
	node string
	log  *slog.Logger
	kick chan struct{}

	mu      sync.Mutex
	want    map[k8s.PolicyRef]k8s.NodeStatus
	written map[k8s.PolicyRef]k8s.NodeStatus
	failed  map[k8s.PolicyRef]string // last error, logged once per distinct error

	// Departed nodes' entries (this agent cleans up only when nodes is set): nodes are the
	// cluster's nodes now, known every node seen so far.
	dyn          dynamic.Interface
	nodes, known map[string]bool
	nodesChanged bool
	lastClean    time.Time
}

// Departed nodes' entries are removed at once when the node was seen in the cluster and
// its Node object is gone; entries of a node never seen (one that left while this agent
// was down, or one too new for this agent's informers) only when the entry is older than
// unknownNodeGrace, so that a joining node's first status is never removed.
const (
	cleanInterval    = 30 * time.Second
	unknownNodeGrace = 2 * time.Minute
)

// statusWriters bounds the concurrent status writes of one agent.
const statusWriters = 8

func newStatusReporter(w *k8s.StatusWriter, dyn dynamic.Interface, node string, log *slog.Logger) *statusReporter {
	return &statusReporter{w: w, dyn: dyn, node: node, log: log, kick: make(chan struct{}, 1),
		want: map[k8s.PolicyRef]k8s.NodeStatus{}, written: map[k8s.PolicyRef]k8s.NodeStatus{},
		failed: map[k8s.PolicyRef]string{}, known: map[string]bool{}}
}

// set replaces what should be written, and the cluster's nodes (nil: another agent cleans
// up after departed nodes).
func (r *statusReporter) set(want map[k8s.PolicyRef]k8s.NodeStatus, nodes map[string]bool) {
	r.mu.Lock()
	r.want = want
	if !maps.Equal(nodes, r.nodes) {
		r.nodesChanged = true
	}
	r.nodes = nodes
	for n := range nodes {
		r.known[n] = true
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// pending counts the wanted entries not written yet.
func (r *statusReporter) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for ref, st := range r.want {
		if w, ok := r.written[ref]; !ok || !sameStatus(w, st) {
			n++
		}
	}
	return n
}

func sameStatus(a, b k8s.NodeStatus) bool {
	return a.OK == b.OK && a.Error == b.Error && a.Invalid == b.Invalid && a.Enforcing == b.Enforcing &&
		a.Revision == b.Revision && maps.Equal(a.Annotations, b.Annotations)
}

func (r *statusReporter) run(ctx context.Context) {
	const minBackoff, maxBackoff = 500 * time.Millisecond, 30 * time.Second
	backoff := minBackoff
	var retry <-chan time.Time
	tick := time.NewTicker(cleanInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-retry:
		case <-tick.C:
		}
		retry = nil
		if r.flush(ctx) {
			backoff = minBackoff
			continue
		}
		if ctx.Err() != nil {
			return
		}
		retry = time.After(backoff)
		backoff = min(2*backoff, maxBackoff)
	}
}

// flush writes every changed entry; it reports whether all writes succeeded.
func (r *statusReporter) flush(ctx context.Context) bool {
	type job struct {
		ref k8s.PolicyRef
		st  k8s.NodeStatus
	}
	r.mu.Lock()
	var jobs []job
	for ref, st := range r.want {
		if w, ok := r.written[ref]; !ok || !sameStatus(w, st) {
			jobs = append(jobs, job{ref, st})
		}
	}
	// Entries no longer wanted (the policy is gone) are forgotten: if it comes back, it is
	// a new object whose status must be written again.
	maps.DeleteFunc(r.written, func(ref k8s.PolicyRef, _ k8s.NodeStatus) bool { _, ok := r.want[ref]; return !ok })
	maps.DeleteFunc(r.failed, func(ref k8s.PolicyRef, _ string) bool { _, ok := r.want[ref]; return !ok })
	clean := r.nodes != nil && (r.nodesChanged || time.Since(r.lastClean) > cleanInterval)
	nodes, known := maps.Clone(r.nodes), maps.Clone(r.known)
	r.nodesChanged = false
	r.mu.Unlock()
	ok := true
	if clean {
		if err := r.cleanDeparted(ctx, nodes, known); err != nil {
			r.log.Warn("removing departed nodes' policy status failed; retrying", "error", err)
			ok = false
			r.mu.Lock()
			r.nodesChanged = true
			r.mu.Unlock()
		} else {
			r.lastClean = time.Now()
		}
	}
	if len(jobs) == 0 {
		return ok
	}
	slices.SortFunc(jobs, func(x, y job) int { return cmp.Compare(x.ref.String(), y.ref.String()) })
	var (
		wg   sync.WaitGroup
		next = make(chan job)
		okMu sync.Mutex
	)
	for range min(statusWriters, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				err := r.w.Report(wctx, j.ref, r.node, j.st)
				cancel()
				r.mu.Lock()
				if err != nil {
					if msg := err.Error(); r.failed[j.ref] != msg {
						r.failed[j.ref] = msg
						r.log.Warn("writing policy status failed; retrying", "policy", j.ref.String(), "error", err)
					}
					okMu.Lock()
					ok = false
					okMu.Unlock()
				} else {
					if r.failed[j.ref] != "" {
						r.log.Info("policy status written after retries", "policy", j.ref.String())
					}
					delete(r.failed, j.ref)
					if cur, wanted := r.want[j.ref]; wanted && sameStatus(cur, j.st) {
						r.written[j.ref] = j.st
					}
				}
				r.mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	return ok && ctx.Err() == nil
}

// cleanDeparted removes the status entries of departed nodes from every policy, read
// fresh from the API server: the source's snapshot does not carry status changes, and
// invalid policies (not in the snapshot) have entries too.
func (r *statusReporter) cleanDeparted(ctx context.Context, nodes, known map[string]bool) error {
	now := time.Now()
	var errs []error
	for _, gvr := range []schema.GroupVersionResource{k8s.CNPResource, k8s.CCNPResource} {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		list, err := r.dyn.Resource(gvr).List(lctx, metav1.ListOptions{})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s: %w", gvr.Resource, err))
			continue
		}
		kind := api.KindCNP
		if gvr == k8s.CCNPResource {
			kind = api.KindCCNP
		}
		for _, item := range list.Items {
			st, err := k8s.ReadPolicyStatus(item.Object)
			if err != nil {
				continue // the writer reports unreadable status when it writes its own entry
			}
			ref := k8s.PolicyRef{Kind: kind, Namespace: item.GetNamespace(), Name: item.GetName()}
			for node, entry := range st.Nodes {
				if nodes[node] || (!known[node] && now.Sub(entry.LastUpdated.Time) < unknownNodeGrace) {
					continue
				}
				wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				err := r.w.RemoveNode(wctx, ref, node)
				cancel()
				if err != nil {
					errs = append(errs, err)
					continue
				}
				r.log.Info("removed a departed node's policy status", "policy", ref.String(), "departedNode", node)
			}
		}
	}
	return errors.Join(errs...)
}
