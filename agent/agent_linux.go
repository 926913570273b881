package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netward/netward/api"
	"github.com/netward/netward/datapath"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// Agent is the node agent: it keeps the endpoints, identities and compiled maps of one node
// and programs its datapath. Create it with New, serve with Start (or Run), stop with Close:
// the pinned state keeps enforcing after Close, and the next agent adopts it.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	dp        Datapath
	net       NodeNetwork
	jar       *datapath.CookieJar
	netnsPath string
	statePath string
	lockFile  *os.File

	mu       sync.Mutex // serialises every change of the state below and of the datapath
	eps      map[string]*endpoint
	nextEPID uint32
	alloc    *allocator
	ipcache  map[netip.Prefix]identity.ID // what the kernel's ipcache may hold
	good     *loaded                      // last valid policy set (nil: none since start)
	tried    [32]byte                     // digest of the last set tried
	files    map[string]decodedFile       // manifest files as last decoded
	// savedDigest is the digest of the set at revision (from the state file until a set is
	// applied), so that a restart on an unchanged directory keeps the revision.
	savedDigest [32]byte
	revision    uint64
	lastErr     *PolicyError
	lastLoad    time.Time
	warnings    []string
	restored    bool // endpoints were adopted from a previous agent
	// ipcacheSynced: every entry of ipcache was written by this agent (until then the
	// pinned map may lack some, e.g. after a reboot emptied bpffs).
	ipcacheSynced bool
	cur           *desired      // the last computed desired state
	kube          *kubeSource   // the Kubernetes source (nil: the policy directory)
	firstGood     chan struct{} // closed when the first valid set is applied
	// policyVersions: the revision that first carried each policy version (Kubernetes).
	policyVersions map[string]uint64

	view    atomic.Pointer[view]
	l7      *l7Proxy // the L7 proxy (nil: not started); set under mu
	metrics *metrics
	events  *eventHub

	startOnce sync.Once
	closeOnce sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	servers   []*http.Server
	metricsMu sync.Mutex
	metricErr string
}

// loaded is a valid policy set.
type loaded struct {
	objs   *api.Objects
	digest [32]byte
	at     time.Time
}

// endpoint is a registered pod.
type endpoint struct {
	rec    *endpointRecord
	detach func() error

	// prog is what the kernel holds for the endpoint, as far as the agent knows.
	prog programmed
	// attached: the programs are on the host veth (by this agent or adopted).
	attached bool

	// From the last computation of the desired state.
	identity identity.ID
	labels   []string
	knownPod bool
	pol      *policy.EndpointPolicy
	revision uint64
	state    string // enforcing, restored, error
	err      string
}

// programmed is an endpoint's state in the kernel: its endpoints-map entry and policy map.
type programmed struct {
	hasEndpoint bool
	identity    identity.ID
	flags       datapath.EndpointFlags
	m           *policy.MapState // nil: no policy map
	sig         map[policy.Key]entrySig
}

// entrySig is what the datapath writes for a map entry (equal sigs: nothing to write).
type entrySig struct {
	verdict policy.Verdict
	prec    policy.Precedence
	parser  policy.L7Parser
	cookie  uint32
}

const enforcedFlags = datapath.FlagIngressEnforced | datapath.FlagEgressEnforced

// New starts the node's agent: it loads the datapath (adopting the pins a previous agent
// left), restores the endpoint registry from the state file, re-attaches the programs of the
// endpoints whose host veths still exist, and loads the policy directory. An invalid
// directory is not an error: the adopted state stays, as Status reports.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	nsPath := nodeNetnsPath(cfg.NodeNetns)
	if nsPath != "" {
		if _, err := os.Stat(nsPath); err != nil {
			return nil, fmt.Errorf("node network namespace: %w", err)
		}
	}
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	dp, err := datapath.Load(cfg.PinDir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	a, err := newAgent(cfg, dp, &netnsNetwork{path: nsPath, pinDir: dp.PinDir()}, lock)
	if err != nil {
		dp.Close()
		lock.Close()
		return nil, err
	}
	return a, nil
}

// NewWithDatapath is New with a given datapath and node network (tests use fakes). The
// agent closes dp on Close.
func NewWithDatapath(cfg Config, dp Datapath, nn NodeNetwork) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	a, err := newAgent(cfg, dp, nn, lock)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return a, nil
}

// lockStateDir makes sure one agent serves a node: an exclusive flock on <dir>/lock, which
// the kernel releases when the process dies.
func lockStateDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another agent holds %s: %w", f.Name(), err)
	}
	return f, nil
}

func newAgent(cfg Config, dp Datapath, nn NodeNetwork, lock *os.File) (*Agent, error) {
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.Node),
		dp:        dp,
		net:       nn,
		jar:       datapath.NewCookieJar(),
		netnsPath: nodeNetnsPath(cfg.NodeNetns),
		statePath: filepath.Join(cfg.StateDir, stateFileName),
		lockFile:  lock,
		eps:       map[string]*endpoint{},
		ipcache:   map[netip.Prefix]identity.ID{},
		events:    newEventHub(4096),
		firstGood: make(chan struct{}),
	}
	a.metrics = newMetrics(a)
	a.view.Store(&view{node: cfg.Node, eps: map[uint32]*epView{}, peers: map[netip.Addr]Peer{}})
	st, err := readState(a.statePath)
	if err != nil {
		return nil, err
	}
	if st.Node != "" && st.Node != cfg.Node {
		return nil, fmt.Errorf("state file %s belongs to node %q, not %q", a.statePath, st.Node, cfg.Node)
	}
	a.nextEPID = st.NextEndpointID
	a.revision = st.PolicyRevision
	if b, err := hex.DecodeString(st.PolicyDigest); err == nil && len(b) == len(a.savedDigest) {
		copy(a.savedDigest[:], b)
	}
	a.alloc = newAllocator(st.Identities)
	a.policyVersions = st.PolicyVersions
	if a.policyVersions == nil {
		a.policyVersions = map[string]uint64{}
	}
	for s, id := range st.IPCache {
		if p, err := netip.ParsePrefix(s); err == nil {
			a.ipcache[p] = id
		}
	}
	a.restore(st.Endpoints)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.saveLocked(nil); err != nil {
		return nil, err
	}
	a.reloadLocked(time.Now(), true)
	a.publishViewLocked()
	return a, nil
}

// restore adopts the endpoints of the state file: the ones whose host veth is gone are
// removed from the datapath; the others keep their pinned endpoint entry and policy map
// (never cleared before a valid policy set is loaded) and get this build's programs, which
// Attach swaps into the pinned links atomically.
func (a *Agent) restore(recs []*endpointRecord) {
	for _, r := range recs {
		if r == nil || r.ContainerID == "" {
			continue
		}
		log := a.log.With("pod", r.pod(), "containerID", r.ContainerID, "endpoint", r.ID)
		idx, err := a.net.LinkIndex(r.HostIfName)
		if errors.Is(err, ErrNoLink) {
			log.Warn("endpoint's host interface is gone; removing the endpoint", "hostIfName", r.HostIfName)
			a.forget(r)
			continue
		}
		ep := &endpoint{rec: r, state: "restored"}
		if err != nil {
			log.Error("cannot find the endpoint's host interface; keeping it", "error", err)
			ep.err = err.Error()
			a.eps[r.ContainerID] = ep
			continue
		}
		if idx != r.Ifindex {
			// The veth was re-created: the old ifindex's entry (if still ours) goes.
			if old, ok, _ := a.dp.GetEndpoint(r.Ifindex); ok && old.ID == r.ID {
				a.dp.DeleteEndpoint(r.Ifindex)
			}
			r.Ifindex = idx
		}
		ep.prog = a.readProgrammed(r)
		detach, err := a.dp.Attach(a.netnsPath, r.HostIfName)
		if err != nil {
			log.Error("re-attaching the datapath failed", "error", err)
			ep.err = err.Error()
		} else {
			ep.detach, ep.attached = detach, true
		}
		ep.identity = ep.prog.identity
		a.eps[r.ContainerID] = ep
		a.restored = true
		log.Info("adopted endpoint", "ifindex", idx, "identity", uint32(ep.prog.identity),
			"flags", uint32(ep.prog.flags), "mapEntries", len(ep.prog.sig))
	}
}

// dropVanishedLocked removes the endpoints whose host veth is gone without a DELETE (the
// pod's network namespace was destroyed and the CNI plugin never ran DEL).
func (a *Agent) dropVanishedLocked() {
	for _, ep := range a.eps {
		idx, err := a.net.LinkIndex(ep.rec.HostIfName)
		if errors.Is(err, ErrNoLink) || (err == nil && idx != ep.rec.Ifindex) {
			a.log.Warn("endpoint's host interface is gone; removing the endpoint", "pod", ep.rec.pod(), "hostIfName", ep.rec.HostIfName)
			a.removeLocked(ep)
		}
	}
}

// forget removes what the datapath may hold for an endpoint whose interface is gone.
func (a *Agent) forget(r *endpointRecord) {
	if old, ok, _ := a.dp.GetEndpoint(r.Ifindex); ok && old.ID == r.ID {
		if err := a.dp.DeleteEndpoint(r.Ifindex); err != nil {
			a.log.Warn("delete endpoint", "endpoint", r.ID, "error", err)
		}
	}
	if err := a.dp.DeletePolicy(r.ID); err != nil {
		a.log.Warn("delete policy map", "endpoint", r.ID, "error", err)
	}
	if err := a.net.RemoveLinkPins(r.HostIfName); err != nil {
		a.log.Warn("remove link pins", "hostIfName", r.HostIfName, "error", err)
	}
}

// readProgrammed reads what the kernel holds for an endpoint.
func (a *Agent) readProgrammed(r *endpointRecord) programmed {
	var p programmed
	if ep, ok, err := a.dp.GetEndpoint(r.Ifindex); err == nil && ok && ep.ID == r.ID {
		p.hasEndpoint, p.identity, p.flags = true, ep.Identity, ep.Flags
	}
	vals, ok, err := a.dp.PolicyEntries(r.ID)
	if err != nil {
		a.log.Warn("reading the pinned policy map failed", "endpoint", r.ID, "error", err)
	}
	if ok && err == nil {
		entries := make([]policy.KeyEntry, 0, len(vals))
		p.sig = make(map[policy.Key]entrySig, len(vals))
		for k, v := range vals {
			e := policy.MapEntry{Verdict: policy.Allow, Precedence: v.Precedence}
			switch {
			case v.Deny:
				e.Verdict = policy.Deny
			case v.ProxyPort != 0:
				e.Verdict, e.Parser = policy.Redirect, a.parserOf(k, v)
			}
			entries = append(entries, policy.KeyEntry{Key: k, Entry: e})
			p.sig[k] = entrySig{verdict: e.Verdict, prec: e.Precedence, parser: e.Parser, cookie: v.Cookie}
		}
		p.m = policy.NewMapState(entries)
	}
	return p
}

// parserOf recovers the parser of a pinned redirect entry from its precedence (Cilium's
// listener priorities), else from its proxy port (the agent's layout, proxyPortOf, or the
// placeholder ports of datapath.DefaultProxyPort). An entry written with other ports than
// this agent writes (another --proxy-base-port) gets ParserNone: its signature then differs
// from the desired entry's, and the next reconciliation rewrites it with the right port.
func (a *Agent) parserOf(k policy.Key, v datapath.PolicyValue) policy.L7Parser {
	p := policy.ParserHTTP
	switch v.Precedence & 255 {
	case 255 - 1 - 101:
		p = policy.ParserHTTP
	case 255 - 1 - 116:
		p = policy.ParserTLS
	case 255 - 1 - 121:
		p = policy.ParserDNS
	case 255 - 1 - 126:
		p = policy.ParserCRD
	default:
		if pp, ok := parserOfPort(a.cfg.ProxyBasePort, v.ProxyPort); ok {
			p = pp
		} else if pp := v.ProxyPort - 15000; pp >= 1 && pp <= 4 {
			p = policy.L7Parser(pp)
		}
	}
	if v.ProxyPort != a.proxyPortFor(k, p) {
		return policy.ParserNone
	}
	return p
}

// Start serves the API on the socket and the metrics, and starts watching the policy
// directory and reading the datapath's events. It returns once the socket listens.
func (a *Agent) Start(ctx context.Context) error {
	var err error
	a.startOnce.Do(func() { err = a.start(ctx) })
	return err
}

func (a *Agent) start(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	a.cancel = cancel
	ln, err := listenUnix(a.cfg.APISocket)
	if err != nil {
		cancel()
		return err
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	a.servers = append(a.servers, srv)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("API server", "error", err)
		}
	}()
	if a.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", a.cfg.MetricsAddr)
		if err != nil {
			a.metricsMu.Lock()
			a.metricErr = err.Error()
			a.metricsMu.Unlock()
			a.log.Error("metrics endpoint not served (it is on the API socket too)", "addr", a.cfg.MetricsAddr, "error", err)
		} else {
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", a.metrics.handler())
			mux.HandleFunc("GET /healthz", a.handleHealth)
			msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			a.servers = append(a.servers, msrv)
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					a.log.Error("metrics server", "error", err)
				}
			}()
			a.log.Info("serving metrics", "addr", mln.Addr().String())
		}
	}
	if err := a.startProxy(ctx); err != nil {
		cancel()
		for _, s := range a.servers {
			s.Close()
		}
		return err
	}
	if a.cfg.Kubernetes != nil {
		if err := a.startKubernetes(ctx); err != nil {
			cancel()
			return err
		}
	} else {
		w := &watcher{dir: a.cfg.PoliciesDir, poll: a.cfg.PollInterval, debounce: a.cfg.Debounce, log: a.log}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run(ctx, func(detected time.Time) {
				a.mu.Lock()
				defer a.mu.Unlock()
				a.reloadLocked(detected, false)
				a.publishViewLocked()
			})
		}()
	}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.readEvents(ctx)
	}()
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(a.cfg.ResyncInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.mu.Lock()
				a.dropVanishedLocked()
				if a.good != nil {
					if _, err := a.reconcileLocked(a.good.objs, "resync"); err != nil {
						a.log.Error("resync", "error", err)
					}
					a.publishViewLocked()
				}
				a.mu.Unlock()
			}
		}
	}()
	a.log.Info("agent started", "socket", a.cfg.APISocket, "policies", a.sourceName(),
		"nodeNetns", a.netnsPath, "audit", a.cfg.Audit, "endpoints", len(a.eps))
	return nil
}

// listenUnix listens on a unix socket, replacing a stale socket file (but not a live agent's).
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("API socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("API socket %s: another agent is serving it", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	os.Chmod(path, 0o660)
	return ln, nil
}

// Run starts the agent and serves until ctx ends, then closes it.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		a.Close()
		return err
	}
	<-ctx.Done()
	return a.Close()
}

// Close stops serving and releases the agent's handles. Enforcement continues from the
// pinned maps and links.
func (a *Agent) Close() error {
	var err error
	a.closeOnce.Do(func() {
		if a.cancel != nil {
			a.cancel()
		}
		a.stopProxy()
		a.events.close()
		for _, s := range a.servers {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.Shutdown(ctx)
			cancel()
		}
		a.wg.Wait()
		a.mu.Lock()
		defer a.mu.Unlock()
		err = a.dp.Close()
		os.Remove(a.cfg.APISocket)
		a.lockFile.Close()
		a.log.Info("agent stopped; the pinned state keeps enforcing")
	})
	return err
}

// saveLocked writes the state file. extra ipcache entries (being programmed) are included
// so that a crash in the middle leaves a file that names every entry the kernel may hold.
func (a *Agent) saveLocked(extra map[netip.Prefix]identity.ID) error {
	st := &persisted{
		Version:        stateVersion,
		Node:           a.cfg.Node,
		NextEndpointID: a.nextEPID,
		PolicyRevision: a.revision,
		PolicyDigest:   hex.EncodeToString(a.savedDigest[:]),
		Identities:     a.alloc.snapshot(),
		IPCache:        map[string]identity.ID{},
		PolicyVersions: a.policyVersions,
	}
	for p, id := range a.ipcache {
		st.IPCache[p.String()] = id
	}
	for p, id := range extra {
		st.IPCache[p.String()] = id
	}
	for _, ep := range a.eps {
		st.Endpoints = append(st.Endpoints, ep.rec)
	}
	sort.Slice(st.Endpoints, func(i, j int) bool { return st.Endpoints[i].ID < st.Endpoints[j].ID })
	if err := writeState(a.statePath, st); err != nil {
		a.log.Error("writing the state file failed", "path", a.statePath, "error", err)
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}
