#!/usr/bin/env bash
# deps-kubelet: a real kubelet and CRI runtime for e2e/kubelet (make test-kubelet).
#   - containerd (Debian bookworm: 1.6, with its CRI plugin and `ctr`) and
#     runc from apt. The package's containerd service is not started (the
#     tests run their own containerd with a private config, root, state and
#     socket); crun is never used (it fails on this kind of host's cgroup
#     layout, cgroup v1 hybrid);
#   - busybox-static (the test image and the pause image are built from it
#     by the test: no image registry is reachable);
#   - kubelet built from the k8s.io/kubernetes Go module (cmd/kubelet) into
#     .cache/kube/bin/kubelet, in a wrapper module under .cache/kube/kubelet-src
#     with the module's staging repos pinned by replace lines, as
#     scripts/kube/deps.sh does for kube-apiserver (version-stamped; rebuilt
#     only when the version changes).
# KUBE_VERSION picks the release (default: the one kube-apiserver was built
# at, else v1.34.4). Idempotent; a few milliseconds warm.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bindir=$root/.cache/kube/bin
mkdir -p "$bindir"
export GOFLAGS=-mod=mod CGO_ENABLED=0

# --- containerd, runc, busybox-static ----------------------------------------
need=()
for pkg in containerd runc busybox-static; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	# Keep the package from starting its containerd service: the tests run
	# their own. (An existing policy-rc.d is left as it is.)
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	echo "deps-kubelet: installing ${need[*]} (apt)"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	if command -v systemctl >/dev/null && systemctl is-active --quiet containerd 2>/dev/null; then
		systemctl disable --now containerd >/dev/null 2>&1 || true
	fi
fi

# --- version -----------------------------------------------------------------
stamp=$bindir/kubelet.version
if [[ -n ${KUBE_VERSION:-} ]]; then
	version=$KUBE_VERSION
elif [[ -x $bindir/kubelet && -s $stamp ]]; then
	version=$(cat "$stamp")
elif [[ -s $bindir/.kube-apiserver-version ]]; then
	version=$(cat "$bindir/.kube-apiserver-version")
else
	version=v1.34.4
fi
staging=v0.${version#v1.} # v1.34.4 -> v0.34.4
minor=${version#v1.}
minor=${minor%%.*}
ldflags="-s"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

# --- kubelet -----------------------------------------------------------------
out=$bindir/kubelet
if [[ ! -x $out || "$(cat "$stamp" 2>/dev/null)" != "$version" ]]; then
	src=$root/.cache/kube/kubelet-src
	mkdir -p "$src"
	go mod download k8s.io/kubernetes@"$version"
	kmod=$(go env GOMODCACHE)/k8s.io/kubernetes@$version/go.mod
	{
		printf 'module telcni.test/kubelet\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\n' "$version"
		grep -E '=> \./staging/' "$kmod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
	} >"$src/go.mod"
	rm -f "$src/go.sum"
	cat >"$src/main.go" <<'GO'
// kubelet for telcni's tests, built from the k8s.io/kubernetes module
// (as cmd/kubelet/kubelet.go).
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() { os.Exit(cli.Run(app.NewKubeletCommand(context.Background()))) }
GO
	echo "deps-kubelet: building kubelet $version (several minutes the first time)"
	start=$(date +%s)
	log=$(mktemp)
	if ! (cd "$src" && go mod tidy && go build -trimpath -ldflags="$ldflags" -o "$out.tmp" .) >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log" "$out.tmp"
		exit 1
	fi
	rm -f "$log"
	mv "$out.tmp" "$out"
	echo "$version" >"$stamp"
	echo "deps-kubelet: kubelet $version built in $(($(date +%s) - start)) s"
fi

echo "deps-kubelet: kubelet $(cat "$stamp"): $out"
echo "deps-kubelet: containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), busybox $(dpkg-query -L busybox-static | grep -E '/bin/busybox$' | head -1)"
