//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netward/netward/agent"
	"github.com/netward/netward/analysis"
	"github.com/netward/netward/api"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/cni/cnitest"
	"github.com/netward/netward/policy"
)

// The kill test's cluster: one namespace, three pods. server listens on 7070 (a long-lived
// line echo), 8080 and 9090; client and other are clients.
const killCluster = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Node
metadata: {name: %s, labels: {kubernetes.io/hostname: %s}}
spec: {podCIDR: %s}
status: {addresses: [{type: InternalIP, address: %s}]}
`

const killPods = `apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: %[1]s, containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server}}
spec:
  nodeName: %[1]s
  containers:
  - name: s
    image: shop/server
    ports:
    - {name: stream, containerPort: 7070, protocol: TCP}
    - {name: http, containerPort: 8080, protocol: TCP}
    - {name: admin, containerPort: 9090, protocol: TCP}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: shop, labels: {app: other}}
spec: {nodeName: %[1]s, containers: [{name: o, image: busybox}]}
`

// Round 1 of the server's ingress (a NetworkPolicy): client may reach 7070, every pod of
// the namespace 8080 (the named port http); 9090 is default-denied.
const killKNP1 = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 7070, protocol: TCP}]
  - from: [{podSelector: {}}]
    ports: [{port: http, protocol: TCP}]
`

// Round 2, written after the restart: 9090 opens for client, 8080 closes; 7070 stays.
const killKNP2 = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 7070, protocol: TCP}, {port: 9090, protocol: TCP}]
`

// client's egress (a CiliumNetworkPolicy): the server's three ports, other's 8080, ICMP echo
// inside the cluster.
const killCNP = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: "7070", protocol: TCP}, {port: "8080", protocol: TCP}, {port: "9090", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {app: other}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  - toEntities: [cluster]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
`

// other never reaches server (a CiliumClusterwideNetworkPolicy deny), although the
// NetworkPolicy's second rule allows it 8080 in round 1: the deny wins.
const killCCNP = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: other-never-reaches-server}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: shop, app: server}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: shop, app: other}}]
`

// Ports of the continuous probes.
const (
	killStreamPort  = 7070 // long-lived connection client -> server, allowed in both rounds
	killAllowedPort = 8080 // new connections client -> server: allowed in round 1
	killDeniedPort  = 9090 // new connections client -> server: denied in round 1
)

// TestAgentKill9DuringTraffic kills the agent process with SIGKILL while traffic flows and
// checks that the kernel keeps enforcing the last state with no agent (the maps and tcx
// links are pinned): denied flows stay denied, an established allowed connection keeps
// exchanging data, new allowed connections keep succeeding. Then a new agent process with
// the same flags adopts the endpoints from the state file and the pins, enforces a policy
// change, and every flow matches netward trace.
//
// The agent is the real `netward agent` binary (a subprocess, so that SIGKILL is a real
// crash: no deferred Close, no socket removal, no flock release but the kernel's). Probers
// run throughout in goroutines:
//
//	stream   client -> server 7070/TCP, one connection, a line echoed every 50 ms
//	allowed  client -> server 8080/TCP, new connections back to back (round 1 only)
//	denied   client -> server 9090/TCP, new connections (default deny; round 1 only)
//	deny     other -> server 8080/TCP, new connections (a deny rule beats an allow; always)
//
// and the phases are: agent up, agent killed (2 s with no agent), restarting (exec to
// settled), restarted (including a full comparison with trace), policy change (the
// allowed/denied probers are stopped; the stream and the deny probe keep running).
//
// No tolerance: a denied probe that connects, an allowed one that fails (3 s timeout), a
// broken or stalled (3 s) stream fail the test; so do hidden drops of allowed packets,
// which TCP would repair: a retransmission on either end of the stream (TCP_INFO), or a
// drop event of client -> server 7070 (or 8080 before the change) from either agent (the
// events of the no-agent window come from the pinned ring buffer, through agent #2).
func TestAgentKill9DuringTraffic(t *testing.T) {
	h := New(t, Config{}) // skips (loudly) unless root
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("SKIPPED: no BTF (/sys/kernel/btf/vmlinux): the datapath cannot load")
	}
	testStart := time.Now()
	cfg := h.Config
	clusterDir, policiesDir := filepath.Join(h.ManifestDir, "cluster"), filepath.Join(h.ManifestDir, "policies")
	mustWrite(t, filepath.Join(clusterDir, "cluster.yaml"), fmt.Sprintf(killCluster, cfg.NodeName, cfg.NodeName, cfg.Subnet, cfg.NodeIP))
	mustWrite(t, filepath.Join(clusterDir, "pods.yaml"), fmt.Sprintf(killPods, cfg.NodeName))
	mustWrite(t, filepath.Join(policiesDir, "knp.yaml"), killKNP1)
	mustWrite(t, filepath.Join(policiesDir, "cnp.yaml"), killCNP)
	mustWrite(t, filepath.Join(policiesDir, "ccnp.yaml"), killCCNP)

	// The agent binary, its pins (a directory of its own on bpffs) and its state.
	binDir := t.TempDir()
	bin := filepath.Join(binDir, "netward")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/netward/netward/cmd/netward").CombinedOutput(); err != nil {
		t.Fatalf("building netward: %v\n%s", err, out)
	}
	pinDir := filepath.Join("/sys/fs/bpf", "netward-e2e-kill-"+h.Prefix)
	os.RemoveAll(pinDir)
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	stateDir := filepath.Join(h.Dir, "agent-state")
	ap := &AgentProc{
		Bin: bin, Dir: h.Dir, Name: cfg.NodeName, Client: agent.NewClient(h.AgentSocket),
		Args: []string{"agent",
			"--policies", h.ManifestDir, "--node", cfg.NodeName, "--node-netns", h.NodeNetns,
			"--api-socket", h.AgentSocket, "--state-dir", stateDir, "--pin-dir", pinDir,
			// No TCP metrics listener: /metrics is on the socket, and parallel runs would
			// fight over the default port.
			"--metrics-addr", "",
			// netward trace's defaults (traceOptions), spelled out.
			"--cidr-match-mode", "", "--allow-localhost=true",
		},
	}
	// Registered before AddPods: runs after the pods' DELs, which need the agent.
	t.Cleanup(func() {
		if err := ap.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Log(ap.LogTail(150))
		}
	})
	if err := ap.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ap.WaitHealthy(20 * time.Second); err != nil {
		t.Fatalf("agent #1: %v", err)
	}
	ra := &realAgent{client: ap.Client, h: h}

	written := h.AddPods()
	// If the test stops while no agent runs, start one so that the DELs can deregister.
	t.Cleanup(func() {
		if !ap.Running() {
			if err := ap.Start(); err == nil {
				ap.WaitHealthy(20 * time.Second)
			}
		}
	})
	ra.Settle(t, written)
	h.CheckPods()

	place := map[string]Place{}
	for _, p := range h.Places() {
		place[p.Name] = p
	}
	client, server, other := place["shop/client"], place["shop/server"], place["shop/other"]
	if !client.Addr.IsValid() || !server.Addr.IsValid() || !other.Addr.IsValid() {
		t.Fatalf("places %v", h.Places())
	}

	// Both rounds resolved as trace does; the second from the same cluster files.
	c1 := h.Cluster()
	round2 := t.TempDir()
	mustWrite(t, filepath.Join(round2, "knp.yaml"), killKNP2)
	mustWrite(t, filepath.Join(round2, "cnp.yaml"), killCNP)
	mustWrite(t, filepath.Join(round2, "ccnp.yaml"), killCCNP)
	c2 := buildCluster(t, clusterDir, round2)
	ports := slices.Concat(PolicyPorts(c1), PolicyPorts(c2))
	slices.Sort(ports)
	ports = slices.Compact(ports)
	flows := h.Flows(ports)

	// The test's premises, by trace: what the continuous probes expect in each round.
	for _, w := range []struct {
		c              *cluster.Cluster
		round          string
		from, to       Place
		port           uint16
		allowed        bool
		mustBeDenyRule bool
	}{
		{c1, "round 1", client, server, killStreamPort, true, false},
		{c1, "round 1", client, server, killAllowedPort, true, false},
		{c1, "round 1", client, server, killDeniedPort, false, false},
		{c1, "round 1", other, server, killAllowedPort, false, true},
		{c2, "round 2", client, server, killStreamPort, true, false},
		{c2, "round 2", client, server, killAllowedPort, false, false},
		{c2, "round 2", client, server, killDeniedPort, true, false},
		{c2, "round 2", other, server, killAllowedPort, false, true},
	} {
		r, err := analysis.Trace(w.c, analysis.Flow{From: w.from.Name, To: w.to.Name, Proto: policy.ProtoTCP, Port: w.port})
		if err != nil {
			t.Fatal(err)
		}
		if r.Allowed != w.allowed || (w.mustBeDenyRule && !strings.Contains(r.Reason, "other-never-reaches-server")) {
			t.Fatalf("%s: trace says %s for %s -> %s %d/TCP (%s): the test's policies are wrong", w.round, r.Verdict, w.from.Name, w.to.Name, w.port, r.Reason)
		}
	}
	flips := changedFlows(t, c1, c2, flows)
	t.Logf("%d places, ports %v: %d flows per comparison; the policy change flips %d", len(h.Places()), ports, len(flows), len(flips))

	watch1 := watchDrops(ap.Client, "agent #1", client, server)
	t.Cleanup(func() { watch1.stop(time.Time{}) })

	// The long-lived connection's server, then every other responder.
	streamServer := serveLines(t, h, server, killStreamPort)
	h.Serve(flows)

	start := time.Now()
	Report(t, "agent #1, round 1", h.Run(c1, flows, 128))
	t.Logf("comparison with trace (agent #1) in %v", time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}

	// The probers.
	pr := newKillProbes()
	stream, err := dialStream(client, server, killStreamPort)
	if err != nil {
		t.Fatalf("long-lived connection: %v", err)
	}
	stopFlip, stopAll := make(chan struct{}), make(chan struct{})
	var wgFlip, wgAll sync.WaitGroup
	stopped := false
	stopProbers := func() {
		if stopped {
			return
		}
		stopped = true
		select {
		case <-stopFlip:
		default:
			close(stopFlip)
		}
		wgFlip.Wait()
		close(stopAll)
		wgAll.Wait()
		stream.Close()
	}
	t.Cleanup(stopProbers)
	loop := func(wg *sync.WaitGroup, stop <-chan struct{}, fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				fn()
			}
		}()
	}
	// Denied probes wait 200 ms: a leak is any answer at all, and they repeat. Allowed ones
	// wait 3 s (a loaded machine is slow, not a drop); a dropped packet of theirs shows as
	// latency (the SYN is resent after 1 s) and as a drop event (watchDrops).
	fast := &Prober{Timeout: 200 * time.Millisecond}
	slow := &Prober{Timeout: 3 * time.Second}
	wgAll.Add(1)
	go func() { defer wgAll.Done(); pr.runStream(stream, stopAll) }()
	for i := range 4 {
		if i < 2 {
			loop(&wgFlip, stopFlip, func() {
				ph, begin := pr.phase(), time.Now()
				o := slow.Probe(client, server, policy.ProtoTCP, killAllowedPort)
				pr.latency(probeAllowed, ph, time.Since(begin))
				pr.record(probeAllowed, ph, o)
				time.Sleep(10 * time.Millisecond)
			})
		}
		loop(&wgFlip, stopFlip, func() {
			ph := pr.phase()
			pr.record(probeDenied, ph, fast.Probe(client, server, policy.ProtoTCP, killDeniedPort))
		})
		loop(&wgAll, stopAll, func() {
			ph := pr.phase()
			pr.record(probeDenyRule, ph, fast.Probe(other, server, policy.ProtoTCP, killAllowedPort))
		})
	}

	// Phase 0: the agent is up.
	time.Sleep(time.Second)
	before, err := ap.Client.Endpoints(context.Background())
	if err != nil || len(before) != len(h.Pods) {
		t.Fatalf("endpoints before the kill: %v %+v", err, before)
	}
	if n := stateEndpoints(t, stateDir); n != len(h.Pods) {
		t.Errorf("the state file lists %d endpoints, want %d", n, len(h.Pods))
	}

	// Phase 1: kill -9, no agent for 2 s.
	pr.enter("agent killed")
	if err := ap.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("agent #1 (pid %d): %v", ap.Pid(), ap.cmd.ProcessState)
	if _, _, err := ap.Client.Health(context.Background()); err == nil {
		t.Errorf("the socket still answers after the kill")
	}
	if links, err := os.ReadDir(filepath.Join(pinDir, "links")); err != nil || len(links) != len(h.Pods) {
		t.Errorf("pinned links with no agent: %v %v", links, err)
	}
	time.Sleep(2 * time.Second)
	if _, _, err := ap.Client.Health(context.Background()); err == nil {
		t.Errorf("something answers on the socket with no agent")
	}

	// Phase 2: a new agent process, same flags.
	pr.enter("restarting")
	restarted := time.Now()
	if err := ap.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ap.WaitHealthy(20 * time.Second); err != nil {
		t.Fatalf("agent #2: %v", err)
	}
	healthyAfter := time.Since(restarted)
	watch2 := watchDrops(ap.Client, "agent #2", client, server)
	t.Cleanup(func() { watch2.stop(time.Time{}) })
	after, err := ap.Client.Endpoints(context.Background())
	if err != nil {
		t.Fatalf("endpoints after the restart: %v", err)
	}
	checkAdopted(t, before, after)
	ra.Settle(t, restarted)
	t.Logf("agent #2 (pid %d): healthy after %v, settled after %v; endpoints right after /healthz: %s",
		ap.Pid(), healthyAfter.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond), endpointStates(after))
	h.CheckPods()

	// Phase 3: restarted; the adopted state matches trace.
	pr.enter("restarted")
	start = time.Now()
	Report(t, "agent #2 (adopted), round 1", h.Run(c1, flows, 128))
	t.Logf("comparison with trace (agent #2) in %v", time.Since(start).Round(time.Millisecond))

	// Phase 4: a policy change (a new file over the NetworkPolicy): 9090 opens, 8080 closes.
	close(stopFlip)
	wgFlip.Wait()
	pr.enter("policy change")
	changedAt := time.Now()
	if err := writeAtomic(filepath.Join(policiesDir, "knp.yaml"), []byte(killKNP2)); err != nil {
		t.Fatal(err)
	}
	ra.Settle(t, changedAt)
	settledAfter := time.Since(changedAt)
	if bad := h.WaitFor(c2, flips, 10*time.Second); len(bad) > 0 {
		Report(t, "round 2 (flows the change flips, after 10 s)", bad)
	}
	t.Logf("policy change: agent settled after %v, the %d flipped flows verified after %v", settledAfter.Round(time.Millisecond), len(flips), time.Since(changedAt).Round(time.Millisecond))
	for _, f := range []struct {
		port uint16
		want Outcome
	}{{killDeniedPort, Allowed}, {killAllowedPort, Denied}, {killStreamPort, Allowed}} {
		if o := h.Prober.Probe(client, server, policy.ProtoTCP, f.port); o.Outcome != f.want {
			t.Errorf("after the change: client -> server %d/TCP %s (%v), want %s", f.port, o.Outcome, o.Err, f.want)
		}
	}
	start = time.Now()
	Report(t, "agent #2, round 2", h.Run(c2, flows, 128))
	t.Logf("comparison with trace (round 2) in %v", time.Since(start).Round(time.Millisecond))

	clientRetrans, serverRetrans := tcpRetransmits(stream), streamServer.retransmits()
	stopProbers()
	pr.report(t)
	t.Logf("long-lived connection: %d retransmissions by client, %d by server", clientRetrans, serverRetrans)
	if clientRetrans+serverRetrans > 0 {
		t.Errorf("the long-lived allowed connection lost packets: %d retransmissions by client, %d by server", clientRetrans, serverRetrans)
	}
	n1, d1 := watch1.stop(changedAt)
	n2, d2 := watch2.stop(changedAt)
	t.Logf("drop events: agent #1 reported %d, agent #2 %d; %d of them of allowed flows (client -> server %d/TCP, or %d/TCP before the change)", n1, n2, len(d1)+len(d2), killStreamPort, killAllowedPort)
	if d := append(d1, d2...); len(d) > 0 {
		t.Errorf("the datapath dropped packets of allowed flows:\n  %s", strings.Join(d, "\n  "))
	}
	t.Logf("test body took %v", time.Since(testStart).Round(time.Millisecond))
}

// dropWatch follows an agent's drop events (GET /v1/events?follow=true&verdict=dropped)
// and keeps those of the flows client -> server 7070/TCP (allowed in every state of the
// test) and client -> server 8080/TCP (allowed until the policy change).
type dropWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	n     int
	drops []streamDrop
}

type streamDrop struct {
	time time.Time
	port uint16
	text string
}

func watchDrops(cl *agent.Client, label string, client, server Place) *dropWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &dropWatch{cancel: cancel, done: make(chan struct{})}
	c, s := client.Addr.String(), server.Addr.String()
	go func() {
		defer close(w.done)
		cl.Events(ctx, agent.EventFilter{Verdict: "dropped", Follow: true}, func(ev agent.Event) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.n++
			if !strings.EqualFold(ev.Proto, "tcp") {
				return nil
			}
			var port uint16
			switch {
			case ev.Source.IP == c && ev.Destination.IP == s:
				port = ev.Port
			case ev.Source.IP == s && ev.Destination.IP == c:
				port = ev.SrcPort // a reply
			}
			if port == killStreamPort || port == killAllowedPort {
				w.drops = append(w.drops, streamDrop{ev.Time, port, fmt.Sprintf("%s: %s %s -> %s %d/%s from port %d (%s %s: %s %v)",
					label, ev.Time.Format("15:04:05.000000"), ev.Source.Name(), ev.Destination.Name(), ev.Port, ev.Proto, ev.SrcPort,
					ev.Endpoint, ev.Direction, ev.Reason, ev.Origins)})
			}
			return nil
		})
	}()
	return w
}

// stop ends the watch and returns how many drops it saw, and those of allowed flows: 7070
// at any time, 8080 before allowedUntil.
func (w *dropWatch) stop(allowedUntil time.Time) (int, []string) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, d := range w.drops {
		if d.port == killStreamPort || d.time.Before(allowedUntil) {
			out = append(out, d.text)
		}
	}
	return w.n, out
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := writeAtomic(path, []byte(content)); err != nil {
		t.Fatal(err)
	}
}

// buildCluster resolves manifest directories as netward trace does.
func buildCluster(t testing.TB, dirs ...string) *cluster.Cluster {
	t.Helper()
	objs, errs := api.Load(dirs, nil)
	verrs, _ := api.ValidateLenient(objs)
	if errs = append(errs, verrs...); len(errs) > 0 {
		t.Fatalf("manifests %v: %v", dirs, errs)
	}
	c, err := cluster.Build(objs, cluster.Options{Policy: traceOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stateEndpoints counts the endpoints of the agent's state file.
func stateEndpoints(t testing.TB, stateDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "endpoints.json"))
	if err != nil {
		t.Errorf("state file: %v", err)
		return -1
	}
	var st struct {
		Endpoints []json.RawMessage `json:"endpoints"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Errorf("state file: %v", err)
		return -1
	}
	return len(st.Endpoints)
}

// checkAdopted compares the endpoints a restarted agent lists (before it may have loaded
// anything) with those of the killed one: same containers, pods, numbers, addresses,
// interfaces and identities.
func checkAdopted(t testing.TB, before, after []agent.Endpoint) {
	t.Helper()
	key := func(e agent.Endpoint) string {
		return fmt.Sprintf("id %d container %s pod %s ips %v host %s identity %d", e.ID, e.ContainerID, e.Pod, e.IPs, e.HostIfName, e.Identity)
	}
	var b, a []string
	for _, e := range before {
		b = append(b, key(e))
	}
	for _, e := range after {
		a = append(a, key(e))
	}
	slices.Sort(b)
	slices.Sort(a)
	if !slices.Equal(a, b) {
		t.Errorf("the restarted agent lists other endpoints:\n  before the kill: %s\n  after restart:   %s", strings.Join(b, "\n                   "), strings.Join(a, "\n                   "))
	}
	for _, e := range after {
		if e.State == "error" {
			t.Errorf("adopted endpoint %s: state error: %s", e.Pod, e.Error)
		}
	}
}

func endpointStates(eps []agent.Endpoint) string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Pod+"="+e.State)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// serveLines echoes every line of every connection to at:port until the test ends (the
// Prober's TCP responder answers one line and hangs up). It is also the port's responder
// for the comparison's probes.
func serveLines(t *testing.T, h *Harness, at Place, port uint16) *lineServer {
	t.Helper()
	ls := &lineServer{conns: map[net.Conn]bool{}}
	var ln net.Listener
	if err := cnitest.InNetns(at.Netns, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(at.Addr, port).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mu, conns := &ls.mu, ls.conns
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	if h.served[at.Name] == nil {
		h.served[at.Name] = map[[2]uint32]bool{}
	}
	h.served[at.Name][[2]uint32{uint32(policy.ProtoTCP), uint32(port)}] = true
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			go func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				rd := bufio.NewReader(c)
				for {
					line, err := rd.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, "echo "+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ls
}

// lineServer is serveLines' responder.
type lineServer struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

// retransmits sums the TCP retransmissions of the open connections.
func (ls *lineServer) retransmits() uint32 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var n uint32
	for c := range ls.conns {
		n += tcpRetransmits(c)
	}
	return n
}

// tcpRetransmits is the kernel's count of segments c retransmitted (TCP_INFO
// tcpi_total_retrans): each one is a packet, or its acknowledgement, that was lost.
func tcpRetransmits(c net.Conn) uint32 {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var n uint32
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = info.Total_retrans
		}
	})
	return n
}

func dialStream(from, to Place, port uint16) (net.Conn, error) {
	var c net.Conn
	err := cnitest.InNetns(from.Netns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: from.Addr.AsSlice()}}
		var err error
		c, err = d.Dial("tcp4", netip.AddrPortFrom(to.Addr, port).String())
		return err
	})
	return c, err
}

// Probe kinds of the kill test.
const (
	probeStream   = iota // exchanges on the long-lived connection
	probeAllowed         // new connections client -> server 8080
	probeDenied          // new connections client -> server 9090 (default deny)
	probeDenyRule        // new connections other -> server 8080 (deny rule)
	numProbeKinds
)

var probeKindNames = [numProbeKinds]string{
	"stream client->server 7070 (exchanges)",
	"new conns client->server 8080 (allowed)",
	"new conns client->server 9090 (denied)",
	"new conns other->server 8080 (deny rule)",
}

var probeShort = [numProbeKinds]string{"stream", "c->s:8080", "c->s:9090", "o->s:8080"}

const maxKillPhases = 8

// killProbes counts probe outcomes per kind and phase.
type killProbes struct {
	cur    atomic.Int32
	counts [numProbeKinds][maxKillPhases][Failed + 1]atomic.Int64

	mu         sync.Mutex
	names      []string
	began      []time.Time
	maxRTT     [numProbeKinds][maxKillPhases]time.Duration
	problems   []string
	streamDown string
}

func newKillProbes() *killProbes {
	return &killProbes{names: []string{"agent up"}, began: []time.Time{time.Now()}}
}

func (k *killProbes) phase() int { return int(k.cur.Load()) }

func (k *killProbes) enter(name string) {
	k.mu.Lock()
	k.names = append(k.names, name)
	k.began = append(k.began, time.Now())
	k.mu.Unlock()
	k.cur.Add(1)
}

func (k *killProbes) record(kind, phase int, o Observation) {
	k.counts[kind][phase][o.Outcome].Add(1)
	bad := o.Outcome == Failed ||
		(kind == probeAllowed && o.Outcome != Allowed) ||
		((kind == probeDenied || kind == probeDenyRule) && o.Outcome == Allowed)
	if bad {
		k.problem(fmt.Sprintf("%s, phase %d (%s): %s (%v)", probeKindNames[kind], phase, k.phaseName(phase), o.Outcome, o.Err))
	}
}

func (k *killProbes) latency(kind, phase int, d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.maxRTT[kind][phase] = max(k.maxRTT[kind][phase], d)
}

func (k *killProbes) phaseName(p int) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.names[p]
}

func (k *killProbes) problem(s string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.problems) < 20 {
		k.problems = append(k.problems, time.Now().Format("15:04:05.000")+" "+s)
	}
}

// runStream exchanges a line on c every 50 ms until stop; the first error ends it (the
// connection is broken).
func (k *killProbes) runStream(c net.Conn, stop <-chan struct{}) {
	rd := bufio.NewReader(c)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		ph := k.phase()
		begin := time.Now()
		c.SetDeadline(begin.Add(3 * time.Second)) // slow is not broken: retransmissions count drops
		msg := fmt.Sprintf("tick %d\n", i)
		_, err := io.WriteString(c, msg)
		if err == nil {
			var line string
			line, err = rd.ReadString('\n')
			if err == nil && line != "echo "+msg {
				err = fmt.Errorf("echo %q, want %q", line, "echo "+msg)
			}
		}
		if err != nil {
			k.counts[probeStream][ph][Failed].Add(1)
			msg := fmt.Sprintf("%s broke in phase %d (%s) after %d exchanges: %v", probeKindNames[probeStream], ph, k.phaseName(ph), i, err)
			k.problem(msg)
			k.mu.Lock()
			k.streamDown = msg
			k.mu.Unlock()
			return
		}
		k.counts[probeStream][ph][Allowed].Add(1)
		k.latency(probeStream, ph, time.Since(begin))
	}
}

// report logs the counts per phase and fails the test for every leak, broken connection
// or failed allowed connection, and for a phase the probes did not cover.
func (k *killProbes) report(t *testing.T) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	end := time.Now()
	var b strings.Builder
	for p, name := range k.names {
		until := end
		if p+1 < len(k.began) {
			until = k.began[p+1]
		}
		fmt.Fprintf(&b, "\n  phase %d %-14s %6v:", p, name, until.Sub(k.began[p]).Round(time.Millisecond))
		c := &k.counts
		fmt.Fprintf(&b, " stream %d ok/%d broken (max rtt %v);", c[probeStream][p][Allowed].Load(), c[probeStream][p][Failed].Load(), k.maxRTT[probeStream][p].Round(time.Microsecond))
		for _, kind := range []int{probeAllowed, probeDenied, probeDenyRule} {
			fmt.Fprintf(&b, " %s %d allow/%d deny/%d error", probeShort[kind], c[kind][p][Allowed].Load(), c[kind][p][Denied].Load(), c[kind][p][Failed].Load())
			if kind == probeAllowed {
				fmt.Fprintf(&b, " (max %v)", k.maxRTT[kind][p].Round(time.Microsecond))
			}
			b.WriteString(";")
		}
	}
	t.Logf("continuous probes per phase:%s", b.String())
	var tot [numProbeKinds][Failed + 1]int64
	for kind := range numProbeKinds {
		for p := range k.names {
			for o := Allowed; o <= Failed; o++ {
				tot[kind][o] += k.counts[kind][p][o].Load()
			}
		}
	}
	if n := tot[probeDenied][Allowed] + tot[probeDenyRule][Allowed]; n > 0 {
		t.Errorf("LEAK: %d connections on denied flows succeeded", n)
	}
	if n := tot[probeAllowed][Denied] + tot[probeAllowed][Failed]; n > 0 {
		t.Errorf("%d new allowed connections failed", n)
	}
	if n := tot[probeDenied][Failed] + tot[probeDenyRule][Failed]; n > 0 {
		t.Errorf("%d denied probes ended with an error instead of a silent drop", n)
	}
	if k.streamDown != "" {
		t.Errorf("the long-lived allowed connection broke: %s", k.streamDown)
	}
	// The phases must have been covered, else the assertions above prove nothing: the kill
	// window well, the others at all (restarting may be too short to count on).
	for p, name := range k.names {
		kinds := []int{probeStream, probeDenyRule}
		if name != "policy change" {
			kinds = append(kinds, probeAllowed, probeDenied)
		}
		least := int64(1)
		switch name {
		case "agent killed":
			least = 5
		case "restarting":
			least = 0
		}
		for _, kind := range kinds {
			var n int64
			for o := Allowed; o <= Failed; o++ {
				n += k.counts[kind][p][o].Load()
			}
			if n < least && !(kind == probeStream && k.streamDown != "") {
				t.Errorf("phase %d (%s): only %d probes of %s, want %d at least", p, name, n, probeKindNames[kind], least)
			}
		}
	}
	if len(k.problems) > 0 {
		t.Errorf("probe problems (first %d):\n  %s", len(k.problems), strings.Join(k.problems, "\n  "))
	}
}
