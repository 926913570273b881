#!/usr/bin/env bash
# Kubernetes apply-to-enforcement benchmark (issue #6): a real etcd + kube-apiserver, three
# nodes (network namespaces on a fabric bridge, each with its own `netward agent
# --kubeconfig`), 1,000 pods (6 with a network namespace attached by netward-cni, the others
# API objects with status.podIP on their node's pod CIDR), 100 policies (60 CNPs, 29
# NetworkPolicies, 10 CCNPs, and the measured CNP). Each apply toggles a port of the measured
# policy through the API; the time to enforcement on all nodes is taken three ways (agents'
# /v1/status revision, status.nodes of the policy, a probe that flips). Prints a table of
# p50/p90/p99/max. docs/kubernetes.md ("Multi-node end to end and benchmark") explains the
# method and the numbers. The test is e2e.TestBenchK8sApplyToEnforcement.
#
# Needs root (eBPF, network namespaces), iproute2, a kernel with BPF and BTF, Go, and the
# module proxy the first time (etcd and kube-apiserver are built by scripts/kube-apiserver.sh
# and cached: cold 6-10 minutes, then instant). Run from anywhere:
#
#   sudo scripts/bench-k8s.sh
#
# Environment: APPLIES (measured applies, default 40, at least 20; half open the port, so
# the probe column has APPLIES/2 samples), RAW (a directory to keep the raw go test output
# in). Raw output goes to stderr, the table to stdout. Takes about two minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

if [ "$(id -u)" -ne 0 ]; then
	echo "bench-k8s: needs root (it loads eBPF programs and creates network namespaces); run: sudo $0" >&2
	exit 2
fi
command -v ip >/dev/null || { echo "bench-k8s: needs ip (apt-get install iproute2)" >&2; exit 2; }
command -v go >/dev/null || { echo "bench-k8s: needs go in PATH" >&2; exit 2; }

raw="${RAW:-$(mktemp -d)}"
mkdir -p "$raw"
[ -n "${RAW:-}" ] || trap 'rm -rf "$raw"' EXIT

echo "+ scripts/kube-apiserver.sh build" >&2
NETWARD_KUBE_APISERVER="$(scripts/kube-apiserver.sh build)"
export NETWARD_KUBE_APISERVER
export NETWARD_BENCH_K8S=1
export NETWARD_BENCH_K8S_APPLIES="${APPLIES:-40}"
export NETWARD_BENCH_K8S_OUT="$raw/table.txt"
rm -f "$NETWARD_BENCH_K8S_OUT"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cmd=(go test -run '^TestBenchK8sApplyToEnforcement$' -count 1 -v -timeout 20m ./e2e)
echo "+ ${cmd[*]}" >&2
if ! "${cmd[@]}" 2>&1 | tee "$raw/bench.txt" >&2; then
	echo "bench-k8s: the benchmark failed (output above)" >&2
	exit 1
fi
if grep -q -- '--- SKIP\|SKIPPED' "$raw/bench.txt" || [ ! -s "$NETWARD_BENCH_K8S_OUT" ]; then
	echo "bench-k8s: the benchmark was skipped or wrote no table (output above)" >&2
	exit 1
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "$(nproc) CPUs, $(uname -r), load average before: $load_before, after: $load_after"
echo
cat "$NETWARD_BENCH_K8S_OUT"
