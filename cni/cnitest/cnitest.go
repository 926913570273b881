//go:build linux

// Package cnitest has test helpers around the netward CNI plugin: a fake agent implementing
// the endpoint API on a unix socket, network namespaces, and running the plugin binary
// exactly as a container runtime does. The cni and e2e tests share it.
package cnitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/netward/netward/cni"
)

// RequireRoot skips the test, loudly, when it cannot create network namespaces.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root (network namespaces, veths); run go test as root to include it")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: %s not installed (apt-get install iproute2 iputils-ping)", tool)
		}
	}
}

// FakeAgent implements the agent's endpoint API on a unix socket.
type FakeAgent struct {
	Socket string
	srv    *httptest.Server

	mu            sync.Mutex
	endpoints     map[string]cni.EndpointRequest
	registrations []cni.EndpointRequest
	deletes       []string
	registerCode  int
	healthy       bool
}

// StartFakeAgent serves the API on socket until the test ends.
func StartFakeAgent(t testing.TB, socket string) *FakeAgent {
	t.Helper()
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	a := &FakeAgent{Socket: socket, endpoints: map[string]cni.EndpointRequest{}, healthy: true}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		var req cni.EndpointRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.registrations = append(a.registrations, req)
		if a.registerCode != 0 {
			http.Error(w, "fake agent told to fail", a.registerCode)
			return
		}
		a.endpoints[req.ContainerID] = req
		json.NewEncoder(w).Encode(map[string]any{"id": len(a.registrations), "identity": 10000 + len(a.registrations), "pod": req.PodNamespace + "/" + req.PodName})
	})
	mux.HandleFunc("DELETE /v1/endpoints/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		a.mu.Lock()
		defer a.mu.Unlock()
		a.deletes = append(a.deletes, id)
		if _, ok := a.endpoints[id]; !ok {
			http.Error(w, "no endpoint "+id, http.StatusNotFound)
			return
		}
		delete(a.endpoints, id)
	})
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		out := []cni.EndpointRequest{}
		for _, e := range a.endpoints {
			out = append(out, e)
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !a.healthy {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	a.srv = httptest.NewUnstartedServer(mux)
	a.srv.Listener.Close()
	a.srv.Listener = ln
	a.srv.Start()
	t.Cleanup(a.Close)
	return a
}

// Close stops serving; the socket goes away.
func (a *FakeAgent) Close() {
	a.srv.Close()
	os.Remove(a.Socket)
}

// FailRegistrations makes POST /v1/endpoints answer code (0: succeed again).
func (a *FakeAgent) FailRegistrations(code int) {
	a.mu.Lock()
	a.registerCode = code
	a.mu.Unlock()
}

// SetHealthy sets what /healthz answers.
func (a *FakeAgent) SetHealthy(ok bool) {
	a.mu.Lock()
	a.healthy = ok
	a.mu.Unlock()
}

// Registrations returns every POST body received.
func (a *FakeAgent) Registrations() []cni.EndpointRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]cni.EndpointRequest(nil), a.registrations...)
}

// Deletes returns every container ID DELETE was called for.
func (a *FakeAgent) Deletes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.deletes...)
}

// Endpoint returns the registered endpoint of a container.
func (a *FakeAgent) Endpoint(containerID string) (cni.EndpointRequest, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.endpoints[containerID]
	return e, ok
}

// NetnsPath is where `ip netns add NAME` puts a namespace.
func NetnsPath(name string) string { return "/var/run/netns/" + name }

// AddNetns creates a named network namespace with lo up, deleted when the test ends.
func AddNetns(t testing.TB, name string) string {
	t.Helper()
	IP(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	IP(t, "-n", name, "link", "set", "lo", "up")
	return NetnsPath(name)
}

// IP runs the ip command and fails the test on error.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// InNetns runs fn on a locked OS thread inside the netns at path. Sockets created in fn
// stay in that netns after it returns.
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: if restoring the netns fails, it dies with the goroutine.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restoring netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// BuildPlugin builds cmd/netward-cni into dir (once per dir and test binary) and returns the
// binary's path; dir is then a CNI_PATH.
func BuildPlugin(t testing.TB, dir string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	bin := filepath.Join(dir, cni.PluginType)
	if built[dir] == bin {
		return bin
	}
	out, err := exec.Command("go", "build", "-o", bin, "github.com/netward/netward/cmd/netward-cni").CombinedOutput()
	if err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	built[dir] = bin
	return bin
}

// Invocation is one execution of the plugin, with the CNI environment a runtime sets.
type Invocation struct {
	// NodeNetns is the netns name the plugin runs in (through `ip netns exec`).
	NodeNetns   string
	Plugin      string // binary path
	Command     string // ADD, DEL, CHECK, STATUS, GC, VERSION
	ContainerID string
	Netns       string // CNI_NETNS
	IfName      string // CNI_IFNAME, default eth0
	Args        string // CNI_ARGS
	Config      []byte // stdin
}

// Result is what the plugin printed and how it exited.
type Result struct {
	Stdout, Stderr []byte
	Err            error
}

// Run executes the plugin. Err is set when it exits non-zero; Stdout then has the CNI error.
func (inv Invocation) Run() Result {
	ifName := inv.IfName
	if ifName == "" {
		ifName = "eth0"
	}
	cmd := exec.Command("ip", "netns", "exec", inv.NodeNetns, inv.Plugin)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"CNI_COMMAND=" + inv.Command,
		"CNI_CONTAINERID=" + inv.ContainerID,
		"CNI_NETNS=" + inv.Netns,
		"CNI_IFNAME=" + ifName,
		"CNI_ARGS=" + inv.Args,
		"CNI_PATH=" + filepath.Dir(inv.Plugin),
	}
	cmd.Stdin = bytes.NewReader(inv.Config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("netward-cni %s %s: %v: %s%s", inv.Command, inv.ContainerID, err, stdout.Bytes(), stderr.Bytes())
	}
	return Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Err: err}
}

// PluginConfig is a single plugin's configuration (what a runtime puts on stdin), with an
// optional prevResult.
func PluginConfig(cniVersion, name, socket, subnet, ipamDir string, prevResult json.RawMessage) []byte {
	m := map[string]any{
		"cniVersion": cniVersion, "name": name, "type": cni.PluginType,
		"agentSocket": socket, "subnet": subnet, "ipamDataDir": ipamDir, "mtu": 1500,
	}
	if prevResult != nil {
		m["prevResult"] = prevResult
	}
	b, _ := json.Marshal(m)
	return b
}
