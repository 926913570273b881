#!/usr/bin/env bash
# Benchmarks the L7 proxy (l7/proxy/bench_test.go) and prints Markdown tables:
#   1. requests/s and p50/p99 latency, directly to a net/http backend and through the
#      proxy, keep-alive and a new connection per request, 1 and 100 concurrent clients
#      (the median of COUNT runs per row);
#   2. p50/p99 latency at a fixed load below saturation (RATE requests/s from 100 keep-alive
#      clients), directly and through the proxy: the latency the proxy adds;
#   3. the proxy's memory with 10,000 idle connections (TestIdleConnMemory).
#
# Usage: scripts/bench-proxy.sh            (from anywhere; runs in the repository root)
# Environment: BENCHTIME  requests per benchmark run (default 20000x)
#              COUNT      runs per row, the median is shown (default 3)
#              INPROCESS  1: load generator, proxy and backend in one process (default:
#                         three processes, as client pod, proxy and server pod are)
#              RATE       requests/s of the fixed-load run (default 5000)
#              CONNS      connections for the memory test (default 10000)
#              RAW        file to keep the raw go test output in
# The raw output goes to stderr, the tables to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

benchtime="${BENCHTIME:-20000x}"
count="${COUNT:-3}"
raw="${RAW:-$(mktemp)}"
[ -n "${RAW:-}" ] || trap 'rm -f "$raw"' EXIT
if [ "${INPROCESS:-}" = 1 ]; then export NETWARD_PROXY_BENCH_INPROCESS=1; fi

bin=$(mktemp)
trap 'rm -f "$bin"; [ -n "${RAW:-}" ] || rm -f "$raw"' EXIT
go test -c -o "$bin" ./l7/proxy

setup="three processes (load generator, proxy, net/http backend)"
[ "${INPROCESS:-}" = 1 ] && setup="one process (load generator, proxy and net/http backend share it)"
echo "+ go test -bench BenchmarkHTTP -benchtime $benchtime -count $count ./l7/proxy   [$setup]" >&2
(cd l7/proxy && "$bin" -test.run '^$' -test.bench '^BenchmarkHTTP$' -test.benchtime "$benchtime" -test.count "$count" -test.timeout 60m) | tee "$raw" >&2

echo
echo "HTTP/1.1 GET, 23-byte response, loopback; $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); $setup; median of $count runs of $benchtime."
echo
awk '
/^BenchmarkHTTP\// {
	split($1, p, "/"); conn = substr(p[2], 6); clients = substr(p[3], 9); path = p[4]
	sub(/^path=/, "", path); sub(/-[0-9]+$/, "", path)
	key = conn SUBSEP clients SUBSEP path
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "req/s") rps[key, ++n_rps[key]] = $i
		if ($(i+1) == "p50-µs") p50[key, ++n_p50[key]] = $i
		if ($(i+1) == "p99-µs") p99[key, ++n_p99[key]] = $i
		if ($(i+1) == "client-cpu-µs/req") ccpu[key, ++n_ccpu[key]] = $i
		if ($(i+1) == "backend-cpu-µs/req") bcpu[key, ++n_bcpu[key]] = $i
		if ($(i+1) == "proxy-cpu-µs/req") pcpu[key, ++n_pcpu[key]] = $i
	}
	if (!(conn SUBSEP clients in seen)) { seen[conn SUBSEP clients] = 1; order[++rows] = conn SUBSEP clients }
}
function median(arr, key, n,    i, j, t, v) {
	for (i = 1; i <= n; i++) v[i] = arr[key, i] + 0
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
END {
	print "| connection | clients | direct req/s | proxy req/s | proxy/direct | direct p50 | proxy p50 | direct p99 | proxy p99 | added p99 |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (r = 1; r <= rows; r++) {
		split(order[r], k, SUBSEP); d = k[1] SUBSEP k[2] SUBSEP "direct"; x = k[1] SUBSEP k[2] SUBSEP "proxy"
		dr = median(rps, d, n_rps[d]); xr = median(rps, x, n_rps[x])
		d50 = median(p50, d, n_p50[d]); x50 = median(p50, x, n_p50[x])
		d99 = median(p99, d, n_p99[d]); x99 = median(p99, x, n_p99[x])
		printf "| %s | %d | %.0f | %.0f | %.0f%% | %.0f µs | %.0f µs | %.0f µs | %.0f µs | %+.0f µs |\n", \
			(k[1] == "keepalive" ? "keep-alive" : "new per request"), k[2], dr, xr, 100 * xr / dr, d50, x50, d99, x99, x99 - d99
	}
	if (!n_pcpu[order[1] SUBSEP "proxy"]) exit
	print ""
	print "CPU time per request (all threads, from /proc/PID/task/*/schedstat; with one client it includes the Go scheduler spinning while it waits):"
	print ""
	print "| connection | clients | direct: client + backend | through the proxy: client + backend + proxy | direct / proxied |"
	print "|---|---:|---:|---:|---:|"
	for (r = 1; r <= rows; r++) {
		split(order[r], k, SUBSEP); d = k[1] SUBSEP k[2] SUBSEP "direct"; x = k[1] SUBSEP k[2] SUBSEP "proxy"
		dc = median(ccpu, d, n_ccpu[d]); db = median(bcpu, d, n_bcpu[d])
		xc = median(ccpu, x, n_ccpu[x]); xb = median(bcpu, x, n_bcpu[x]); xp = median(pcpu, x, n_pcpu[x])
		printf "| %s | %d | %.1f + %.1f = %.1f µs | %.1f + %.1f + %.1f = %.1f µs | %.0f%% |\n", \
			(k[1] == "keepalive" ? "keep-alive" : "new per request"), k[2], dc, db, dc + db, xc, xb, xp, xc + xb + xp, 100 * (dc + db) / (xc + xb + xp)
	}
}' "$raw"

echo
echo "+ go test -bench BenchmarkHTTPPaced -benchtime $benchtime -count $count ./l7/proxy   [${RATE:-5000} req/s]" >&2
(cd l7/proxy && NETWARD_PROXY_BENCH_RATE="${RATE:-5000}" "$bin" -test.run '^$' -test.bench '^BenchmarkHTTPPaced$' -test.benchtime "$benchtime" -test.count "$count" -test.timeout 60m) | tee -a "$raw" >&2
echo
echo "Fixed load: ${RATE:-5000} requests/s from 100 keep-alive clients (below saturation); median of $count runs."
echo
awk '
/^BenchmarkHTTPPaced\// {
	path = $1; sub(/.*path=/, "", path); sub(/-[0-9]+$/, "", path)
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "p50-µs") p50[path, ++n50[path]] = $i
		if ($(i+1) == "p99-µs") p99[path, ++n99[path]] = $i
	}
}
function median(arr, key, n,    i, j, t, v) {
	for (i = 1; i <= n; i++) v[i] = arr[key, i] + 0
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
END {
	print "| | direct | proxy | added |"
	print "|---|---:|---:|---:|"
	d = median(p50, "direct", n50["direct"]); x = median(p50, "proxy", n50["proxy"])
	printf "| p50 | %.0f µs | %.0f µs | %+.0f µs |\n", d, x, x - d
	d = median(p99, "direct", n99["direct"]); x = median(p99, "proxy", n99["proxy"])
	printf "| p99 | %.0f µs | %.0f µs | %+.0f µs |\n", d, x, x - d
}' "$raw"

echo
echo "+ go test -run TestIdleConnMemory ./l7/proxy   [${CONNS:-10000} connections]" >&2
(cd l7/proxy && NETWARD_PROXY_MEM_CONNS="${CONNS:-10000}" "$bin" -test.run '^TestIdleConnMemory$' -test.v -test.timeout 10m) | tee -a "$raw" >&2
echo
echo "| idle connections | proxy holds | goroutines | heap | stacks | total | per connection |"
echo "|---|---:|---:|---:|---:|---:|---:|"
grep -o 'MEMORY .*' "$raw" | awk '{
	for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	what = (v["mode"] == "silent") ? "before a first request" : "kept alive after a request"
	holds = (v["mode"] == "silent") ? v["conns"] " client" : v["conns"] " client + " v["upstream"] " upstream"
	printf "| %s | %s | %s | %s | %s | %s | %s |\n", what, holds, v["goroutines"], v["heap"], v["stack"], v["total"], v["per-conn"]
}'
