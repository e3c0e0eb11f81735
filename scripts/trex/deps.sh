#!/usr/bin/env bash
# deps-trex: the TRex v3.08 stateless server for perf/trex (issue 11).
# TRex has no Debian package. When the steering repository's build exists
# (../shared/trex, or TREX_TARBALL) it is unpacked into .cache/trex, once
# per tarball (stamped with its size and mtime). Its runtime libraries
# (libstdc++6, zlib1g) are installed with apt when missing. Without the
# tarball the TRex tests skip (TELCNI_REQUIRE_TREX=1 makes them fail).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tarball=${TREX_TARBALL:-$root/../shared/trex/trex-3.08-debian12-amd64.tar.xz}
dest=$root/.cache/trex

need=()
for pkg in libstdc++6 zlib1g; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [[ -f "$tarball" ]]; then
	stamp="$(stat -c '%s %Y' "$tarball") $(basename "$tarball")"
	if [[ ! -x $dest/_t-rex-64 || "$(cat "$dest/.stamp" 2>/dev/null)" != "$stamp" ]]; then
		echo "deps-trex: unpacking $tarball into .cache/trex"
		rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
		tar -xJf "$tarball" -C "$dest.tmp"
		# The archive may hold one top-level directory or the tree itself.
		top=$dest.tmp
		[[ -x $top/_t-rex-64 ]] || top=$(dirname "$(find "$dest.tmp" -name _t-rex-64 -type f | head -1)")
		rm -rf "$dest" && mv "$top" "$dest" && rm -rf "$dest.tmp"
		echo "$stamp" >"$dest/.stamp"
	fi
fi

if [[ -x $dest/_t-rex-64 ]]; then
	echo "deps-trex: TRex at $dest ($(cat "$dest/VERSION" 2>/dev/null || echo version unknown))"
else
	echo "deps-trex: no TRex (no $tarball; set TREX_TARBALL); the TRex tests will skip"
fi
