#!/usr/bin/env bash
# Times `netward matrix` end to end (YAML loading, validation, compiling every policy, the
# complete matrix, JSON output) on synthetic clusters of the sizes in issue 3, and prints a
# Markdown table: pods, policies, workload groups, allowed connections, wall time, max RSS.
#
# Usage: scripts/bench-matrix.sh [SIZES...]   e.g. scripts/bench-matrix.sh 100:50 5000:1000
# Default sizes: 100:50 1000:300 5000:1000 20000:3000. Needs GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100:50 1000:300 5000:1000 20000:3000)
[ -x /usr/bin/time ] || { echo "bench-matrix: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/netward" ./cmd/netward
go build -o "$work/synthgen" ./internal/tools/synthgen

echo "| pods | policies | groups | allowed connections | wall time | max RSS |"
echo "|---:|---:|---:|---:|---:|---:|"
for s in "${sizes[@]}"; do
	pods=${s%%:*} policies=${s##*:}
	dir="$work/c$pods"
	"$work/synthgen" -pods "$pods" -policies "$policies" -out "$dir"
	/usr/bin/time -f "%e %M" -o "$work/time" "$work/netward" matrix -f "$dir" -o json >"$work/out.json" 2>"$work/err"
	read -r secs kb <"$work/time"
	done_line=$(grep 'done:' "$work/err" | tail -n1 || true)
	groups=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(len(d['groups']), len(d['connections']))" "$work/out.json")
	printf "| %s | %s | %s | %s | %s s | %s MiB |\n" "$pods" "$policies" "${groups% *}" "${groups#* }" "$secs" "$((kb / 1024))"
	rm -rf "$dir"
done
echo
echo "Command: \`scripts/bench-matrix.sh ${sizes[*]}\` on $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(go version | cut -d' ' -f3)."
