#!/usr/bin/env bash
# deps-vpp: a VPP for the integration tests and the demo, and what the tests
# need beside it. VPP has no Debian package. scripts/vpp/find.sh looks for
# one (VPP_BIN, PATH, /opt/vpp); when there is none and the steering
# repository's relocatable build exists (../shared/vpp, or VPP_TARBALL), it
# is unpacked into .cache/vpp. Without either the tests skip, naming VPP_BIN
# (see deploy/vpp/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tarball=${VPP_TARBALL:-$root/../shared/vpp/vpp-25.10-debian12-amd64.tar.xz}

# Runtime libraries of VPP 25.10 (libunwind8; libxdp1 and libbpf1 for af_xdp).
need=()
for pkg in iproute2 libunwind8 libxdp1 libbpf1; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

bin=$(./scripts/vpp/find.sh)
if [[ -z "$bin" && -z "${VPP_BIN:-}" && -f "$tarball" ]]; then
	stamp=$(stat -c '%s %Y' "$tarball")
	if [[ ! -x .cache/vpp/bin/vpp || "$(cat .cache/vpp/.stamp 2>/dev/null)" != "$stamp" ]]; then
		echo "deps-vpp: unpacking $tarball into .cache/vpp"
		rm -rf .cache/vpp.tmp && mkdir -p .cache/vpp.tmp
		tar -xJf "$tarball" -C .cache/vpp.tmp
		# The archive may hold one top-level directory or the tree itself.
		top=.cache/vpp.tmp
		[[ -x $top/bin/vpp ]] || top=$(dirname "$(dirname "$(find .cache/vpp.tmp -path '*/bin/vpp' -type f | head -1)")")
		rm -rf .cache/vpp && mv "$top" .cache/vpp && rm -rf .cache/vpp.tmp
		echo "$stamp" >.cache/vpp/.stamp
	fi
	bin=$(./scripts/vpp/find.sh)
fi

"$root/scripts/vpp/dpdk-virtio.sh"
# The vhost-user test's testpmd shares its memory with VPP through hugepage
# memfds (anonymous --no-huge memory cannot be mapped by VPP): keep 128
# 2 MB pages (256 MB) reserved. Never lowers a larger reservation.
have=$(awk '/^HugePages_Total:/ {print $2}' /proc/meminfo)
if ((${have:-0} < 128)); then
	echo 128 >/proc/sys/vm/nr_hugepages 2>/dev/null || echo "deps-vpp: cannot reserve hugepages; the vhost-user test will skip"
fi
if [[ -n "$bin" ]]; then
	ver=$(set +o pipefail; strings "$bin" 2>/dev/null | grep -m1 -oE 'v[0-9]{2}\.[0-9]{2}-[a-z0-9.-]*')
	echo "deps-vpp: VPP at $bin (${ver:-version unknown})"
else
	echo "deps-vpp: no VPP found (no VPP_BIN, no vpp on PATH, no $tarball); VPP tests will skip (see deploy/vpp/README.md)"
fi
