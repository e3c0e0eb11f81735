#!/usr/bin/env bash
# deps-kube: a real Kubernetes API server for the tests (internal/kubetest).
#   - etcd from Debian's etcd-server (its own service is stopped: tests start
#     their own etcd on loopback);
#   - kube-apiserver built from the k8s.io/kubernetes Go module into
#     .cache/kube/bin (about 7 minutes cold on 2 cores; rebuilt only when
#     KUBE_VERSION changes). The module's staging repos (k8s.io/api,
#     client-go, ...) are pinned by replace lines, as its own go.mod does
#     with ./staging paths;
#   - kubectl from the k8s.io/kubectl module (the same release), for the
#     manifests' `kubectl apply --dry-run=server -k` tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
staging=v0.${KUBE_VERSION#v1.}

if [[ ! -x /usr/bin/etcd ]]; then
	export DEBIAN_FRONTEND=noninteractive
	# Do not start Debian's etcd service: the tests run their own.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi

# kubectl: a small build (under a minute).
kubectl=$root/.cache/kube/bin/kubectl
if [[ ! -x $kubectl || "$(cat "$kubectl.version" 2>/dev/null)" != "$staging" ]]; then
	ksrc=$root/.cache/kube/kubectl-src
	mkdir -p "$ksrc" "$(dirname "$kubectl")"
	printf 'module telcni.test/kubectl\n\ngo 1.24.0\n\nrequire (\n\tk8s.io/component-base %s\n\tk8s.io/kubectl %s\n)\n' "$staging" "$staging" >"$ksrc/go.mod"
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
	(cd "$ksrc" && GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags=-s -o "$kubectl.tmp" .)
	mv "$kubectl.tmp" "$kubectl"
	echo "$staging" >"$kubectl.version"
	echo "deps-kube: kubectl $staging built"
fi

out=$root/.cache/kube/bin/kube-apiserver
stamp=$root/.cache/kube/bin/.kube-apiserver-version
if [[ -x $out && "$(cat "$stamp" 2>/dev/null)" == "$KUBE_VERSION" ]]; then
	echo "deps-kube: kube-apiserver $KUBE_VERSION and kubectl at $(dirname "$out"), etcd at /usr/bin/etcd"
	exit 0
fi
src=$root/.cache/kube/src
mkdir -p "$src" "$(dirname "$out")"
cd "$src"
go mod download k8s.io/kubernetes@"$KUBE_VERSION"
kmod=$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION/go.mod
{
	printf 'module telcni.test/kube-apiserver\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\n' "$KUBE_VERSION"
	grep -E '=> \./staging/' "$kmod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
} >go.mod
cat >main.go <<'GO'
// kube-apiserver for telcni's tests, built from the k8s.io/kubernetes module.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
echo "deps-kube: building kube-apiserver $KUBE_VERSION (several minutes the first time)"
start=$(date +%s)
GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags=-s -o "$out.tmp" .
mv "$out.tmp" "$out"
echo "$KUBE_VERSION" >"$stamp"
echo "deps-kube: kube-apiserver $KUBE_VERSION built in $(($(date +%s) - start)) s at $out"
