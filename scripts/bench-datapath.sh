#!/usr/bin/env bash
# Datapath benchmarks: TCP throughput and connection rate between two pods (network
# namespaces behind a node namespace, on this host) without netward's programs, with a
# 10-entry and with a 10,000-entry ingress policy map (datapath/bench_test.go); the per-packet
# cost of the to_pod program (BPF_PROG_TEST_RUN); and the time from a policy file change to
# the datapath enforcing it with 1,000 remote pods' identities (agent/bench_latency_test.go).
# Prints Markdown tables. docs/datapath-performance.md explains the method and the numbers.
#
# Needs root (loads eBPF programs, creates network namespaces), iproute2, and a kernel with
# BPF and BTF. Run from anywhere (it changes to the repository root):
#
#   sudo scripts/bench-datapath.sh
#
# Environment: DURATION (per TCP measurement, default 2s), REPS (rounds per scenario,
# default 4; even, so that the forward-backward order balances), ROUNDS (policy changes,
# default 30), PODS (remote pods, default 1000), EVENTS=1 (a verdict event reader drains
# the ring buffer during the pod-to-pod runs; default none), RAW (a directory to keep the
# raw go test output in). Raw output goes to stderr, the tables to stdout. Takes about two minutes
# (mostly the 4 x 3 x 2 TCP measurements). While the pod-to-pod benchmark runs, the
# kernel's BPF run-time statistics are on for every BPF program on the machine
# (BPF_ENABLE_STATS; off again when the benchmark exits).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

if [ "$(id -u)" -ne 0 ]; then
	echo "bench-datapath: needs root (it loads eBPF programs and creates network namespaces); run: sudo $0" >&2
	exit 2
fi
command -v ip >/dev/null || { echo "bench-datapath: needs ip (apt-get install iproute2)" >&2; exit 2; }
command -v go >/dev/null || { echo "bench-datapath: needs go in PATH" >&2; exit 2; }

export NETWARD_BENCH_DURATION="${DURATION:-2s}"
export NETWARD_BENCH_REPS="${REPS:-4}"
export NETWARD_LATENCY_ROUNDS="${ROUNDS:-30}"
export NETWARD_LATENCY_PODS="${PODS:-1000}"
export NETWARD_BENCH_EVENTS="${EVENTS:-0}"
raw="${RAW:-$(mktemp -d)}"
mkdir -p "$raw"
[ -n "${RAW:-}" ] || trap 'rm -rf "$raw"' EXIT

run() { # run OUTFILE CMD...: show the command, tee its output to stderr, fail loudly
	local out=$1
	shift
	echo "+ $*" >&2
	if ! "$@" 2>&1 | tee "$out" >&2; then
		echo "bench-datapath: '$*' failed (output above)" >&2
		exit 1
	fi
	if grep -q -- '--- SKIP\|SKIPPED' "$out"; then
		echo "bench-datapath: a benchmark was skipped (output above)" >&2
		exit 1
	fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run "$raw/program.txt" go test -run '^$' -bench '^BenchmarkToPodProgram$' -benchtime 500ms -count 5 ./datapath
run "$raw/pods.txt" go test -run '^$' -bench '^BenchmarkPodToPod$' -benchtime 1x -count 1 -v -timeout 20m ./datapath
run "$raw/latency.txt" go test -run '^TestPolicyChangeLatencyAtScale$' -count 1 -v -timeout 20m ./agent
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# metrics FILE BENCHMARK: "scenario unit value" for every metric of BENCHMARK/<scenario>.
metrics() {
	awk -v bench="$2" '
		index($1, bench "/") == 1 {
			name = substr($1, length(bench) + 2)
			sub(/-[0-9]+$/, "", name)
			for (i = 3; i < NF; i += 2) print name, $(i + 1), $i
		}' "$1"
}
metrics "$raw/program.txt" BenchmarkToPodProgram >"$raw/program.metrics"
metrics "$raw/pods.txt" BenchmarkPodToPod >"$raw/pods.metrics"

# get FILE SCENARIO UNIT: the median of the values (one per -count run).
get() {
	awk -v s="$2" -v u="$3" '$1 == s && $2 == u { print $3 }' "$1" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "?"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() { # fmt DECIMALS VALUE
	[ "$2" = "?" ] && { echo "?"; return; }
	printf "%.*f" "$1" "$2"
}
p="$raw/pods.metrics"
g="$raw/program.metrics"

echo "### Pod to pod over veth, through a node namespace"
echo
events="nothing reads the verdict events (EVENTS=1 adds a reader)"
[ "$NETWARD_BENCH_EVENTS" = 1 ] && events="a reader drains the verdict events"
echo "Medians of $NETWARD_BENCH_REPS rounds of $NETWARD_BENCH_DURATION per measurement, min–max in parentheses; the scenarios interleaved, forward and backward in alternate rounds; $events. Ratios: the scenario's mean over the rounds divided by rules=10's."
echo
echo "| scenario | throughput MB/s | conn/s | ratio vs 10 rules (MB/s, conn/s) |"
echo "|---|--:|--:|--:|"
for s in no-programs rules=10 rules=10000; do
	printf "| %s | %s (%s–%s) | %s (%s–%s) | %s, %s |\n" "$s" \
		"$(fmt 0 "$(get "$p" "$s" MB/s)")" "$(fmt 0 "$(get "$p" "$s" MB/s-min)")" "$(fmt 0 "$(get "$p" "$s" MB/s-max)")" \
		"$(fmt 0 "$(get "$p" "$s" conns/s)")" "$(fmt 0 "$(get "$p" "$s" conns/s-min)")" "$(fmt 0 "$(get "$p" "$s" conns/s-max)")" \
		"$(fmt 3 "$(get "$p" "$s" vs10-MB/s)")" "$(fmt 3 "$(get "$p" "$s" vs10-conns/s)")"
done
echo
echo "Cost instead of speed: per second of the benchmark process's CPU time, and the run time of netward's programs (kernel BPF statistics) per MB and per connection."
echo
echo "| scenario | MB per CPU-s | conns per CPU-s | ratio vs 10 rules (MB, conns per CPU-s) | programs µs per MB | programs µs per conn | ratio vs 10 rules (per MB, per conn) | to_pod ns per run |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|"
for s in no-programs rules=10 rules=10000; do
	if [ "$s" = no-programs ]; then
		bpf="– | – | – | –"
	else
		bpf="$(fmt 2 "$(awk -v v="$(get "$p" "$s" bpf-ns/MB)" 'BEGIN { print v / 1000 }')") | $(fmt 2 "$(awk -v v="$(get "$p" "$s" bpf-ns/conn)" 'BEGIN { print v / 1000 }')") | $(fmt 3 "$(get "$p" "$s" vs10-bpf-ns/MB)"), $(fmt 3 "$(get "$p" "$s" vs10-bpf-ns/conn)") | $(fmt 0 "$(get "$p" "$s" to_pod-ns/run)")"
	fi
	printf "| %s | %s (%s–%s) | %s (%s–%s) | %s, %s | %s |\n" "$s" \
		"$(fmt 0 "$(get "$p" "$s" MB/cpu-s)")" "$(fmt 0 "$(get "$p" "$s" MB/cpu-s-min)")" "$(fmt 0 "$(get "$p" "$s" MB/cpu-s-max)")" \
		"$(fmt 0 "$(get "$p" "$s" conns/cpu-s)")" "$(fmt 0 "$(get "$p" "$s" conns/cpu-s-min)")" "$(fmt 0 "$(get "$p" "$s" conns/cpu-s-max)")" \
		"$(fmt 3 "$(get "$p" "$s" vs10-MB/cpu-s)")" "$(fmt 3 "$(get "$p" "$s" vs10-conns/cpu-s)")" "$bpf"
done
stalled=$(awk '$2 == "stalled-conns" { n += $3 } END { print n + 0 }' "$p")
[ "$stalled" = 0 ] || { echo; echo "Note: $stalled connections took over 500 ms (a lost SYN); see the raw output."; }
echo
echo "### The to_pod program per packet (BPF_PROG_TEST_RUN, median of 5 runs)"
echo
echo "| server ingress | back to back ns/packet | caches flushed ns/packet |"
echo "|---|--:|--:|"
for s in unenforced rules=10 rules=10000; do
	printf "| %s | %s | %s |\n" "$s" "$(fmt 0 "$(get "$g" "$s" kernel-ns/pkt)")" "$(fmt 0 "$(get "$g" "cold/$s" kernel-ns/pkt)")"
done
echo

# What the rule count costs end to end. Measured: the programs' run time per unit (in situ)
# as a share of the CPU time per unit, and how it changed with 10,000 rules. Modelled: the
# test-run difference per packet times the policy-evaluated packets per unit.
awk -v bm10="$(get "$p" rules=10 bpf-ns/MB)" -v bc10="$(get "$p" rules=10 bpf-ns/conn)" \
	-v rm="$(get "$p" rules=10000 vs10-bpf-ns/MB)" -v rc="$(get "$p" rules=10000 vs10-bpf-ns/conn)" \
	-v n10="$(get "$g" rules=10 kernel-ns/pkt)" -v n10k="$(get "$g" rules=10000 kernel-ns/pkt)" \
	-v c10="$(get "$g" cold/rules=10 kernel-ns/pkt)" -v c10k="$(get "$g" cold/rules=10000 kernel-ns/pkt)" \
	-v ppm="$(get "$p" rules=10000 policy-pkts/MB)" -v ppc="$(get "$p" rules=10000 policy-pkts/conn)" \
	-v mbc="$(get "$p" rules=10 MB/cpu-s)" -v cc="$(get "$p" rules=10 conns/cpu-s)" 'BEGIN {
	sm = bm10 * mbc / 1e9
	sc = bc10 * cc / 1e9
	printf "In situ, netward'"'"'s programs take %.1f%% of the CPU time per MB and %.1f%% per connection at 10 rules; with 10,000 rules their time is %.3fx per MB and %.3fx per connection, which moves the CPU time per MB by %+.2f%% and per connection by %+.2f%%.\n", 100 * sm, 100 * sc, rm, rc, 100 * sm * (rm - 1), 100 * sc * (rc - 1)
	d = n10k - n10
	dc = c10k - c10
	printf "\nTest-run: 10,000 instead of 10 rules costs to_pod %+.0f ns per packet back to back (%.3fx) and %+.0f ns with flushed caches (%.3fx). At %.1f policy-evaluated packets per MB and %.2f per connection that would be %+.2f%% (back to back) to %+.2f%% (every packet with cold caches) of the CPU time per MB and %+.2f%% to %+.2f%% per connection. The issue allows 5%%.\n", d, n10k / n10, dc, c10k / c10, ppm, ppc, 100 * d * ppm * mbc / 1e9, 100 * dc * ppm * mbc / 1e9, 100 * d * ppc * cc / 1e9, 100 * dc * ppc * cc / 1e9
}'
echo

echo "### Policy file change to enforcement, agent with $((NETWARD_LATENCY_PODS + 2)) pods"
echo
scale=$(sed -n 's/.*RESULT scale //p' "$raw/latency.txt")
echo "Scale: ${scale}."
echo
echo "| measure | n | p50 ms | p99 ms | max ms |"
echo "|---|--:|--:|--:|--:|"
for m in enforced applied agent-detected-to-applied agent-compute datapath-writes directory-parse; do
	sed -n "s/.*RESULT $m n=\([0-9]*\) p50=\([0-9.]*\)ms p99=\([0-9.]*\)ms max=\([0-9.]*\)ms.*/| $m | \1 | \2 | \3 | \4 |/p" "$raw/latency.txt"
done
echo
sed -n 's/.*RESULT \(per-change median.*\)/\1./p; s/.*RESULT \(target .*\)/\1./p' "$raw/latency.txt"
echo
echo "enforced: file write until a TCP connection from the client pod to the newly allowed port opens (probed with 5 ms connect timeouts); applied: until the agent's policy revision moves."
echo
echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r), $(go version | cut -d' ' -f3); load average $load_before before, $load_after after (shared machine)."
