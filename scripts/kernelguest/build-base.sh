#!/usr/bin/env bash
# Builds the guest's base initramfs (a newc cpio, uncompressed because decompressing
# under TCG costs more than QEMU copying the bytes): busybox-static, iproute2 with its
# shared libraries, the kernel modules of modules.txt with their dependencies, and
# the guest init. Cached beside the kernel, keyed by the hash of every input.
# Usage: build-base.sh KERNEL_DIR   (prints the cpio path on stdout)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kdir="$1"
log() { echo "build-base: $*" >&2; }
kver="$(sed -n 's/^kver=//p' "$kdir/VERSION")"
mods="$kdir/root/lib/modules/$kver"
busybox="$(command -v busybox)"
tools=()
for t in ip tc bridge; do
	p="$(command -v "$t" || true)"
	[[ -n "$p" ]] && tools+=("$(readlink -f "$p")")
done

key="$(cat "$kdir/VERSION" "$here/modules.txt" "$here/init.sh" "$here/build-base.sh" "$busybox" "${tools[@]}" | sha256sum | cut -c1-16)"
out="$kdir/base-$key.cpio"
if [[ -f "$out" ]]; then
	echo "$out"
	exit 0
fi
log "building $out"
# Older bases (other inputs) are dead weight: at most one base per kernel is kept.
rm -f "$kdir"/base-*.cpio

# modules.dep comes from depmod on the unpacked tree: the .deb ships none.
if [[ ! -f "$mods/modules.dep" ]]; then
	/sbin/depmod -b "$kdir/root" "$kver"
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,var,root,lib/modules/"$kver"}
ln -s ../run "$stage/var/run"
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
	[[ "$applet" == busybox ]] && continue
	ln -sf busybox "$stage/bin/$applet"
done
ln -sf ../bin/busybox "$stage/sbin/modprobe"
for t in "${tools[@]}"; do
	cp "$t" "$stage/usr/sbin/"
	# Dynamic binaries bring their libraries and loader from the host (same Debian).
	for lib in $(ldd "$t" | grep -o '/[^ ]*'); do
		cp -L --parents "$lib" "$stage/"
	done
done

# Resolve modules.txt against modules.dep, in one awk pass: every module matching
# a name (or glob) of modules.txt, with its dependencies, in an order that loads
# each module after the ones it needs. The guest insmods that list as it is: one
# modprobe per module (which parses modules.dep each time) costs seconds under TCG.
# modules.dep stays in the guest for the kernel's on-demand busybox modprobe.
awk -v out="$stage/etc/kg-modules" -v need="$stage/need" '
	function norm(s) { gsub(/-/, "_", s); return s }
	function glob2re(g) { g = norm(g); gsub(/[.]/, "[.]", g); gsub(/[*]/, ".*", g); return "^" g "$" }
	function load(m, params,    k, ds, j) {
		if (m in loaded) return
		loaded[m] = 1
		k = split(deps[m], ds, " ")
		for (j = 1; j <= k; j++) load(ds[j], "")
		print m (params == "" ? "" : " " params) > out
		print m > need
	}
	FNR == NR {
		if ($0 ~ /^[ \t]*(#|$)/) next
		n++; names[n] = $1; p = $0; sub(/^[^ \t]+[ \t]*/, "", p); params[n] = p
		next
	}
	{
		mod = $1; sub(/:$/, "", mod)
		d = ""; for (j = 2; j <= NF; j++) d = d " " $j
		deps[mod] = d
		base = mod; sub(/.*\//, "", base); sub(/[.]ko$/, "", base); base = norm(base)
		for (i = 1; i <= n; i++) if (base ~ glob2re(names[i])) hits[i] = hits[i] " " mod
	}
	END {
		for (i = 1; i <= n; i++) {
			if (hits[i] == "") { print "build-base: module " names[i] " (modules.txt) is not in this kernel" > "/dev/stderr"; bad = 1; continue }
			k = split(hits[i], hs, " ")
			for (j = 1; j <= k; j++) load(hs[j], params[i])
		}
		exit bad
	}' "$here/modules.txt" "$mods/modules.dep"
mapfile -t need <"$stage/need"
mv "$stage/need" "$stage/kg-need"
for mod in "${need[@]}"; do
	mkdir -p "$stage/lib/modules/$kver/$(dirname "$mod")"
	cp "$mods/$mod" "$stage/lib/modules/$kver/$mod"
done
# The guest's modules.dep lists only the modules it has.
awk 'FNR == NR {have[$0 ":"] = 1; next} have[$1]' "$stage/kg-need" "$mods/modules.dep" >"$stage/lib/modules/$kver/modules.dep"
rm "$stage/kg-need"
cp "$mods/modules.alias" "$mods/modules.builtin" "$mods/modules.order" "$stage/lib/modules/$kver/" 2>/dev/null || true

cp "$here/init.sh" "$stage/init"
chmod 755 "$stage/init"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out.tmp"
mv "$out.tmp" "$out"
log "$(du -h "$out" | cut -f1) with ${#need[@]} modules"
echo "$out"
