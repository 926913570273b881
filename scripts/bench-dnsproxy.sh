#!/usr/bin/env bash
# Benchmarks the DNS proxy (l7/dnsproxy/bench_test.go, BenchmarkDNS) and prints a Markdown
# table: lookups/s and p50/p99 latency directly to a DNS server and through the proxy (each
# name judged against a matchPattern), over UDP and TCP, with 1 and 50 concurrent clients,
# in one process on loopback (the median of COUNT runs per row).
#
# Usage: scripts/bench-dnsproxy.sh      (from anywhere; runs in the repository root)
# Environment: BENCHTIME  lookups per run (default 20000x)
#              COUNT      runs per row, the median is shown (default 3)
# The raw go test output goes to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
benchtime="${BENCHTIME:-20000x}"
count="${COUNT:-3}"
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
echo "+ go test -run '^\$' -bench BenchmarkDNS -benchtime $benchtime -count $count ./l7/dnsproxy" >&2
go test -run '^$' -bench '^BenchmarkDNS$' -benchtime "$benchtime" -count "$count" ./l7/dnsproxy | tee "$raw" >&2

echo
echo "DNS A lookups, loopback; $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); median of $count runs of $benchtime."
echo
awk '
/^BenchmarkDNS\// {
	split($1, p, "/"); tr = substr(p[2], 11); cl = substr(p[3], 9); path = p[4]
	sub(/^path=/, "", path); sub(/-[0-9]+$/, "", path)
	key = tr SUBSEP cl SUBSEP path
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "lookups/s") rate[key, ++nr[key]] = $i
		if ($(i+1) == "p50-µs") p50[key, ++n50[key]] = $i
		if ($(i+1) == "p99-µs") p99[key, ++n99[key]] = $i
	}
	if (!(tr SUBSEP cl in seen)) { seen[tr SUBSEP cl] = 1; order[++rows] = tr SUBSEP cl }
}
function median(arr, key, n,    i, j, t, v) {
	for (i = 1; i <= n; i++) v[i] = arr[key, i] + 0
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
END {
	print "| transport | clients | direct lookups/s | proxy lookups/s | proxy/direct | direct p50 | proxy p50 | direct p99 | proxy p99 | added p99 |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (r = 1; r <= rows; r++) {
		split(order[r], k, SUBSEP); d = k[1] SUBSEP k[2] SUBSEP "direct"; x = k[1] SUBSEP k[2] SUBSEP "proxy"
		dr = median(rate, d, nr[d]); xr = median(rate, x, nr[x])
		d50 = median(p50, d, n50[d]); x50 = median(p50, x, n50[x]); d99 = median(p99, d, n99[d]); x99 = median(p99, x, n99[x])
		printf "| %s | %s | %.0f | %.0f | %.0f%% | %d µs | %d µs | %d µs | %d µs | +%d µs |\n", toupper(k[1]), k[2], dr, xr, 100 * xr / dr, d50, x50, d99, x99, x99 - d99
	}
}' "$raw"
