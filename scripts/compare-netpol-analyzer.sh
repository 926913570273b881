#!/usr/bin/env bash
# Compares netward's pod-to-pod connectivity with np-guard's netpol-analyzer on
# Kubernetes-only manifests (TCP, UDP, SCTP), and times both.
#
# Usage: NPA=/path/to/netpol-analyzer scripts/compare-netpol-analyzer.sh [PODS:POLICIES ...]
#        NPA=... scripts/compare-netpol-analyzer.sh --dirs DIR...   (existing manifest dirs)
# netpol-analyzer is not a netward dependency: build it yourself from its repository
# (go build ./cmd/netpolicy) and point NPA at the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
: "${NPA:?set NPA to a netpol-analyzer binary}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/netward" ./cmd/netward
go build -o "$work/synthgen" ./internal/tools/synthgen
go build -o "$work/npacompare" ./internal/tools/npacompare

compare() { # name dir
	/usr/bin/time -f "%e %M" -o "$work/t1" "$work/netward" matrix -f "$2" -o json >"$work/nw.json" 2>/dev/null
	/usr/bin/time -f "%e %M" -o "$work/t2" "$NPA" list --dirpath "$2" -o json -q >"$work/npa.json" 2>/dev/null
	read -r s1 m1 <"$work/t1"
	read -r s2 m2 <"$work/t2"
	result=$("$work/npacompare" -netward "$work/nw.json" -npa "$work/npa.json" | tail -n1 || true)
	printf "| %s | %s s / %s MiB | %s s / %s MiB | %s |\n" "$1" "$s1" "$((m1 / 1024))" "$s2" "$((m2 / 1024))" "$result"
}

echo "| manifests | netward matrix | netpol-analyzer list | connectivity |"
echo "|---|---:|---:|---|"
if [ "${1:-}" = "--dirs" ]; then
	shift
	for d in "$@"; do compare "$d" "$d"; done
	exit 0
fi
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100:50 1000:300)
for s in "${sizes[@]}"; do
	pods=${s%%:*} policies=${s##*:}
	"$work/synthgen" -pods "$pods" -policies "$policies" -knp-only -out "$work/c"
	compare "synthetic $pods pods, $policies NetworkPolicies" "$work/c"
	rm -rf "$work/c"
done
