//go:build linux

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netward/netward/api"
	"github.com/netward/netward/datapath"
	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// TestPolicyChangeLatencyAtScale is TestPolicyChangeLatency with 1,000 endpoints' worth of
// identities: the policy directory holds 1,000 Pods on four other nodes (each with an
// address and its own labels, so its own identity, its own ipcache entry, and a member of
// the policies' selectors) besides the two real local pods, and the policies select most of
// them. Each round rewrites one policy file (the server's ingress moves the frontends'
// allowed port between 8080 and 9090 and the backends' to a new port every time, so that
// the map written is never one the datapath still holds as its standby; the 1,000 Pods
// stay) and measures, from just before the write:
//
//   - applied: the agent's policy revision moves (it has re-read and validated the whole
//     directory, rebuilt the cluster, recompiled, and written the datapath);
//   - enforced: a real TCP connection from the client pod to the newly allowed port opens
//     (probed in a loop with 5 ms connect timeouts, so resolution is about 5 ms);
//
// and checks that the port closed by the change is closed. For where the time goes: the
// agent's "compute" time (cluster build and policy compile) comes from its log, the time in
// datapath writes from a wrapper around the real datapath (the agent is New's, with the
// datapath passed to NewWithDatapath so it can be wrapped), and reading the directory
// (api.Load) is timed after the rounds. scripts/bench-datapath.sh reports the RESULT lines;
// the target (the issue) is p99 under 100 ms.
//
// NETWARD_LATENCY_ROUNDS (default 30) sets the number of changes and NETWARD_LATENCY_PODS
// (default 1000) the number of remote pods.
func TestPolicyChangeLatencyAtScale(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED: -short")
	}
	rounds := envInt("NETWARD_LATENCY_ROUNDS", 30)
	remote := envInt("NETWARD_LATENCY_PODS", 1000)

	tp := newRootTopo(t)
	clientIP, serverIP := "10.203.0.10", "10.203.0.11"
	clientNS := tp.addPod(t, "c", "nwag"+tp.id+"c", clientIP)
	serverNS := tp.addPod(t, "s", "nwag"+tp.id+"s", serverIP)
	serveIn(t, serverNS, serverIP, 8080, 9090)

	dir, state := t.TempDir(), t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cluster.yaml", scaleCluster(remote))
	write("baseline.yaml", scaleBaseline)
	write("server.yaml", scaleServerPolicy(8080, 7000))

	logs := &applyLog{}
	pinDir := filepath.Join("/sys/fs/bpf", "netward-test-agent-"+tp.id)
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	setupStart := time.Now()
	// New(cfg) with the real datapath wrapped to time its writes.
	dp, err := datapath.Load(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	timed := &timedDatapath{Datapath: dp}
	a, err := NewWithDatapath(Config{Node: "node-1", PoliciesDir: dir, NodeNetns: tp.node, StateDir: state, PinDir: pinDir,
		APISocket: filepath.Join(state, "a.sock"), Policy: policy.DefaultOptions(), Logger: slog.New(logs)},
		timed, &netnsNetwork{path: nodeNetnsPath(tp.node), pinDir: dp.PinDir()})
	if err != nil {
		dp.Close()
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{}
	for _, p := range []struct{ name, host, ip string }{{"client", "nwag" + tp.id + "c", clientIP}, {"server", "nwag" + tp.id + "s", serverIP}} {
		resp, err := a.Register(EndpointRequest{ContainerID: "ctr-" + p.name, HostIfName: p.host, PodNamespace: "shop", PodName: p.name, IPs: []string{p.ip}})
		if err != nil {
			t.Fatal(err)
		}
		ids[p.name] = resp.ID
	}
	t.Logf("setup (agent start on %d pods, two registrations): %v", remote+2, time.Since(setupStart).Round(time.Millisecond))
	expectTCP(t, "initial", clientNS, serverIP, map[int]bool{8080: true, 9090: false})
	if t.Failed() {
		t.FailNow()
	}

	st := a.Status()
	if st.LastError != nil || st.Enforcing != "current" {
		t.Fatalf("status %+v, error %+v", st, st.LastError)
	}
	mapLen := func(name string) int {
		vals, ok, err := a.dp.PolicyEntries(ids[name])
		if err != nil || !ok {
			t.Fatalf("%s's policy map: %v %v", name, ok, err)
		}
		return len(vals)
	}
	serverEntries, clientEntries := mapLen("server"), mapLen("client")
	t.Logf("RESULT scale pods=%d identities=%d ipcache=%d server-map=%d client-map=%d", remote+2, st.Identities, st.IPCacheEntries, serverEntries, clientEntries)
	if st.Identities < remote || st.IPCacheEntries < remote || serverEntries < remote/2 {
		t.Fatalf("not at scale: %d identities, %d ipcache entries, %d server map entries", st.Identities, st.IPCacheEntries, serverEntries)
	}

	var applied, enforced, dpWrites []time.Duration
	var policyWrites []int
	logs.reset()
	for i := range rounds {
		open, closed := 9090, 8080
		if i%2 == 1 {
			open, closed = 8080, 9090
		}
		rev := a.Status().PolicyRevision
		time.Sleep(50 * time.Millisecond) // a quiet directory, as between real edits
		busy0, sets0 := timed.totals()
		start := time.Now()
		appliedc := make(chan time.Duration, 1)
		go func() {
			for a.Status().PolicyRevision == rev {
				if time.Since(start) > 10*time.Second {
					appliedc <- -1
					return
				}
				time.Sleep(time.Millisecond)
			}
			appliedc <- time.Since(start)
		}()
		write("server.yaml", scaleServerPolicy(open, 7001+i))
		for connectFrom(clientNS, serverIP, open, 5*time.Millisecond) != nil {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("round %d: port %d not open 10s after the change", i, open)
			}
		}
		enforced = append(enforced, time.Since(start))
		ap := <-appliedc
		if ap < 0 {
			t.Fatalf("round %d: revision did not move", i)
		}
		applied = append(applied, ap)
		busy1, sets1 := timed.totals()
		dpWrites = append(dpWrites, busy1-busy0)
		policyWrites = append(policyWrites, sets1-sets0)
		if connectFrom(clientNS, serverIP, closed, 100*time.Millisecond) == nil {
			t.Fatalf("round %d: port %d still open", i, closed)
		}
	}
	compute, sinceChange, upserts, warnings := logs.snapshot()
	// What reading the directory costs (api.Load, as the agent's reload does), offline.
	var parse []time.Duration
	for range 5 {
		t0 := time.Now()
		if _, errs := api.Load([]string{dir}, nil); len(errs) > 0 {
			t.Fatal(errs)
		}
		parse = append(parse, time.Since(t0))
	}
	for _, w := range warnings {
		if strings.HasPrefix(w, "ERROR") {
			t.Errorf("agent logged: %s", w)
		} else {
			t.Logf("agent logged: %s", w)
		}
	}

	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
	line := func(what string, ds []time.Duration) {
		if len(ds) == 0 {
			return
		}
		t.Logf("RESULT %s n=%d p50=%sms p99=%sms max=%sms", what, len(ds), ms(percentile(ds, .5)), ms(percentile(ds, .99)), ms(percentile(ds, 1)))
	}
	line("enforced", enforced)
	line("applied", applied)
	line("agent-detected-to-applied", sinceChange)
	line("agent-compute", compute)
	line("datapath-writes", dpWrites)
	line("directory-parse", parse)
	slices.Sort(policyWrites)
	medianUpserts := -1 // the agent's log did not say
	if len(upserts) > 0 {
		medianUpserts = upserts[len(upserts)/2]
	}
	t.Logf("RESULT per-change median: %d SetPolicy calls, %d map upserts", policyWrites[len(policyWrites)/2], medianUpserts)
	p99 := percentile(enforced, .99)
	verdict := "MET"
	if p99 >= 100*time.Millisecond {
		verdict = "NOT MET"
	}
	t.Logf("RESULT target p99<100ms %s (p99 enforced %sms over %d changes; with %d samples p99 is the %s-highest)",
		verdict, ms(p99), len(enforced), len(enforced), ordinal(len(enforced)-int(float64(len(enforced)-1)*.99)))
	// Not a failure at the 100 ms target: on a shared machine the neighbours move the tail
	// (TestPolicyChangeLatency guards the small case). A median in seconds is a regression.
	if p50 := percentile(enforced, .5); p50 > 2*time.Second {
		t.Errorf("median file change -> enforced %v", p50)
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "1st"
	case 2:
		return "2nd"
	case 3:
		return "3rd"
	}
	return strconv.Itoa(n) + "th"
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// scaleCluster is node-1 (the agent's), four other nodes, namespace shop with the client
// (role frontend) and the server, and n remote pods with addresses, spread over the other
// nodes: each has its own app label (its own identity), half are frontends and half
// backends, and every tenth is in tier t0..t9.
func scaleCluster(n int) string {
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 192.168.250.1}]}
`)
	for i := 2; i <= 5; i++ {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Node
metadata: {name: node-%d}
status: {addresses: [{type: InternalIP, address: 192.168.250.%d}]}
`, i, i)
	}
	b.WriteString(`---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client, role: frontend}}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server, role: server}}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
`)
	for i := range n {
		role := "frontend"
		if i%2 == 1 {
			role = "backend"
		}
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: r-%04d, namespace: shop, labels: {app: r-%04d, role: %s, tier: t%d}}
spec: {nodeName: node-%d, containers: [{name: c, image: x}]}
status: {podIP: 10.210.%d.%d}
`, i, i, role, i%10, 2+i%4, (i+1)>>8, (i+1)&255)
	}
	return b.String()
}

// scaleBaseline is the policy that stays: the client may send to every frontend, backend and
// the server on 8080 and 9090 (about 2,000 egress entries), and every pod denies SSH from
// tier t9 (about 100 ingress deny entries).
const scaleBaseline = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchExpressions: [{key: role, operator: In, values: [frontend, backend, server]}]}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "9090", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: no-ssh-from-t9}
spec:
  endpointSelector: {}
  ingressDeny: [{fromEndpoints: [{matchLabels: {tier: t9, k8s:io.kubernetes.pod.namespace: shop}}], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
`

// scaleServerPolicy is the policy that changes: the server admits the frontends (about 500
// identities and the client) on one port and the backends (about 500) on another.
func scaleServerPolicy(frontendPort, backendPort int) string {
	return fmt.Sprintf(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-in, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: frontend}}]
    toPorts: [{ports: [{port: "%d", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {role: backend}}]
    toPorts: [{ports: [{port: "%d", protocol: TCP}]}]
`, frontendPort, backendPort)
}

// applyLog is a slog.Handler that keeps what the agent logs about each applied policy set,
// and every warning and error (an error fails the test).
type applyLog struct {
	mu          sync.Mutex
	compute     []time.Duration
	sinceChange []time.Duration
	upserts     []int
	errs        []string
}

func (l *applyLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }
func (l *applyLog) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *applyLog) WithGroup(string) slog.Handler                 { return l }

func (l *applyLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Level >= slog.LevelWarn {
		var b strings.Builder
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		l.errs = append(l.errs, b.String())
		return nil
	}
	if r.Message != "policy set applied" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "compute":
			l.compute = append(l.compute, a.Value.Duration())
		case "sinceChange":
			l.sinceChange = append(l.sinceChange, a.Value.Duration())
		case "mapUpserts":
			l.upserts = append(l.upserts, int(a.Value.Int64()))
		}
		return true
	})
	return nil
}

func (l *applyLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.compute, l.sinceChange, l.upserts = nil, nil, nil
}

func (l *applyLog) snapshot() (compute, sinceChange []time.Duration, upserts []int, warnings []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	upserts = slices.Clone(l.upserts)
	slices.Sort(upserts)
	return slices.Clone(l.compute), slices.Clone(l.sinceChange), upserts, slices.Clone(l.errs)
}

// timedDatapath is the real datapath with the time spent in its writes added up.
type timedDatapath struct {
	Datapath
	mu        sync.Mutex
	busy      time.Duration
	setPolicy int
}

func (d *timedDatapath) add(t0 time.Time, policy bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.busy += time.Since(t0)
	if policy {
		d.setPolicy++
	}
}

func (d *timedDatapath) totals() (time.Duration, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.busy, d.setPolicy
}

func (d *timedDatapath) SetPolicy(epID uint32, entries []policy.KeyEntry, cookie datapath.CookieFunc) (datapath.PolicyDelta, error) {
	defer d.add(time.Now(), true)
	return d.Datapath.SetPolicy(epID, entries, cookie)
}

func (d *timedDatapath) SetEndpoint(ifindex uint32, ep datapath.Endpoint) error {
	defer d.add(time.Now(), false)
	return d.Datapath.SetEndpoint(ifindex, ep)
}

func (d *timedDatapath) UpsertIPCache(p netip.Prefix, id identity.ID) error {
	defer d.add(time.Now(), false)
	return d.Datapath.UpsertIPCache(p, id)
}

func (d *timedDatapath) DeleteIPCache(p netip.Prefix) error {
	defer d.add(time.Now(), false)
	return d.Datapath.DeleteIPCache(p)
}
