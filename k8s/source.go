package k8s

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/netward/netward/api"
)

// SourceOptions configure a Source.
type SourceOptions struct {
	// Name describes the cluster in object sources and errors (default "kubernetes").
	Name string
	// Debounce is the quiet time after the last change before OnChange is called
	// (default 75ms). Under a constant stream of changes OnChange is still called at
	// least every MaxDelay (default 1s).
	Debounce time.Duration
	MaxDelay time.Duration
	// Resync is the informers' resync period (default 0: none; relists after watch
	// errors happen regardless).
	Resync time.Duration
	// OnChange receives every new snapshot, first once the informers have synced, then
	// after each debounced change. objs holds the Namespaces, Pods, Nodes, and the
	// NetworkPolicies, CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies that
	// decode and validate, sorted by namespace and name; invalid holds one error per policy
	// that does not (its kind, namespace, name and field paths), sorted the same way. The
	// objects are shared with the informers' caches: read them, never modify them. Calls
	// never overlap.
	OnChange func(objs *api.Objects, invalid []*api.ObjectError)
	// Logger receives watch errors (default slog.Default()).
	Logger *slog.Logger
}

// Source watches the objects netward resolves (Pods, Namespaces, Nodes, NetworkPolicies,
// CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies) with client-go shared informers
// and keeps a consistent snapshot of them.
//
// The informers relist after watch expiry and reconnect after API server restarts on their
// own; a relist that brings back the same objects (same resourceVersion) changes nothing
// and calls nothing, and an object deleted meanwhile disappears. Changes that cannot
// matter to policy (a Pod's container statuses, a Node's heartbeats, a policy's status,
// which agents write) update the snapshot without calling OnChange, so agents writing
// policy status do not wake each other up.
type Source struct {
	opts    SourceOptions
	kube    informers.SharedInformerFactory
	dyn     dynamicinformer.DynamicSharedInformerFactory
	synced  []cache.InformerSynced
	kick    chan struct{}
	started atomic.Bool
	isSync  atomic.Bool

	mu        sync.Mutex
	items     map[objKey]*item
	gen       uint64
	delivered map[objKey]uint64
	once      bool // a snapshot was delivered
}

type objKey struct {
	kind      string
	namespace string
	name      string
}

type item struct {
	rv  string
	rel any    // what policy resolution reads of the object
	gen uint64 // changes when rel changes
	obj any    // *corev1.Namespace, *corev1.Pod, *corev1.Node, *networkingv1.NetworkPolicy, *api.CiliumNetworkPolicy
	err *api.ObjectError
}

// Defaults of SourceOptions.
const (
	DefaultDebounce = 75 * time.Millisecond
	DefaultMaxDelay = time.Second
)

// NewSource sets up the informers; Run starts them.
func NewSource(kube kubernetes.Interface, dyn dynamic.Interface, opts SourceOptions) *Source {
	if opts.Name == "" {
		opts.Name = "kubernetes"
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.MaxDelay < opts.Debounce {
		opts.MaxDelay = opts.Debounce
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Source{
		opts:  opts,
		kube:  informers.NewSharedInformerFactoryWithOptions(kube, opts.Resync, informers.WithTransform(dropManagedFields)),
		dyn:   dynamicinformer.NewDynamicSharedInformerFactory(dyn, opts.Resync),
		kick:  make(chan struct{}, 1),
		items: map[objKey]*item{},
	}
	s.watch(s.kube.Core().V1().Namespaces().Informer(), api.KindNamespace, "namespaces")
	s.watch(s.kube.Core().V1().Pods().Informer(), api.KindPod, "pods")
	s.watch(s.kube.Core().V1().Nodes().Informer(), api.KindNode, "nodes")
	s.watch(s.kube.Networking().V1().NetworkPolicies().Informer(), api.KindNetworkPolicy, "networkpolicies")
	for _, r := range []struct {
		gvr  schema.GroupVersionResource
		kind string
	}{{CNPResource, api.KindCNP}, {CCNPResource, api.KindCCNP}} {
		inf := s.dyn.ForResource(r.gvr).Informer()
		_ = inf.SetTransform(dropManagedFields)
		s.watch(inf, r.kind, r.gvr.Resource)
	}
	return s
}

func dropManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func (s *Source) watch(inf cache.SharedIndexInformer, kind, resource string) {
	_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		if apierrors.IsNotFound(err) && (kind == api.KindCNP || kind == api.KindCCNP) {
			s.opts.Logger.Error("the API server does not serve "+resource+": install the CRDs (netward install)", "source", s.opts.Name)
			return
		}
		s.opts.Logger.Warn("watch failed; retrying", "source", s.opts.Name, "resource", resource, "error", err)
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.upsert(kind, resource, obj) },
		UpdateFunc: func(_, obj any) { s.upsert(kind, resource, obj) },
		DeleteFunc: func(obj any) { s.remove(kind, obj) },
	})
	s.synced = append(s.synced, inf.HasSynced)
}

// Run starts the informers, delivers the first snapshot once they have synced and every
// change after that, until ctx ends. It returns nil when ctx ends, or an error if it was
// already running.
func (s *Source) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("k8s: Source.Run called twice")
	}
	s.kube.Start(ctx.Done())
	s.dyn.Start(ctx.Done())
	defer func() {
		s.kube.Shutdown()
		s.dyn.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return nil
	}
	s.isSync.Store(true)
	s.flush()
	var (
		timer   *time.Timer
		timerC  <-chan time.Time
		pending time.Time
	)
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-s.kick:
			now := time.Now()
			if pending.IsZero() {
				pending = now
			}
			wait := s.opts.Debounce
			if left := s.opts.MaxDelay - now.Sub(pending); left < wait {
				wait = max(left, 0)
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		case <-timerC:
			timerC = nil
			pending = time.Time{}
			s.flush()
		}
	}
}

// HasSynced reports whether the informers have synced (the first snapshot follows).
func (s *Source) HasSynced() bool { return s.isSync.Load() }

// Snapshot returns the current objects and invalid policies (what the next OnChange would
// deliver).
func (s *Source) Snapshot() (*api.Objects, []*api.ObjectError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked()
}

func (s *Source) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Source) source(resource string) api.Source {
	return api.Source{File: "cluster " + s.opts.Name + " " + resource}
}

// upsert records an added or updated object.
func (s *Source) upsert(kind, resource string, obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	key := objKey{kind: kind, namespace: m.GetNamespace(), name: m.GetName()}
	rv := m.GetResourceVersion()
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.items[key]
	if old != nil && rv != "" && old.rv == rv {
		return // the same version again (a relist or resync)
	}
	it := &item{rv: rv}
	switch kind {
	case api.KindNamespace:
		o, ok := obj.(*corev1.Namespace)
		if !ok {
			return
		}
		it.obj, it.rel = o, struct {
			UID    types.UID
			Labels map[string]string
		}{o.UID, o.Labels}
	case api.KindPod:
		o, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		it.obj, it.rel = o, podRelevant(o)
	case api.KindNode:
		o, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		it.obj, it.rel = o, struct {
			UID       types.UID
			Labels    map[string]string
			Addresses []corev1.NodeAddress
			PodCIDR   string
			PodCIDRs  []string
		}{o.UID, o.Labels, o.Status.Addresses, o.Spec.PodCIDR, o.Spec.PodCIDRs}
	case api.KindNetworkPolicy:
		o, ok := obj.(*networkingv1.NetworkPolicy)
		if !ok {
			return
		}
		it.obj, it.rel = o, struct {
			UID         types.UID
			Labels      map[string]string
			Annotations map[string]string
			Spec        networkingv1.NetworkPolicySpec
		}{o.UID, o.Labels, o.Annotations, o.Spec}
	case api.KindCNP, api.KindCCNP:
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		it.rel = struct {
			UID         types.UID
			Labels      map[string]string
			Annotations map[string]string
			Spec, Specs any
		}{u.GetUID(), u.GetLabels(), u.GetAnnotations(), u.Object["spec"], u.Object["specs"]}
	}
	if old != nil && equality.Semantic.DeepEqual(old.rel, it.rel) {
		// Nothing policy resolution reads changed (a policy's status, a pod's container
		// statuses): keep the newest object (the decoded policy, whose spec is the same),
		// call nobody.
		it.gen = old.gen
		if kind == api.KindCNP || kind == api.KindCCNP || old.err != nil {
			it.obj, it.err = old.obj, old.err
		}
		s.items[key] = it
		return
	}
	switch kind {
	case api.KindCNP, api.KindCCNP:
		it.obj, it.err = s.decodePolicy(kind, resource, obj.(*unstructured.Unstructured))
	case api.KindNetworkPolicy:
		np := it.obj.(*networkingv1.NetworkPolicy)
		one := &api.Objects{NetworkPolicies: []api.Object[networkingv1.NetworkPolicy]{{Source: s.source(resource), Obj: np}}}
		if err := firstObjectError(api.Validate(one)); err != nil {
			it.obj, it.err = nil, err
		}
	}
	s.gen++
	it.gen = s.gen
	s.items[key] = it
	s.signal()
}

// decodePolicy decodes a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy with the
// same strict decoder and validator as files.
func (s *Source) decodePolicy(kind, resource string, u *unstructured.Unstructured) (any, *api.ObjectError) {
	src := s.source(resource)
	bad := func(errs []error) *api.ObjectError {
		if oe := firstObjectError(errs); oe != nil {
			return oe
		}
		return &api.ObjectError{Source: src, Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName(),
			Errs: field.ErrorList{field.InternalError(nil, errors.Join(errs...))}}
	}
	raw, err := json.Marshal(u.Object)
	if err != nil {
		return nil, bad([]error{err})
	}
	one := &api.Objects{}
	if errs := one.AddRaw(src, raw); len(errs) > 0 {
		return nil, bad(errs)
	}
	if errs := api.Validate(one); len(errs) > 0 {
		return nil, bad(errs)
	}
	switch {
	case kind == api.KindCNP && len(one.CNPs) == 1:
		return one.CNPs[0].Obj, nil
	case kind == api.KindCCNP && len(one.CCNPs) == 1:
		return one.CCNPs[0].Obj, nil
	}
	return nil, bad([]error{fmt.Errorf("not a %s (apiVersion %q, kind %q)", kind, u.GetAPIVersion(), u.GetKind())})
}

func firstObjectError(errs []error) *api.ObjectError {
	for _, err := range errs {
		var oe *api.ObjectError
		if errors.As(err, &oe) {
			return oe
		}
	}
	return nil
}

// podRelevant is what netward reads of a Pod: identity labels, service account, node,
// addresses, named ports, the workload, and whether it runs.
func podRelevant(p *corev1.Pod) any {
	type port struct {
		Name     string
		Port     int32
		Protocol corev1.Protocol
	}
	var ports []port
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			ports = append(ports, port{cp.Name, cp.ContainerPort, cp.Protocol})
		}
	}
	return struct {
		UID            types.UID
		Labels         map[string]string
		NodeName       string
		ServiceAccount string
		DeprecatedSA   string
		HostNetwork    bool
		PodIP          string
		PodIPs         []corev1.PodIP
		HostIP         string
		Phase          corev1.PodPhase
		Deleting       bool
		Ports          []port
		Owners         []any
	}{
		p.UID, p.Labels, p.Spec.NodeName, p.Spec.ServiceAccountName, p.Spec.DeprecatedServiceAccount,
		p.Spec.HostNetwork, p.Status.PodIP, p.Status.PodIPs, p.Status.HostIP, p.Status.Phase,
		p.DeletionTimestamp != nil, ports, ownersOf(p),
	}
}

func ownersOf(p *corev1.Pod) []any {
	var out []any
	for _, r := range p.OwnerReferences {
		out = append(out, [3]any{r.Kind, r.Name, r.Controller != nil && *r.Controller})
	}
	return out
}

// remove records a deletion (also of an object a relist no longer returns).
func (s *Source) remove(kind string, obj any) {
	var ns, name string
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		var err error
		ns, name, err = cache.SplitMetaNamespaceKey(t.Key)
		if err != nil {
			return
		}
	} else {
		m, err := meta.Accessor(obj)
		if err != nil {
			return
		}
		ns, name = m.GetNamespace(), m.GetName()
	}
	key := objKey{kind: kind, namespace: ns, name: name}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[key]; !ok {
		return
	}
	delete(s.items, key)
	s.signal()
}

// flush delivers a snapshot if anything changed since the last one.
func (s *Source) flush() {
	if !s.isSync.Load() {
		return
	}
	s.mu.Lock()
	if s.once && len(s.delivered) == len(s.items) {
		same := true
		for k, it := range s.items {
			if g, ok := s.delivered[k]; !ok || g != it.gen {
				same = false
				break
			}
		}
		if same {
			s.mu.Unlock()
			return
		}
	}
	objs, invalid := s.snapshotLocked()
	s.delivered = make(map[objKey]uint64, len(s.items))
	for k, it := range s.items {
		s.delivered[k] = it.gen
	}
	s.once = true
	s.mu.Unlock()
	if s.opts.OnChange != nil {
		s.opts.OnChange(objs, invalid)
	}
}

func (s *Source) snapshotLocked() (*api.Objects, []*api.ObjectError) {
	keys := make([]objKey, 0, len(s.items))
	for k := range s.items {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b objKey) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name), cmp.Compare(a.kind, b.kind))
	})
	objs := &api.Objects{}
	var invalid []*api.ObjectError
	for _, k := range keys {
		it := s.items[k]
		if it.err != nil {
			invalid = append(invalid, it.err)
			continue
		}
		switch o := it.obj.(type) {
		case *corev1.Namespace:
			objs.Namespaces = append(objs.Namespaces, api.Object[corev1.Namespace]{Source: s.source("namespaces"), Obj: o})
		case *corev1.Pod:
			objs.Pods = append(objs.Pods, api.Object[corev1.Pod]{Source: s.source("pods"), Obj: o})
		case *corev1.Node:
			objs.Nodes = append(objs.Nodes, api.Object[corev1.Node]{Source: s.source("nodes"), Obj: o})
		case *networkingv1.NetworkPolicy:
			objs.NetworkPolicies = append(objs.NetworkPolicies, api.Object[networkingv1.NetworkPolicy]{Source: s.source("networkpolicies"), Obj: o})
		case *api.CiliumNetworkPolicy:
			if k.kind == api.KindCCNP {
				objs.CCNPs = append(objs.CCNPs, api.Object[api.CiliumClusterwideNetworkPolicy]{Source: s.source(CCNPResource.Resource), Obj: o})
			} else {
				objs.CNPs = append(objs.CNPs, api.Object[api.CiliumNetworkPolicy]{Source: s.source(CNPResource.Resource), Obj: o})
			}
		}
	}
	return objs, invalid
}
