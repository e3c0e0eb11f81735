#!/usr/bin/env bash
# Prints the VPP binary the tests and the demo use, or nothing. Order:
# VPP_BIN, vpp on PATH, the conventional install locations, then the copy
# `make deps` unpacked into the checkout's .cache/vpp.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ -n "${VPP_BIN:-}" ]]; then
	[[ -x "$VPP_BIN" ]] && echo "$VPP_BIN"
	exit 0 # a VPP_BIN that is not there is not silently replaced
fi
for b in "$(command -v vpp 2>/dev/null)" /usr/bin/vpp /opt/vpp/bin/vpp "$root/.cache/vpp/bin/vpp"; do
	if [[ -n "$b" && -x "$b" ]]; then
		echo "$b"
		exit 0
	fi
done
