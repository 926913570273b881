//go:build linux

package datapath

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/netward/netward/identity"
	"github.com/netward/netward/policy"
)

// Datapath benchmarks (root only; scripts/bench-datapath.sh runs them and prints a table,
// docs/datapath-performance.md has the method and results).
//
// BenchmarkPodToPod measures real TCP between two pod network namespaces routed by a node
// namespace (the topology of TestRealTraffic), with Go sockets created on a locked thread
// inside the pod namespaces:
//
//	no-programs   the veths without netward's programs (the baseline)
//	rules=10      programs attached; the server endpoint's ingress is enforced by a policy
//	              map of 10 entries, two of which allow the client's identity on the ports
//	rules=10000   the same with 10,000 entries: the client's two among entries for 1,000
//	              other identities (exact ports, port ranges, UDP, denies)
//
// The ipcache holds both pods, the gateway and 1,000 remote pod addresses (1,000
// identities) in every scenario, so the only difference between rules=10 and rules=10000
// is the size of the policy map. Nothing reads the verdict events: the ring buffer fills up
// and the programs' bpf_ringbuf_output calls fail fast. NETWARD_BENCH_EVENTS=1 runs a reader
// in this process, as the agent does in its own; then every new connection's event can wake
// the reader, which costs the programs several microseconds per connection while the
// reader is idle and makes the first few hundred thousand connections' cost drift (see
// docs/datapath-performance.md): it measures event reporting, not the rule count.
//
// Each scenario is measured NETWARD_BENCH_REPS times (default 4), the scenarios
// interleaved, forward in even rounds and backward in odd ones (ABBA), so that the
// neighbours' load on a shared machine, and any steady drift, hits them alike. Every
// measurement first checks that the scenario is what it claims (the allowed port connects;
// the unallowed one only without programs). Metrics, each the median over the rounds with
// -min and -max, and vs10-<metric>, the ratio of the scenario's mean over the rounds to
// rules=10's:
//
//	MB/s              one connection writing 64 KiB chunks for NETWARD_BENCH_DURATION
//	                  (default 2s); bytes counted by the receiver, accept to EOF
//	conns/s           a connect+close loop on one locked thread for the same duration
//	                  against an accept loop (the client closes first)
//	MB/cpu-s,         the same per second of this process's CPU time (user + system, all
//	conns/cpu-s       threads) instead of wall time: see benchCPU
//	policy-pkts/MB,   packets that went through the server's ingress policy lookup
//	policy-pkts/conn  (the forwarded-policy counter)
//	bpf-ns/MB,        run time of both programs on both veths per unit, from the kernel's
//	bpf-ns/conn       BPF statistics (BPF_ENABLE_STATS, on while the benchmark runs)
//	to_pod-ns/run     to_pod's average run time (both veths: the server's lookups and the
//	                  client's replies)
//	stalled-conns     connections that took over 500 ms (a lost SYN costs 1 s)
//
// All measuring happens in the parent benchmark; the sub-benchmarks only report, so b.N has
// no meaning here: run with -benchtime 1x.
//
// BenchmarkToPodProgram isolates the per-packet cost of the server's ingress decision: the
// to_pod program test-run (BPF_PROG_TEST_RUN) on a packet of an established flow, which
// does the ipcache lookup and both policy map lookups on every packet. "kernel-ns/pkt" is
// the kernel's timing: back to back (repeat b.N, the maps' paths stay in the caches) and,
// under cold/, single runs after writing through twice the last-level cache (median).

const (
	benchThroughputPort = 5201
	benchConnPort       = 5202
	benchDeniedPort     = 5203 // listened on, never allowed: proves enforcement is on

	benchClientID identity.ID = 1000
	benchServerID identity.ID = 1001
	benchEpClient             = 200
	benchEpServer             = 201

	benchRemoteBase       identity.ID = 20000
	benchRemoteIdentities             = 1000
)

func benchEnvDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return def
}

func benchEnvInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return def
}

// benchRemoteAddr is the address of the i-th remote pod (0 <= i < benchRemoteIdentities).
func benchRemoteAddr(i int) netip.Addr {
	n := i + 1
	return netip.AddrFrom4([4]byte{10, 210, byte(n >> 8), byte(n)})
}

// benchIPCache fills the ipcache: both pods, the gateway and 1,000 remote pods, each its
// own identity.
func benchIPCache(tb testing.TB, d *Datapath, client, server netip.Addr) {
	tb.Helper()
	put := func(a netip.Addr, id identity.ID) {
		if err := d.UpsertIPCache(netip.PrefixFrom(a, 32), id); err != nil {
			tb.Fatal(err)
		}
	}
	put(client, benchClientID)
	put(server, benchServerID)
	put(gatewayAddr, identity.Host)
	for i := range benchRemoteIdentities {
		put(benchRemoteAddr(i), benchRemoteBase+identity.ID(i))
	}
}

// benchPolicy is an ingress policy of n entries: the client's allows on the throughput and
// connection ports, then entries for the remote identities, round after round over all of
// them: exact TCP ports, 16-port TCP ranges, UDP ports and TCP denies.
func benchPolicy(tb testing.TB, n int) []policy.KeyEntry {
	tb.Helper()
	entries := []policy.KeyEntry{
		allow(tcpKey(benchClientID, false, benchThroughputPort)),
		allow(tcpKey(benchClientID, false, benchConnPort)),
	}
	for i := 0; len(entries) < n; i++ {
		id := benchRemoteBase + identity.ID(i%benchRemoteIdentities)
		round := i / benchRemoteIdentities
		var e policy.KeyEntry
		switch round % 4 {
		case 0:
			e = allow(tcpKey(id, false, uint16(8000+round)))
		case 1:
			// 16 ports: 12 port bits (PrefixLen 8 + 12), the low 4 bits zero.
			e = allow(policy.Key{Identity: id, Proto: policy.ProtoTCP, Port: uint16(9000 + 16*round), PrefixLen: 20})
		case 2:
			e = allow(policy.Key{Identity: id, Proto: policy.ProtoUDP, Port: uint16(5300 + round), PrefixLen: 24})
		case 3:
			e = deny(tcpKey(id, false, uint16(22+round)))
		}
		entries = append(entries, e)
	}
	if ms := policy.NewMapState(entries); ms.Len() != n {
		tb.Fatalf("benchPolicy(%d): %d distinct keys", n, ms.Len())
	}
	return entries
}

// newBenchTopology is newTopology with the client namespace tuned for a connect+close
// loop: a wide ephemeral port range and TIME_WAIT reuse.
func newBenchTopology(tb testing.TB) *topology {
	tb.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("SKIPPED: ip not installed (apt-get install iproute2)")
	}
	tp := newTopology(tb)
	nsSysctl(tb, tp.podA, "net.ipv4.ip_local_port_range=1024 65000")
	nsSysctl(tb, tp.podA, "net.ipv4.tcp_tw_reuse=1")
	return tp
}

// benchSinkResult is what the throughput sink saw of one connection.
type benchSinkResult struct {
	bytes   int64
	elapsed time.Duration // accept to EOF
	err     error
}

// benchServers listens in the server namespace: a sink on the throughput port (each
// connection is read to EOF and reported on the returned channel) and accept loops on the
// connection and denied ports that close each connection after the client closed it.
func benchServers(tb testing.TB, tp *topology) <-chan benchSinkResult {
	tb.Helper()
	listen := func(port int) net.Listener {
		var ln net.Listener
		err := inNetns(tp.nsPath(tp.podB), func() error {
			var err error
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(tp.addrB, uint16(port)).String())
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { ln.Close() })
		return ln
	}
	results := make(chan benchSinkResult, 16)
	sink := listen(benchThroughputPort)
	go func() {
		buf := make([]byte, 256<<10)
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			start := time.Now()
			var n int64
			for {
				m, err := c.Read(buf)
				n += int64(m)
				if err != nil {
					if err == io.EOF {
						err = nil
					}
					results <- benchSinkResult{bytes: n, elapsed: time.Since(start), err: err}
					break
				}
			}
			c.Close()
		}
	}()
	for _, port := range []int{benchConnPort, benchDeniedPort} {
		ln := listen(port)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				// Close after the client's FIN, so that the client, not the server, holds
				// the TIME_WAIT state: a server-side TIME_WAIT meeting a SYN of a reused
				// client port can cost that connection a 1 s SYN retransmission.
				go func() {
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					c.Read(make([]byte, 1))
					c.Close()
				}()
			}
		}()
	}
	return results
}

// benchCPU is the CPU time this process used so far (user + system, all threads). The
// kernel's forwarding between the namespaces mostly runs as softirq work in the context of
// the sending and receiving threads, which this kernel (no IRQ_TIME_ACCOUNTING) bills to
// them, so it includes the datapath's programs; work deferred to ksoftirqd is missing.
func benchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchResult is one measurement: n units (MB or connections), the rate per second of
// wall time and per second of this process's CPU time, and how many packets the server's
// ingress policy evaluated meanwhile (the metrics' forwarded-policy count).
type benchResult struct {
	n, wall, cpu float64
	policyPkts   uint64
	stalls       int // connections that took over 500 ms (a lost SYN or SYN-ACK costs 1 s)
	// bpf is the run time of both programs on both veths meanwhile, toPodRuns and toPod
	// the runs and run time of to_pod (kernel BPF statistics; zero without them).
	bpf, toPod time.Duration
	toPodRuns  uint64
}

// benchProgStats reads the programs' statistics (run time, runs).
func benchProgStats(tb testing.TB, d *Datapath) (fromPod, toPod *ebpf.ProgramStats) {
	tb.Helper()
	f, err := d.objs.FromPod.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	t, err := d.objs.ToPod.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	return f, t
}

// benchThroughput sends 64 KiB writes on one connection for dur and returns the receiver's
// MB/s (10^6 bytes per second) and MB per CPU second.
func benchThroughput(tp *topology, results <-chan benchSinkResult, dur time.Duration) (benchResult, error) {
	cpu0 := benchCPU()
	var c net.Conn
	err := inNetns(tp.nsPath(tp.podA), func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(tp.addrB, uint16(benchThroughputPort)).String(), 2*time.Second)
		return err
	})
	if err != nil {
		return benchResult{}, err
	}
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return benchResult{}, err
		}
	}
	c.(*net.TCPConn).CloseWrite()
	defer c.Close()
	select {
	case r := <-results:
		if r.err != nil {
			return benchResult{}, r.err
		}
		mb := float64(r.bytes) / 1e6
		return benchResult{n: mb, wall: mb / r.elapsed.Seconds(), cpu: mb / (benchCPU() - cpu0).Seconds()}, nil
	case <-time.After(10 * time.Second):
		return benchResult{}, fmt.Errorf("the receiver did not see EOF")
	}
}

// benchConnRate connects and closes in a loop for dur, on one thread locked in the client
// namespace, and returns connections per second of wall time and of CPU time, and how many
// connections stalled.
func benchConnRate(tp *topology, dur time.Duration) (benchResult, error) {
	var n, stalls int
	var elapsed, cpu time.Duration
	addr := netip.AddrPortFrom(tp.addrB, uint16(benchConnPort)).String()
	err := inNetns(tp.nsPath(tp.podA), func() error {
		cpu0 := benchCPU()
		start := time.Now()
		deadline := start.Add(dur)
		for time.Now().Before(deadline) {
			t0 := time.Now()
			c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d: %w", n, err)
			}
			c.Close()
			if time.Since(t0) > 500*time.Millisecond {
				stalls++
			}
			n++
		}
		elapsed, cpu = time.Since(start), benchCPU()-cpu0
		return nil
	})
	if err != nil {
		return benchResult{}, err
	}
	return benchResult{n: float64(n), wall: float64(n) / elapsed.Seconds(), cpu: float64(n) / cpu.Seconds(), stalls: stalls}, nil
}

// benchReachable reports whether a connection to port of the server opens within timeout.
func benchReachable(tp *topology, port int, timeout time.Duration) bool {
	var c net.Conn
	err := inNetns(tp.nsPath(tp.podA), func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(tp.addrB, uint16(port)).String(), timeout)
		return err
	})
	if err == nil {
		c.Close()
	}
	return err == nil
}

type benchStats struct{ median, min, max float64 }

func benchSummary(xs []float64) benchStats {
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return benchStats{median: m, min: s[0], max: s[len(s)-1]}
}

// BenchmarkPodToPod measures TCP between two pods without programs, with 10 and with
// 10,000 rules (see the top of this file).
func BenchmarkPodToPod(b *testing.B) {
	requireBPF(b)
	dur := benchEnvDuration("NETWARD_BENCH_DURATION", 2*time.Second)
	reps := benchEnvInt("NETWARD_BENCH_REPS", 4)

	tp := newBenchTopology(b)
	d := newTestDatapath(b)
	benchIPCache(b, d, tp.addrA, tp.addrB)
	if err := d.SetEndpoint(tp.ifindexA, Endpoint{ID: benchEpClient, Identity: benchClientID}); err != nil {
		b.Fatal(err)
	}
	if err := d.SetEndpoint(tp.ifindexB, Endpoint{ID: benchEpServer, Identity: benchServerID, Flags: FlagIngressEnforced}); err != nil {
		b.Fatal(err)
	}
	if os.Getenv("NETWARD_BENCH_EVENTS") == "1" {
		ctx, cancel := context.WithCancel(context.Background())
		readerDone := make(chan error, 1)
		go func() { readerDone <- d.ReadEvents(ctx, func(Event) {}) }()
		b.Cleanup(func() {
			cancel()
			<-readerDone
		})
		b.Log("a verdict event reader drains the ring buffer (NETWARD_BENCH_EVENTS=1)")
	} else {
		b.Log("no verdict event reader: the ring buffer fills up and stays full (NETWARD_BENCH_EVENTS=1 adds one)")
	}
	results := benchServers(b, tp)
	// The kernel's BPF run-time statistics (the programs' run time and run count, measured
	// where they run: the cost of the lookups with the caches as the traffic leaves them).
	// They are on while stats is open, for every program on the machine.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Logf("no BPF run-time statistics (%v): the programs' time is not reported", err)
		stats = nil
	} else {
		b.Cleanup(func() { stats.Close() })
	}

	type scenario struct {
		name  string
		rules int // 0: no programs attached
		pol   []policy.KeyEntry
		thr   []benchResult // per round
		cps   []benchResult
	}
	scenarios := []*scenario{{name: "no-programs"}, {name: "rules=10", rules: 10}, {name: "rules=10000", rules: 10000}}
	for _, s := range scenarios {
		if s.rules > 0 {
			s.pol = benchPolicy(b, s.rules)
		}
	}
	var detach []func() error
	apply := func(s *scenario) {
		if s.rules == 0 {
			for _, det := range detach {
				if err := det(); err != nil {
					b.Fatal(err)
				}
			}
			detach = nil
			return
		}
		if _, err := d.SetPolicy(benchEpServer, s.pol, nil); err != nil {
			b.Fatal(err)
		}
		if vals, ok, err := d.PolicyEntries(benchEpServer); err != nil || !ok || len(vals) != s.rules {
			b.Fatalf("%s: the kernel's policy map has %d entries (%v, %v)", s.name, len(vals), ok, err)
		}
		if detach == nil {
			for _, ifname := range []string{tp.hostA, tp.hostB} {
				det, err := d.Attach(tp.nsPath(tp.node), ifname)
				if err != nil {
					b.Fatal(err)
				}
				detach = append(detach, det)
			}
		}
	}
	b.Cleanup(func() {
		for _, det := range detach {
			det()
		}
	})

	b.Logf("%d rounds of %v per measurement; the scenarios interleaved", reps, dur)
	for r := range reps {
		for k := range scenarios {
			// Forward in even rounds, backward in odd ones: over each pair of rounds every
			// scenario's mean time is the same, so a steady drift (the neighbours' load, the
			// caches) cancels out of the ratios of means.
			i := k
			if r%2 == 1 {
				i = len(scenarios) - 1 - k
			}
			s := scenarios[i]
			apply(s)
			// The scenario is what it claims: allowed ports open, the denied one only
			// without programs.
			if !benchReachable(tp, benchConnPort, time.Second) {
				b.Fatalf("%s: the allowed port does not connect", s.name)
			}
			if open := benchReachable(tp, benchDeniedPort, 150*time.Millisecond); open != (s.rules == 0) {
				b.Fatalf("%s: the unallowed port connects: %v (want %v)", s.name, open, s.rules == 0)
			}
			m0 := mustMetrics(b, d)
			f0, t0 := benchProgStats(b, d)
			thr, err := benchThroughput(tp, results, dur)
			if err != nil {
				b.Fatalf("%s: throughput: %v", s.name, err)
			}
			m1 := mustMetrics(b, d)
			f1, t1 := benchProgStats(b, d)
			cps, err := benchConnRate(tp, dur)
			if err != nil {
				b.Fatalf("%s: connection rate: %v", s.name, err)
			}
			m2 := mustMetrics(b, d)
			f2, t2 := benchProgStats(b, d)
			thr.toPod, thr.toPodRuns = t1.Runtime-t0.Runtime, t1.RunCount-t0.RunCount
			thr.bpf = thr.toPod + f1.Runtime - f0.Runtime
			cps.toPod, cps.toPodRuns = t2.Runtime-t1.Runtime, t2.RunCount-t1.RunCount
			cps.bpf = cps.toPod + f2.Runtime - f1.Runtime
			thr.policyPkts = metricsDelta(m0, m1)["forwarded-policy"]
			cps.policyPkts = metricsDelta(m1, m2)["forwarded-policy"]
			for reason, n := range metricsDelta(m0, m2) {
				if strings.HasPrefix(reason, "dropped") {
					b.Logf("round %d %s: the datapath dropped %d packets (%s)", r, s.name, n, reason)
				}
			}
			s.thr = append(s.thr, thr)
			s.cps = append(s.cps, cps)
			b.Logf("round %d %-12s %6.0f MB/s %6.0f MB/cpu-s %6.0f conns/s %6.0f conns/cpu-s; policy-evaluated packets %.1f/MB %.2f/conn; programs %.0f ns/MB %.0f ns/conn, to_pod %.0f ns/run",
				r, s.name, thr.wall, thr.cpu, cps.wall, cps.cpu, float64(thr.policyPkts)/thr.n, float64(cps.policyPkts)/cps.n,
				float64(thr.bpf)/thr.n, float64(cps.bpf)/cps.n, float64(thr.toPod+cps.toPod)/float64(max(1, thr.toPodRuns+cps.toPodRuns)))
			if cps.stalls > 0 {
				b.Logf("round %d %s: %d of %d connections took over 500 ms", r, s.name, cps.stalls, int(cps.n))
			}
			if (s.rules > 0) != (thr.policyPkts > 0 && cps.policyPkts > 0) {
				b.Fatalf("%s: %d and %d packets went through a policy lookup", s.name, thr.policyPkts, cps.policyPkts)
			}
		}
	}

	// Medians over the rounds, and the ratio of the mean over the rounds to rules=10's.
	type metric struct {
		unit string
		of   func(thr, cps benchResult) float64
		bpf  bool // from the BPF statistics: only with programs attached
	}
	metrics := []metric{
		{"MB/s", func(thr, _ benchResult) float64 { return thr.wall }, false},
		{"conns/s", func(_, cps benchResult) float64 { return cps.wall }, false},
		{"MB/cpu-s", func(thr, _ benchResult) float64 { return thr.cpu }, false},
		{"conns/cpu-s", func(_, cps benchResult) float64 { return cps.cpu }, false},
		{"policy-pkts/MB", func(thr, _ benchResult) float64 { return float64(thr.policyPkts) / thr.n }, false},
		{"policy-pkts/conn", func(_, cps benchResult) float64 { return float64(cps.policyPkts) / cps.n }, false},
		{"bpf-ns/MB", func(thr, _ benchResult) float64 { return float64(thr.bpf) / thr.n }, true},
		{"bpf-ns/conn", func(_, cps benchResult) float64 { return float64(cps.bpf) / cps.n }, true},
		{"to_pod-ns/run", func(thr, cps benchResult) float64 {
			return float64(thr.toPod+cps.toPod) / float64(max(1, thr.toPodRuns+cps.toPodRuns))
		}, true},
	}
	ref := scenarios[1]
	for _, s := range scenarios {
		b.Run(s.name, func(b *testing.B) {
			b.ReportMetric(0, "ns/op") // b.N means nothing here: the parent measured
			for _, m := range metrics {
				if m.bpf && (stats == nil || s.rules == 0) {
					continue
				}
				vals := make([]float64, reps)
				var sum, refSum float64
				for r := range reps {
					vals[r] = m.of(s.thr[r], s.cps[r])
					sum += vals[r]
					refSum += m.of(ref.thr[r], ref.cps[r])
				}
				st := benchSummary(vals)
				b.ReportMetric(st.median, m.unit)
				b.ReportMetric(st.min, m.unit+"-min")
				b.ReportMetric(st.max, m.unit+"-max")
				b.ReportMetric(sum/refSum, "vs10-"+m.unit)
			}
			stalls := 0
			for _, r := range s.cps {
				stalls += r.stalls
			}
			b.ReportMetric(float64(stalls), "stalled-conns")
		})
	}
}

// BenchmarkToPodProgram measures to_pod per packet with BPF_PROG_TEST_RUN (see the top of
// this file).
func BenchmarkToPodProgram(b *testing.B) {
	d := newTestDatapath(b)
	client, server := netip.MustParseAddr("10.200.0.10"), netip.MustParseAddr("10.200.0.11")
	benchIPCache(b, d, client, server)
	p := pkt{src: client, dst: server, proto: policy.ProtoTCP, sport: 40000, dport: benchThroughputPort}
	frame := p.frame()
	// flush is written through between cold runs: twice this machine's last-level cache
	// (32 MiB here), at least 64 MiB.
	flush := make([]byte, max(64<<20, 2*benchLLCSize()))
	for _, cold := range []bool{false, true} {
		for _, sc := range []struct {
			name  string
			rules int // 0: ingress not enforced (no policy lookup)
		}{{"unenforced", 0}, {"rules=10", 10}, {"rules=10000", 10000}} {
			name := sc.name
			if cold {
				name = "cold/" + name
			}
			b.Run(name, func(b *testing.B) {
				flags := FlagIngressEnforced
				if sc.rules == 0 {
					flags = 0
				} else if _, err := d.SetPolicy(benchEpServer, benchPolicy(b, sc.rules), nil); err != nil {
					b.Fatal(err)
				}
				if err := d.SetEndpoint(testIfindex, Endpoint{ID: benchEpServer, Identity: benchServerID, Flags: flags}); err != nil {
					b.Fatal(err)
				}
				// The first packet creates the conntrack entry; the measured ones are the
				// flow's later packets, each looked up in the ipcache and the policy map.
				want := "forwarded-policy"
				if sc.rules == 0 {
					want = "forwarded-unenforced"
				}
				before := mustMetrics(b, d)
				if ret, err := d.objs.ToPod.Run(&ebpf.RunOptions{Data: frame}); err != nil || ret != tcActOK {
					b.Fatalf("first packet: ret %d, %v", ret, err)
				}
				if got := metricsDelta(before, mustMetrics(b, d)); got[want] != 1 {
					b.Fatalf("first packet counted as %v, want %s", got, want)
				}
				if !cold {
					// Back to back: the maps' paths stay in the caches.
					b.ResetTimer()
					ret, per, err := d.objs.ToPod.Benchmark(frame, b.N, nil)
					b.StopTimer()
					if err != nil || ret != tcActOK {
						b.Fatalf("ret %d, %v", ret, err)
					}
					b.ReportMetric(float64(per.Nanoseconds()), "kernel-ns/pkt")
					return
				}
				// One packet after the caches were flushed, as for a packet that arrives
				// after the CPU did other work: the median of the kernel's own timing of
				// single runs (ns/op is mostly the flush and means nothing).
				samples := make([]float64, 0, b.N)
				for range b.N {
					for i := 0; i < len(flush); i += 64 {
						flush[i]++
					}
					ret, per, err := d.objs.ToPod.Benchmark(frame, 1, nil)
					if err != nil || ret != tcActOK {
						b.Fatalf("ret %d, %v", ret, err)
					}
					samples = append(samples, float64(per.Nanoseconds()))
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(benchSummary(samples).median, "kernel-ns/pkt")
			})
		}
	}
}

// benchLLCSize is the size of the largest CPU cache of cpu0 in bytes (0 if unknown).
func benchLLCSize() int {
	var size int
	for i := range 8 {
		b, err := os.ReadFile(fmt.Sprintf("/sys/devices/system/cpu/cpu0/cache/index%d/size", i))
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		mult := 1
		switch {
		case strings.HasSuffix(v, "K"):
			mult, v = 1<<10, strings.TrimSuffix(v, "K")
		case strings.HasSuffix(v, "M"):
			mult, v = 1<<20, strings.TrimSuffix(v, "M")
		}
		if n, err := strconv.Atoi(v); err == nil && n*mult > size {
			size = n * mult
		}
	}
	return size
}
