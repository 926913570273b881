package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/netward/netward/l7"
)

// benchBackend is the destination of the benchmarks: net/http answering a small body.
func benchBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	body := []byte("hello from the backend\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}), ErrorLog: quietLog()}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// benchProxy is a proxy in front of backend judging with realistic rules (regexes on
// method, path and a header), reporting events to a counter.
func benchProxy(tb testing.TB, backend string, tweak ...func(*Config)) (string, *Proxy) {
	rules := NewRules(
		RuleSet{Origin: "CiliumNetworkPolicy bench/api spec.ingress[0]", HTTP: []*l7.HTTPRule{
			rule(tb, "POST", "/api/orders", "", []string{"X-Token"}),
			rule(tb, "GET|HEAD", "/bench(/.*)?", "", nil),
		}},
	)
	var events atomic.Int64
	cfg := Config{
		Decider: rules,
		Dial: func(ctx context.Context, n, a string) (net.Conn, error) {
			d := net.Dialer{KeepAlive: -1}
			return d.DialContext(ctx, n, backend)
		},
		Events: func(Event) { events.Add(1) },
	}
	for _, f := range tweak {
		f(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	// As the agent's TPROXY listener: no TCP keep-alive probes (the proxy has timeouts).
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go p.Serve(WithOriginalDestination(ln, netip.MustParseAddrPort("10.0.0.2:80")))
	tb.Cleanup(func() { p.Close() })
	return ln.Addr().String(), p
}

// loadClient is a minimal HTTP/1.1 client (the load generator): it writes a fixed request
// and reads a Content-Length response, so that its own cost stays small next to what is
// measured.
type loadClient struct {
	addr      string
	keepAlive bool
	c         net.Conn
	br        *bufio.Reader
}

var (
	benchReqKeep  = []byte("GET /bench/item HTTP/1.1\r\nHost: backend\r\nUser-Agent: netward-bench\r\n\r\n")
	benchReqClose = []byte("GET /bench/item HTTP/1.1\r\nHost: backend\r\nUser-Agent: netward-bench\r\nConnection: close\r\n\r\n")
)

func (lc *loadClient) do() error {
	if lc.c == nil {
		c, err := net.Dial("tcp", lc.addr)
		if err != nil {
			return err
		}
		lc.c = c
		if lc.br == nil {
			lc.br = bufio.NewReaderSize(c, 4096)
		} else {
			lc.br.Reset(c)
		}
	}
	req := benchReqKeep
	if !lc.keepAlive {
		req = benchReqClose
	}
	if _, err := lc.c.Write(req); err != nil {
		return err
	}
	status, err := lc.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		return fmt.Errorf("status %q", status)
	}
	cl := -1
	for {
		line, err := lc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && strings.EqualFold(string(line[:15]), "content-length:") {
			cl, _ = strconv.Atoi(strings.TrimSpace(string(line[15:])))
		}
	}
	if cl < 0 {
		return errors.New("no Content-Length")
	}
	if _, err := lc.br.Discard(cl); err != nil {
		return err
	}
	if !lc.keepAlive {
		lc.c.Close()
		lc.c = nil
	}
	return nil
}

// runLoad runs n requests with conc clients and returns the elapsed time and the sorted
// latencies. With rate > 0 (requests/s in all) every client sends on a fixed schedule
// (latency counts from the send: the schedule's timer slack is not the server's); otherwise
// each client sends its next request as soon as it has the response.
func runLoad(tb testing.TB, addr string, keepAlive bool, conc, n int, rate ...float64) (time.Duration, []time.Duration) {
	var interval time.Duration
	if len(rate) > 0 && rate[0] > 0 {
		interval = time.Duration(float64(conc) / rate[0] * float64(time.Second))
	}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		all   = make([]time.Duration, 0, n)
		first error
	)
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc := &loadClient{addr: addr, keepAlive: keepAlive}
			lat := make([]time.Duration, 0, n/conc+1)
			sched := start.Add(time.Duration(w) * interval / time.Duration(conc))
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if interval > 0 {
					time.Sleep(time.Until(sched))
					t0 = time.Now()
					sched = sched.Add(interval)
				}
				if err := lc.do(); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					if lc.c != nil {
						lc.c.Close()
						lc.c = nil
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			if lc.c != nil {
				lc.c.Close()
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		tb.Fatalf("load: %v", first)
	}
	slices.Sort(all)
	return elapsed, all
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

const benchChildEnv = "NETWARD_PROXY_BENCH_CHILD"

// TestBenchChild is not a test: it is the backend or the proxy of BenchmarkHTTP when the
// benchmark starts this test binary as a child process.
func TestBenchChild(t *testing.T) {
	mode := os.Getenv(benchChildEnv)
	if mode == "" {
		t.Skip("only a helper process of BenchmarkHTTP")
	}
	var addr string
	switch mode {
	case "backend":
		addr = benchBackend(t)
	case "proxy":
		addr, _ = benchProxy(t, os.Getenv("NETWARD_PROXY_BENCH_BACKEND"))
	}
	if f := os.Getenv("NETWARD_PROXY_BENCH_CPUPROFILE"); f != "" && mode == "proxy" {
		fh, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(fh)
	}
	fmt.Printf("ADDR %s\n", addr)
	io.Copy(io.Discard, os.Stdin) // until the benchmark ends
	pprof.StopCPUProfile()
	os.Exit(0)
}

// cpuTime is the CPU time all threads of process pid have used (/proc/PID/task/*/schedstat,
// nanoseconds); 0 when unknown.
func cpuTime(pid int) time.Duration {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// benchChild starts this test binary as the backend or the proxy and returns its address
// and process id.
func benchChild(b *testing.B, mode string, env ...string) (string, int) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchChild$")
	cmd.Env = append(append(os.Environ(), benchChildEnv+"="+mode), env...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	out := bufio.NewReader(stdout)
	for {
		l, err := out.ReadString('\n')
		if err != nil {
			b.Fatalf("%s process: %v", mode, err)
		}
		if a, ok := strings.CutPrefix(l, "ADDR "); ok {
			return strings.TrimSpace(a), cmd.Process.Pid
		}
	}
}

// BenchmarkHTTP measures requests/s and p50/p99 latency directly to the backend and
// through the proxy, with keep-alive and a new connection per request, with 1 and 100
// concurrent clients. As in a cluster, the client (this process, a minimal HTTP/1.1 load
// generator), the proxy and the backend (net/http) are three processes; with
// NETWARD_PROXY_BENCH_INPROCESS=1 all three share this process. scripts/bench-proxy.sh
// turns the output into a table.
func BenchmarkHTTP(b *testing.B) {
	var backend, proxyAddr string
	var backendPID, proxyPID int
	if os.Getenv("NETWARD_PROXY_BENCH_INPROCESS") != "" {
		backend = benchBackend(b)
		proxyAddr, _ = benchProxy(b, backend)
	} else {
		backend, backendPID = benchChild(b, "backend")
		proxyAddr, proxyPID = benchChild(b, "proxy", "NETWARD_PROXY_BENCH_BACKEND="+backend)
	}
	for _, mode := range []string{"keepalive", "newconn"} {
		for _, conc := range []int{1, 100} {
			for _, path := range []string{"direct", "proxy"} {
				addr := backend
				if path == "proxy" {
					addr = proxyAddr
				}
				b.Run(fmt.Sprintf("conn=%s/clients=%d/path=%s", mode, conc, path), func(b *testing.B) {
					n := b.N
					if n < conc {
						n = conc
					}
					runLoad(b, addr, mode == "keepalive", conc, min(n, 1000)) // warm up
					b.ResetTimer()
					g0, k0, p0 := cpuTime(os.Getpid()), cpuTime(backendPID), cpuTime(proxyPID)
					elapsed, lat := runLoad(b, addr, mode == "keepalive", conc, n)
					g1, k1, p1 := cpuTime(os.Getpid()), cpuTime(backendPID), cpuTime(proxyPID)
					b.StopTimer()
					b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
					b.ReportMetric(float64(pct(lat, 0.50).Microseconds()), "p50-µs")
					b.ReportMetric(float64(pct(lat, 0.99).Microseconds()), "p99-µs")
					if backendPID != 0 {
						// CPU time per request of each process: unlike req/s, hardly
						// disturbed by other work on the machine.
						per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
						b.ReportMetric(per(g1-g0), "client-cpu-µs/req")
						b.ReportMetric(per(k1-k0), "backend-cpu-µs/req")
						if path == "proxy" {
							b.ReportMetric(per(p1-p0), "proxy-cpu-µs/req")
						}
					}
				})
			}
		}
	}
}

// BenchmarkHTTPPaced offers a fixed load below saturation (NETWARD_PROXY_BENCH_RATE
// requests/s, default 5000, from 100 keep-alive clients) directly and through the proxy:
// the latency the proxy adds when the machine is not saturated, which closed-loop runs at
// 100 clients cannot show (there latency is concurrency / throughput).
func BenchmarkHTTPPaced(b *testing.B) {
	rate := 5000.0
	if s := os.Getenv("NETWARD_PROXY_BENCH_RATE"); s != "" {
		rate, _ = strconv.ParseFloat(s, 64)
	}
	var backend, proxyAddr string
	if os.Getenv("NETWARD_PROXY_BENCH_INPROCESS") != "" {
		backend = benchBackend(b)
		proxyAddr, _ = benchProxy(b, backend)
	} else {
		backend, _ = benchChild(b, "backend")
		proxyAddr, _ = benchChild(b, "proxy", "NETWARD_PROXY_BENCH_BACKEND="+backend)
	}
	for _, path := range []string{"direct", "proxy"} {
		addr := backend
		if path == "proxy" {
			addr = proxyAddr
		}
		b.Run(fmt.Sprintf("rate=%.0f/clients=100/path=%s", rate, path), func(b *testing.B) {
			n := max(b.N, 100)
			runLoad(b, addr, true, 100, 1000) // warm up
			b.ResetTimer()
			elapsed, lat := runLoad(b, addr, true, 100, n, rate)
			b.StopTimer()
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(pct(lat, 0.50).Microseconds()), "p50-µs")
			b.ReportMetric(float64(pct(lat, 0.99).Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkParseRequestHead is the parser alone on a typical request.
func BenchmarkParseRequestHead(b *testing.B) {
	raw := []byte("GET /api/v1/items?page=2 HTTP/1.1\r\nHost: backend.shop.svc.cluster.local:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Request-Id: 5b1c1e0c-2f7e-4d8a-9f5a-0c4d7f0a9b1e\r\nAuthorization: Bearer abcdef\r\n\r\n")
	var h reqHead
	b.ReportAllocs()
	for b.Loop() {
		if pe := parseRequestHead(raw, &h); pe != nil {
			b.Fatal(pe)
		}
	}
}

const (
	memChildEnv = "NETWARD_PROXY_MEM_CHILD"
	memConnsEnv = "NETWARD_PROXY_MEM_CONNS"
)

func raiseNoFile(want uint64) uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	if r.Cur >= want {
		return r.Cur
	}
	n := r
	n.Cur = want
	if n.Max < want {
		n.Max = want // needs CAP_SYS_RESOURCE
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n) == nil {
		return want
	}
	n.Cur, n.Max = r.Max, r.Max
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n) == nil {
		return r.Max
	}
	return r.Cur
}

// TestIdleConnMemory measures the proxy's memory per idle connection, with the clients and
// the backend in a child process so that the heap measured is the proxy's alone:
//
//   - silent: N (default 10,000; NETWARD_PROXY_MEM_CONNS) client connections that have
//     not sent a request yet (ReadHeaderTimeout raised to keep them), N descriptors;
//   - keepalive: client connections idle after one request, each with its upstream
//     connection: 2 descriptors each, so as many as the descriptor limit allows (the limit
//     is raised when permitted; a 20,000 hard limit allows 9,968).
func TestIdleConnMemory(t *testing.T) {
	if os.Getenv(memChildEnv) != "" {
		memChild()
		return
	}
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	n := 10000
	if s := os.Getenv(memConnsEnv); s != "" {
		n, _ = strconv.Atoi(s)
	}
	limit := int(raiseNoFile(uint64(2*n + 64)))
	t.Run("silent", func(t *testing.T) { idleMemory(t, min(n, limit-64), false) })
	pairs := min(n, (limit-64)/2)
	if pairs < n {
		t.Logf("file descriptor limit %d: %d connection pairs instead of %d", limit, pairs, n)
	}
	t.Run("keepalive", func(t *testing.T) { idleMemory(t, pairs, true) })
}

func idleMemory(t *testing.T, n int, request bool) {
	mode := "silent"
	if request {
		mode = "request"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnMemory$", "-test.v")
	cmd.Env = append(os.Environ(), memChildEnv+"="+mode, memConnsEnv+"="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	readLine := func(prefix string) string {
		for {
			l, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("child: %v", err)
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimSpace(strings.TrimPrefix(l, prefix))
			}
		}
	}
	backend := readLine("BACKEND ")
	proxyAddr, p := benchProxy(t, backend, func(c *Config) { c.ReadHeaderTimeout = 5 * time.Minute })

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	fmt.Fprintf(stdin, "PROXY %s\n", proxyAddr)
	readLine("READY")
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Open < int64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.GC() // twice: buffers back in sync.Pools are freed by the second
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()
	st := p.Stats()
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	stack := int64(after.StackInuse) - int64(before.StackInuse)
	per := float64(heap+stack) / float64(n)
	t.Logf("MEMORY mode=%s conns=%d open=%d upstream=%d goroutines=+%d heap=+%.1fMiB stack=+%.1fMiB total=+%.1fMiB per-conn=%.1fKiB sys=%.1fMiB",
		mode, n, st.Open, st.UpstreamDials, g1-g0, float64(heap)/(1<<20), float64(stack)/(1<<20), float64(heap+stack)/(1<<20), per/1024, float64(after.Sys)/(1<<20))
	if st.Open != int64(n) || request && st.UpstreamDials < int64(n) {
		t.Fatalf("the proxy holds %d connections (%d dials), want %d", st.Open, st.UpstreamDials, n)
	}
	if per > 24<<10 {
		t.Fatalf("%.1f KiB per idle connection, want at most 24 KiB", per/1024)
	}
	fmt.Fprintln(stdin, "DONE")
	cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for p.Stats().Open > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if o := p.Stats().Open; o != 0 {
		t.Fatalf("%d connections still open after the clients left", o)
	}
}

// memChild is the child of TestIdleConnMemory: the backend and N clients.
func memChild() {
	n, _ := strconv.Atoi(os.Getenv(memConnsEnv))
	request := os.Getenv(memChildEnv) == "request"
	raiseNoFile(uint64(2*n + 64))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), ErrorLog: quietLog(), IdleTimeout: time.Hour}
	go srv.Serve(ln)
	fmt.Printf("BACKEND %s\n", ln.Addr())
	in := bufio.NewReader(os.Stdin)
	var proxyAddr string
	for proxyAddr == "" {
		l, err := in.ReadString('\n')
		if err != nil {
			os.Exit(1)
		}
		proxyAddr = strings.TrimSpace(strings.TrimPrefix(l, "PROXY "))
	}
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for try := 0; try < 5; try++ {
				c, err := net.Dial("tcp", proxyAddr)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				lc := &loadClient{addr: proxyAddr, keepAlive: true, c: c, br: bufio.NewReaderSize(c, 512)}
				if !request {
					conns[i] = c
					return
				}
				if err := lc.do(); err != nil {
					c.Close()
					time.Sleep(50 * time.Millisecond)
					continue
				}
				conns[i] = c
				return
			}
			fmt.Fprintf(os.Stderr, "child: connection %d failed\n", i)
		}()
	}
	wg.Wait()
	fmt.Println("READY")
	in.ReadString('\n')
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	os.Exit(0)
}
