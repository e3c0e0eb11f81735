#!/usr/bin/env bash
# Fetches Debian bookworm's kernel image package with `apt-get download` (apt checks
# it against the signed archive metadata), records its version and sha256, unpacks it
# without installing it, and extracts the uncompressed ELF vmlinux that QEMU boots
# through PVH (far faster under TCG than decompressing a bzImage).
#
# Everything lands in $KG_CACHE (default .cache/kernelguest) and is reused when
# present, so a warm cache needs no network at all. Prints the kernel dir on stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${KG_CACHE:-$root/.cache/kernelguest}"
mkdir -p "$cache"
log() { echo "fetch-kernel: $*" >&2; }

# A complete cached kernel wins: it is what makes warm runs offline and repeatable.
if [[ -f "$cache/current" ]]; then
	dir="$cache/$(cat "$cache/current")"
	if [[ -f "$dir/complete" ]]; then
		echo "$dir"
		exit 0
	fi
fi

# The newest 6.1 linux-image-amd64 (bookworm or bookworm-security; backports
# carries newer kernels, whatever the pinning) names the versioned image package,
# e.g. linux-image-6.1.0-56-amd64.
candidate() { apt-cache madison linux-image-amd64 | awk -F' *[|] *' '$2 ~ /^6[.]1[.]/ {print $2; exit}'; }
meta_ver="$(candidate)"
if [[ -z "$meta_ver" ]]; then
	log "apt knows no 6.1 linux-image-amd64: apt-get update"
	apt-get update -qq
	meta_ver="$(candidate)"
fi
if [[ -z "$meta_ver" ]]; then
	log "no 6.1 linux-image-amd64 even after apt-get update"
	exit 1
fi
pkg="$(apt-cache show "linux-image-amd64=$meta_ver" | sed -n 's/^Depends: *\(linux-image-[^ ,]*\).*/\1/p' | head -1)"
[[ -n "$pkg" ]] || { log "cannot resolve the image package of linux-image-amd64 $meta_ver"; exit 1; }
ver="$(apt-cache show "linux-image-amd64=$meta_ver" | sed -n "s/^Depends: *$pkg (= \([^)]*\)).*/\1/p" | head -1)"
[[ -n "$ver" ]] || ver="$meta_ver"
want_sha="$(apt-cache show "$pkg=$ver" | awk '/^SHA256:/ {print $2; exit}')"
name="${pkg}_${ver}"
dir="$cache/$name"
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp"
log "downloading $pkg=$ver"
# Downloading as root into a root-owned dir: apt's _apt sandbox user could not write there.
if ! (cd "$dir.tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver"); then
	log "download failed; the package lists may be stale: apt-get update and retry once"
	apt-get update -qq
	exec "$0" "$@"
fi
deb="$(ls "$dir.tmp"/*.deb)"
got_sha="$(sha256sum "$deb" | awk '{print $1}')"
if [[ -n "$want_sha" && "$got_sha" != "$want_sha" ]]; then
	log "sha256 mismatch for $deb: got $got_sha, apt metadata says $want_sha"
	exit 1
fi
printf '%s  %s\n' "$got_sha" "$(basename "$deb")" >"$dir.tmp/SHA256SUMS"
printf 'package=%s\nversion=%s\nsha256=%s\n' "$pkg" "$ver" "$got_sha" >"$dir.tmp/VERSION"
dpkg-deb -x "$deb" "$dir.tmp/root"

vmlinuz="$(ls "$dir.tmp"/root/boot/vmlinuz-*)"
kver="${vmlinuz##*/vmlinuz-}"
echo "kver=$kver" >>"$dir.tmp/VERSION"
# Like the kernel's scripts/extract-vmlinux: find a compressed-stream magic in the
# bzImage and decompress from there until the result is an ELF file.
try() { # magic (PCRE bytes), decompress command
	local off
	while read -r off; do
		tail -c "+$((off + 1))" "$vmlinuz" | $2 >"$dir.tmp/vmlinux" 2>/dev/null || true
		if [[ "$(head -c 4 "$dir.tmp/vmlinux" | od -An -c | tr -d ' ')" == '177ELF' ]]; then
			return 0
		fi
	done < <(LC_ALL=C grep -obUaP "$1" "$vmlinuz" | cut -d: -f1)
	return 1
}
try '\xfd7zXZ\x00' 'xz -dc' || try '\x28\xb5\x2f\xfd' 'zstd -dcq' || try '\x1f\x8b\x08' 'gzip -dc' || {
	log "no ELF vmlinux found inside $vmlinuz"
	exit 1
}
touch "$dir.tmp/complete"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
echo "$name" >"$cache/current"
log "kernel $kver cached in $dir"
echo "$dir"
