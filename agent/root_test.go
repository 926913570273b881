//go:build linux

package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/netward/netward/policy"
)

// requireRoot skips (loudly) when the real datapath cannot be used.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the agent's datapath test loads eBPF programs and creates network namespaces; it needs root: run `go test ./agent` as root")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("SKIPPED: needs a kernel with BPF and BTF (/sys/kernel/btf/vmlinux is missing)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIPPED: ip not installed (apt-get install iproute2)")
	}
}

var rootSeq atomic.Int64

func ipRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// inNS runs fn on a locked thread in the named network namespace.
func inNS(name string, fn func() error) error {
	target, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- err // the thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// rootTopo is a node netns and pod netns plugged in the way the CNI plugin does it.
type rootTopo struct {
	id   string
	node string
}

func newRootTopo(t *testing.T) *rootTopo {
	id := fmt.Sprintf("%d%02d", os.Getpid()%100000, rootSeq.Add(1)%100)
	tp := &rootTopo{id: id, node: "nwag" + id + "n"}
	ipRun(t, "netns", "add", tp.node)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", tp.node).Run() })
	ipRun(t, "-n", tp.node, "link", "set", "lo", "up")
	if out, err := exec.Command("ip", "netns", "exec", tp.node, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward: %v %s", err, out)
	}
	return tp
}

// addPod creates a pod netns with eth0 behind host veth hostIf in the node netns, as the
// CNI plugin does: /32 address, routes via the 169.254.1.1 gateway, a /32 route on the node.
func (tp *rootTopo) addPod(t *testing.T, name, hostIf, ip string) string {
	ns := "nwag" + tp.id + name
	ipRun(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipRun(t, "link", "add", hostIf, "netns", tp.node, "type", "veth", "peer", "name", "eth0", "netns", ns)
	ipRun(t, "-n", tp.node, "link", "set", hostIf, "up")
	ipRun(t, "-n", tp.node, "addr", "add", "169.254.1.1/32", "dev", hostIf)
	ipRun(t, "-n", tp.node, "route", "add", ip+"/32", "dev", hostIf)
	ipRun(t, "-n", ns, "link", "set", "lo", "up")
	ipRun(t, "-n", ns, "link", "set", "eth0", "up")
	ipRun(t, "-n", ns, "addr", "add", ip+"/32", "dev", "eth0")
	ipRun(t, "-n", ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	ipRun(t, "-n", ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	return ns
}

// serve answers "hello <port>" on each connection, and echoes lines on port 7070.
func serveIn(t *testing.T, ns, ip string, ports ...int) {
	for _, port := range ports {
		var ln net.Listener
		if err := inNS(ns, func() error {
			var err error
			ln, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", ip, port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if port == 7070 {
					go func() {
						defer c.Close()
						sc := bufio.NewScanner(c)
						for sc.Scan() {
							fmt.Fprintf(c, "echo %s\n", sc.Text())
						}
					}()
					continue
				}
				fmt.Fprintf(c, "hello %d\n", port)
				c.Close()
			}
		}()
	}
}

func dialFrom(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	return c, err
}

func connectFrom(ns, ip string, port int, timeout time.Duration) error {
	c, err := dialFrom(ns, fmt.Sprintf("%s:%d", ip, port), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("hello %d\n", port); string(b) != want {
		return fmt.Errorf("read %q, want %q", b, want)
	}
	return nil
}

func expectTCP(t *testing.T, what, ns, ip string, want map[int]bool) {
	t.Helper()
	for port, ok := range want {
		err := connectFrom(ns, ip, port, 600*time.Millisecond)
		var ne net.Error
		switch {
		case ok && err != nil:
			t.Errorf("%s: port %d should connect: %v", what, port, err)
		case !ok && err == nil:
			t.Errorf("%s: port %d connected, should be blocked", what, port)
		case !ok && !(errors.As(err, &ne) && ne.Timeout()):
			t.Errorf("%s: port %d failed with %v, want a timeout (dropped SYN)", what, port, err)
		}
	}
}

const rootCluster = `apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 192.168.250.1}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: shop, labels: {app: server}}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
`

func serverPolicy(ports ...string) string {
	var ps []string
	for _, p := range ports {
		ps = append(ps, fmt.Sprintf(`{port: "%s", protocol: TCP}`, p))
	}
	return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-in, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [` + strings.Join(ps, ", ") + `]}]}]
`
}

// TestAgentRealTraffic runs the agent with the real datapath on a node netns: registration
// over the socket, real TCP per policy, a policy change, an invalid policy, and a restart
// during traffic that never opens what the policy denies.
func TestAgentRealTraffic(t *testing.T) {
	requireRoot(t)
	tp := newRootTopo(t)
	clientIP, serverIP := "10.201.0.10", "10.201.0.11"
	clientNS := tp.addPod(t, "c", "nwag"+tp.id+"c", clientIP)
	serverNS := tp.addPod(t, "s", "nwag"+tp.id+"s", serverIP)
	serveIn(t, serverNS, serverIP, 8080, 9090, 7070)

	dir, state := t.TempDir(), t.TempDir()
	writeSet(t, dir, map[string]string{"cluster.yaml": rootCluster, "policy.yaml": serverPolicy("8080", "7070")})
	pinDir := filepath.Join("/sys/fs/bpf", "netward-test-agent-"+tp.id)
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	cfg := Config{
		Node: "node-1", PoliciesDir: dir, NodeNetns: tp.node, StateDir: state, PinDir: pinDir,
		APISocket: filepath.Join(state, "a.sock"), MetricsAddr: "127.0.0.1:0",
		Policy: policy.DefaultOptions(), Logger: testLogger(t),
	}
	start := func() *Agent {
		t.Helper()
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			a.Close()
			t.Fatal(err)
		}
		return a
	}
	a := start()
	closed := false
	t.Cleanup(func() {
		if !closed {
			a.Close()
		}
	})
	cl := NewClient(cfg.APISocket)
	ctx := context.Background()
	for _, p := range []struct{ name, ns, host, ip string }{
		{"client", clientNS, "nwag" + tp.id + "c", clientIP},
		{"server", serverNS, "nwag" + tp.id + "s", serverIP},
	} {
		resp, err := cl.Register(ctx, EndpointRequest{ContainerID: "ctr-" + p.name, Netns: "/var/run/netns/" + p.ns, IfName: "eth0",
			HostIfName: p.host, PodNamespace: "shop", PodName: p.name, IPs: []string{p.ip}})
		if err != nil {
			t.Fatalf("register %s: %v", p.name, err)
		}
		t.Logf("registered %s: %+v", p.name, resp)
	}
	eps, err := cl.Endpoints(ctx)
	if err != nil || len(eps) != 2 {
		t.Fatalf("endpoints: %v %+v", err, eps)
	}
	expectTCP(t, "allow 8080", clientNS, serverIP, map[int]bool{8080: true, 9090: false})

	// A policy change: 9090 instead of 8080, enforced without reloading programs.
	rev := func() uint64 {
		st, err := cl.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.PolicyRevision
	}
	r0 := rev()
	changed := time.Now()
	writeSet(t, dir, map[string]string{"cluster.yaml": rootCluster, "policy.yaml": serverPolicy("9090", "7070")})
	var latency time.Duration
	for deadline := time.Now().Add(5 * time.Second); ; {
		if connectFrom(clientNS, serverIP, 9090, 30*time.Millisecond) == nil {
			latency = time.Since(changed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the policy change was not enforced within 5s")
		}
	}
	t.Logf("policy file change enforced after %v (revision %d -> %d)", latency, r0, rev())
	expectTCP(t, "allow 9090 instead", clientNS, serverIP, map[int]bool{8080: false, 9090: true})

	// An invalid policy: rejected, reported, the last good state keeps enforcing.
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: open-everything, namespace: shop}
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [all], toPorts: [{ports: [{port: "99999"}]}]}]
`), 0o644)
	var st Status
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err = cl.Status(ctx); err == nil && st.LastError != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("invalid policy not reported: %+v %v", st, err)
		}
	}
	if st.Enforcing != "last-good" || !strings.HasSuffix(st.LastError.Errors[0].File, "bad.yaml") || st.LastError.Errors[0].Object == "" {
		t.Errorf("status %+v, error %+v", st, st.LastError)
	}
	t.Logf("reported: %s", st.LastError.Errors[0])
	if body, ok, _ := cl.Health(ctx); !ok || !strings.Contains(body, "last good") {
		t.Errorf("health %v %q", ok, body)
	}
	expectTCP(t, "invalid policy ignored", clientNS, serverIP, map[int]bool{8080: false, 9090: true})
	os.Remove(filepath.Join(dir, "bad.yaml"))

	// Events name the pods and the rules.
	evs := map[string]Event{}
	err = cl.Events(ctx, EventFilter{Pod: "shop/server"}, func(ev Event) error {
		evs[fmt.Sprintf("%d/%s", ev.Port, ev.Verdict)] = ev
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev, ok := evs["9090/forwarded"]; !ok || ev.Source.Pod != "shop/client" || len(ev.Origins) == 0 || !strings.Contains(ev.Origins[0], "server-in") {
		t.Errorf("no forwarded 9090 event with origins: %+v", evs)
	}
	if ev, ok := evs["8080/dropped"]; !ok || ev.Reason != "dropped-default-deny" || len(ev.Origins) == 0 || !strings.Contains(ev.Origins[0], "default deny: selected by") {
		t.Errorf("no dropped 8080 event with the selecting rule: %+v", evs)
	}

	// Restart during traffic: a long-lived allowed connection and probes of an allowed and
	// a denied port run while the agent stops, nothing runs, and a new agent adopts.
	conn, err := dialFrom(clientNS, serverIP+":7070", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	echo := func(msg string) error {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintln(conn, msg); err != nil {
			return err
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if line != "echo "+msg+"\n" {
			return fmt.Errorf("echo %q", line)
		}
		return nil
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var deniedOpened, allowedFailed, probes atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if connectFrom(clientNS, serverIP, 8080, 50*time.Millisecond) == nil {
				deniedOpened.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			probes.Add(1)
			if err := connectFrom(clientNS, serverIP, 9090, time.Second); err != nil {
				allowedFailed.Add(1)
				t.Logf("allowed probe failed: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	a.Close()
	closed = true
	time.Sleep(300 * time.Millisecond) // no agent at all
	if err := echo("agent down"); err != nil {
		t.Errorf("established connection broken while the agent is down: %v", err)
	}
	a = start()
	closed = false
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err := cl.Status(ctx); err == nil && st.Enforcing == "current" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted agent not current")
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := echo("after"); err != nil {
		t.Errorf("established connection broken by the restart: %v", err)
	}
	t.Logf("restart: %d allowed probes, %d failed; denied port opened %d times", probes.Load(), allowedFailed.Load(), deniedOpened.Load())
	if deniedOpened.Load() > 0 {
		t.Errorf("the denied port opened %d times during the restart", deniedOpened.Load())
	}
	if allowedFailed.Load() > 0 {
		t.Errorf("the allowed port failed %d times during the restart", allowedFailed.Load())
	}
	eps, err = cl.Endpoints(ctx)
	if err != nil || len(eps) != 2 || eps[0].State != "enforcing" || eps[1].State != "enforcing" {
		t.Fatalf("endpoints after restart: %v %+v", err, eps)
	}
	expectTCP(t, "after restart", clientNS, serverIP, map[int]bool{8080: false, 9090: true})
	// The restarted agent enforces changes.
	writeSet(t, dir, map[string]string{"cluster.yaml": rootCluster, "policy.yaml": serverPolicy("8080", "9090")})
	for deadline := time.Now().Add(5 * time.Second); connectFrom(clientNS, serverIP, 8080, 50*time.Millisecond) != nil; {
		if time.Now().After(deadline) {
			t.Fatal("restarted agent did not enforce a change")
		}
	}
	expectTCP(t, "both", clientNS, serverIP, map[int]bool{8080: true, 9090: true})

	// Deregistration detaches: the pinned links go.
	for _, name := range []string{"client", "server"} {
		if err := cl.Deregister(ctx, "ctr-"+name); err != nil {
			t.Fatal(err)
		}
	}
	if links, _ := os.ReadDir(filepath.Join(pinDir, "links")); len(links) != 0 {
		t.Errorf("links still pinned: %v", links)
	}
}

// TestPolicyChangeLatency measures the time from a policy file change to the datapath
// enforcing it (the agent's revision moving, then a connection to the newly allowed port
// succeeding), over alternating changes that both open one port and close another.
func TestPolicyChangeLatency(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED: -short")
	}
	tp := newRootTopo(t)
	clientIP, serverIP := "10.202.0.10", "10.202.0.11"
	clientNS := tp.addPod(t, "c", "nwag"+tp.id+"c", clientIP)
	serverNS := tp.addPod(t, "s", "nwag"+tp.id+"s", serverIP)
	serveIn(t, serverNS, serverIP, 8080, 9090)
	dir, state := t.TempDir(), t.TempDir()
	writeSet(t, dir, map[string]string{"cluster.yaml": rootCluster, "policy.yaml": serverPolicy("8080")})
	pinDir := filepath.Join("/sys/fs/bpf", "netward-test-agent-"+tp.id)
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	a, err := New(Config{Node: "node-1", PoliciesDir: dir, NodeNetns: tp.node, StateDir: state, PinDir: pinDir,
		APISocket: filepath.Join(state, "a.sock"), Policy: policy.DefaultOptions(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ name, host, ip string }{{"client", "nwag" + tp.id + "c", clientIP}, {"server", "nwag" + tp.id + "s", serverIP}} {
		if _, err := a.Register(EndpointRequest{ContainerID: "ctr-" + p.name, HostIfName: p.host, PodNamespace: "shop", PodName: p.name, IPs: []string{p.ip}}); err != nil {
			t.Fatal(err)
		}
	}
	const rounds = 40
	var applied, enforced []time.Duration
	for i := 0; i < rounds; i++ {
		open, closed := 9090, 8080
		if i%2 == 1 {
			open, closed = 8080, 9090
		}
		rev := a.Status().PolicyRevision
		time.Sleep(30 * time.Millisecond)
		start := time.Now()
		writeSet(t, dir, map[string]string{"cluster.yaml": rootCluster, "policy.yaml": serverPolicy(fmt.Sprint(open))})
		for a.Status().PolicyRevision == rev {
			if time.Since(start) > 5*time.Second {
				t.Fatal("change not applied")
			}
			time.Sleep(time.Millisecond)
		}
		applied = append(applied, time.Since(start))
		for connectFrom(clientNS, serverIP, open, 10*time.Millisecond) != nil {
			if time.Since(start) > 5*time.Second {
				t.Fatal("change not enforced")
			}
		}
		enforced = append(enforced, time.Since(start))
		if connectFrom(clientNS, serverIP, closed, 100*time.Millisecond) == nil {
			t.Fatalf("round %d: port %d still open", i, closed)
		}
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), ds...)
		slices.Sort(s)
		return s[int(float64(len(s)-1)*p)]
	}
	t.Logf("file change -> datapath updated: p50 %v p99 %v max %v", pct(applied, .5), pct(applied, .99), pct(applied, 1))
	t.Logf("file change -> connection to the opened port succeeds: p50 %v p99 %v max %v", pct(enforced, .5), pct(enforced, .99), pct(enforced, 1))
	if p := pct(applied, .99); p > 250*time.Millisecond {
		t.Errorf("p99 file change -> datapath updated %v, want well under 100ms (250ms allowed for a loaded machine)", p)
	}
}
