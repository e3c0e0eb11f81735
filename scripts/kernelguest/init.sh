#!/bin/busybox sh
# shellcheck shell=dash
# PID 1 of the kernel guest. Mounts the basics, loads the harness modules, runs every
# test binary the host packed under /kg, and reports on the second serial port (the
# first carries the kernel console to a file on the host). The host decides pass or
# fail from the TELCNI-GUEST-EXIT line, which carries the run's nonce; if it never
# comes, the run fails.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /sys/fs/bpf
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mkdir -p /run/netns

out=/dev/ttyS1
[ -c "$out" ] || out=/dev/console
stty -F "$out" raw -echo 2>/dev/null
exec >"$out" 2>&1 </dev/null

uptime_cs() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}"; }
echo "TELCNI-GUEST: booted $(uname -r) in $(cut -d' ' -f1 /proc/uptime)s"
hostname telcni-guest
echo /sbin/modprobe >/proc/sys/kernel/modprobe
status=0
# etc/kg-modules lists module files in dependency order (build-base.sh made it).
mods="/lib/modules/$(uname -r)"
[ -f /kg/no-modules ] || while read -r path params; do
	# shellcheck disable=SC2086 # params are separate words
	if ! insmod "$mods/$path" $params; then
		echo "TELCNI-GUEST: insmod $path $params failed"
		status=1
	fi
done </etc/kg-modules
ip link set lo up
echo "TELCNI-GUEST: modules loaded at $(cut -d' ' -f1 /proc/uptime)s"

export TELCNI_GUEST=1
[ -f /kg/sriov ] && export TELCNI_GUEST_SRIOV=1
if [ -f /kg/env ]; then
	# shellcheck disable=SC2163 # kv is NAME=VALUE: exporting it is the point
	while IFS= read -r kv; do [ -n "$kv" ] && export "$kv"; done </kg/env
fi
run="$(cat /kg/run 2>/dev/null)"
timeout="$(cat /kg/timeout 2>/dev/null)"
flags="$(cat /kg/flags 2>/dev/null)"
passed=0
failed=0
while read -r name pkg rel; do
	# Tests run in their package directory, as under go test, so testdata/ resolves.
	mkdir -p "/kg/src/$rel"
	cd "/kg/src/$rel" || exit 1
	t0=$(uptime_cs)
	# shellcheck disable=SC2086 # flags are separate words
	if [ -n "$run" ]; then
		"/kg/tests/$name.test" -test.v -test.timeout="${timeout:-10m}" $flags -test.run "$run"
	else
		"/kg/tests/$name.test" -test.v -test.timeout="${timeout:-10m}" $flags
	fi
	rc=$?
	t1=$(uptime_cs)
	el=$((t1 - t0))
	el="$((el / 100)).$(printf %02d $((el % 100)))"
	if [ "$rc" -eq 0 ]; then
		printf 'ok  \t%s\t%ss (guest)\n' "$pkg" "$el"
		passed=$((passed + 1))
	else
		printf 'FAIL\t%s\t%ss (guest, exit status %s)\n' "$pkg" "$el" "$rc"
		failed=$((failed + 1))
		status=1
	fi
done </kg/list
cd /
if [ "$status" -ne 0 ]; then
	echo "TELCNI-GUEST: kernel log tail:"
	dmesg | tail -n 30
fi
echo "TELCNI-GUEST-PACKAGES: $passed passed, $failed failed"
echo "TELCNI-GUEST-EXIT $(cat /kg/nonce): $status"
sync
# Give the UART time to drain the last lines before the machine stops.
sleep 0.2
poweroff -f
