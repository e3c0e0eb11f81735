#!/usr/bin/env bash
# Runs the project's kernel-dependent Go tests inside a throwaway QEMU guest booted
# with Debian bookworm's kernel. Usage:
#   scripts/kernelguest/run.sh [PKG...]     (default ./...; only packages whose tests
#                                            import kernelguest are run)
# Environment:
#   RUN=regex            passed to the guest test binaries as -test.run
#   KG_TIMEOUT=seconds   whole guest wall time before it is killed (default 600)
#   KG_TEST_TIMEOUT=dur  -test.timeout per package in the guest (default 5m)
#   KG_GUEST_ENV="K=V…"  extra environment for the guest tests
#   KG_SRIOV=0           boot without the emulated igb SR-IOV NIC
#   KG_KEEP=1            keep the work dir (initramfs, serial logs) and print it
# Exit status: 0 only if the guest booted, ran every package, and all passed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
log() { echo "kernelguest: $*" >&2; }
t_start=$(date +%s.%N)
since() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }

pkgs=("$@")
((${#pkgs[@]})) || pkgs=(./...)
timeout_s="${KG_TIMEOUT:-600}"
qemu="${QEMU:-qemu-system-x86_64}"
sriov="${KG_SRIOV:-1}"

command -v "$qemu" >/dev/null || { log "$qemu not found: run 'make deps-kernelguest'"; exit 1; }
command -v busybox >/dev/null || { log "busybox not found: run 'make deps-kernelguest'"; exit 1; }
if ((sriov)) && ! "$qemu" -device help 2>/dev/null | grep -q '"igb"'; then
	log "$qemu has no igb device (needs QEMU >= 8, bookworm-backports): run 'make deps-kernelguest' or set KG_SRIOV=0"
	exit 1
fi

kdir="$("$here/fetch-kernel.sh")"
base="$("$here/build-base.sh" "$kdir")"

# Discovery: a package runs in the guest when its tests import kernelguest
# (the kernelguest package itself holds the harness's probe tests).
mod="$(go list -m)"
kg="$mod/kernelguest"
work="$(mktemp -d "${TMPDIR:-/tmp}/kernelguest.XXXXXX")"
cleanup() {
	if [[ "${KG_KEEP:-0}" == 1 ]]; then log "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
stage="$work/stage"
mkdir -p "$stage/kg/tests"
: >"$stage/kg/list"
n=0
while IFS='|' read -r ip dir imports; do
	[[ "$ip" == "$kg" || " $imports " == *" $kg "* ]] || continue
	rel="${ip#"$mod"}"
	rel="${rel#/}"
	name="$(tr '/.' '__' <<<"${rel:-root}")"
	CGO_ENABLED=0 go test -c -o "$stage/kg/tests/$name.test" "$ip"
	[[ -f "$stage/kg/tests/$name.test" ]] || { log "$ip: go test -c built nothing"; exit 1; }
	if [[ -d "$dir/testdata" ]]; then
		mkdir -p "$stage/kg/src/$rel"
		cp -r "$dir/testdata" "$stage/kg/src/$rel/"
	fi
	echo "$name $ip ${rel:-.}" >>"$stage/kg/list"
	n=$((n + 1))
done < <(go list -f '{{.ImportPath}}|{{.Dir}}|{{join .TestImports " "}} {{join .XTestImports " "}}' "${pkgs[@]}")
if ((n == 0)); then
	log "no package in ${pkgs[*]} has tests that import $kg"
	exit 1
fi
printf '%s' "${RUN:-}" >"$stage/kg/run"
printf '%s' "${KG_TEST_TIMEOUT:-5m}" >"$stage/kg/timeout"
: >"$stage/kg/env"
for kv in ${KG_GUEST_ENV:-}; do echo "$kv" >>"$stage/kg/env"; done
((sriov)) && touch "$stage/kg/sriov"
# The kernel unpacks concatenated cpio archives in order: base, then this run's files.
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$work/run.cpio"
cat "$base" "$work/run.cpio" >"$work/initrd.cpio"
log "$n package(s) built, initramfs $(du -h "$work/initrd.cpio" | cut -f1), booting $(sed -n 's/^kver=//p' "$kdir/VERSION") at $(since)s"

# No link to the outside: -nic none and -nodefaults; the igb NIC has no host backend.
args=(-M q35 -accel tcg -cpu max -smp "${KG_SMP:-2}" -m "${KG_MEM:-1G}"
	-nodefaults -display none -no-reboot -nic none
	-kernel "$kdir/vmlinux" -initrd "$work/initrd.cpio"
	-append "console=ttyS0 loglevel=4 panic=-1 oops=panic random.trust_cpu=on"
	-serial "file:$work/console.log" -serial stdio)
if ((sriov)); then
	args+=(-device pcie-root-port,id=kgrp1,chassis=1,slot=1 -device igb,bus=kgrp1)
fi
set +e
timeout --kill-after=5 "$timeout_s" "$qemu" "${args[@]}" </dev/null | sed -u 's/\r$//' | tee "$work/guest.log"
rcs=("${PIPESTATUS[@]}")
set -e
qrc="${rcs[0]}"

result="$(sed -n 's/^TELCNI-GUEST-EXIT: \([0-9]*\)$/\1/p' "$work/guest.log" | tail -1)"
counts="$(awk '/^--- PASS/ {p++} /^--- FAIL/ {f++} /^--- SKIP/ {s++} END {printf "%d passed, %d failed, %d skipped", p, f, s}' "$work/guest.log")"
if [[ -z "$result" ]]; then
	if [[ "$qrc" == 124 || "$qrc" == 137 ]]; then
		log "FAIL: the guest did not finish within ${timeout_s}s (KG_TIMEOUT); killed"
	else
		log "FAIL: the guest stopped without a result (qemu exit status $qrc)"
	fi
	log "kernel console (last 60 lines of $work/console.log):"
	tail -n 60 "$work/console.log" >&2 || true
	KG_KEEP=1
	echo "kernelguest: $counts"
	exit 1
fi
log "guest finished in $(since)s (qemu exit status $qrc)"
echo "kernelguest: $counts"
if [[ "$result" != 0 ]]; then
	log "FAIL: guest tests failed (exit status $result)"
	exit 1
fi
