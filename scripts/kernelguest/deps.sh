#!/usr/bin/env bash
# Installs what the kernel guest harness needs on a fresh Debian 12 host, as root.
# Idempotent: the backports source is written once, packages already present are
# not reinstalled, and the kernel is fetched only when the cache lacks it.
#
# QEMU comes from bookworm-backports because only QEMU >= 8 has the igb device
# (82576 with SR-IOV VFs) that the SR-IOV tests need; bookworm's own 7.2 lacks it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

src=/etc/apt/sources.list.d/bookworm-backports.sources
updated=0
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	cat >"$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	apt-get update -qq
	updated=1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

need=()
for pkg in busybox-static cpio xz-utils zstd kmod iproute2; do
	installed "$pkg" || need+=("$pkg")
done
# The igb device is the test for "new enough": an old QEMU is upgraded from backports.
if ! installed qemu-system-x86 || ! qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'; then
	need_qemu=1
else
	need_qemu=0
fi
export DEBIAN_FRONTEND=noninteractive
if ((${#need[@]})) || ((need_qemu)); then
	((updated)) || apt-get update -qq
fi
if ((${#need[@]})); then
	apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}"
fi
if ((need_qemu)); then
	apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends -t bookworm-backports qemu-system-x86
fi

"$here/fetch-kernel.sh" >/dev/null
