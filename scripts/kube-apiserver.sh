#!/usr/bin/env bash
# Builds etcd and kube-apiserver from the Go module proxy (no release downloads, no internet
# besides the proxy) and runs them on loopback: the control plane of netward's Kubernetes
# tests. See docs/kubernetes.md ("A real control plane for tests").
#
# Usage:
#   scripts/kube-apiserver.sh build          build (or reuse) the binaries; prints the bin dir
#   scripts/kube-apiserver.sh path           prints the bin dir (exit 1 if not built yet)
#   scripts/kube-apiserver.sh start DIR      starts etcd + kube-apiserver with data in DIR and
#                                            writes DIR/kubeconfig; waits for /readyz
#   scripts/kube-apiserver.sh stop DIR       stops what `start DIR` started
#
# Environment:
#   NETWARD_TESTBIN   cache directory (default /var/cache/netward/testbin). The binaries are
#                     kept per version: etcd-v3.7.3/etcd, kube-apiserver-v1.37.2/kube-apiserver,
#                     and bin-v1.37.2-v3.7.3/ holds links to both (usable as KUBEBUILDER_ASSETS
#                     and as NETWARD_KUBE_APISERVER for `go test ./k8s`). A version that is
#                     already built is not rebuilt, so CI should keep this directory.
#   KUBE_VERSION      default v1.37.2 (k8s.io/kubernetes; staging modules at v0.MINOR.PATCH)
#   ETCD_VERSION      default v3.7.3 (go.etcd.io/etcd/server/v3)
#   ETCD_PORT, ETCD_PEER_PORT, APISERVER_PORT   loopback ports for start (12379, 12380, 16443)
#
# A cold build takes about 10 minutes on 2 cores and 5 GB of Go caches; it runs under nice.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
TESTBIN="${NETWARD_TESTBIN:-/var/cache/netward/testbin}"
ETCD_PORT="${ETCD_PORT:-12379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-12380}"
APISERVER_PORT="${APISERVER_PORT:-16443}"

staging_version() { # v1.37.2 -> v0.37.2
	local v="${1#v}"
	echo "v0.${v#*.}"
}

bindir() { echo "$TESTBIN/bin-$KUBE_VERSION-$ETCD_VERSION"; }

log() { echo "kube-apiserver.sh: $*" >&2; }

build_etcd() {
	local out="$TESTBIN/etcd-$ETCD_VERSION"
	if [ -x "$out/etcd" ]; then
		log "etcd $ETCD_VERSION cached in $out"
		return
	fi
	local mod
	mod="$(mktemp -d)"
	log "building etcd $ETCD_VERSION in $mod"
	cat >"$mod/go.mod" <<EOF
module netward.local/testbin/etcd

go 1.26
EOF
	cat >"$mod/tools.go" <<EOF
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
	(
		cd "$mod"
		go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
		go mod tidy
		mkdir -p "$out.tmp"
		nice -n 10 go build -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
	)
	rm -rf "$out" && mv "$out.tmp" "$out"
	rm -rf "$mod"
}

build_apiserver() {
	local out="$TESTBIN/kube-apiserver-$KUBE_VERSION"
	if [ -x "$out/kube-apiserver" ]; then
		log "kube-apiserver $KUBE_VERSION cached in $out"
		return
	fi
	local mod staging upstream
	staging="$(staging_version "$KUBE_VERSION")"
	mod="$(mktemp -d)"
	log "building kube-apiserver $KUBE_VERSION (staging modules $staging) in $mod"
	# The replace block comes from the upstream go.mod: every `k8s.io/X => ./staging/...` line
	# becomes `k8s.io/X => k8s.io/X <staging version>`. The two sample modules are not
	# published on the proxy at that version and are not needed.
	upstream="$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
	if [ ! -f "$upstream" ]; then
		log "could not download k8s.io/kubernetes@$KUBE_VERSION's go.mod"
		exit 1
	fi
	{
		echo "module netward.local/testbin/kube-apiserver"
		echo
		echo "go 1.26"
		echo
		echo "godebug default=go1.26"
		echo
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo
		echo "replace ("
		grep -E '^[[:space:]]*k8s\.io/[A-Za-z0-9._-]+ => \./staging/' "$upstream" |
			awk '{print $1}' | sort -u |
			grep -v -E '^k8s\.io/(sample-cli-plugin|sample-controller)$' |
			while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$staging"; done
		echo ")"
	} >"$mod/go.mod"
	cat >"$mod/tools.go" <<EOF
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
	(
		cd "$mod"
		GOFLAGS=-mod=mod go mod tidy
		mkdir -p "$out.tmp"
		nice -n 10 go build -ldflags "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
			-o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
	)
	rm -rf "$out" && mv "$out.tmp" "$out"
	rm -rf "$mod"
}

link_bindir() {
	local d
	d="$(bindir)"
	mkdir -p "$d"
	ln -sf "$TESTBIN/etcd-$ETCD_VERSION/etcd" "$d/etcd"
	ln -sf "$TESTBIN/kube-apiserver-$KUBE_VERSION/kube-apiserver" "$d/kube-apiserver"
}

cmd_build() {
	mkdir -p "$TESTBIN"
	# One build at a time per cache directory.
	exec 9>"$TESTBIN/.lock"
	flock 9
	build_etcd
	build_apiserver
	link_bindir
	bindir
}

cmd_path() {
	local d
	d="$(bindir)"
	[ -x "$d/etcd" ] && [ -x "$d/kube-apiserver" ] || {
		log "not built yet: run $0 build"
		exit 1
	}
	echo "$d"
}

wait_http() { # url what [curl args...]
	local url="$1" what="$2"
	shift 2
	for _ in $(seq 1 600); do
		if curl -fsS -o /dev/null "$@" "$url" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	log "$what did not become ready ($url)"
	return 1
}

cmd_start() {
	local dir="${1:?usage: $0 start DIR}"
	local bin
	bin="$(cmd_path)"
	mkdir -p "$dir/etcd" "$dir/certs"
	dir="$(cd "$dir" && pwd)"
	local token
	token="netward-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	[ -f "$dir/sa.key" ] || {
		openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
		openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
	}
	echo "$token,admin,admin-uid,system:masters" >"$dir/tokens.csv"

	"$bin/etcd" --name netward --data-dir "$dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "netward=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync \
		>"$dir/etcd.log" 2>&1 &
	echo $! >"$dir/etcd.pid"
	wait_http "http://127.0.0.1:$ETCD_PORT/health" etcd || {
		tail -20 "$dir/etcd.log" >&2
		cmd_stop "$dir"
		exit 1
	}

	"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address 127.0.0.1 \
		--endpoint-reconciler-type none --cert-dir "$dir/certs" \
		--service-account-issuer https://kubernetes.default.svc \
		--service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
		--service-cluster-ip-range 10.96.0.0/16 --token-auth-file "$dir/tokens.csv" \
		--authorization-mode AlwaysAllow --disable-admission-plugins ServiceAccount --allow-privileged=true \
		>"$dir/kube-apiserver.log" 2>&1 &
	echo $! >"$dir/kube-apiserver.pid"
	wait_http "https://127.0.0.1:$APISERVER_PORT/readyz" kube-apiserver -k -H "Authorization: Bearer $token" || {
		tail -20 "$dir/kube-apiserver.log" >&2
		cmd_stop "$dir"
		exit 1
	}

	cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: netward-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: netward-test
  context:
    cluster: netward-test
    user: admin
current-context: netward-test
EOF
	log "ready: KUBECONFIG=$dir/kubeconfig (logs in $dir/*.log)"
	echo "$dir/kubeconfig"
}

cmd_stop() {
	local dir="${1:?usage: $0 stop DIR}"
	local p pid
	for p in kube-apiserver etcd; do
		[ -f "$dir/$p.pid" ] || continue
		pid="$(cat "$dir/$p.pid")"
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 1 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$dir/$p.pid"
	done
}

case "${1:-}" in
build) cmd_build ;;
path) cmd_path ;;
start) shift && cmd_start "$@" ;;
stop) shift && cmd_stop "$@" ;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
