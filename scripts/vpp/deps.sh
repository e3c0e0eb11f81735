#!/usr/bin/env bash
# deps-vpp: what the VPP integration tests need besides VPP itself.
# VPP has no Debian package: it is not installed here. The tests skip,
# naming VPP_BIN, when no VPP binary is found (see deploy/vpp/README.md).
set -euo pipefail
need=()
for pkg in iproute2; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
"$(dirname "$0")/dpdk-virtio.sh"
# The vhost-user test's testpmd shares its memory with VPP through hugepage
# memfds (anonymous --no-huge memory cannot be mapped by VPP): keep 128
# 2 MB pages (256 MB) reserved. Never lowers a larger reservation.
have=$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo)
if (( ${have:-0} < 128 )); then
	echo 128 >/proc/sys/vm/nr_hugepages 2>/dev/null || echo "deps-vpp: cannot reserve hugepages; the vhost-user test will skip"
fi
bin="${VPP_BIN:-$(command -v vpp || true)}"
[[ -z "$bin" && -x /opt/vpp/bin/vpp ]] && bin=/opt/vpp/bin/vpp
if [[ -n "$bin" ]]; then
	echo "deps-vpp: VPP at $bin"
else
	echo "deps-vpp: no VPP found; VPP integration tests will skip (set VPP_BIN; see deploy/vpp/README.md)"
fi
