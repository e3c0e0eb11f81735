#!/usr/bin/env bash
# Runs the project's kernel-dependent Go tests inside a throwaway QEMU guest booted
# with Debian bookworm's kernel. Usage:
#   scripts/kernelguest/run.sh [PKG...]     (default ./...; only packages whose tests
#                                            import kernelguest are run)
# Environment:
#   RUN=regex            passed to the guest test binaries as -test.run
#   KG_TIMEOUT=seconds   whole guest wall time before it is killed (default 600)
#   KG_TEST_TIMEOUT=dur  -test.timeout per package in the guest (default 5m)
#   KG_TEST_FLAGS="…"    extra flags for the guest test binaries, e.g.
#                        "-test.bench=. -test.run=^$" to run benchmarks in the guest
#   KG_GUEST_ENV="K=V…"  extra environment for the guest tests
#   KG_SRIOV=0           boot without the emulated igb SR-IOV NIC
#   KG_NO_MODULES=1      load no kernel modules at boot (faster; for harness self-tests)
#   KG_CPU, KG_SMP, KG_MEM  QEMU -cpu (max), -smp (2), -m (1G)
#   KG_APPEND            extra kernel command line
#   KG_IOMMU=0           boot without the emulated VT-d (vfio-pci then cannot bind)
#   KG_KEEP=1            keep the work dir (initramfs, serial logs) and print it;
#                        kept by default when the guest dies, unless KG_KEEP=0
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
# Build the test binaries two at a time (the machines have 2 cores); each
# build's output goes to its own log, shown with the package's name when it
# fails.
mkdir -p "$work/build"
while read -r name ip _; do
	while (($(jobs -rp | wc -l) >= 2)); do wait -n || true; done
	( CGO_ENABLED=0 go test -c -o "$stage/kg/tests/$name.test" "$ip" >"$work/build/$name.log" 2>&1 ) &
done <"$stage/kg/list"
wait || true # each build's result is judged below, by its binary
failed=0
while read -r name ip _; do
	if [[ ! -f "$stage/kg/tests/$name.test" ]]; then
		log "$ip: go test -c failed:"
		cat "$work/build/$name.log" >&2
		failed=1
	fi
done <"$stage/kg/list"
((failed == 0)) || exit 1
# The result line carries a per-run nonce, so no test output can fake it.
nonce="$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
printf '%s' "$nonce" >"$stage/kg/nonce"
printf '%s' "${RUN:-}" >"$stage/kg/run"
printf '%s' "${KG_TEST_FLAGS:-}" >"$stage/kg/flags"
printf '%s' "${KG_TEST_TIMEOUT:-5m}" >"$stage/kg/timeout"
: >"$stage/kg/env"
for kv in ${KG_GUEST_ENV:-}; do echo "$kv" >>"$stage/kg/env"; done
((sriov)) && touch "$stage/kg/sriov"
[[ "${KG_NO_MODULES:-0}" == 1 ]] && touch "$stage/kg/no-modules"
# The kernel unpacks concatenated cpio archives in order: base, then this run's files.
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$work/run.cpio"
cat "$base" "$work/run.cpio" >"$work/initrd.cpio"
log "$n package(s) built, initramfs $(du -h "$work/initrd.cpio" | cut -f1), booting $(sed -n 's/^kver=//p' "$kdir/VERSION") at $(since)s"

# No link to the outside: -nic none and -nodefaults; the igb NIC has no host backend.
cmdline="console=ttyS0 loglevel=4 panic=-1 oops=panic random.trust_cpu=on"
args=(-M q35 -accel tcg -cpu "${KG_CPU:-max}" -smp "${KG_SMP:-2}" -m "${KG_MEM:-1G}"
	-nodefaults -display none -no-reboot -nic none
	-kernel "$kdir/vmlinux" -initrd "$work/initrd.cpio"
	-serial "file:$work/console.log" -serial stdio)
if [[ "${KG_IOMMU:-1}" == 1 ]]; then
	# An emulated VT-d, so that vfio-pci can take a VF (the DPDK path); in
	# passthrough mode, so that the kernel's own drivers pay no translation cost.
	args+=(-device intel-iommu)
	cmdline+=" intel_iommu=on iommu=pt"
fi
if ((sriov)); then
	# shellcheck disable=SC2054 # commas separate QEMU device properties
	args+=(-device pcie-root-port,id=kgrp1,chassis=1,slot=1 -device igb,bus=kgrp1)
fi
args+=(-append "$cmdline ${KG_APPEND:-}")

# wedged: the guest kernel reports an RCU stall whose timer never fired (TCG
# lost a vCPU's timer interrupt; seen once in many runs on a loaded 2-CPU
# host) and the guest has printed nothing for 60 s. Such a guest never
# recovers: it is killed at once instead of at KG_TIMEOUT.
wedged() {
	grep -q "timer wakeup didn't happen" "$work/console.log" 2>/dev/null || return 1
	local quiet=$(($(date +%s) - $(stat -c %Y "$work/guest.log")))
	((quiet > 60))
}
# boot runs the guest once; it sets qrc and result.
boot() {
	: >"$work/console.log"
	set +e
	(
		timeout --kill-after=5 "$timeout_s" "$qemu" "${args[@]}" </dev/null | sed -u 's/\r$//' | tee "$work/guest.log"
		echo "${PIPESTATUS[0]}" >"$work/qrc"
	) &
	local pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		if wedged; then
			log "the guest is wedged (RCU stall: the emulator lost a timer interrupt, see $work/console.log); killing it"
			pkill -f -- "-initrd $work/initrd.cpio" || true
		fi
	done
	wait "$pid"
	qrc="$(cat "$work/qrc" 2>/dev/null || echo 137)"
	set -e
	result="$(sed -n "s/^TELCNI-GUEST-EXIT $nonce: \([0-9]*\)\$/\1/p" "$work/guest.log" | tail -1)"
}
boot
if [[ -z "$result" ]] && grep -q "timer wakeup didn't happen" "$work/console.log"; then
	# An emulator fault, not a test's: run the guest once more, saying so.
	cp "$work/console.log" "$work/console.wedged.log"
	cp "$work/guest.log" "$work/guest.wedged.log"
	log "retrying the guest once after an emulator wedge (first attempt's logs: $work/guest.wedged.log, $work/console.wedged.log)"
	boot
fi
# Top-level test results. A guest that failed without a "--- FAIL" line (a test
# timeout, a failed module load, a dead guest) still counts one failure.
counts() {
	awk -v bad="$1" '/^--- PASS/ {p++} /^--- FAIL/ {f++} /^--- SKIP/ {s++}
		END {if (bad && f == 0) f = 1; printf "kernelguest: %d passed, %d failed, %d skipped\n", p, f, s}' "$work/guest.log"
}
if [[ -z "$result" ]]; then
	if [[ "$qrc" == 124 || "$qrc" == 137 ]]; then
		log "FAIL: the guest did not finish within ${timeout_s}s (KG_TIMEOUT); killed"
	else
		log "FAIL: the guest stopped without a result (qemu exit status $qrc)"
	fi
	log "kernel console (last 60 lines of $work/console.log):"
	tail -n 60 "$work/console.log" >&2 || true
	# Keep the logs of a guest that died, unless told not to (KG_KEEP=0).
	KG_KEEP="${KG_KEEP:-1}"
	counts 1
	exit 1
fi
log "guest finished in $(since)s (qemu exit status $qrc)"
if [[ "$result" != 0 ]]; then
	counts 1
	log "FAIL: guest tests failed (exit status $result)"
	exit 1
fi
counts 0
