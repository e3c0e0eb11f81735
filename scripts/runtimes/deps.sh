#!/usr/bin/env bash
# deps-runtimes: a real container runtime for e2e/runtimes (make test-runtimes).
#   - podman (Debian bookworm: 4.3, with its CNI network backend) and runc:
#     podman depends on "crun | runc", and alone apt would pick crun, which
#     fails on this kind of host's cgroup layout (cgroup v1 hybrid); runc,
#     named in the same apt call, satisfies it (crun is not installed) and
#     the tests run `podman --runtime runc`;
#   - containernetworking-plugins is not asked for: the tests do not need
#     it (their CNI plugin dir holds only telcni; podman brings lo up by
#     itself), but apt installs it anyway as golang-github-containers-common's
#     "container-network-stack" (the alternative is netavark);
#   - busybox-static, and a rootfs built from it into .cache/runtimes/rootfs
#     (no image registry is reachable: containers run with --rootfs).
# Nothing of the machine's podman configuration is touched: the tests use a
# private containers.conf, storage and CNI directories. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

need=()
for pkg in podman runc busybox-static; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	echo "deps-runtimes: installing ${need[*]} (apt)"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The rootfs: busybox and the applets the tests call, as symlinks.
rootfs=$root/.cache/runtimes/rootfs
busybox=$(dpkg-query -L busybox-static | grep -E '/bin/busybox$' | head -1)
[[ -x $busybox ]] || { echo "deps-runtimes: busybox-static installed but no /bin/busybox in it" >&2; exit 1; }
if [[ ! -x $rootfs/bin/busybox ]] || ! cmp -s "$busybox" "$rootfs/bin/busybox"; then
	echo "deps-runtimes: building $rootfs"
	mkdir -p "$root/.cache"
	tmp=$(mktemp -d "$root/.cache/runtimes.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	chmod 0755 "$tmp"
	mkdir -p "$tmp"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,var/tmp}
	chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
	install -m 0755 "$busybox" "$tmp/bin/busybox"
	for applet in sh ash ip ping nc sleep cat ls echo true false hostname ifconfig grep wc sed; do
		ln -s busybox "$tmp/bin/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
	: >"$tmp/etc/hosts"
	: >"$tmp/etc/resolv.conf"
	echo telcni >"$tmp/etc/hostname"
	mkdir -p "$(dirname "$rootfs")"
	rm -rf "$rootfs"
	mv "$tmp" "$rootfs"
	trap - EXIT
fi
echo "deps-runtimes: podman $(podman --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), rootfs $rootfs"
