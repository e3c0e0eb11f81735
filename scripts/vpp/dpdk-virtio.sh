#!/usr/bin/env bash
# Adds DPDK's virtio_user PMD to the testpmd tree that scripts/memif/deps.sh
# unpacks into .cache/dpdk, for the vhost-user test (testpmd as the pod's
# virtio-user application, VPP as the vhost-user server). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/memif/deps.sh
dir=$PWD/.cache/dpdk
root=$dir/root
pmd=$root/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_net_virtio.so.23
[[ -e $pmd ]] && exit 0
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$dir/debs"
chmod 0777 "$dir/debs" || true
(cd "$dir/debs" && apt-get download librte-net-virtio23 >/dev/null)
for f in "$dir"/debs/librte-net-virtio23_*.deb; do dpkg -x "$f" "$root"; done
[[ -e $pmd ]] || { echo "deps-vpp: virtio PMD missing after unpacking librte-net-virtio23" >&2; exit 1; }
echo "deps-vpp: virtio_user PMD ready"
