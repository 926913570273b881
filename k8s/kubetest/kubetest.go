// Package kubetest runs a real control plane for tests: etcd and kube-apiserver, built from
// the Go module proxy by scripts/kube-apiserver.sh, started on loopback ports in a test's
// temporary directory, with an admin token. Tests that need it are skipped unless
// NETWARD_KUBE_APISERVER names the directory holding both binaries
// (`scripts/kube-apiserver.sh build` prints it).
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// EnvVar names the directory with the etcd and kube-apiserver binaries.
const EnvVar = "NETWARD_KUBE_APISERVER"

// BinDir returns the binaries' directory, or skips the test loudly.
func BinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvVar)
	if dir == "" {
		msg := "SKIPPED: this test needs a real kube-apiserver and etcd. Build them once with " +
			"`scripts/kube-apiserver.sh build` (about 10 minutes, cached) and set " + EnvVar +
			" to the directory it prints, e.g. " + EnvVar + "=$(scripts/kube-apiserver.sh path)"
		fmt.Fprintln(os.Stderr, "=== "+t.Name()+": "+msg)
		t.Skip(msg)
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("%s=%s: %v (run scripts/kube-apiserver.sh build)", EnvVar, dir, err)
		}
	}
	return dir
}

// Env is a running etcd + kube-apiserver.
type Env struct {
	// Dir holds the data, certificates, logs and the kubeconfig.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig.
	Kubeconfig string
	// Config is the admin client configuration.
	Config *rest.Config

	bin                         string
	token                       string
	etcdPort, peerPort, apiPort int
	etcd, apiserver             *exec.Cmd
	t                           testing.TB
}

// Start starts etcd and kube-apiserver (binaries in bin) and stops them when the test
// ends.
func Start(t testing.TB, bin string) *Env {
	t.Helper()
	e := &Env{Dir: t.TempDir(), bin: bin, t: t}
	ports := freePorts(t, 3)
	e.etcdPort, e.peerPort, e.apiPort = ports[0], ports[1], ports[2]
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		t.Fatal(err)
	}
	e.token = "netward-admin-" + hex.EncodeToString(tok[:])
	if err := e.writeFiles(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	e.StartEtcd()
	e.StartAPIServer()
	return e
}

func freePorts(t testing.TB, n int) []int {
	var out []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func (e *Env) writeFiles() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(e.token + ",admin,admin-uid,system:masters\n"),
		"kubeconfig": []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: netward-test
  cluster:
    server: https://127.0.0.1:%d
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: netward-test
  context:
    cluster: netward-test
    user: admin
current-context: netward-test
`, e.apiPort, e.token)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(e.Dir, name), b, 0o600); err != nil {
			return err
		}
	}
	e.Kubeconfig = filepath.Join(e.Dir, "kubeconfig")
	e.Config = &rest.Config{
		Host:            fmt.Sprintf("https://127.0.0.1:%d", e.apiPort),
		BearerToken:     e.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             200,
		Burst:           400,
	}
	return nil
}

func (e *Env) start(name string, args ...string) *exec.Cmd {
	e.t.Helper()
	log, err := os.OpenFile(filepath.Join(e.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(e.bin, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Die with the test binary, even if it is killed. Pdeathsig fires when the *thread*
	// that forked the child exits, and Go ends a thread whenever a goroutine that locked it
	// returns without unlocking (netns helpers do): so the child is forked from a goroutine
	// that keeps its thread locked, and alive, until the child has exited.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			cmd.Wait()
		}
		log.Close()
	}()
	if err := <-started; err != nil {
		e.t.Fatalf("starting %s: %v", name, err)
	}
	return cmd
}

// StartEtcd starts etcd (again) on its ports, with its data directory.
func (e *Env) StartEtcd() {
	e.t.Helper()
	client := "http://127.0.0.1:" + strconv.Itoa(e.etcdPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(e.peerPort)
	e.etcd = e.start("etcd", "--name", "netward", "--data-dir", filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "netward="+peer, "--unsafe-no-fsync")
	e.waitHTTP("etcd", client+"/health", false)
}

// StartAPIServer starts kube-apiserver (again) on its port.
func (e *Env) StartAPIServer() {
	e.t.Helper()
	e.apiserver = e.start("kube-apiserver",
		"--etcd-servers", "http://127.0.0.1:"+strconv.Itoa(e.etcdPort),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(e.apiPort),
		"--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(e.Dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(e.Dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(e.Dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--token-auth-file", filepath.Join(e.Dir, "tokens.csv"),
		"--authorization-mode", "AlwaysAllow", "--disable-admission-plugins", "ServiceAccount",
		"--allow-privileged=true")
	e.waitHTTP("kube-apiserver", fmt.Sprintf("https://127.0.0.1:%d/readyz", e.apiPort), true)
}

// StopAPIServer stops kube-apiserver (etcd keeps the data).
func (e *Env) StopAPIServer() { stop(e.apiserver); e.apiserver = nil }

// RestartAPIServer stops and starts kube-apiserver: clients see their watches break and
// their requests fail until it is back.
func (e *Env) RestartAPIServer() {
	e.t.Helper()
	e.StopAPIServer()
	e.StartAPIServer()
}

// Stop stops both.
func (e *Env) Stop() {
	stop(e.apiserver)
	stop(e.etcd)
	e.apiserver, e.etcd = nil, nil
}

func stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for {
			if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
				close(done)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (e *Env) waitHTTP(what, url string, auth bool) {
	e.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+e.token)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("%s did not become ready at %s; log:\n%s", what, url, e.LogTail(what, 40))
}

// LogTail returns the last n lines of a component's log ("etcd", "kube-apiserver").
func (e *Env) LogTail(component string, n int) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, component+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
