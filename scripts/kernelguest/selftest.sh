#!/usr/bin/env bash
# Proves that the harness fails the host run for every way a guest test can go
# wrong: a failing test, a panicking one, a hanging one (stopped by -test.timeout),
# a guest that outlives KG_TIMEOUT, and a guest kernel that dies before reporting. Each case boots a guest that runs
# only kernelguest's TestHarnessSelfCheck, and must exit non-zero showing the cause.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
passed=0
failed=0
check() { # name, expected output (ERE), then env assignments
	local name="$1" want="$2"
	shift 2
	# The cases need neither modules nor the igb NIC nor the IOMMU: boot without them.
	env KG_NO_MODULES=1 KG_SRIOV=0 KG_IOMMU=0 KG_KEEP=0 "$@" RUN='^TestHarnessSelfCheck$' "$here/run.sh" ./kernelguest >"$out" 2>&1
	local rc=$?
	if ((rc != 0)) && grep -Eq "$want" "$out"; then
		echo "selftest: ok $name (harness exit $rc, output shows /$want/)"
		passed=$((passed + 1))
		return
	fi
	if ((rc == 0)); then
		echo "selftest: FAIL $name: the harness exited 0; its output:"
	else
		echo "selftest: FAIL $name: exit $rc but the output lacks /$want/; it was:"
	fi
	sed 's/^/    /' "$out"
	failed=$((failed + 1))
}
check "failing test" 'selfcheck: a failing guest test' KG_GUEST_ENV=TELCNI_GUEST_SELFCHECK=fail
check "panicking test" 'panic: selfcheck: a panicking guest test' KG_GUEST_ENV=TELCNI_GUEST_SELFCHECK=panic
check "hanging test" 'panic: test timed out after 3s' KG_GUEST_ENV=TELCNI_GUEST_SELFCHECK=hang KG_TEST_TIMEOUT=3s
check "guest past KG_TIMEOUT" 'did not finish within 20s' KG_GUEST_ENV=TELCNI_GUEST_SELFCHECK=hang KG_TEST_TIMEOUT=10m KG_TIMEOUT=20
check "crashing guest kernel" 'the guest stopped without a result' KG_GUEST_ENV=TELCNI_GUEST_SELFCHECK=crash
echo "selftest: $passed passed, $failed failed"
((failed == 0))
