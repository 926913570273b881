//go:build linux

package cni_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/netward/netward/cni"
	"github.com/netward/netward/cni/cnitest"
)

var seq atomic.Int64

// uniq is a short name prefix unique to this test process and call.
func uniq() string { return fmt.Sprintf("nwc%d%02d", os.Getpid()%100000, seq.Add(1)%100) }

type env struct {
	t         *testing.T
	dir, bin  string
	sock      string
	agent     *cnitest.FakeAgent
	node      string // netns name
	ipamDir   string
	config    []byte
	rootFwd   string
	pods      map[string]string // netns name -> path
	prefix    string
	network   string
	subnetStr string
}

func newEnv(t *testing.T, cniVersion string) *env {
	cnitest.RequireRoot(t, "ping")
	e := &env{t: t, dir: t.TempDir(), prefix: uniq(), pods: map[string]string{}, network: "nwtest", subnetStr: "10.247.0.0/24"}
	e.bin = cnitest.BuildPlugin(t, filepath.Join(e.dir, "bin"))
	e.sock = filepath.Join(e.dir, "agent.sock")
	e.agent = cnitest.StartFakeAgent(t, e.sock)
	e.ipamDir = filepath.Join(e.dir, "ipam")
	e.node = e.prefix + "n"
	cnitest.AddNetns(t, e.node)
	e.config = cnitest.PluginConfig(cniVersion, e.network, e.sock, e.subnetStr, e.ipamDir, nil)
	e.rootFwd = readForward(t)
	t.Cleanup(func() {
		if got := readForward(t); got != e.rootFwd {
			t.Errorf("the root netns' ip_forward changed from %s to %s", e.rootFwd, got)
		}
	})
	return e
}

func readForward(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (e *env) pod(name string) string {
	ns := e.prefix + name
	e.pods[ns] = cnitest.AddNetns(e.t, ns)
	return ns
}

func (e *env) run(cmd, containerID, podNS, args string, config []byte) cnitest.Result {
	netnsPath := ""
	if podNS != "" {
		netnsPath = cnitest.NetnsPath(podNS)
	}
	return cnitest.Invocation{NodeNetns: e.node, Plugin: e.bin, Command: cmd, ContainerID: containerID, Netns: netnsPath, Args: args, Config: config}.Run()
}

func (e *env) add(containerID, podNS, k8sNS, k8sName string) *current.Result {
	e.t.Helper()
	args := fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s", k8sNS, k8sName, containerID)
	r := e.run("ADD", containerID, podNS, args, e.config)
	if r.Err != nil {
		e.t.Fatal(r.Err)
	}
	res, err := current.NewResult(r.Stdout)
	if err != nil {
		e.t.Fatalf("ADD result %s: %v", r.Stdout, err)
	}
	return res.(*current.Result)
}

func (e *env) withPrev(prev []byte) []byte {
	var m map[string]any
	json.Unmarshal(e.config, &m)
	m["prevResult"] = json.RawMessage(prev)
	b, _ := json.Marshal(m)
	return b
}

func linkExists(t *testing.T, netnsName, ifName string) bool {
	args := []string{"link", "show", ifName}
	if netnsName != "" {
		args = append([]string{"-n", netnsName}, args...)
	}
	return exec.Command("ip", args...).Run() == nil
}

func cniError(t *testing.T, r cnitest.Result) *types.Error {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("plugin succeeded: %s", r.Stdout)
	}
	var te types.Error
	if err := json.Unmarshal(r.Stdout, &te); err != nil {
		t.Fatalf("error output %q is not a CNI error: %v", r.Stdout, err)
	}
	return &te
}

// TestPluginAsRuntime runs the plugin binary exactly as a container runtime does: exec'd in
// the node's netns with the CNI environment and the configuration on stdin.
func TestPluginAsRuntime(t *testing.T) {
	e := newEnv(t, "1.1.0")
	p1, p2 := e.pod("a"), e.pod("b")
	const c1, c2 = "c0ffee0000000000000000000000000000000000000000000000000000000001", "c0ffee0000000000000000000000000000000000000000000000000000000002"

	r1 := e.add(c1, p1, "shop", "web-0")
	host1 := cni.HostVethName(c1, "eth0")
	want := &current.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*current.Interface{{Name: host1, Mac: r1.Interfaces[0].Mac}, {Name: "eth0", Mac: r1.Interfaces[1].Mac, Mtu: 1500, Sandbox: cnitest.NetnsPath(p1)}},
	}
	if len(r1.Interfaces) != 2 || !reflect.DeepEqual(r1.Interfaces, want.Interfaces) || r1.Interfaces[0].Mac == "" || r1.Interfaces[1].Mac == "" {
		t.Errorf("interfaces %v", r1.Interfaces)
	}
	if len(r1.IPs) != 1 || r1.IPs[0].Address.String() != "10.247.0.2/32" || r1.IPs[0].Gateway.String() != "169.254.1.1" || *r1.IPs[0].Interface != 1 {
		t.Errorf("ips %v", r1.IPs)
	}
	if len(r1.Routes) != 2 || r1.Routes[1].Dst.String() != "0.0.0.0/0" || r1.Routes[1].GW.String() != "169.254.1.1" {
		t.Errorf("routes %v", r1.Routes)
	}
	regs := e.agent.Registrations()
	wantReg := cni.EndpointRequest{ContainerID: c1, Netns: cnitest.NetnsPath(p1), IfName: "eth0", HostIfName: host1, PodNamespace: "shop", PodName: "web-0", IPs: []string{"10.247.0.2"}}
	if len(regs) != 1 || !reflect.DeepEqual(regs[0], wantReg) {
		t.Errorf("registration %+v, want %+v", regs, wantReg)
	}
	if !linkExists(t, e.node, host1) || linkExists(t, "", host1) {
		t.Errorf("host veth %s must be in the node netns only", host1)
	}

	r2 := e.add(c2, p2, "shop", "db-0")
	ip2 := r2.IPs[0].Address.IP.String()
	if ip2 != "10.247.0.3" {
		t.Errorf("second pod got %s", ip2)
	}
	// pod -> pod through the node netns: ICMP and TCP.
	if out, err := exec.Command("ip", "netns", "exec", p1, "ping", "-c", "1", "-W", "2", ip2).CombinedOutput(); err != nil {
		t.Errorf("ping %s from %s: %v\n%s", ip2, p1, err, out)
	}
	var ln net.Listener
	if err := cnitest.InNetns(cnitest.NetnsPath(p2), func() (err error) { ln, err = net.Listen("tcp4", ip2+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from %s\n", c.LocalAddr())
			c.Close()
		}
	}()
	err := cnitest.InNetns(cnitest.NetnsPath(p1), func() error {
		c, err := net.DialTimeout("tcp4", ip2+":8080", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		if err == nil && !strings.Contains(string(b), "hello from "+ip2) {
			err = fmt.Errorf("read %q", b)
		}
		return err
	})
	if err != nil {
		t.Errorf("TCP pod -> pod: %v", err)
	}

	// CHECK with the prevResult the runtime cached.
	prev1, _ := json.Marshal(r1)
	if r := e.run("CHECK", c1, p1, "", e.withPrev(prev1)); r.Err != nil {
		t.Errorf("CHECK: %v", r.Err)
	}
	// CHECK notices a missing route...
	cnitest.IP(t, "-n", p1, "route", "del", "default")
	if r := e.run("CHECK", c1, p1, "", e.withPrev(prev1)); r.Err == nil || !strings.Contains(string(r.Stdout), "no default route via 169.254.1.1") {
		t.Errorf("CHECK without the default route: %v", r.Err)
	}
	cnitest.IP(t, "-n", p1, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	// ... and a prevResult that does not match.
	if r := e.run("CHECK", c1, p1, "", e.withPrev([]byte(strings.ReplaceAll(string(prev1), "10.247.0.2", "10.247.0.99")))); r.Err == nil {
		t.Error("CHECK with a foreign prevResult passed")
	}

	// STATUS (CNI 1.1).
	if r := e.run("STATUS", "", "", "", e.config); r.Err != nil {
		t.Errorf("STATUS: %v", r.Err)
	}
	e.agent.SetHealthy(false)
	if te := cniError(t, e.run("STATUS", "", "", "", e.config)); te.Code != types.ErrPluginNotAvailable || te.Msg != "agent not ready" {
		t.Errorf("STATUS of an unready agent: %+v", te)
	}
	e.agent.SetHealthy(true)

	// DEL cleans everything; DEL twice is fine.
	for i := range 2 {
		if r := e.run("DEL", c1, p1, "", e.config); r.Err != nil {
			t.Fatalf("DEL #%d: %v", i+1, r.Err)
		}
	}
	if linkExists(t, e.node, host1) || linkExists(t, p1, "eth0") {
		t.Error("veth left after DEL")
	}
	if _, err := os.Stat(filepath.Join(e.ipamDir, e.network, "10.247.0.2")); !os.IsNotExist(err) {
		t.Errorf("address not released: %v", err)
	}
	if _, ok := e.agent.Endpoint(c1); ok {
		t.Error("endpoint still registered")
	}
	if d := e.agent.Deletes(); len(d) != 2 || d[0] != c1 {
		t.Errorf("DELETE calls %v", d)
	}
	if out := cnitest.IP(t, "-n", e.node, "route", "show", "10.247.0.2"); out != "" {
		t.Errorf("host route left: %s", out)
	}
	// CHECK after DEL fails.
	if r := e.run("CHECK", c1, p1, "", e.withPrev(prev1)); r.Err == nil {
		t.Error("CHECK after DEL passed")
	}
	// The agent lost the endpoint: CHECK says so.
	if err := cni.NewAgent(e.sock).Deregister(context.Background(), c2); err != nil {
		t.Fatal(err)
	}
	prev2, _ := json.Marshal(r2)
	if r := e.run("CHECK", c2, p2, "", e.withPrev(prev2)); r.Err == nil || !strings.Contains(string(r.Stdout), "the agent has no endpoint") {
		t.Errorf("CHECK of an unregistered endpoint: %v", r.Err)
	}
	// DEL without a netns (the runtime lost it) still cleans up.
	if r := e.run("DEL", c2, "", "", e.config); r.Err != nil {
		t.Errorf("DEL without CNI_NETNS: %v", r.Err)
	}
	if linkExists(t, e.node, cni.HostVethName(c2, "eth0")) || linkExists(t, p2, "eth0") {
		t.Error("veth left after DEL without netns")
	}

	if r := e.run("VERSION", "", "", "", e.config); r.Err != nil || !strings.Contains(string(r.Stdout), `"1.1.0"`) {
		t.Errorf("VERSION: %s %v", r.Stdout, r.Err)
	}
}

// TestPluginAddFailureUndoes: when the agent refuses the endpoint, ADD fails and leaves
// nothing behind; a later ADD of the same container works.
func TestPluginAddFailureUndoes(t *testing.T) {
	e := newEnv(t, "1.0.0")
	p := e.pod("a")
	const c = "deadbeef01"
	e.agent.FailRegistrations(http.StatusInternalServerError)
	r := e.run("ADD", c, p, "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", e.config)
	te := cniError(t, r)
	if te.Code != types.ErrInternal || !strings.Contains(te.Msg, "500") {
		t.Errorf("error %+v", te)
	}
	host := cni.HostVethName(c, "eth0")
	if linkExists(t, e.node, host) || linkExists(t, p, "eth0") {
		t.Error("veth left after a failed ADD")
	}
	entries, _ := os.ReadDir(filepath.Join(e.ipamDir, e.network))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "10.") {
			t.Errorf("address %s left allocated", en.Name())
		}
	}
	if out := cnitest.IP(t, "-n", e.node, "route", "show"); strings.Contains(out, "10.247.") {
		t.Errorf("route left: %s", out)
	}
	if d := e.agent.Deletes(); len(d) != 1 || d[0] != c {
		t.Errorf("the failed registration was not withdrawn: %v", d)
	}

	// An unreachable agent: try again later, nothing left either.
	e.agent.Close()
	te = cniError(t, e.run("ADD", c, p, "", e.config))
	if te.Code != types.ErrTryAgainLater || !strings.Contains(te.Msg, "not reachable") {
		t.Errorf("error %+v", te)
	}
	if linkExists(t, e.node, host) || linkExists(t, p, "eth0") {
		t.Error("veth left after ADD without agent")
	}
	// DEL tolerates the missing agent.
	if r := e.run("DEL", c, p, "", e.config); r.Err != nil {
		t.Errorf("DEL without agent: %v", r.Err)
	}

	e.agent = cnitest.StartFakeAgent(t, e.sock)
	res := e.add(c, p, "ns", "p")
	// Round robin: the two failed ADDs had .2 and .3.
	if res.IPs[0].Address.String() != "10.247.0.4/32" {
		t.Errorf("address after failures: %s", res.IPs[0].Address.String())
	}
	// ADD of the same attachment again (a runtime retry): same address, veth rebuilt.
	res2 := e.add(c, p, "ns", "p")
	if res2.IPs[0].Address.String() != res.IPs[0].Address.String() {
		t.Errorf("repeated ADD: %s, first %s", res2.IPs[0].Address.String(), res.IPs[0].Address.String())
	}
	prev, _ := json.Marshal(res2)
	if r := e.run("CHECK", c, p, "", e.withPrev(prev)); r.Err != nil {
		t.Errorf("CHECK after repeated ADD: %v", r.Err)
	}
	// A config error is a CNI error with code 7.
	te = cniError(t, e.run("ADD", "x", p, "", []byte(`{"cniVersion":"1.0.0","name":"n","type":"netward-cni"}`)))
	if te.Code != types.ErrInvalidNetworkConfig {
		t.Errorf("bad config: %+v", te)
	}
	if r := e.run("DEL", c, p, "", e.config); r.Err != nil {
		t.Error(r.Err)
	}
}

// TestLibcni drives the plugin through libcni and a conflist file, as containerd and CRI-O
// do: ADD, CHECK, STATUS, GC and DEL.
func TestLibcni(t *testing.T) {
	e := newEnv(t, "1.1.0")
	p1, p2 := e.pod("a"), e.pod("b")
	confDir := filepath.Join(e.dir, "net.d")
	os.MkdirAll(confDir, 0o755)
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.1.0",
  "name": %q,
  "plugins": [
    {"type": "netward-cni", "agentSocket": %q, "subnet": %q, "ipamDataDir": %q, "mtu": 1400}
  ]
}`, e.network, e.sock, e.subnetStr, e.ipamDir)
	if err := os.WriteFile(filepath.Join(confDir, "10-netward.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := libcni.LoadNetworkConf(confDir, e.network)
	if err != nil {
		t.Fatal(err)
	}
	cfg := libcni.NewCNIConfigWithCacheDir([]string{filepath.Dir(e.bin)}, filepath.Join(e.dir, "cache"), nil)
	ctx := context.Background()
	rt := func(id, podNS string) *libcni.RuntimeConf {
		return &libcni.RuntimeConf{ContainerID: id, NetNS: cnitest.NetnsPath(podNS), IfName: "eth0",
			Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", podNS}, {"K8S_POD_INFRA_CONTAINER_ID", id}}}
	}
	// libcni executes the plugin in the caller's netns: the node's.
	err = cnitest.InNetns(cnitest.NetnsPath(e.node), func() error {
		var ips []string
		for i, p := range []string{p1, p2} {
			res, err := cfg.AddNetworkList(ctx, list, rt(fmt.Sprintf("libcni-%d", i), p))
			if err != nil {
				return fmt.Errorf("ADD %s: %w", p, err)
			}
			r, err := current.NewResultFromResult(res)
			if err != nil {
				return err
			}
			if len(r.Interfaces) != 2 || r.Interfaces[1].Mtu != 1400 {
				return fmt.Errorf("result %v", r)
			}
			ips = append(ips, r.IPs[0].Address.IP.String())
		}
		if out, err := exec.Command("ip", "netns", "exec", p1, "ping", "-c", "1", "-W", "2", ips[1]).CombinedOutput(); err != nil {
			return fmt.Errorf("ping: %v %s", err, out)
		}
		for i, p := range []string{p1, p2} {
			if err := cfg.CheckNetworkList(ctx, list, rt(fmt.Sprintf("libcni-%d", i), p)); err != nil {
				return fmt.Errorf("CHECK %s: %w", p, err)
			}
		}
		if err := cfg.GetStatusNetworkList(ctx, list); err != nil {
			return fmt.Errorf("STATUS: %w", err)
		}
		// GC keeps only the first attachment: libcni deletes the second (from its cache),
		// then the plugin's GC releases any stray address.
		gcArgs := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "libcni-0", IfName: "eth0"}}}
		if err := cfg.GCNetworkList(ctx, list, gcArgs); err != nil {
			return fmt.Errorf("GC: %w", err)
		}
		if linkExists(t, e.node, cni.HostVethName("libcni-1", "eth0")) {
			return fmt.Errorf("GC left the second attachment's veth")
		}
		if err := cfg.DelNetworkList(ctx, list, rt("libcni-0", p1)); err != nil {
			return fmt.Errorf("DEL: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(e.ipamDir, e.network))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "10.") {
			t.Errorf("address %s left allocated", en.Name())
		}
	}
	if regs := e.agent.Registrations(); len(regs) != 2 || regs[1].PodName != p2 || regs[1].PodNamespace != "default" {
		t.Errorf("registrations %+v", regs)
	}
	for _, id := range []string{"libcni-0", "libcni-1"} {
		if _, ok := e.agent.Endpoint(id); ok {
			t.Errorf("%s still registered", id)
		}
	}
}
