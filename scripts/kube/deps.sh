#!/usr/bin/env bash
# deps-kube: a real Kubernetes API server for the tests (internal/kubetest).
#   - etcd from Debian's etcd-server (its service is not started: tests
#     start their own etcd on loopback);
#   - kube-apiserver built from the k8s.io/kubernetes Go module into
#     .cache/kube/bin (about 7 minutes cold on 2 cores; rebuilt only when
#     the version changes). The module's staging repos (k8s.io/api,
#     client-go, ...) are pinned by replace lines, as its own go.mod does
#     with ./staging paths;
#   - kubectl from the k8s.io/kubectl module (the same release), for the
#     manifests' `kubectl apply --dry-run=server -k` tests.
# KUBE_VERSION picks the release (default: the first of v1.34.4, v1.34.3,
# v1.34.2 the module proxy serves). Idempotent; a few milliseconds warm.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bindir=$root/.cache/kube/bin
mkdir -p "$bindir"
export GOFLAGS=-mod=mod CGO_ENABLED=0

# --- etcd ------------------------------------------------------------------
if [[ ! -x /usr/bin/etcd ]]; then
	export DEBIAN_FRONTEND=noninteractive
	# Keep the package from starting its etcd service: the tests run their
	# own. (An existing policy-rc.d is left as it is.)
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	echo "deps-kube: installing etcd-server (apt)"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
	if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
		systemctl disable --now etcd >/dev/null 2>&1 || true
	fi
fi

# --- version -----------------------------------------------------------------
# The last version built is remembered, so a warm run asks no proxy.
stamp=$bindir/.kube-apiserver-version
if [[ -n ${KUBE_VERSION:-} ]]; then
	version=$KUBE_VERSION
elif [[ -x $bindir/kube-apiserver && -s $stamp ]]; then
	version=$(cat "$stamp")
else
	version=
	for v in v1.34.4 v1.34.3 v1.34.2; do
		if go mod download k8s.io/kubernetes@"$v" 2>/dev/null; then version=$v; break; fi
		echo "deps-kube: k8s.io/kubernetes@$v not available, trying the next"
	done
	[[ -n $version ]] || { echo "deps-kube: no k8s.io/kubernetes v1.34.x from the module proxy" >&2; exit 1; }
fi
staging=v0.${version#v1.} # v1.34.4 -> v0.34.4 (k8s.io/api, client-go, ...)
minor=${version#v1.}
minor=${minor%%.*}
# As the release build stamps them (hack/lib/version.sh), so /version and
# `kubectl version` tell the real release.
ldflags="-s"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

# build SRC OUT: tidy the wrapper module in SRC and build it to OUT,
# showing go's output only when it fails.
build() {
	local log
	log=$(mktemp)
	if ! (cd "$1" && go mod tidy && go build -trimpath -ldflags="$ldflags" -o "$2.tmp" .) >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		exit 1
	fi
	rm -f "$log"
	mv "$2.tmp" "$2"
}

# --- kube-apiserver ----------------------------------------------------------
out=$bindir/kube-apiserver
if [[ ! -x $out || "$(cat "$stamp" 2>/dev/null)" != "$version" ]]; then
	src=$root/.cache/kube/src
	mkdir -p "$src"
	go mod download k8s.io/kubernetes@"$version"
	kmod=$(go env GOMODCACHE)/k8s.io/kubernetes@$version/go.mod
	{
		printf 'module telcni.test/kube-apiserver\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\n' "$version"
		# k8s.io/xyz => ./staging/src/k8s.io/xyz  ->  k8s.io/xyz => k8s.io/xyz v0.34.4
		grep -E '=> \./staging/' "$kmod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
	} >"$src/go.mod"
	rm -f "$src/go.sum"
	cat >"$src/main.go" <<'GO'
// kube-apiserver for telcni's tests, built from the k8s.io/kubernetes module.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
	echo "deps-kube: building kube-apiserver $version (about 7 minutes the first time)"
	start=$(date +%s)
	build "$src" "$out"
	echo "$version" >"$stamp"
	echo "deps-kube: kube-apiserver $version built in $(($(date +%s) - start)) s"
fi

# --- kubectl (under a minute) ------------------------------------------------
kubectl=$bindir/kubectl
if [[ ! -x $kubectl || "$(cat "$kubectl.version" 2>/dev/null)" != "$staging" ]]; then
	ksrc=$root/.cache/kube/kubectl-src
	mkdir -p "$ksrc"
	printf 'module telcni.test/kubectl\n\ngo 1.24.0\n\nrequire (\n\tk8s.io/component-base %s\n\tk8s.io/kubectl %s\n)\n' "$staging" "$staging" >"$ksrc/go.mod"
	rm -f "$ksrc/go.sum"
	cat >"$ksrc/main.go" <<'GO'
// kubectl for telcni's tests, built from the k8s.io/kubectl module.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() { os.Exit(cli.Run(cmd.NewDefaultKubectlCommand())) }
GO
	echo "deps-kube: building kubectl $staging"
	build "$ksrc" "$kubectl"
	echo "$staging" >"$kubectl.version"
fi

echo "deps-kube: kube-apiserver $version: $out"
echo "deps-kube: kubectl $staging: $kubectl"
echo "deps-kube: etcd $(/usr/bin/etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'): /usr/bin/etcd"
