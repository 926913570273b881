#!/usr/bin/env bash
# Runs the policy engine benchmarks (policy/bench_test.go) on one core and prints a Markdown
# table: per cluster size, the whole-cluster compile time, map entries, allocations, the cost
# of one lookup, and how many endpoint policies one policy change recompiles.
#
# Usage: scripts/bench.sh            (from anywhere; runs in the repository root)
# Environment: BENCH (go test -bench pattern, default "."), BENCHTIME (default 1s),
#              RAW (file to keep the raw go test output in).
# The raw benchmark output goes to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

bench="${BENCH:-.}"
benchtime="${BENCHTIME:-1s}"
raw="${RAW:-$(mktemp)}"
[ -n "${RAW:-}" ] || trap 'rm -f "$raw"' EXIT

cmd=(go test -run '^$' -bench "$bench" -benchtime "$benchtime" -benchmem -count 1 -cpu 1 -timeout 60m ./policy)
shown=""
for a in "${cmd[@]}"; do
	if [[ "$a" =~ ^[A-Za-z0-9_./=:,+-]+$ ]]; then shown+="$a "; else shown+="'$a' "; fi
done
shown="${shown% }"
echo "+ $shown" >&2
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
"${cmd[@]}" | tee "$raw" >&2

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "Command: \`$shown\`"
echo
echo "Machine: $(nproc 2>/dev/null || echo '?') CPUs, ${cpu_model:-unknown CPU}; $(go version | cut -d' ' -f3-4); load average before the run: $load"
echo

awk '
function dur(ns) {
	if (ns == "") return "–"
	if (ns >= 1e9) return sprintf("%.2f s", ns / 1e9)
	if (ns >= 1e6) return sprintf("%.1f ms", ns / 1e6)
	if (ns >= 1e3) return sprintf("%.1f µs", ns / 1e3)
	return sprintf("%.0f ns", ns)
}
function count(v,   s) {
	if (v == "") return "–"
	v = sprintf("%.0f", v)
	s = ""
	while (length(v) > 3) { s = "," substr(v, length(v) - 2) s; v = substr(v, 1, length(v) - 3) }
	return v s
}
function pair(wall, cpu) { return cpu == "" ? dur(wall) : dur(wall) " (" dur(cpu) ")" }
function num(v) { return v == "" ? "–" : sprintf("%.1f", v) }
/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)            # GOMAXPROCS suffix, absent with -cpu 1
	kind = name; sub(/\/.*/, "", kind); sub(/^Benchmark/, "", kind)
	size = name; sub(/^[^\/]*\//, "", size)
	if (!(size in seen)) { seen[size] = 1; order[++n] = size }
	for (i = 3; i < NF; i += 2) m[kind, size, $(i + 1)] = $i
}
END {
	print "| Cluster | Identities compiled | Whole-cluster compile, wall (CPU) | Map entries, all endpoints | Allocs per compile | Lookup, wall (CPU) | Recompiles per change | Time per change, wall (CPU) |"
	print "|---|--:|--:|--:|--:|--:|--:|--:|"
	for (i = 1; i <= n; i++) {
		s = order[i]
		label = s; gsub(/\//, ", ", label); gsub(/=/, " ", label)
		printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", label,
			count(m["CompileCluster", s, "compiles/op"]),
			pair(m["CompileCluster", s, "ns/op"], m["CompileCluster", s, "cpu-ns/op"]),
			count(m["CompileCluster", s, "entries/op"]), count(m["CompileCluster", s, "allocs/op"]),
			pair(m["Lookup", s, "ns/op"], m["Lookup", s, "cpu-ns/op"]),
			num(m["PolicyChange", s, "recompiles/op"]),
			pair(m["PolicyChange", s, "ns/op"], m["PolicyChange", s, "cpu-ns/op"])
	}
}' "$raw"
