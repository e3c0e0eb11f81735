# VPP fast path (vppagent/, binapi/): integration tests against a real VPP 25.10.
#
# VPP has no Debian package. scripts/vpp/find.sh picks the VPP to use:
# VPP_BIN, vpp on PATH, /opt/vpp, or the build `make deps` unpacks from
# ../shared/vpp into .cache/vpp. With one, test-vpp requires every VPP test
# to run (TELCNI_REQUIRE_VPP turns a skip into a failure); with none, it
# says so and the tests skip naming VPP_BIN.

DEPS_TARGETS += deps-vpp
TEST_TARGETS += test-vpp

.PHONY: deps-vpp test-vpp bench-vpp

deps-vpp:
	@./scripts/vpp/deps.sh

# Every TestVPP* integration test (each starts its own VPP with a private
# runtime dir, no DPDK, no hugepages).
test-vpp:
	@bin=$$(./scripts/vpp/find.sh); \
	if [ -n "$$bin" ]; then echo "test-vpp: VPP at $$bin"; req=1; else echo "test-vpp: no VPP found; the VPP tests skip (set VPP_BIN)"; req=; fi; \
	VPP_BIN="$$bin" TELCNI_REQUIRE_VPP=$$req $(GO) test -count=1 -timeout 15m -run 'TestVPP' -v ./vppagent/ ./agent/ ./e2e/ ./cmd/telcnictl/ 2>&1 | tee $(CACHE)/test-vpp.log; \
	rc=$${PIPESTATUS[0]}; \
	echo "test-vpp: $$(grep -c -- '^--- PASS' $(CACHE)/test-vpp.log) passed, $$(grep -c -- '--- SKIP' $(CACHE)/test-vpp.log) skipped"; \
	exit $$rc

# pod -> VPP -> pod Mpps over memif (L2 and L3, 64 B and 1500 B) next to a
# direct memif pair in the same run.
bench-vpp:
	VPP_BIN="$$(./scripts/vpp/find.sh)" $(GO) test -count=1 -timeout 15m -run '^$$' -bench 'BenchmarkVPP' -benchtime 3s ./vppagent/
